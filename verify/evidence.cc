#include "verify/evidence.h"

#include <spdlog/spdlog.h>

#include "verify/tpm_boot.h"

namespace berth::verify {

Result<tpm::PcrValues> PcrValuesFromEvidence(const v1::TpmEvidence& tpm) {
  tpm::PcrValues out;
  for (const auto& bank : tpm.pcrs()) {
    auto alg = tpm::DigestFromTpmAlg(static_cast<uint16_t>(bank.bank()));
    if (!alg.ok()) return alg.status().WithContext("evidence PCR bank");
    for (const auto& v : bank.values()) {
      std::string name = tpm::PcrName(*alg, v.index());
      if (v.index() > 23) return InvalidArgument("evidence PCR " + name + ": index out of range");
      if (v.digest().size() != DigestSize(*alg)) {
        return InvalidArgument("evidence PCR " + name + ": " + std::to_string(v.digest().size()) +
                               " bytes, expected " + std::to_string(DigestSize(*alg)));
      }
      if (!out[*alg].emplace(v.index(), ToBytes(v.digest())).second) {
        return InvalidArgument("evidence PCR " + name + " is given twice");
      }
    }
  }
  return out;
}

Result<VerifiedEvidence> EvidenceDispatcher::Verify(const v1::Evidence& evidence,
                                                    std::span<const uint8_t> binding) {
  switch (evidence.kind_case()) {
    case v1::Evidence::kTpm:
      if (tpm_ == nullptr) return PermissionDenied("TPM evidence is not accepted by this berthd");
      return tpm_->Verify(evidence, binding);
    case v1::Evidence::kSevSnp:
      if (sev_snp_ == nullptr) {
        return PermissionDenied("SEV-SNP evidence is not accepted by this berthd's policy");
      }
      return sev_snp_->Verify(evidence, binding);
    case v1::Evidence::KIND_NOT_SET:
      break;
  }
  return InvalidArgument("the request carries no evidence");
}

Result<VerifiedEvidence> TpmEvidenceVerifier::Verify(const v1::Evidence& evidence,
                                                     std::span<const uint8_t> binding) {
  if (evidence.kind_case() != v1::Evidence::kTpm) {
    return InvalidArgument(evidence.kind_case() == v1::Evidence::kSevSnp
                               ? "SEV-SNP evidence is not accepted by this berthd's policy"
                               : "the request carries no evidence");
  }
  const v1::TpmEvidence& tpm = evidence.tpm();
  const std::shared_ptr<const Policy> snapshot = holder_->Current();
  const Policy& policy = *snapshot;
  if (!policy.has_tpm)
    return PermissionDenied("TPM evidence is not accepted by this berthd's policy");

  auto ak_public = tpm::ParsePublic(AsBytes(tpm.ak_public()));
  if (!ak_public.ok()) return ak_public.status().WithContext("attestation key");
  BERTH_RETURN_IF_ERROR(tpm::CheckAttestationKeyAttributes(*ak_public));
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr ak, tpm::PublicToEvp(*ak_public));
  BERTH_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToSpkiDer(ak.get()));
  VerifiedEvidence out;
  Bytes ak_hash = Sha256(spki);
  out.ak_sha256_hex = HexEncode(ak_hash);
  BERTH_ASSIGN_OR_RETURN(AkTrust trust,
                         TrustAttestationKey(policy, tpm, *ak_public, ak_hash, clock_->NowUnix()));
  out.ak_name = trust.label;
  out.credential = trust.credential;

  BERTH_ASSIGN_OR_RETURN(tpm::PcrValues pcrs, PcrValuesFromEvidence(tpm));
  auto quote = tpm::VerifyQuote(ak.get(), AsBytes(tpm.quote()), AsBytes(tpm.signature()), pcrs,
                                binding);
  if (!quote.ok()) {
    return quote.status().WithContext("TPM quote");
  }
  BERTH_ASSIGN_OR_RETURN(std::string boot,
                         CheckQuotedBoot(*quote, AsBytes(tpm.event_log()), &policy));
  BERTH_ASSIGN_OR_RETURN(std::string sealed, CheckSealedBoot(policy.tpm_trust, tpm, quote->pcrs));
  out.rule = trust.rule + (boot.empty() ? "" : " + " + boot) + " + " + sealed;
  out.quoted_pcrs = std::move(quote->pcrs);
  out.cold_start = policy.roles.cold_start;
  return out;
}

std::optional<CredentialTarget> TpmEvidenceVerifier::CredentialTargetFor(
    const v1::ChallengeRequest& request) {
  const std::shared_ptr<const Policy> snapshot = holder_->Current();
  if (!snapshot->has_tpm) return std::nullopt;
  const TpmTrustPolicy& t = snapshot->tpm_trust;
  if (request.ak_public().empty() || request.ek_public().empty() ||
      (t.ek_ca_certs.empty() && t.trusted_eks.empty())) {
    return std::nullopt;
  }
  auto ak = tpm::ParsePublic(AsBytes(request.ak_public()));
  if (!ak.ok() || !tpm::CheckAttestationKeyAttributes(*ak).ok()) return std::nullopt;
  auto ek =
      TrustEndorsementKey(t, request.ek_public(), request.ek_certificate(), clock_->NowUnix());
  if (!ek.ok()) {
    spdlog::info("challenge without credential activation: {}", ek.status().message());
    return std::nullopt;
  }
  auto ak_name = tpm::PublicName(*ak);
  if (!ak_name.ok()) return std::nullopt;
  return CredentialTarget{ek->pub, ek->name, std::move(*ak_name)};
}

}  // namespace berth::verify
