// The evidence of a join request (v1::Evidence, protobuf as gRPC hands it over) through
// berthd's verifiers exactly as JoinLogic calls them: EvidenceDispatcher -> TpmEvidenceVerifier
// (AK parse and trust, PCR values, tpm::VerifyQuote, the event log against the policy, the
// agent's PCR 15 events) or SnpVerifier (report parse, AMD chain from the certificates sent,
// signature, TCB, binding, policy). The seeds are the real quotes and reports of the testdata;
// the GCE ones are made to pass the quote checks (fuzz_support.h EvidenceBinding), so the
// fuzzer starts inside the event-log and policy code.
#include <cstddef>
#include <cstdint>

#include "berth/v1/berth.pb.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  berth::fuzz::EvidenceWorld::Get();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  berth::v1::Evidence evidence;
  if (!evidence.ParseFromArray(data, static_cast<int>(size))) return 0;
  static const berth::Bytes binding = berth::fuzz::EvidenceBinding();
  auto& verifier = berth::fuzz::EvidenceWorld::Get().verifier();
  berth::fuzz::Outcome("Verify", verifier.Verify(evidence, binding).status());
  if (evidence.has_tpm()) {
    // The same AK and EK fields as a Challenge carries them.
    berth::v1::ChallengeRequest challenge;
    challenge.set_ak_public(evidence.tpm().ak_public());
    challenge.set_ek_public(evidence.tpm().ek_public());
    challenge.set_ek_certificate(evidence.tpm().ek_certificate());
    (void)verifier.CredentialTargetFor(challenge);
  }
  return 0;
}
