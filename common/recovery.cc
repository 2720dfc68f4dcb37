#include "common/recovery.h"

#include <openssl/evp.h>

#include <memory>

#include "common/crypto.h"

namespace berth::recovery {

namespace {

constexpr size_t kTagSize = 16;

Result<EvpPkeyPtr> PrivateKey(const SecretBytes& secret) {
  if (secret.size() != kSecretSize) {
    return InvalidArgument("a recovery secret is " + std::to_string(kSecretSize) + " bytes");
  }
  BERTH_ASSIGN_OR_RETURN(SecretBytes raw,
                         HkdfSha256(secret.span(), {}, AsBytes("berth-recovery-key-v1"), 32));
  EvpPkeyPtr key(EVP_PKEY_new_raw_private_key(EVP_PKEY_X25519, nullptr, raw.data(), raw.size()));
  if (!key) return OpenSslError("making the recovery key");
  return key;
}

Result<Bytes> RawPublic(EVP_PKEY* key) {
  Bytes out(kPublicKeySize);
  size_t len = out.size();
  if (EVP_PKEY_get_raw_public_key(key, out.data(), &len) != 1 || len != kPublicKeySize) {
    return OpenSslError("reading an X25519 public key");
  }
  return out;
}

Result<SecretBytes> SharedSecret(EVP_PKEY* ours, std::span<const uint8_t> their_public) {
  EvpPkeyPtr peer(EVP_PKEY_new_raw_public_key(EVP_PKEY_X25519, nullptr, their_public.data(),
                                              their_public.size()));
  if (!peer) return InvalidArgument("not an X25519 public key");
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(EVP_PKEY_CTX_new(ours, nullptr),
                                                                  EVP_PKEY_CTX_free);
  size_t len = 32;
  SecretBytes out(32);
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) != 1 ||
      EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) != 1 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &len) != 1 || len != 32) {
    return OpenSslError("X25519");
  }
  return out;
}

Result<SecretBytes> BoxKey(const SecretBytes& shared, std::span<const uint8_t> ephemeral_public,
                           std::span<const uint8_t> recovery_public,
                           std::span<const uint8_t> context) {
  Bytes salt(ephemeral_public.begin(), ephemeral_public.end());
  salt.insert(salt.end(), recovery_public.begin(), recovery_public.end());
  Bytes info = ToBytes("berth-recovery-box-v1");
  info.insert(info.end(), context.begin(), context.end());
  return HkdfSha256(shared.span(), salt, info, 32);
}

// AES-256-GCM with an all-zero nonce (one message per key).
Result<Bytes> Gcm(bool encrypt, const SecretBytes& key, std::span<const uint8_t> in,
                  std::span<const uint8_t> aad, std::span<const uint8_t> tag_in, Bytes* tag_out) {
  std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)> ctx(EVP_CIPHER_CTX_new(),
                                                                      EVP_CIPHER_CTX_free);
  const uint8_t nonce[12] = {0};
  int len = 0;
  Bytes out(in.size());
  if (!ctx ||
      EVP_CipherInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), nonce, encrypt) != 1 ||
      EVP_CipherUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1 ||
      EVP_CipherUpdate(ctx.get(), out.data(), &len, in.data(), static_cast<int>(in.size())) != 1) {
    return OpenSslError("AES-256-GCM");
  }
  if (!encrypt &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagSize,
                          const_cast<uint8_t*>(tag_in.data())) != 1) {
    return OpenSslError("AES-256-GCM");
  }
  int final_len = 0;
  if (EVP_CipherFinal_ex(ctx.get(), out.data() + len, &final_len) != 1) {
    WipeMemory(out.data(), out.size());
    return PermissionDenied("the recovery box does not open with this recovery key and context");
  }
  if (encrypt) {
    tag_out->resize(kTagSize);
    if (EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagSize, tag_out->data()) != 1) {
      return OpenSslError("AES-256-GCM");
    }
  }
  return out;
}

}  // namespace

