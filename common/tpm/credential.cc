#include "common/tpm/credential.h"

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include <cstring>

#include "common/crypto.h"
#include "common/tpm/quote.h"

namespace berth::tpm {

namespace {

// PolicySecret(TPM_RH_ENDORSEMENT) with SHA-256: the TCG's "PolicyA".
constexpr uint8_t kPolicyA[32] = {0x83, 0x71, 0x97, 0x67, 0x44, 0x84, 0xb3, 0xf8, 0x1a, 0x90, 0xcc,
                                  0x8d, 0x46, 0xa5, 0xd7, 0x24, 0xfd, 0x52, 0xd7, 0x6e, 0x06, 0x52,
                                  0x0b, 0x64, 0xf2, 0xa1, 0xda, 0x1b, 0x33, 0x14, 0x69, 0xaa};

constexpr TPMA_OBJECT kEkAttributes =
    TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
    TPMA_OBJECT_ADMINWITHPOLICY | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;

TPMT_PUBLIC EkBase(TPMI_ALG_PUBLIC type) {
  TPMT_PUBLIC p;
  std::memset(&p, 0, sizeof p);
  p.type = type;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = kEkAttributes;
  p.authPolicy.size = sizeof kPolicyA;
  std::memcpy(p.authPolicy.buffer, kPolicyA, sizeof kPolicyA);
  return p;
}

struct PkeyCtxFree {
  void operator()(EVP_PKEY_CTX* p) const { EVP_PKEY_CTX_free(p); }
};
struct CipherCtxFree {
  void operator()(EVP_CIPHER_CTX* p) const { EVP_CIPHER_CTX_free(p); }
};
struct BnFree {
  void operator()(BIGNUM* p) const { BN_free(p); }
};

void PutU32(Bytes& out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void Append(Bytes& out, std::span<const uint8_t> b) { out.insert(out.end(), b.begin(), b.end()); }

Bytes Hmac(DigestAlg alg, std::span<const uint8_t> key, std::span<const uint8_t> data) {
  Bytes out(DigestSize(alg));
  unsigned int len = 0;
  HMAC(EvpMd(alg), key.data(), static_cast<int>(key.size()), data.data(), data.size(), out.data(),
       &len);
  return out;
}

// KDFa (Part 1, 11.4.10.2): HMAC(key, [i]32 || label || 0 || contextU || contextV || [bits]32).
Bytes KdfA(DigestAlg alg, std::span<const uint8_t> key, std::string_view label,
           std::span<const uint8_t> context_u, std::span<const uint8_t> context_v, uint32_t bits) {
  Bytes out;
  const size_t bytes = (bits + 7) / 8;
  for (uint32_t i = 1; out.size() < bytes; ++i) {
    Bytes input;
    PutU32(input, i);
    Append(input, AsBytes(label));
    input.push_back(0);
    Append(input, context_u);
    Append(input, context_v);
    PutU32(input, bits);
    Append(out, Hmac(alg, key, input));
  }
  out.resize(bytes);
  return out;
}

// KDFe (Part 1, 11.4.10.3): H([i]32 || Z || label || 0 || partyUInfo || partyVInfo).
Bytes KdfE(DigestAlg alg, std::span<const uint8_t> z, std::string_view label,
           std::span<const uint8_t> party_u, std::span<const uint8_t> party_v, uint32_t bits) {
  Bytes out;
  const size_t bytes = (bits + 7) / 8;
  for (uint32_t i = 1; out.size() < bytes; ++i) {
    Bytes input;
    PutU32(input, i);
    Append(input, z);
    Append(input, AsBytes(label));
    input.push_back(0);
    Append(input, party_u);
    Append(input, party_v);
    Append(out, Digest(alg, input));
  }
  out.resize(bytes);
  return out;
}

constexpr char kIdentityLabel[] = "IDENTITY";

// RSA: a random seed, OAEP-encrypted with the name algorithm and label "IDENTITY\0".
Status RsaSeed(const TPMT_PUBLIC& ek, DigestAlg name_alg, Bytes& seed, Bytes& encrypted) {
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, PublicToEvp(ek));
  seed = RandomBytes(DigestSize(name_alg));
  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new(key.get(), nullptr));
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_rsa_padding(ctx.get(), RSA_PKCS1_OAEP_PADDING) <= 0 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx.get(), EvpMd(name_alg)) <= 0 ||
      EVP_PKEY_CTX_set_rsa_mgf1_md(ctx.get(), EvpMd(name_alg)) <= 0) {
    return OpenSslError("preparing RSA-OAEP for the EK");
  }
  // OpenSSL takes ownership of the label; the TPM hashes it with its terminating NUL.
  unsigned char* label = static_cast<unsigned char*>(OPENSSL_malloc(sizeof kIdentityLabel));
  if (label == nullptr) return Internal("out of memory");
  std::memcpy(label, kIdentityLabel, sizeof kIdentityLabel);
  if (EVP_PKEY_CTX_set0_rsa_oaep_label(ctx.get(), label, sizeof kIdentityLabel) <= 0) {
    OPENSSL_free(label);
    return OpenSslError("setting the OAEP label");
  }
  size_t len = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &len, seed.data(), seed.size()) <= 0) {
    return OpenSslError("encrypting the credential seed to the EK");
  }
  encrypted.resize(len);
  if (EVP_PKEY_encrypt(ctx.get(), encrypted.data(), &len, seed.data(), seed.size()) <= 0) {
    return OpenSslError("encrypting the credential seed to the EK");
  }
  encrypted.resize(len);
  return OkStatus();
}

