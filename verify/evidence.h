// Verification of a node's evidence against berthd's policy.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "berth/v1/berth.pb.h"
#include "common/clock.h"
#include "common/tpm/quote.h"
#include "verify/policy.h"
#include "verify/policy_holder.h"
#include "verify/tpm_identity.h"

namespace berth::verify {

// What a golden ticket (debug enrolment, golden_ticket.h) established instead of evidence, and
// the write that consumes it together with the node's record.
struct GoldenUse {
  std::string ticket_id;
  std::string role_grant;  // "golden ticket <id> issued by CN=alice": authorizes its role
  std::string key;         // the ticket's etcd key, relative to the store's prefix
  int64_t mod_revision = 0;
  std::string used_record;  // its record, marked used by this node
};

// The challenge nonce a verified call used, as the node registry records it in etcd so that
// no replica accepts it again (nonce.h): hex SHA-256 of the nonce, and when it expires.
struct NonceUse {
  std::string sha256_hex;
  int64_t expires_unix = 0;
};

// What verified evidence established, for the decision and its audit line.
struct VerifiedEvidence {
  // What identifies the node, and what every binding uses (node records, roles, approvals):
  // SHA-256 of the TPM AK's DER SubjectPublicKeyInfo, or of an SEV-SNP node's own identity
  // key's (never of the VCEK/VLEK, which every guest on a host or in a region shares).
  std::string ak_sha256_hex;
  // SEV-SNP: SHA-256 of the VCEK/VLEK's SubjectPublicKeyInfo, the key that vouched for the
  // platform (for the record and the audit line; it changes with the TCB and the chip).
  std::string platform_key_sha256_hex;
  std::string ak_name;        // the policy's label for it
  std::string rule;           // which policy rule accepted it, e.g. "pcrs sha256:0,7"
  // Set when the AK is trusted only through its EK: the ticket may be issued only if the
  // caller returns the credential berthd made for these names (JoinLogic checks it).
  std::optional<CredentialCheck> credential;
  // Set instead of verified evidence for a golden-ticket join (debug builds only).
  std::optional<GoldenUse> golden;
  // Set by JoinLogic for evidence answering a challenge: the nonce it used up.
  std::optional<NonceUse> nonce;
  // TPM evidence: every PCR the quote covers, with the values its signed digest vouches for
  // (the policy has checked the ones it pins). A control plane's cold-start policy is signed
  // over these (common/boot_policy.h). Empty for SEV-SNP and golden tickets.
  tpm::PcrValues quoted_pcrs;
  // The policy's roles.cold_start, from the same snapshot the evidence was verified against:
  // which of `quoted_pcrs` a control plane's cold-start policy must be signed over.
  ColdStartPolicy cold_start;
};

// The EK a Challenge should make a credential for, and the AK it is made over.
struct CredentialTarget {
  TPMT_PUBLIC ek;
  Bytes ek_name;
  Bytes ak_name;
};

class EvidenceVerifier {
 public:
  virtual ~EvidenceVerifier() = default;
  // `binding` is the value the evidence must commit to (DESIGN.md "Channel binding").
  // INVALID_ARGUMENT for malformed evidence; PERMISSION_DENIED when a check or the policy
  // refuses it. Messages name the failed check and never include secrets.
  virtual Result<VerifiedEvidence> Verify(const v1::Evidence& evidence,
                                          std::span<const uint8_t> binding) = 0;
  // For Challenge: the EK to protect a credential for, when `request` presents an AK and an
  // EK the policy trusts (tpm_identity.h). Nothing when it presents none, or one the policy
  // does not trust (the join request is then refused with the reason, unless the AK is
  // trusted another way). Kinds without credential activation keep the default.
  virtual std::optional<CredentialTarget> CredentialTargetFor(const v1::ChallengeRequest& request) {
    return std::nullopt;
  }
};

// TPM evidence: AK attributes and trust (tpm_identity.h), quote signature, extraData =
// binding, pcrDigest against the PCR values sent, the boot against the policy (tpm_boot.h),
// and berth-agent's sealing events (tpm_policy.h CheckSealedBoot). Certificates are checked
// at `clock`'s time (null: the real clock) unless the policy fixes one.
// Thread-safe: each verification reads one snapshot of the policy from its holder (berthd's
// live policy, policy_holder.h), so a reload never changes a verification half-way.
class TpmEvidenceVerifier : public EvidenceVerifier {
 public:
  // A fixed policy (tests, offline tools).
  explicit TpmEvidenceVerifier(Policy policy, Clock* clock = nullptr)
      : owned_(std::make_unique<PolicyHolder>(std::move(policy))),
        holder_(owned_.get()),
        clock_(clock != nullptr ? clock : &real_clock_) {}
  // The current policy of `holder`, which outlives the verifier. A policy without a `tpm:`
  // section refuses TPM evidence.
  explicit TpmEvidenceVerifier(const PolicyHolder* holder, Clock* clock = nullptr)
      : holder_(holder), clock_(clock != nullptr ? clock : &real_clock_) {}
  Result<VerifiedEvidence> Verify(const v1::Evidence& evidence,
                                  std::span<const uint8_t> binding) override;
  std::optional<CredentialTarget> CredentialTargetFor(const v1::ChallengeRequest& request) override;

 private:
  std::unique_ptr<PolicyHolder> owned_;
  const PolicyHolder* holder_;
  RealClock real_clock_;
  Clock* clock_;
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
  std::optional<CredentialTarget> CredentialTargetFor(
      const v1::ChallengeRequest& request) override {
    return tpm_ != nullptr ? tpm_->CredentialTargetFor(request) : std::nullopt;
  }

 private:
  EvidenceVerifier* tpm_;
  EvidenceVerifier* sev_snp_;
};

// The PCR values of TPM evidence, validated (known bank, index 0-23, right size, no
// duplicates).
Result<tpm::PcrValues> PcrValuesFromEvidence(const v1::TpmEvidence& tpm);

}  // namespace berth::verify