Result<Bytes> PublicKeyOf(const SecretBytes& secret) {
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, PrivateKey(secret));
  return RawPublic(key.get());
}

std::string Fingerprint(std::span<const uint8_t> public_key) { return HexEncode(Sha256(public_key)); }

Result<Bytes> ParsePublicKeyFile(std::string_view text) {
  std::string key_hex, fingerprint;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    const std::string_view line = text.substr(start, end - start);
    start = end + 1;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string name(TrimWhitespace(line.substr(0, colon)));
    const std::string value(TrimWhitespace(line.substr(colon + 1)));
    if (name == "recovery-public-key") key_hex = value;
    if (name == "recovery-key-sha256") fingerprint = value;
  }
  if (key_hex.empty()) return InvalidArgument("no \"recovery-public-key:\" line");
  auto key = HexDecode(key_hex);
  if (!key.ok() || key->size() != kPublicKeySize) {
    return InvalidArgument("recovery-public-key: expected " + std::to_string(kPublicKeySize * 2) +
                           " hex digits");
  }
  if (!fingerprint.empty() && fingerprint != Fingerprint(*key)) {
    return InvalidArgument("recovery-key-sha256 is not the SHA-256 of recovery-public-key");
  }
  return *key;
}

Result<Bytes> Seal(std::span<const uint8_t> public_key, const SecretBytes& message,
                   std::span<const uint8_t> context) {
  if (public_key.size() != kPublicKeySize) return InvalidArgument("not a recovery public key");
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> gen(
      EVP_PKEY_CTX_new_id(EVP_PKEY_X25519, nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* raw = nullptr;
  if (!gen || EVP_PKEY_keygen_init(gen.get()) != 1 || EVP_PKEY_keygen(gen.get(), &raw) != 1) {
    return OpenSslError("making an ephemeral X25519 key");
  }
  EvpPkeyPtr ephemeral(raw);
  BERTH_ASSIGN_OR_RETURN(Bytes ephemeral_public, RawPublic(ephemeral.get()));
  BERTH_ASSIGN_OR_RETURN(SecretBytes shared, SharedSecret(ephemeral.get(), public_key));
  BERTH_ASSIGN_OR_RETURN(SecretBytes key, BoxKey(shared, ephemeral_public, public_key, context));
  Bytes tag;
  BERTH_ASSIGN_OR_RETURN(Bytes ciphertext, Gcm(true, key, message.span(), context, {}, &tag));
  Bytes box = ephemeral_public;
  box.insert(box.end(), ciphertext.begin(), ciphertext.end());
  box.insert(box.end(), tag.begin(), tag.end());
  return box;
}

Result<SecretBytes> Open(const SecretBytes& secret, std::span<const uint8_t> box,
                         std::span<const uint8_t> context) {
  if (box.size() < kPublicKeySize + kTagSize + 1) return InvalidArgument("the recovery box is too short");
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, PrivateKey(secret));
  BERTH_ASSIGN_OR_RETURN(Bytes recovery_public, RawPublic(key.get()));
  auto ephemeral_public = box.subspan(0, kPublicKeySize);
  auto ciphertext = box.subspan(kPublicKeySize, box.size() - kPublicKeySize - kTagSize);
  auto tag = box.subspan(box.size() - kTagSize);
  BERTH_ASSIGN_OR_RETURN(SecretBytes shared, SharedSecret(key.get(), ephemeral_public));
  BERTH_ASSIGN_OR_RETURN(SecretBytes box_key,
                         BoxKey(shared, ephemeral_public, recovery_public, context));
  BERTH_ASSIGN_OR_RETURN(Bytes plain, Gcm(false, box_key, ciphertext, context, tag, nullptr));
  SecretBytes out(plain.data(), plain.size());
  WipeMemory(plain.data(), plain.size());
  return out;
}

}  // namespace berth::recovery
