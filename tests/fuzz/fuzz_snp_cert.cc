// An AMD certificate as a node sends it (SevSnpEvidence.vcek/ask, DER) or an operator hands it
// to berthctl (PEM or DER): CertificateToDer, the X.509 parse, and the AMD extensions of a
// VCEK/VLEK (TCB, hwID, productName, CSP id).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "common/crypto.h"
#include "common/snp/report.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace snp = berth::snp;
  auto der = snp::CertificateToDer({reinterpret_cast<const char*>(data), size});
  if (!der.ok()) return 0;
  auto cert = berth::CertFromDer(*der);
  if (!cert.ok()) return 0;
  auto info = snp::ParseEndorsementKeyInfo(cert->get());
  if (info.ok()) (void)snp::ProductFromName(info->product_name);
  (void)berth::CertSpkiSha256(cert->get());
  (void)berth::CertDerSpki(*der);
  return 0;
}
