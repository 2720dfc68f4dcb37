// Verification of a node's evidence against berthd's policy.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "berth/v1/berth.pb.h"
#include "common/tpm_quote.h"
#include "server/policy.h"

namespace berth::server {

// What verified evidence established, for the decision and its audit line.
struct VerifiedEvidence {
  std::string ak_sha256_hex;  // SHA-256 of the AK's DER SubjectPublicKeyInfo
  std::string ak_name;        // the policy's label for it
  std::string rule;           // which policy rule accepted it, e.g. "pcrs sha256:0,7"
};

class EvidenceVerifier {
 public:
  virtual ~EvidenceVerifier() = default;
  // `binding` is the value the evidence must commit to (DESIGN.md "Channel binding").
  // INVALID_ARGUMENT for malformed evidence; PERMISSION_DENIED when a check or the policy
  // refuses it. Messages name the failed check and never include secrets.
  virtual Result<VerifiedEvidence> Verify(const v1::Evidence& evidence,
                                          std::span<const uint8_t> binding) = 0;
};

// TPM evidence: AK attributes and allow-list, quote signature, extraData = binding,
// pcrDigest against the PCR values sent, and the values against the policy.
// Thread-safe: the policy is immutable.
class TpmEvidenceVerifier : public EvidenceVerifier {
 public:
  explicit TpmEvidenceVerifier(Policy policy) : policy_(std::move(policy)) {}
  Result<VerifiedEvidence> Verify(const v1::Evidence& evidence,
                                  std::span<const uint8_t> binding) override;

 private:
  Policy policy_;
};

// Routes evidence to the verifier for its kind (TPM, SEV-SNP). A kind this berthd has no
// verifier for is PERMISSION_DENIED, naming the kind; no evidence at all is INVALID_ARGUMENT.
// Thread-safe if the verifiers are; they outlive it.
class EvidenceDispatcher : public EvidenceVerifier {
 public:
  EvidenceDispatcher(EvidenceVerifier* tpm, EvidenceVerifier* sev_snp)
      : tpm_(tpm), sev_snp_(sev_snp) {}
  Result<VerifiedEvidence> Verify(const v1::Evidence& evidence,
                                  std::span<const uint8_t> binding) override;

 private:
  EvidenceVerifier* tpm_;
  EvidenceVerifier* sev_snp_;
};

// The PCR values of TPM evidence, validated (known bank, index 0-23, right size, no
// duplicates).
Result<tpm::PcrValues> PcrValuesFromEvidence(const v1::TpmEvidence& tpm);

}  // namespace berth::server
