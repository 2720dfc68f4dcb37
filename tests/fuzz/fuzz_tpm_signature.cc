// TPMT_SIGNATURE as berthd receives it in TpmEvidence.signature: parsed, marshalled back, and
// checked against a real AK over a real quote (tpm::VerifySignature), so that every signature
// scheme's path in the verifier sees the fuzzed structure.
#include <cstddef>
#include <cstdint>

#include "common/tpm/quote.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

struct Keys {
  berth::EvpPkeyPtr rsa, ecc;
  berth::Bytes attest;
};

Keys* LoadKeys() {
  auto* k = new Keys;
  auto load = [](const std::string& pem_path) -> berth::EvpPkeyPtr {
    auto pem = berth::fuzz::ReadTestdata(pem_path);
    if (pem.empty()) return nullptr;
    auto key = berth::PublicKeyFromPem(berth::ToString(pem));
    return key.ok() ? std::move(*key) : nullptr;
  };
  k->rsa = load("tpm-gce-cos85-nonce9009/ak_pub.pem");
  k->ecc = load("tpm-gcp-ecc-ak-vaportpm/amd_ak_pub.pem");
  k->attest = berth::fuzz::ReadTestdata("tpm-gce-cos85-nonce9009/quote_sha256.tpms_attest");
  return k;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Keys* keys = LoadKeys();
  auto sig = berth::tpm::ParseSignature({data, size});
  if (!sig.ok()) return 0;
  auto again = berth::tpm::MarshalSignature(*sig);
  if (again.ok()) (void)berth::tpm::ParseSignature(*again);
  if (keys->rsa) (void)berth::tpm::VerifySignature(keys->rsa.get(), keys->attest, *sig);
  if (keys->ecc) (void)berth::tpm::VerifySignature(keys->ecc.get(), keys->attest, *sig);
  return 0;
}
