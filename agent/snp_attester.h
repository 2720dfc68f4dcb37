// SEV-SNP evidence (DESIGN.md, docs/sev-snp.md): a report from the guest device whose
// report_data commits to the channel binding and to the node's own identity key
// (snp_identity.h), the identity key and its proof for this binding, and the VCEK (or VLEK) and
// ASK (or ASVK) when the host provides them through the extended report. Nodes whose host
// provides none still join when berthd has the certificates cached or may fetch them.
#pragma once

#include "agent/attestation.h"
#include "agent/hw/sev_guest.h"
#include "agent/snp_identity.h"

namespace berth::agent {

// `device` and `identity` outlive the attester. Not thread-safe.
class SnpAttester : public Attester {
 public:
  SnpAttester(SevGuest* device, uint32_t vmpl, const SnpIdentity* identity)
      : device_(device), vmpl_(vmpl), identity_(identity) {}
  // SEV-SNP needs nothing from berthd but a nonce.
  Result<v1::ChallengeRequest> MakeChallengeRequest() override { return v1::ChallengeRequest(); }
  Result<Attestation> Attest(const v1::ChallengeResponse& challenge,
                             std::span<const uint8_t> binding) override;

 private:
  SevGuest* device_;
  uint32_t vmpl_;
  const SnpIdentity* identity_;
};

// The evidence itself (SnpAttester::Attest without a challenge).
Result<v1::Evidence> CollectSnpEvidence(SevGuest& device, std::span<const uint8_t> binding,
                                        uint32_t vmpl, const SnpIdentity& identity);


}  // namespace berth::agent