Result<Bytes> BnParam(EVP_PKEY* key, const char* name, size_t size) {
  BIGNUM* raw = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &raw) != 1) return OpenSslError("reading an EC coordinate");
  std::unique_ptr<BIGNUM, BnFree> bn(raw);
  Bytes out(size);
  if (BN_bn2binpad(bn.get(), out.data(), static_cast<int>(size)) < 0) {
    return OpenSslError("encoding an EC coordinate");
  }
  return out;
}

// ECC: an ephemeral key on the EK's curve; seed = KDFe(Z, "IDENTITY", ephemeral x, EK x);
// the "encrypted" seed is the ephemeral public point.
Status EccSeed(const TPMT_PUBLIC& ek, DigestAlg name_alg, Bytes& seed, Bytes& encrypted) {
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr ek_key, PublicToEvp(ek));
  char group[64] = {0};
  size_t group_len = 0;
  if (EVP_PKEY_get_utf8_string_param(ek_key.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                     &group_len) != 1) {
    return OpenSslError("reading the EK's curve");
  }
  EvpPkeyPtr ephemeral(EVP_EC_gen(group));
  if (!ephemeral) return OpenSslError("generating an ephemeral EC key");
  const size_t field = static_cast<size_t>((EVP_PKEY_get_bits(ek_key.get()) + 7) / 8);

  std::unique_ptr<EVP_PKEY_CTX, PkeyCtxFree> ctx(EVP_PKEY_CTX_new(ephemeral.get(), nullptr));
  size_t z_len = 0;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) <= 0 ||
      EVP_PKEY_derive_set_peer(ctx.get(), ek_key.get()) <= 0 ||
      EVP_PKEY_derive(ctx.get(), nullptr, &z_len) <= 0) {
    return OpenSslError("ECDH with the EK");
  }
  SecretBytes z(z_len);
  if (EVP_PKEY_derive(ctx.get(), z.data(), &z_len) <= 0 || z_len != z.size()) {
    return OpenSslError("ECDH with the EK");
  }
  BERTH_ASSIGN_OR_RETURN(Bytes ex, BnParam(ephemeral.get(), OSSL_PKEY_PARAM_EC_PUB_X, field));
  BERTH_ASSIGN_OR_RETURN(Bytes ey, BnParam(ephemeral.get(), OSSL_PKEY_PARAM_EC_PUB_Y, field));
  std::span<const uint8_t> ek_x(ek.unique.ecc.x.buffer, ek.unique.ecc.x.size);
  seed = KdfE(name_alg, z.span(), kIdentityLabel, ex, ek_x,
              static_cast<uint32_t>(DigestSize(name_alg) * 8));

  TPMS_ECC_POINT point;
  std::memset(&point, 0, sizeof point);
  point.x.size = static_cast<uint16_t>(ex.size());
  std::memcpy(point.x.buffer, ex.data(), ex.size());
  point.y.size = static_cast<uint16_t>(ey.size());
  std::memcpy(point.y.buffer, ey.data(), ey.size());
  encrypted.resize(sizeof(TPMS_ECC_POINT));
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPMS_ECC_POINT_Marshal(&point, encrypted.data(), encrypted.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) return TssError("marshalling the ephemeral point", rc);
  encrypted.resize(offset);
  return OkStatus();
}

