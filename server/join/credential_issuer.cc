#include "server/join/credential_issuer.h"

#include <openssl/crypto.h>
#include <openssl/hmac.h>

#include "common/crypto.h"

namespace berth::server {

namespace {

void AppendField(Bytes& out, std::span<const uint8_t> field) {
  out.push_back(static_cast<uint8_t>(field.size() >> 8));
  out.push_back(static_cast<uint8_t>(field.size()));
  out.insert(out.end(), field.begin(), field.end());
}

}  // namespace

CredentialIssuer::CredentialIssuer(const SecretBytes& master_secret) {
  auto key = HkdfSha256(master_secret.span(), {}, AsBytes("berth-credential-v1"), 32);
  if (key.ok()) key_ = std::move(*key);
}

Result<SecretBytes> CredentialIssuer::Secret(std::span<const uint8_t> nonce,
                                             std::span<const uint8_t> ak_name,
                                             std::span<const uint8_t> ek_name, size_t size) const {
  if (key_.empty()) return Internal("the credential key could not be derived");
  if (size == 0 || size > 32) return InvalidArgument("credential size must be 1-32 bytes");
  Bytes input;
  AppendField(input, nonce);
  AppendField(input, ak_name);
  AppendField(input, ek_name);
  SecretBytes mac(32);
  unsigned int len = 0;
  HMAC(EVP_sha256(), key_.data(), static_cast<int>(key_.size()), input.data(), input.size(),
       mac.data(), &len);
  return SecretBytes(mac.data(), size);
}

Result<tpm::MadeCredential> CredentialIssuer::Make(const TPMT_PUBLIC& ek,
                                                   std::span<const uint8_t> ek_name,
                                                   std::span<const uint8_t> ak_name,
                                                   std::span<const uint8_t> nonce) const {
  const size_t size = std::min<size_t>(32, tpm::MaxCredentialSize(ek));
  BERTH_ASSIGN_OR_RETURN(SecretBytes secret, Secret(nonce, ak_name, ek_name, size));
  return tpm::MakeCredential(ek, ak_name, secret.span());
}

Status CredentialIssuer::Check(std::span<const uint8_t> nonce, std::span<const uint8_t> ak_name,
                               std::span<const uint8_t> ek_name, size_t secret_size,
                               const SecretBytes& activated) const {
  if (activated.empty()) {
    return PermissionDenied(
        "the attestation key is trusted only through the endorsement key, and the request "
        "carries no activated credential");
  }
  BERTH_ASSIGN_OR_RETURN(SecretBytes expected,
                         Secret(nonce, ak_name, ek_name, std::min<size_t>(32, secret_size)));
  if (!expected.Equals(activated)) {
    return PermissionDenied(
        "the activated credential is not the one berthd made for this nonce, AK and EK: the "
        "AK does not live in the TPM of the endorsement key");
  }
  return OkStatus();
}

}  // namespace berth::server
