#include "agent/attestation.h"

#include <spdlog/spdlog.h>

namespace berth::agent {

Result<v1::Evidence> CollectTpmEvidence(Tpm& tpm, const std::vector<v1::PcrSelection>& selection,
                                        std::span<const uint8_t> binding,
                                        const std::string& event_log_path) {
  v1::Evidence evidence;
  v1::TpmEvidence* out = evidence.mutable_tpm();
  BERTH_ASSIGN_OR_RETURN(Bytes ak_public, tpm.AttestationKeyPublic());
  out->set_ak_public(ToString(ak_public));
  BERTH_ASSIGN_OR_RETURN(tpm::PcrValues pcrs, tpm.ReadPcrs(selection));
  BERTH_ASSIGN_OR_RETURN(TpmQuote quote, tpm.Quote(selection, binding));
  out->set_quote(ToString(quote.attest));
  out->set_signature(ToString(quote.signature));
  for (const auto& [bank, values] : pcrs) {
    v1::PcrBank* b = out->add_pcrs();
    b->set_bank(static_cast<v1::HashAlgorithm>(tpm::TpmAlgFromDigest(bank)));
    for (const auto& [index, digest] : values) {
      v1::PcrValue* v = b->add_values();
      v->set_index(index);
      v->set_digest(ToString(digest));
    }
  }
  auto log = ReadFile(event_log_path, 16 << 20);
  if (log.ok()) {
    out->set_event_log(std::move(*log));
  } else if (log.status().code() != Code::kNotFound) {
    return log.status().WithContext("reading the TPM event log");
  }
  return evidence;
}

}  // namespace berth::agent

namespace berth::agent {

std::optional<Endorsement> TpmAttester::EndorsementOrNothing() {
  auto ek = tpm_->EndorsementKey();
  if (!ek.ok()) {
    spdlog::warn("no endorsement key for credential activation: {}", ek.status().ToString());
    return std::nullopt;
  }
  return std::move(*ek);
}

Result<v1::ChallengeRequest> TpmAttester::MakeChallengeRequest() {
  v1::ChallengeRequest request;
  BERTH_ASSIGN_OR_RETURN(Bytes ak_public, tpm_->AttestationKeyPublic());
  request.set_ak_public(ToString(ak_public));
  if (auto ek = EndorsementOrNothing(); ek.has_value()) {
    request.set_ek_public(ToString(ek->ek_public));
    request.set_ek_certificate(ToString(ek->ek_certificate));
  }
  return request;
}

Result<Attestation> TpmAttester::Attest(const v1::ChallengeResponse& challenge,
                                        std::span<const uint8_t> binding) {
  Attestation out;
  BERTH_ASSIGN_OR_RETURN(out.evidence,
                         CollectTpmEvidence(*tpm_, selection_, binding, event_log_path_));
  v1::TpmEvidence* tpm = out.evidence.mutable_tpm();
  for (const auto& e : agent_events_) *tpm->add_agent_events() = e;
  BERTH_ASSIGN_OR_RETURN(std::vector<Bytes> ak_chain, tpm_->AttestationKeyCertificateChain());
  for (const Bytes& der : ak_chain) tpm->add_ak_certificate_chain(ToString(der));
  if (auto ek = EndorsementOrNothing(); ek.has_value()) {
    tpm->set_ek_public(ToString(ek->ek_public));
    tpm->set_ek_certificate(ToString(ek->ek_certificate));
  }
  if (!challenge.credential_blob().empty() || !challenge.encrypted_secret().empty()) {
    auto secret = tpm_->ActivateCredential(AsBytes(challenge.credential_blob()),
                                           AsBytes(challenge.encrypted_secret()));
    if (!secret.ok()) return secret.status().WithContext("credential activation");
    out.activated_credential = std::move(*secret);
  }
  return out;
}

}  // namespace berth::agent
