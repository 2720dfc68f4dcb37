// Collecting evidence on the node, behind one interface per attestation kind, so the boot
// flow (agent.cc) neither knows nor cares whether a TPM or an SEV-SNP firmware vouches for it.
#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "agent/hw/tpm.h"
#include "berth/v1/berth.pb.h"
#include "common/secret.h"

namespace berth::agent {

// Where Linux exposes the firmware's TCG event log.
inline constexpr char kEventLogPath[] = "/sys/kernel/security/tpm0/binary_bios_measurements";

// What one attestation produces for a ticket request.
struct Attestation {
  v1::Evidence evidence;
  // The secret recovered by credential activation, when berthd's challenge asked for it
  // (JoinRequest.activated_credential); empty otherwise.
  SecretBytes activated_credential;
};

class Attester {
 public:
  virtual ~Attester() = default;
  // What berthd needs to make a challenge for this node (e.g. the AK and EK of a TPM).
  virtual Result<v1::ChallengeRequest> MakeChallengeRequest() = 0;
  // Evidence bound to `binding` (DESIGN.md "Channel binding"), answering `challenge`.
  virtual Result<Attestation> Attest(const v1::ChallengeResponse& challenge,
                                     std::span<const uint8_t> binding) = 0;
};

// TPM evidence: the AK public, the current values of `selection`, a quote over them with
// extraData = binding, and the event log at `event_log_path` when the file exists (a missing
// log is normal on VMs without measured boot), berth-agent's own PCR 15 events
// (`agent_events`, boot_seal.h), the TPM's EK and EK certificate, and the platform's AK
// certificate when it provisioned one. The challenge request
// offers the AK and the EK; when berthd answers with a credential, Attest activates it.
// `tpm` outlives the attester.
class TpmAttester : public Attester {
 public:
  TpmAttester(Tpm* tpm, std::vector<v1::PcrSelection> selection, std::string event_log_path,
              std::vector<v1::TpmAgentEvent> agent_events = {})
      : tpm_(tpm),
        selection_(std::move(selection)),
        event_log_path_(std::move(event_log_path)),
        agent_events_(std::move(agent_events)) {}
  Result<v1::ChallengeRequest> MakeChallengeRequest() override;
  Result<Attestation> Attest(const v1::ChallengeResponse& challenge,
                             std::span<const uint8_t> binding) override;

 private:
  // The EK, or nothing (logged) when the TPM will not give one: a node whose AK berthd
  // trusts directly needs none.
  std::optional<Endorsement> EndorsementOrNothing();

  Tpm* tpm_;
  std::vector<v1::PcrSelection> selection_;
  std::string event_log_path_;
  std::vector<v1::TpmAgentEvent> agent_events_;
};

// Another attester's calls, one at a time: a TPM (ESYS context) or SEV-SNP guest device has
// one caller at a time, and a control plane waiting for berthd or an operator has two (its
// retries, and the operator server's threads).
class SerializedAttester : public Attester {
 public:
  explicit SerializedAttester(std::unique_ptr<Attester> inner) : inner_(std::move(inner)) {}
  Result<v1::ChallengeRequest> MakeChallengeRequest() override {
    std::lock_guard<std::mutex> lock(mu_);
    return inner_->MakeChallengeRequest();
  }
  Result<Attestation> Attest(const v1::ChallengeResponse& challenge,
                             std::span<const uint8_t> binding) override {
    std::lock_guard<std::mutex> lock(mu_);
    return inner_->Attest(challenge, binding);
  }
  // `fn` with the attester's device to itself (a bootstrap seals to the TPM while operators
  // may still call Attest).
  template <typename Fn>
  auto Exclusive(Fn fn) {
    std::lock_guard<std::mutex> lock(mu_);
    return fn();
  }

 private:
  std::unique_ptr<Attester> inner_;
  std::mutex mu_;
};

// The TPM evidence itself (TpmAttester::Attest without a challenge to answer).
Result<v1::Evidence> CollectTpmEvidence(Tpm& tpm, const std::vector<v1::PcrSelection>& selection,
                                        std::span<const uint8_t> binding,
                                        const std::string& event_log_path);

}  // namespace berth::agent
