// TPMT_PUBLIC (or TPM2B_PUBLIC) as berthd receives it for an AK or EK (TpmEvidence.ak_public,
// ek_public, ChallengeRequest): parsed, then everything berthd derives from it: the
// attribute checks, the Name, the OpenSSL key, and the marshalled form.
#include <cstddef>
#include <cstdint>

#include "common/tpm/credential.h"
#include "common/tpm/quote.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto pub = berth::tpm::ParsePublic({data, size});
  if (!pub.ok()) return 0;
  (void)berth::tpm::CheckAttestationKeyAttributes(*pub);
  (void)berth::tpm::CheckEndorsementKey(*pub);
  (void)berth::tpm::PublicName(*pub);
  (void)berth::tpm::MaxCredentialSize(*pub);
  auto key = berth::tpm::PublicToEvp(*pub);
  auto again = berth::tpm::MarshalPublic(*pub);
  if (again.ok()) (void)berth::tpm::ParsePublic(*again);
  return 0;
}
