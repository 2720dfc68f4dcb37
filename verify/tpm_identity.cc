#include "verify/tpm_identity.h"

#include "common/tpm/certs.h"
#include "common/tpm/credential.h"

namespace berth::verify {

namespace {

Result<std::vector<X509Ptr>> ParseDers(const std::vector<Bytes>& ders) {
  std::vector<X509Ptr> out;
  for (const Bytes& der : ders) {
    BERTH_ASSIGN_OR_RETURN(X509Ptr cert, CertFromDer(der));
    out.push_back(std::move(cert));
  }
  return out;
}

std::vector<X509*> Raw(const std::vector<X509Ptr>& certs) {
  std::vector<X509*> out;
  for (const auto& c : certs) out.push_back(c.get());
  return out;
}

// The AK certificate route: PERMISSION_DENIED with the reason when it does not hold.
Result<AkTrust> TrustByAkCertificate(const TpmTrustPolicy& policy, const v1::TpmEvidence& evidence,
                                     const TPMT_PUBLIC& ak, int64_t now_unix) {
  if (evidence.ak_certificate_chain().empty()) {
    return PermissionDenied("the evidence carries no AK certificate");
  }
  std::vector<std::string> ders(evidence.ak_certificate_chain().begin(),
                                evidence.ak_certificate_chain().end());
  auto chain = tpm::CertsFromDerList(ders);
  if (!chain.ok()) return chain.status().WithContext("AK certificate chain");
  BERTH_ASSIGN_OR_RETURN(std::vector<X509Ptr> cas, ParseDers(policy.ak_ca_certs));
  std::vector<X509*> intermediates;
  for (size_t i = 1; i < chain->size(); ++i) intermediates.push_back((*chain)[i].get());
  X509* leaf = (*chain)[0].get();
  auto verified =
      tpm::VerifyTpmCertChain(leaf, intermediates, Raw(cas), policy.CertificateTime(now_unix));
  if (!verified.ok()) return verified.status().WithContext("AK certificate");
  BERTH_RETURN_IF_ERROR(tpm::CheckCertKeyMatches(leaf, ak, "the AK certificate"));
  AkTrust out;
  out.label = verified->leaf_subject;
  out.rule = "ak_certificate[" + verified->anchor_subject + "]";
  return out;
}

}  // namespace

Result<TrustedEk> TrustEndorsementKey(const TpmTrustPolicy& policy, std::string_view ek_public,
                                      std::string_view ek_certificate, int64_t now_unix) {
  if (ek_public.empty()) return PermissionDenied("the node presented no endorsement key");
  auto parsed = tpm::ParsePublic(AsBytes(ek_public));
  if (!parsed.ok()) return parsed.status().WithContext("endorsement key");
  TrustedEk out;
  out.pub = *parsed;
  BERTH_RETURN_IF_ERROR(tpm::CheckEndorsementKey(out.pub));
  BERTH_ASSIGN_OR_RETURN(out.name, tpm::PublicName(out.pub));
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, tpm::PublicToEvp(out.pub));
  BERTH_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToSpkiDer(key.get()));
  const Bytes spki_hash = Sha256(spki);
  for (const auto& pinned : policy.trusted_eks) {
    if (pinned.digest == spki_hash) {
      out.rule = "trusted_eks[" +
                 (pinned.name.empty() ? HexEncode(spki_hash).substr(0, 16) : pinned.name) + "]";
      return out;
    }
  }
  if (policy.ek_ca_certs.empty()) {
    return PermissionDenied("endorsement key sha256:" + HexEncode(spki_hash) +
                            " is not in tpm.trusted_eks");
  }
  if (ek_certificate.empty()) {
    return PermissionDenied("the node presented no EK certificate (and its EK sha256:" +
                            HexEncode(spki_hash) + " is not in tpm.trusted_eks)");
  }
  auto cert = CertFromDer(AsBytes(ek_certificate));
  if (!cert.ok()) return cert.status().WithContext("EK certificate");
  BERTH_ASSIGN_OR_RETURN(std::vector<X509Ptr> cas, ParseDers(policy.ek_ca_certs));
  auto verified =
      tpm::VerifyTpmCertChain(cert->get(), {}, Raw(cas), policy.CertificateTime(now_unix));
  if (!verified.ok()) {
    return Status(verified.status().code(),
                  "EK certificate issued by " + tpm::CertIssuer(cert->get()) +
                      " does not chain to a trusted manufacturer CA (tpm.ek_ca): " +
                      verified.status().message());
  }
  BERTH_RETURN_IF_ERROR(tpm::CheckCertKeyMatches(cert->get(), out.pub, "the EK certificate"));
  out.rule = "ek_certificate[" + verified->anchor_subject + "]";
  return out;
}

Result<AkTrust> TrustAttestationKey(const Policy& policy, const v1::TpmEvidence& evidence,
                                    const TPMT_PUBLIC& ak, std::span<const uint8_t> ak_spki_sha256,
                                    int64_t now_unix) {
  if (const TrustedAk* pinned = policy.FindAk(ak_spki_sha256); pinned != nullptr) {
    return AkTrust{pinned->name, "trusted_aks[" + pinned->name + "]", std::nullopt};
  }
  std::string reasons;
  const TpmTrustPolicy& t = policy.tpm_trust;
  if (!t.ak_ca_certs.empty()) {
    auto by_cert = TrustByAkCertificate(t, evidence, ak, now_unix);
    if (by_cert.ok()) return by_cert;
    if (by_cert.status().code() != Code::kPermissionDenied &&
        by_cert.status().code() != Code::kInvalidArgument) {
      return by_cert.status();
    }
    reasons += "; " + by_cert.status().message();
  }
  if (!t.ek_ca_certs.empty() || !t.trusted_eks.empty()) {
    auto ek = TrustEndorsementKey(t, evidence.ek_public(), evidence.ek_certificate(), now_unix);
    if (ek.ok()) {
      AkTrust out;
      BERTH_ASSIGN_OR_RETURN(Bytes ak_name, tpm::PublicName(ak));
      out.label = "ek:" + HexEncode(ek->name).substr(4, 16);
      out.rule = ek->rule + " + credential activation";
      out.credential = CredentialCheck{std::move(ak_name), ek->name,
                                       std::min<size_t>(32, tpm::MaxCredentialSize(ek->pub))};
      return out;
    }
    if (ek.status().code() != Code::kPermissionDenied &&
        ek.status().code() != Code::kInvalidArgument) {
      return ek.status();
    }
    reasons += "; " + ek.status().message();
  }
  return PermissionDenied("attestation key sha256:" + HexEncode(ak_spki_sha256) +
                          " is not in the policy's trusted_aks" + reasons);
}

}  // namespace berth::verify
