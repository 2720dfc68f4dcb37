#include "common/boot_policy.h"

#include "common/tpm/policy.h"

namespace berth {

Status CheckColdStartPcrs(DigestAlg bank, std::span<const uint32_t> pcrs) {
  if (bank != DigestAlg::kSha256 && bank != DigestAlg::kSha384 && bank != DigestAlg::kSha512) {
    return InvalidArgument("cold-start bank " + std::string(DigestName(bank)) +
                           " is not sha256, sha384 or sha512");
  }
  if (pcrs.empty()) {
    return InvalidArgument("no cold-start PCRs: the TPM would release the key in any boot");
  }
  for (size_t i = 0; i < pcrs.size(); ++i) {
    if (pcrs[i] > 14) {
      return InvalidArgument("cold-start PCR " + std::to_string(pcrs[i]) + " is not 0-14");
    }
    if (i > 0 && pcrs[i] <= pcrs[i - 1]) {
      return InvalidArgument("cold-start PCRs are not ascending and distinct");
    }
  }
  return OkStatus();
}

Result<BootPolicySigner> BootPolicySigner::Create(const SecretBytes& master_secret,
                                                  const std::string& cluster_id) {
  BERTH_ASSIGN_OR_RETURN(
      SecretBytes seed,
      HkdfSha256(master_secret.span(), AsBytes(cluster_id), AsBytes("berth-boot-policy-v1"), 32));
  BootPolicySigner signer;
  BERTH_ASSIGN_OR_RETURN(signer.key_, DeriveP256Key(seed));
  BERTH_ASSIGN_OR_RETURN(TPMT_PUBLIC pub, tpm::EcSigningKeyPublic(signer.key_.get()));
  BERTH_ASSIGN_OR_RETURN(signer.public_area_, tpm::MarshalPublic(pub));
  return signer;
}

Result<v1::SignedBootPolicy> BootPolicySigner::Sign(const tpm::PcrValues& verified, DigestAlg bank,
                                                    std::span<const uint32_t> pcrs,
                                                    int64_t now_unix) const {
  if (pcrs.empty()) return InvalidArgument("no PCR to sign a cold-start policy over");
  const auto quoted = verified.find(bank);
  for (uint32_t pcr : pcrs) {
    if (pcr > 14) {
      return InvalidArgument("PCR " + std::to_string(pcr) +
                             " cannot be in a cold-start policy (only PCRs 0-14)");
    }
    if (quoted == verified.end() || !quoted->second.contains(pcr)) {
      return PermissionDenied("the quote leaves out PCR " + std::to_string(pcr) + " of " +
                              std::string(DigestName(bank)) +
                              ", which the policy's roles.cold_start requires of a control "
                              "plane (its TPM would release the disk key whatever that PCR "
                              "holds)");
    }
  }
  const std::vector<uint32_t> signed_pcrs(pcrs.begin(), pcrs.end());
  BERTH_ASSIGN_OR_RETURN(Bytes approved, tpm::PolicyPcrDigest(bank, signed_pcrs, verified));
  BERTH_ASSIGN_OR_RETURN(
      TPMT_SIGNATURE sig,
      tpm::SignPolicy(key_.get(), approved, AsBytes(tpm::kColdStartPolicyRef)));
  BERTH_ASSIGN_OR_RETURN(Bytes sig_bytes, tpm::MarshalSignature(sig));
  v1::SignedBootPolicy out;
  out.set_bank(static_cast<v1::HashAlgorithm>(tpm::TpmAlgFromDigest(bank)));
  for (uint32_t p : signed_pcrs) out.add_pcrs(p);
  out.set_approved_policy(ToString(approved));
  out.set_signature(ToString(sig_bytes));
  out.set_signed_unix(now_unix);
  return out;
}

Result<v1::ColdStart> BootPolicySigner::ColdStartFor(const tpm::PcrValues& verified, DigestAlg bank,
                                                     std::span<const uint32_t> pcrs,
                                                     int64_t now_unix) const {
  v1::ColdStart out;
  out.set_boot_policy_key(ToString(public_area_));
  BERTH_ASSIGN_OR_RETURN(*out.mutable_policy(), Sign(verified, bank, pcrs, now_unix));
  return out;
}

}  // namespace berth