Result<Bytes> AesCfbEncrypt(const TPMT_SYM_DEF_OBJECT& sym, std::span<const uint8_t> key,
                            std::span<const uint8_t> plain) {
  const EVP_CIPHER* cipher = nullptr;
  if (sym.algorithm == TPM2_ALG_AES && sym.mode.aes == TPM2_ALG_CFB) {
    if (sym.keyBits.aes == 128) cipher = EVP_aes_128_cfb128();
    if (sym.keyBits.aes == 256) cipher = EVP_aes_256_cfb128();
  }
  if (cipher == nullptr) return InvalidArgument("the EK's symmetric scheme is not AES-128/256-CFB");
  const uint8_t iv[16] = {0};
  std::unique_ptr<EVP_CIPHER_CTX, CipherCtxFree> ctx(EVP_CIPHER_CTX_new());
  Bytes out(plain.size() + 16);
  int len = 0, final_len = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), cipher, nullptr, key.data(), iv) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &len, plain.data(),
                        static_cast<int>(plain.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx.get(), out.data() + len, &final_len) != 1) {
    return OpenSslError("AES-CFB encryption of the credential");
  }
  out.resize(static_cast<size_t>(len + final_len));
  return out;
}

}  // namespace

TPMT_PUBLIC EkTemplateRsa2048() {
  TPMT_PUBLIC p = EkBase(TPM2_ALG_RSA);
  p.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_AES;
  p.parameters.rsaDetail.symmetric.keyBits.aes = 128;
  p.parameters.rsaDetail.symmetric.mode.aes = TPM2_ALG_CFB;
  p.parameters.rsaDetail.scheme.scheme = TPM2_ALG_NULL;
  p.parameters.rsaDetail.keyBits = 2048;
  p.parameters.rsaDetail.exponent = 0;
  p.unique.rsa.size = 256;  // zeros
  return p;
}

TPMT_PUBLIC EkTemplateEccP256() {
  TPMT_PUBLIC p = EkBase(TPM2_ALG_ECC);
  p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
  p.parameters.eccDetail.symmetric.keyBits.aes = 128;
  p.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
  p.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
  p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  p.unique.ecc.x.size = 32;  // zeros
  p.unique.ecc.y.size = 32;
  return p;
}

Status CheckEndorsementKey(const TPMT_PUBLIC& ek) {
  const TPMA_OBJECT a = ek.objectAttributes;
  struct {
    TPMA_OBJECT bit;
    bool want;
    const char* name;
  } checks[] = {
      {TPMA_OBJECT_FIXEDTPM, true, "fixedTPM"},
      {TPMA_OBJECT_FIXEDPARENT, true, "fixedParent"},
      {TPMA_OBJECT_SENSITIVEDATAORIGIN, true, "sensitiveDataOrigin"},
      {TPMA_OBJECT_RESTRICTED, true, "restricted"},
      {TPMA_OBJECT_DECRYPT, true, "decrypt"},
      {TPMA_OBJECT_SIGN_ENCRYPT, false, "sign"},
  };
  for (const auto& c : checks) {
    if (((a & c.bit) != 0) != c.want) {
      return PermissionDenied(std::string("the endorsement key ") + (c.want ? "lacks" : "has") +
                              " the " + c.name + " attribute");
    }
  }
  if (ek.type != TPM2_ALG_RSA && ek.type != TPM2_ALG_ECC) {
    return PermissionDenied("the endorsement key is neither RSA nor ECC");
  }
  if (ek.nameAlg != TPM2_ALG_SHA256 && ek.nameAlg != TPM2_ALG_SHA384 &&
      ek.nameAlg != TPM2_ALG_SHA512) {
    return PermissionDenied("the endorsement key's name algorithm is not SHA-256/384/512");
  }
  const TPMT_SYM_DEF_OBJECT& sym = ek.type == TPM2_ALG_RSA ? ek.parameters.rsaDetail.symmetric
                                                           : ek.parameters.eccDetail.symmetric;
  if (sym.algorithm != TPM2_ALG_AES || sym.mode.aes != TPM2_ALG_CFB ||
      (sym.keyBits.aes != 128 && sym.keyBits.aes != 256)) {
    return PermissionDenied("the endorsement key's symmetric scheme is not AES-128/256-CFB");
  }
  return OkStatus();
}

