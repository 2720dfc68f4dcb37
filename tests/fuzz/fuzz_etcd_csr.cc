// A control-plane node's etcd CSR (JoinRequest.etcd_csr / etcd_peer_csr, DER PKCS#10) through
// berthd's check (CheckEtcdCsr): parse, proof of possession, key type, subject.
#include <cstddef>
#include <cstdint>

#include "common/etcd_pki.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto key = berth::CheckEtcdCsr({data, size}, berth::fuzz::kNodeName, "server");
  if (key.ok()) (void)berth::PublicKeyToSpkiDer(key->get());
  return 0;
}
