#include "agent/snp_identity.h"

#include <spdlog/spdlog.h>

#include "common/binding.h"
#include "common/snp/report.h"

namespace berth::agent {

namespace {

constexpr uint32_t kSealVersion = 1;
constexpr std::string_view kSealLabel = "berth-snp-identity-seal-v1";

// The associated data: every parameter of the sealing and the public key, so that none of them
// can be changed in the file without the unsealing failing.
Bytes AssociatedData(const v1::SnpSealedIdentity& s) {
  Bytes out(kSealLabel.begin(), kSealLabel.end());
  auto put = [&](uint64_t v, int bytes) {
    for (int i = 0; i < bytes; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  put(s.version(), 4);
  put(s.root_key_select(), 4);
  put(s.guest_field_select(), 8);
  put(s.vmpl(), 4);
  put(s.tcb_version(), 8);
  put(s.public_key().size(), 4);
  out.insert(out.end(), s.public_key().begin(), s.public_key().end());
  return out;
}

Result<SecretBytes> SealingKey(SevGuest& device, const v1::SnpSealedIdentity& s) {
  SnpDerivedKeyRequest request{.root_key_select = s.root_key_select(),
                               .guest_field_select = s.guest_field_select(),
                               .vmpl = s.vmpl(),
                               .guest_svn = 0,
                               .tcb_version = s.tcb_version()};
  BERTH_ASSIGN_OR_RETURN(SecretBytes derived, device.GetDerivedKey(request));
  return HkdfSha256(derived.span(), {}, AsBytes(kSealLabel), 32);
}

}  // namespace

Result<v1::SnpSealedIdentity> SealSnpIdentity(SevGuest& device, EVP_PKEY* key, uint32_t vmpl) {
  // CommittedTcb, from a report: the firmware derives keys for it and any TCB below it, so a
  // later update (a higher committed TCB) still derives this one.
  BERTH_ASSIGN_OR_RETURN(Bytes raw, device.GetReport(Bytes(snp::kReportDataSize, 0), vmpl));
  BERTH_ASSIGN_OR_RETURN(snp::Report report, snp::ParseReport(raw));
  v1::SnpSealedIdentity s;
  s.set_version(kSealVersion);
  s.set_root_key_select(kRootKeyVcek);
  s.set_guest_field_select(kSnpIdentityFields);
  s.set_vmpl(vmpl);
  s.set_tcb_version(report.committed_tcb);
  BERTH_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToSpkiDer(key));
  s.set_public_key(ToString(spki));
  Bytes iv = RandomBytes(12);
  s.set_iv(ToString(iv));
  BERTH_ASSIGN_OR_RETURN(SecretBytes sealing, SealingKey(device, s));
  BERTH_ASSIGN_OR_RETURN(SecretBytes pem, PrivateKeyToPem(key));
  BERTH_ASSIGN_OR_RETURN(Bytes sealed, AesGcmSeal(sealing.span(), iv, AssociatedData(s), pem.span()));
  s.set_sealed_private_key(ToString(sealed));
  return s;
}

Result<EvpPkeyPtr> UnsealSnpIdentity(SevGuest& device, const v1::SnpSealedIdentity& s) {
  if (s.version() != kSealVersion) {
    return FailedPrecondition("sealed SEV-SNP identity has format " + std::to_string(s.version()) +
                              ", this agent reads " + std::to_string(kSealVersion));
  }
  BERTH_ASSIGN_OR_RETURN(SecretBytes sealing, SealingKey(device, s));
  auto pem = AesGcmOpen(sealing.span(), AsBytes(s.iv()), AssociatedData(s),
                        AsBytes(s.sealed_private_key()));
  if (!pem.ok()) {
    return FailedPrecondition(
        "this guest's derived key does not unseal it (another chip, another launch "
        "measurement or guest policy, or a changed file)");
  }
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, PrivateKeyFromPem(pem->view()));
  BERTH_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToSpkiDer(key.get()));
  if (ToString(spki) != s.public_key()) {
    return FailedPrecondition("the sealed private key is not the recorded public key's");
  }
  return key;
}

Result<SnpIdentity> SnpIdentity::LoadOrCreate(SevGuest& device, const std::string& path,
                                              uint32_t vmpl) {
  auto file = ReadFile(path, 64 << 10);
  if (file.ok()) {
    v1::SnpSealedIdentity sealed;
    if (!sealed.ParseFromString(*file)) {
      return FailedPrecondition("sealed SEV-SNP identity " + path + " does not parse");
    }
    auto key = UnsealSnpIdentity(device, sealed);
    if (!key.ok()) {
      return FailedPrecondition("sealed SEV-SNP identity " + path +
                                " cannot be unsealed by this guest: " + key.status().message() +
                                ". This node's identity is lost; berthd will see a new machine "
                                "(docs/sev-snp.md \"Node identity\")");
    }
    return SnpIdentity(std::move(*key), ToBytes(sealed.public_key()), false);
  }
  if (file.status().code() != Code::kNotFound) return file.status().WithContext("reading " + path);
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, GenerateP256Key());
  BERTH_ASSIGN_OR_RETURN(v1::SnpSealedIdentity sealed, SealSnpIdentity(device, key.get(), vmpl));
  // Written before the key is used anywhere: a node never proves an identity it could lose.
  BERTH_RETURN_IF_ERROR(MakeDirs(path.substr(0, path.rfind('/')), 0700));
  BERTH_RETURN_IF_ERROR(WriteFileAtomic(path, sealed.SerializeAsString(), 0600)
                            .WithContext("writing the sealed SEV-SNP identity"));
  SnpIdentity out(std::move(key), ToBytes(sealed.public_key()), true);
  spdlog::info("made this node's SEV-SNP identity key sha256:{}, sealed in {}", out.Fingerprint(),
               path);
  return out;
}

std::string SnpIdentity::Fingerprint() const { return HexEncode(Sha256(spki_)); }

Result<Bytes> SnpIdentity::Prove(std::span<const uint8_t> binding) const {
  return EcdsaSignSha256(key_.get(), SnpIdentityProofMessage(binding));
}

}  // namespace berth::agent