size_t MaxCredentialSize(const TPMT_PUBLIC& ek) {
  auto alg = DigestFromTpmAlg(ek.nameAlg);
  return alg.ok() ? DigestSize(*alg) : 0;
}

Result<MadeCredential> MakeCredential(const TPMT_PUBLIC& ek, std::span<const uint8_t> object_name,
                                      std::span<const uint8_t> credential) {
  BERTH_RETURN_IF_ERROR(CheckEndorsementKey(ek));
  BERTH_ASSIGN_OR_RETURN(DigestAlg name_alg, DigestFromTpmAlg(ek.nameAlg));
  if (credential.empty() || credential.size() > DigestSize(name_alg)) {
    return InvalidArgument("a credential must have 1 to " + std::to_string(DigestSize(name_alg)) +
                           " bytes");
  }
  if (object_name.size() < 2) return InvalidArgument("the object Name is empty");

  Bytes seed, encrypted_seed;
  if (ek.type == TPM2_ALG_RSA) {
    BERTH_RETURN_IF_ERROR(RsaSeed(ek, name_alg, seed, encrypted_seed));
  } else {
    BERTH_RETURN_IF_ERROR(EccSeed(ek, name_alg, seed, encrypted_seed));
  }
  const TPMT_SYM_DEF_OBJECT& sym = ek.type == TPM2_ALG_RSA ? ek.parameters.rsaDetail.symmetric
                                                           : ek.parameters.eccDetail.symmetric;
  Bytes sym_key = KdfA(name_alg, seed, "STORAGE", object_name, {}, sym.keyBits.aes);
  Bytes hmac_key =
      KdfA(name_alg, seed, "INTEGRITY", {}, {}, static_cast<uint32_t>(DigestSize(name_alg) * 8));

  // encIdentity = AES-CFB(TPM2B_DIGEST(credential)); outerHMAC over encIdentity || Name.
  Bytes plain = {static_cast<uint8_t>(credential.size() >> 8),
                 static_cast<uint8_t>(credential.size())};
  Append(plain, credential);
  auto enc_identity = AesCfbEncrypt(sym, sym_key, plain);
  WipeMemory(plain.data(), plain.size());
  WipeMemory(seed.data(), seed.size());
  WipeMemory(sym_key.data(), sym_key.size());
  if (!enc_identity.ok()) return enc_identity.status();
  Bytes hmac_input = *enc_identity;
  Append(hmac_input, object_name);
  Bytes outer_hmac = Hmac(name_alg, hmac_key, hmac_input);
  WipeMemory(hmac_key.data(), hmac_key.size());

  TPM2B_ID_OBJECT id;
  std::memset(&id, 0, sizeof id);
  Bytes id_contents = {static_cast<uint8_t>(outer_hmac.size() >> 8),
                       static_cast<uint8_t>(outer_hmac.size())};
  Append(id_contents, outer_hmac);
  Append(id_contents, *enc_identity);
  if (id_contents.size() > sizeof id.credential) return Internal("credential blob too large");
  id.size = static_cast<uint16_t>(id_contents.size());
  std::memcpy(id.credential, id_contents.data(), id_contents.size());

  TPM2B_ENCRYPTED_SECRET secret;
  std::memset(&secret, 0, sizeof secret);
  if (encrypted_seed.size() > sizeof secret.secret) return Internal("encrypted seed too large");
  secret.size = static_cast<uint16_t>(encrypted_seed.size());
  std::memcpy(secret.secret, encrypted_seed.data(), encrypted_seed.size());

  MadeCredential out;
  out.credential_blob.resize(sizeof id);
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPM2B_ID_OBJECT_Marshal(&id, out.credential_blob.data(),
                                               out.credential_blob.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) return TssError("marshalling TPM2B_ID_OBJECT", rc);
  out.credential_blob.resize(offset);
  out.encrypted_secret.resize(sizeof secret);
  offset = 0;
  rc = Tss2_MU_TPM2B_ENCRYPTED_SECRET_Marshal(&secret, out.encrypted_secret.data(),
                                              out.encrypted_secret.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) return TssError("marshalling TPM2B_ENCRYPTED_SECRET", rc);
  out.encrypted_secret.resize(offset);
  return out;
}

}  // namespace berth::tpm
