#include "common/crypto.h"

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <optional>

namespace berth {
namespace {

struct BioFree { void operator()(BIO* b) const { BIO_free(b); } };
using BioPtr = std::unique_ptr<BIO, BioFree>;

BioPtr MemBio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())));
}

std::string BioContents(BIO* bio) {
  char* p = nullptr;
  long n = BIO_get_mem_data(bio, &p);
  return std::string(p, static_cast<size_t>(n));
}

}  // namespace

Status OpenSslError(std::string_view what, Code code) {
  unsigned long err = ERR_get_error();
  std::string reason = "unknown error";
  if (err != 0) {
    char buf[256];
    ERR_error_string_n(err, buf, sizeof buf);
    reason = buf;
  }
  ERR_clear_error();
  return Status(code, std::string(what) + ": " + reason);
}

// The digests, fetched from OpenSSL's default provider once per process. With the legacy
// EVP_sha256() objects, OpenSSL 3 looks the implementation up again at every EVP_DigestInit:
// a fifth of an event-log replay's time went there (BENCHMARKS.md, issue 27). A fetched
// EVP_MD is immutable and may be shared by every thread; it is never freed.
const EVP_MD* EvpMd(DigestAlg alg) {
  struct Fetched {
    const EVP_MD* sha1 = EVP_MD_fetch(nullptr, "SHA1", nullptr);
    const EVP_MD* sha256 = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    const EVP_MD* sha384 = EVP_MD_fetch(nullptr, "SHA384", nullptr);
    const EVP_MD* sha512 = EVP_MD_fetch(nullptr, "SHA512", nullptr);
  };
  static const Fetched fetched;
  const EVP_MD* md = nullptr;
  const EVP_MD* legacy = nullptr;
  switch (alg) {
    case DigestAlg::kSha1: md = fetched.sha1, legacy = EVP_sha1(); break;
    case DigestAlg::kSha256: md = fetched.sha256, legacy = EVP_sha256(); break;
    case DigestAlg::kSha384: md = fetched.sha384, legacy = EVP_sha384(); break;
    case DigestAlg::kSha512: md = fetched.sha512, legacy = EVP_sha512(); break;
  }
  if (md != nullptr) return md;
  return legacy != nullptr ? legacy : EVP_sha256();  // no provider has it: OpenSSL's own lookup
}

size_t DigestSize(DigestAlg alg) { return static_cast<size_t>(EVP_MD_get_size(EvpMd(alg))); }

std::string_view DigestName(DigestAlg alg) {
  switch (alg) {
    case DigestAlg::kSha1: return "sha1";
    case DigestAlg::kSha256: return "sha256";
    case DigestAlg::kSha384: return "sha384";
    case DigestAlg::kSha512: return "sha512";
  }
  return "unknown";
}

Result<DigestAlg> DigestFromName(std::string_view name) {
  if (name == "sha1") return DigestAlg::kSha1;
  if (name == "sha256") return DigestAlg::kSha256;
  if (name == "sha384") return DigestAlg::kSha384;
  if (name == "sha512") return DigestAlg::kSha512;
  return InvalidArgument("unknown hash algorithm \"" + std::string(name) + "\"");
}

namespace {

// One digest context per thread, reinitialised for every digest: EVP_Digest allocates, sets up
// and frees a context on each call, which in OpenSSL 3.0 costs as much as hashing the 64 bytes
// of a PCR extend. Never shared between threads, freed when its thread exits.
EVP_MD_CTX* ThreadDigestContext() {
  struct CtxFree {
    void operator()(EVP_MD_CTX* c) const { EVP_MD_CTX_free(c); }
  };
  thread_local std::unique_ptr<EVP_MD_CTX, CtxFree> ctx(EVP_MD_CTX_new());
  if (!ctx) abort();  // out of memory
  return ctx.get();
}

void DigestParts(DigestAlg alg, std::span<const uint8_t> a, std::span<const uint8_t> b,
                 uint8_t* out) {
  EVP_MD_CTX* ctx = ThreadDigestContext();
  unsigned int len = 0;
  if (EVP_DigestInit_ex2(ctx, EvpMd(alg), nullptr) != 1 ||
      EVP_DigestUpdate(ctx, a.data(), a.size()) != 1 ||
      (!b.empty() && EVP_DigestUpdate(ctx, b.data(), b.size()) != 1) ||
      EVP_DigestFinal_ex(ctx, out, &len) != 1) {
    abort();  // the default provider's digests do not fail on valid arguments
  }
}

}  // namespace

Bytes Digest(DigestAlg alg, std::span<const uint8_t> data) {
  Bytes out(DigestSize(alg));
  DigestParts(alg, data, {}, out.data());
  return out;
}

void DigestInto(DigestAlg alg, std::span<const uint8_t> a, std::span<const uint8_t> b,
                std::span<uint8_t> out) {
  if (out.size() != DigestSize(alg)) abort();  // a caller's bug, not an input's
  DigestParts(alg, a, b, out.data());
}

Bytes HmacSha256(std::span<const uint8_t> key, std::span<const uint8_t> data) {
  Bytes out(32);
  unsigned int len = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
       out.data(), &len);
  return out;
}

Result<SecretBytes> HkdfSha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt,
                               std::span<const uint8_t> info, size_t length) {
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr), EVP_PKEY_CTX_free);
  SecretBytes out(length);
  size_t out_len = length;
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) <= 0 ||
      EVP_PKEY_CTX_set_hkdf_md(ctx.get(), EVP_sha256()) <= 0 ||
      // An empty salt means "no salt" (RFC 5869: a string of zeros); OpenSSL wants it unset.
      (!salt.empty() &&
       EVP_PKEY_CTX_set1_hkdf_salt(ctx.get(), salt.data(), static_cast<int>(salt.size())) <= 0) ||
      EVP_PKEY_CTX_set1_hkdf_key(ctx.get(), ikm.data(), static_cast<int>(ikm.size())) <= 0 ||
      EVP_PKEY_CTX_add1_hkdf_info(ctx.get(), info.data(), static_cast<int>(info.size())) <= 0 ||
      EVP_PKEY_derive(ctx.get(), out.data(), &out_len) <= 0 || out_len != length) {
    return OpenSslError("HKDF-SHA256");
  }
  return out;
}

Bytes RandomBytes(size_t n) {
  Bytes out(n);
  if (n > 0 && RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
    // The CSPRNG failing is not recoverable; continuing with predictable bytes would be worse.
    abort();
  }
  return out;
}

std::string RandomString(size_t n, std::string_view alphabet) {
  std::string out;
  out.reserve(n);
  const unsigned limit = 256 - (256 % alphabet.size());
  while (out.size() < n) {
    Bytes buf = RandomBytes(n * 2);
    for (uint8_t b : buf) {
      if (b >= limit) continue;
      out.push_back(alphabet[b % alphabet.size()]);
      if (out.size() == n) break;
    }
  }
  return out;
}

Result<EvpPkeyPtr> GenerateP256Key() {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  if (!key) return OpenSslError("generating a P-256 key");
  return key;
}

Result<EvpPkeyPtr> DeriveP256Key(const SecretBytes& seed) {
  if (seed.size() < 32) return InvalidArgument("a P-256 key needs a seed of at least 32 bytes");
  std::unique_ptr<EC_GROUP, decltype(&EC_GROUP_free)> group(
      EC_GROUP_new_by_curve_name(NID_X9_62_prime256v1), EC_GROUP_free);
  std::unique_ptr<BN_CTX, decltype(&BN_CTX_free)> bn_ctx(BN_CTX_secure_new(), BN_CTX_free);
  if (!group || !bn_ctx) return OpenSslError("P-256");
  const BIGNUM* order = EC_GROUP_get0_order(group.get());
  // A candidate scalar per counter value until one is in [1, n-1] (almost always the first).
  for (uint8_t counter = 0; counter < 16; ++counter) {
    Bytes info = ToBytes("berth-p256-key-v1");
    info.push_back(counter);
    BERTH_ASSIGN_OR_RETURN(SecretBytes candidate, HkdfSha256(seed.span(), {}, info, 32));
    std::unique_ptr<BIGNUM, decltype(&BN_clear_free)> d(
        BN_secure_new(), BN_clear_free);
    if (!d || BN_bin2bn(candidate.data(), 32, d.get()) == nullptr) return OpenSslError("P-256");
    if (BN_is_zero(d.get()) || BN_cmp(d.get(), order) >= 0) continue;
    std::unique_ptr<EC_POINT, decltype(&EC_POINT_free)> pub(EC_POINT_new(group.get()),
                                                            EC_POINT_free);
    unsigned char point[65];
    if (!pub || EC_POINT_mul(group.get(), pub.get(), d.get(), nullptr, nullptr, bn_ctx.get()) != 1 ||
        EC_POINT_point2oct(group.get(), pub.get(), POINT_CONVERSION_UNCOMPRESSED, point,
                           sizeof point, bn_ctx.get()) != sizeof point) {
      return OpenSslError("computing a P-256 public key");
    }
    std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                       OSSL_PARAM_BLD_free);
    if (!bld ||
        OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, "P-256", 0) != 1 ||
        OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_PRIV_KEY, d.get()) != 1 ||
        OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point,
                                         sizeof point) != 1) {
      return OpenSslError("P-256 key parameters");
    }
    std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> params(
        OSSL_PARAM_BLD_to_param(bld.get()), OSSL_PARAM_free);
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
        EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr), EVP_PKEY_CTX_free);
    EVP_PKEY* key = nullptr;
    if (!params || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
        EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_KEYPAIR, params.get()) != 1) {
      return OpenSslError("making a P-256 key from its scalar");
    }
    return EvpPkeyPtr(key);
  }
  return Internal("no P-256 scalar from this seed");
}

Result<EvpPkeyPtr> GenerateRsaKey(int bits) {
  EvpPkeyPtr key(EVP_RSA_gen(static_cast<unsigned>(bits)));
  if (!key) return OpenSslError("generating an RSA key");
  return key;
}

Result<Bytes> EcdsaSignSha256(EVP_PKEY* key, std::span<const uint8_t> data) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len, data.data(), data.size()) != 1) {
    return OpenSslError("signing");
  }
  Bytes sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, data.data(), data.size()) != 1) {
    return OpenSslError("signing");
  }
  sig.resize(len);
  return sig;
}

bool EcdsaVerifySha256(EVP_PKEY* key, std::span<const uint8_t> data,
                       std::span<const uint8_t> signature) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) == 1 &&
            EVP_DigestVerify(ctx.get(), signature.data(), signature.size(), data.data(),
                             data.size()) == 1;
  ERR_clear_error();
  return ok;
}

namespace {

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;
constexpr size_t kGcmTag = 16;

Status CheckGcmSizes(std::span<const uint8_t> key, std::span<const uint8_t> iv) {
  if (key.size() != 32 || iv.size() != 12) {
    return InvalidArgument("AES-256-GCM needs a 32-byte key and a 12-byte IV");
  }
  return OkStatus();
}

}  // namespace

Result<Bytes> AesGcmSeal(std::span<const uint8_t> key, std::span<const uint8_t> iv,
                         std::span<const uint8_t> aad, std::span<const uint8_t> plaintext) {
  BERTH_RETURN_IF_ERROR(CheckGcmSizes(key, iv));
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  Bytes out(plaintext.size() + kGcmTag);
  int len = 0, total = 0;
  if (!ctx || EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), iv.data()) != 1 ||
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1 ||
      EVP_EncryptUpdate(ctx.get(), out.data(), &len, plaintext.data(),
                        static_cast<int>(plaintext.size())) != 1) {
    return OpenSslError("AES-256-GCM encryption");
  }
  total = len;
  if (EVP_EncryptFinal_ex(ctx.get(), out.data() + total, &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kGcmTag, out.data() + plaintext.size()) != 1) {
    return OpenSslError("AES-256-GCM encryption");
  }
  return out;
}

Result<SecretBytes> AesGcmOpen(std::span<const uint8_t> key, std::span<const uint8_t> iv,
                               std::span<const uint8_t> aad, std::span<const uint8_t> sealed) {
  BERTH_RETURN_IF_ERROR(CheckGcmSizes(key, iv));
  if (sealed.size() < kGcmTag) return PermissionDenied("AES-256-GCM: the input is too short");
  const size_t n = sealed.size() - kGcmTag;
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  SecretBytes out(n);
  int len = 0;
  Bytes tag(sealed.begin() + n, sealed.end());
  if (!ctx || EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.data(), iv.data()) != 1 ||
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1 ||
      EVP_DecryptUpdate(ctx.get(), out.data(), &len, sealed.data(), static_cast<int>(n)) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kGcmTag, tag.data()) != 1) {
    return OpenSslError("AES-256-GCM decryption");
  }
  if (EVP_DecryptFinal_ex(ctx.get(), out.data() + len, &len) != 1) {
    ERR_clear_error();
    return PermissionDenied("AES-256-GCM: the tag does not verify (another key, or tampered)");
  }
  return out;
}

Result<SecretBytes> PrivateKeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_secmem()));
  if (!bio || PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    return OpenSslError("encoding a private key");
  }
  char* p = nullptr;
  long n = BIO_get_mem_data(bio.get(), &p);
  return SecretBytes(p, static_cast<size_t>(n));
}

Result<EvpPkeyPtr> PrivateKeyFromPem(std::string_view pem) {
  BioPtr bio = MemBio(pem);
  EvpPkeyPtr key(PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr));
  if (!key) return OpenSslError("parsing a PEM private key", Code::kInvalidArgument);
  return key;
}

namespace {

// DER, by hand, for the two structures berthd encodes on every join: OpenSSL 3 encodes keys
// through its provider "encoders", which cost ~100 us per call; these cost ~1 us and produce
// the same bytes (crypto_test.cc compares them with i2d_PUBKEY).
void DerLength(Bytes& out, size_t n) {
  if (n < 0x80) {
    out.push_back(static_cast<uint8_t>(n));
    return;
  }
  uint8_t len[sizeof(size_t)];
  int k = 0;
  for (size_t v = n; v != 0; v >>= 8) len[k++] = static_cast<uint8_t>(v & 0xff);
  out.push_back(static_cast<uint8_t>(0x80 | k));
  while (k > 0) out.push_back(len[--k]);
}

Bytes DerTlv(uint8_t tag, std::span<const uint8_t> content) {
  Bytes out{tag};
  DerLength(out, content.size());
  out.insert(out.end(), content.begin(), content.end());
  return out;
}

Bytes Concat(std::initializer_list<std::span<const uint8_t>> parts) {
  Bytes out;
  for (auto p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// An unsigned big-endian INTEGER, minimal, with a leading zero when the top bit is set.
Bytes DerUnsignedInteger(std::span<const uint8_t> magnitude) {
  size_t skip = 0;
  while (skip + 1 < magnitude.size() && magnitude[skip] == 0) ++skip;
  Bytes v;
  if (magnitude.empty() || (magnitude[skip] & 0x80) != 0) v.push_back(0);
  v.insert(v.end(), magnitude.begin() + static_cast<std::ptrdiff_t>(skip), magnitude.end());
  if (v.empty()) v.push_back(0);
  return DerTlv(0x02, v);
}

Result<Bytes> BnParam(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(key, name, &bn) != 1) return OpenSslError("reading an RSA parameter");
  Bytes out(static_cast<size_t>(BN_num_bytes(bn)));
  BN_bn2bin(bn, out.data());
  BN_free(bn);
  return out;
}

// SubjectPublicKeyInfo for EC keys on the NIST curves and RSA keys; nullopt for anything else.
std::optional<Bytes> FastSpkiDer(EVP_PKEY* key) {
  static const uint8_t kEcPublicKey[] = {0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
  static const uint8_t kP256[] = {0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
  static const uint8_t kP384[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22};
  static const uint8_t kP521[] = {0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23};
  static const uint8_t kRsaAlgorithm[] = {0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7,
                                          0x0d, 0x01, 0x01, 0x01, 0x05, 0x00};
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC: {
      char group[64];
      size_t group_len = 0;
      if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                         &group_len) != 1) {
        return std::nullopt;
      }
      std::string_view g(group, group_len);
      std::span<const uint8_t> curve;
      if (g == "prime256v1" || g == "P-256") curve = kP256;
      else if (g == "secp384r1" || g == "P-384") curve = kP384;
      else if (g == "secp521r1" || g == "P-521") curve = kP521;
      else return std::nullopt;
      uint8_t point[1 + 2 * 66];
      size_t point_len = 0;
      if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point,
                                          &point_len) != 1 ||
          point_len == 0 || point[0] != 0x04) {
        return std::nullopt;
      }
      Bytes bits{0x00};
      bits.insert(bits.end(), point, point + point_len);
      Bytes algorithm = DerTlv(0x30, Concat({kEcPublicKey, curve}));
      return DerTlv(0x30, Concat({algorithm, DerTlv(0x03, bits)}));
    }
    case EVP_PKEY_RSA: {
      auto n = BnParam(key, OSSL_PKEY_PARAM_RSA_N);
      auto e = BnParam(key, OSSL_PKEY_PARAM_RSA_E);
      if (!n.ok() || !e.ok()) return std::nullopt;
      Bytes rsa_key = DerTlv(0x30, Concat({DerUnsignedInteger(*n), DerUnsignedInteger(*e)}));
      Bytes bits{0x00};
      bits.insert(bits.end(), rsa_key.begin(), rsa_key.end());
      return DerTlv(0x30, Concat({kRsaAlgorithm, DerTlv(0x03, bits)}));
    }
    default:
      return std::nullopt;
  }
}

}  // namespace

Result<Bytes> PublicKeyToSpkiDer(EVP_PKEY* key) {
  if (auto fast = FastSpkiDer(key); fast.has_value()) return std::move(*fast);
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(key, &der);
  if (n <= 0) return OpenSslError("encoding a public key");
  Bytes out(der, der + n);
  OPENSSL_free(der);
  return out;
}

Result<std::string> PublicKeyToPem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key) != 1) return OpenSslError("encoding a public key");
  return BioContents(bio.get());
}

namespace {

// EVP_PKEY_fromdata: a key from its parameters, with no decoder lookup.
Result<EvpPkeyPtr> PublicKeyFromParams(const char* type, OSSL_PARAM_BLD* params) {
  std::unique_ptr<OSSL_PARAM, decltype(&OSSL_PARAM_free)> built(OSSL_PARAM_BLD_to_param(params),
                                                                OSSL_PARAM_free);
  std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
      EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr), EVP_PKEY_CTX_free);
  EVP_PKEY* key = nullptr;
  if (!built || !ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &key, EVP_PKEY_PUBLIC_KEY, built.get()) != 1) {
    return OpenSslError(std::string("building an ") + type + " public key from its parameters",
                        Code::kInvalidArgument);
  }
  return EvpPkeyPtr(key);
}

}  // namespace

Result<EvpPkeyPtr> RsaPublicKeyFromParams(std::span<const uint8_t> n, std::span<const uint8_t> e) {
  struct BnFree {
    void operator()(BIGNUM* p) const { BN_free(p); }
  };
  std::unique_ptr<BIGNUM, BnFree> bn_n(BN_bin2bn(n.data(), static_cast<int>(n.size()), nullptr));
  std::unique_ptr<BIGNUM, BnFree> bn_e(BN_bin2bn(e.data(), static_cast<int>(e.size()), nullptr));
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                      OSSL_PARAM_BLD_free);
  if (!bn_n || !bn_e || !bld ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    return OpenSslError("RSA public key parameters");
  }
  return PublicKeyFromParams("RSA", bld.get());
}

namespace {

// A key holding only a curve's domain parameters, made once per curve: an uncompressed point's
// key copies them from it, where EVP_PKEY_fromdata builds the curve from its name for every
// key (three quarters of the 18 us a P-256 AK cost, server_bench BM_AkPublicToEvp). Shared
// read-only by threads; never freed.
const EVP_PKEY* CurveParameters(const char* group) {
  auto make = [](const char* name) -> EVP_PKEY* {
    std::unique_ptr<EVP_PKEY_CTX, decltype(&EVP_PKEY_CTX_free)> ctx(
        EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr), EVP_PKEY_CTX_free);
    EVP_PKEY* params = nullptr;
    if (!ctx || EVP_PKEY_paramgen_init(ctx.get()) <= 0 ||
        EVP_PKEY_CTX_set_group_name(ctx.get(), name) <= 0 ||
        EVP_PKEY_paramgen(ctx.get(), &params) <= 0) {
      return nullptr;
    }
    return params;
  };
  static EVP_PKEY* const p256 = make("P-256");
  static EVP_PKEY* const p384 = make("P-384");
  static EVP_PKEY* const p521 = make("P-521");
  if (std::strcmp(group, "P-256") == 0) return p256;
  if (std::strcmp(group, "P-384") == 0) return p384;
  return std::strcmp(group, "P-521") == 0 ? p521 : nullptr;
}

}  // namespace

Result<EvpPkeyPtr> EcPublicKeyFromPoint(const char* group, std::span<const uint8_t> point) {
  if (const EVP_PKEY* params = CurveParameters(group);
      params != nullptr && !point.empty() && point[0] == 0x04) {
    // Decoded as EVP_PKEY_fromdata decodes it: a point off the curve is refused.
    EvpPkeyPtr key(EVP_PKEY_new());
    if (!key || EVP_PKEY_copy_parameters(key.get(), const_cast<EVP_PKEY*>(params)) <= 0 ||
        EVP_PKEY_set1_encoded_public_key(key.get(), point.data(), point.size()) <= 0) {
      return OpenSslError("building an EC public key from its parameters", Code::kInvalidArgument);
    }
    return key;
  }
  std::unique_ptr<OSSL_PARAM_BLD, decltype(&OSSL_PARAM_BLD_free)> bld(OSSL_PARAM_BLD_new(),
                                                                      OSSL_PARAM_BLD_free);
  // The key keeps the point's form (as d2i_PUBKEY's keys do), so that it is encoded as given.
  const char* form = !point.empty() && (point[0] == 0x02 || point[0] == 0x03)   ? "compressed"
                     : !point.empty() && (point[0] == 0x06 || point[0] == 0x07) ? "hybrid"
                                                                                : "uncompressed";
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT, form,
                                      0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return OpenSslError("EC public key parameters");
  }
  return PublicKeyFromParams("EC", bld.get());
}

namespace {

// A strict DER reader: single-byte tags, definite lengths in their shortest form, every element
// inside its parent. Enough for the two public-key structures below; everything it refuses is
// kInvalidArgument saying which element and why.
class DerReader {
 public:
  DerReader(std::span<const uint8_t> data, const char* structure)
      : rest_(data), structure_(structure) {}

  bool AtEnd() const { return rest_.empty(); }
  int PeekTag() const { return rest_.empty() ? -1 : rest_[0]; }

  // The contents of the next element, which must be tagged `tag`.
  Result<std::span<const uint8_t>> Read(uint8_t tag, const char* what) {
    if (rest_.empty()) return Malformed(what, "is missing");
    if (rest_[0] != tag) {
      char got[48];
      snprintf(got, sizeof got, "has tag 0x%02x, not 0x%02x", rest_[0], tag);
      return Malformed(what, got);
    }
    if (rest_.size() < 2) return Malformed(what, "is truncated");
    size_t header = 2;
    size_t length = rest_[1];
    if (length == 0x80) return Malformed(what, "has an indefinite length (BER, not DER)");
    if (length > 0x80) {
      const size_t octets = length & 0x7f;
      if (octets > 4) return Malformed(what, "has a length of more than 4 octets");
      if (rest_.size() < 2 + octets) return Malformed(what, "is truncated");
      length = 0;
      for (size_t i = 0; i < octets; ++i) length = (length << 8) | rest_[2 + i];
      if (rest_[2] == 0 || length < 0x80) {
        return Malformed(what, "has a length not in its shortest form (BER, not DER)");
      }
      header += octets;
    }
    if (length > rest_.size() - header) {
      return Malformed(what, "claims " + std::to_string(length) + " bytes where " +
                                 std::to_string(rest_.size() - header) + " remain");
    }
    std::span<const uint8_t> contents = rest_.subspan(header, length);
    rest_ = rest_.subspan(header + length);
    return contents;
  }

  // A non-negative INTEGER in its shortest form: its big-endian magnitude.
  Result<std::span<const uint8_t>> ReadUnsignedInteger(const char* what) {
    BERTH_ASSIGN_OR_RETURN(std::span<const uint8_t> v, Read(0x02, what));
    if (v.empty()) return Malformed(what, "is empty");
    if ((v[0] & 0x80) != 0) return Malformed(what, "is negative");
    if (v.size() > 1 && v[0] == 0 && (v[1] & 0x80) == 0) {
      return Malformed(what, "has a leading zero byte (BER, not DER)");
    }
    return v;
  }

  Status ExpectEnd(const char* what) {
    if (rest_.empty()) return OkStatus();
    return Malformed(what, "is followed by " + std::to_string(rest_.size()) + " trailing bytes");
  }

 private:
  Status Malformed(const char* what, std::string_view why) const {
    return InvalidArgument(std::string("not a DER ") + structure_ + ": " + what + " " +
                           std::string(why));
  }

  std::span<const uint8_t> rest_;
  const char* structure_;
};

bool SameBytes(std::span<const uint8_t> a, std::span<const uint8_t> b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin());
}

// RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER } (RFC 8017 A.1.1).
Result<EvpPkeyPtr> RsaPublicKeyFromPkcs1Der(std::span<const uint8_t> der) {
  DerReader outer(der, "RSAPublicKey");
  BERTH_ASSIGN_OR_RETURN(std::span<const uint8_t> sequence, outer.Read(0x30, "RSAPublicKey"));
  BERTH_RETURN_IF_ERROR(outer.ExpectEnd("RSAPublicKey"));
  DerReader fields(sequence, "RSAPublicKey");
  BERTH_ASSIGN_OR_RETURN(std::span<const uint8_t> n, fields.ReadUnsignedInteger("modulus"));
  BERTH_ASSIGN_OR_RETURN(std::span<const uint8_t> e, fields.ReadUnsignedInteger("publicExponent"));
  BERTH_RETURN_IF_ERROR(fields.ExpectEnd("publicExponent"));
  return RsaPublicKeyFromParams(n, e);
}

// OpenSSL 3.0's own parse (d2i_PUBKEY), for the algorithms and curves berth does not walk.
Result<EvpPkeyPtr> PublicKeyFromSpkiDerByOpenSsl(std::span<const uint8_t> der) {
  const unsigned char* p = der.data();
  EvpPkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!key || p != der.data() + der.size()) {
    return OpenSslError("parsing a DER public key", Code::kInvalidArgument);
  }
  return key;
}

}  // namespace

Result<EvpPkeyPtr> PublicKeyFromSpkiDer(std::span<const uint8_t> der) {
  // SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT
  // STRING }; AlgorithmIdentifier ::= SEQUENCE { algorithm OID, parameters ANY OPTIONAL }.
  static const uint8_t kRsaEncryption[] = {0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01};
  static const uint8_t kEcPublicKey[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01};
  static const uint8_t kP256[] = {0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07};
  static const uint8_t kP384[] = {0x2b, 0x81, 0x04, 0x00, 0x22};
  static const uint8_t kP521[] = {0x2b, 0x81, 0x04, 0x00, 0x23};
  static const struct {
    std::span<const uint8_t> oid;
    const char* group;
  } kCurves[] = {{kP256, "P-256"}, {kP384, "P-384"}, {kP521, "P-521"}};
  DerReader whole(der, "SubjectPublicKeyInfo");
  BERTH_ASSIGN_OR_RETURN(std::span<const uint8_t> spki, whole.Read(0x30, "SubjectPublicKeyInfo"));
  BERTH_RETURN_IF_ERROR(whole.ExpectEnd("SubjectPublicKeyInfo"));
  DerReader fields(spki, "SubjectPublicKeyInfo");
  BERTH_ASSIGN_OR_RETURN(std::span<const uint8_t> algorithm, fields.Read(0x30, "algorithm"));
  BERTH_ASSIGN_OR_RETURN(std::span<const uint8_t> bits, fields.Read(0x03, "subjectPublicKey"));
  BERTH_RETURN_IF_ERROR(fields.ExpectEnd("subjectPublicKey"));
  DerReader alg(algorithm, "SubjectPublicKeyInfo");
  BERTH_ASSIGN_OR_RETURN(std::span<const uint8_t> oid, alg.Read(0x06, "algorithm OID"));
  if (bits.empty() || bits[0] != 0) {
    return InvalidArgument(
        "not a DER SubjectPublicKeyInfo: subjectPublicKey is not a whole number of bytes");
  }
  const std::span<const uint8_t> key = bits.subspan(1);

  if (SameBytes(oid, kRsaEncryption)) {  // RFC 3279 2.3.1: parameters NULL
    BERTH_ASSIGN_OR_RETURN(std::span<const uint8_t> null, alg.Read(0x05, "RSA parameters"));
    if (!null.empty()) {
      return InvalidArgument("not a DER SubjectPublicKeyInfo: RSA parameters are not NULL");
    }
    BERTH_RETURN_IF_ERROR(alg.ExpectEnd("RSA parameters"));
    return RsaPublicKeyFromPkcs1Der(key);
  }
  if (SameBytes(oid, kEcPublicKey) && alg.PeekTag() == 0x06) {  // RFC 5480 2.1.1: namedCurve
    BERTH_ASSIGN_OR_RETURN(std::span<const uint8_t> curve, alg.Read(0x06, "EC curve OID"));
    BERTH_RETURN_IF_ERROR(alg.ExpectEnd("EC curve OID"));
    for (const auto& c : kCurves) {
      // OpenSSL checks the point: its form, its length, and that it is on the curve.
      if (SameBytes(curve, c.oid)) return EcPublicKeyFromPoint(c.group, key);
    }
  }
  // Another algorithm (RSA-PSS, Ed25519, ...), another curve or explicit curve parameters:
  // OpenSSL's decoders, which know them all.
  return PublicKeyFromSpkiDerByOpenSsl(der);
}

Result<EvpPkeyPtr> PublicKeyFromPem(std::string_view pem) {
  // The first PEM block that holds a public key, as PEM_read_bio_PUBKEY takes it ("PUBLIC KEY",
  // a SubjectPublicKeyInfo, or "RSA PUBLIC KEY", PKCS #1), decoded by PublicKeyFromSpkiDer:
  // OpenSSL 3.0's decoder framework spends ~3 M instructions setting itself up for every key.
  BioPtr bio = MemBio(pem);
  for (;;) {
    char* name = nullptr;
    char* header = nullptr;
    unsigned char* der = nullptr;
    long len = 0;
    if (!bio || PEM_read_bio(bio.get(), &name, &header, &der, &len) != 1) {
      return OpenSslError("parsing a PEM public key: no PUBLIC KEY block", Code::kInvalidArgument);
    }
    const std::string_view block(name);
    const bool spki = block == PEM_STRING_PUBLIC;
    const bool pkcs1 = block == PEM_STRING_RSA_PUBLIC;
    Result<EvpPkeyPtr> key = InvalidArgument("");
    if (spki || pkcs1) {
      const std::span<const uint8_t> bytes(der, static_cast<size_t>(len));
      key = spki ? PublicKeyFromSpkiDer(bytes) : RsaPublicKeyFromPkcs1Der(bytes);
    }
    OPENSSL_free(name);
    OPENSSL_free(header);
    OPENSSL_free(der);
    if (!spki && !pkcs1) continue;  // a certificate, a private key: not what is asked for
    if (!key.ok()) {
      return Status(key.status().code(), "parsing a PEM public key: " + key.status().message());
    }
    return key;
  }
}

Result<X509Ptr> CertFromPem(std::string_view pem) {
  BioPtr bio = MemBio(pem);
  X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
  if (!cert) return OpenSslError("parsing a PEM certificate", Code::kInvalidArgument);
  return cert;
}

Result<std::vector<X509Ptr>> CertsFromPem(std::string_view pem) {
  BioPtr bio = MemBio(pem);
  std::vector<X509Ptr> out;
  for (;;) {
    X509Ptr cert(PEM_read_bio_X509(bio.get(), nullptr, nullptr, nullptr));
    if (!cert) break;
    out.push_back(std::move(cert));
  }
  ERR_clear_error();  // the loop ends on a "no start line" error
  if (out.empty()) return InvalidArgument("no PEM certificate found");
  return out;
}

Result<X509Ptr> CertFromDer(std::span<const uint8_t> der) {
  const unsigned char* p = der.data();
  X509Ptr cert(d2i_X509(nullptr, &p, static_cast<long>(der.size())));
  if (!cert || p != der.data() + der.size()) {
    return OpenSslError("parsing a DER certificate", Code::kInvalidArgument);
  }
  return cert;
}

Result<std::string> CertToPem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509(bio.get(), cert) != 1) return OpenSslError("encoding a certificate");
  return BioContents(bio.get());
}

Result<Bytes> CertToDer(X509* cert) {
  unsigned char* der = nullptr;
  int n = i2d_X509(cert, &der);
  if (n <= 0) return OpenSslError("encoding a certificate");
  Bytes out(der, der + n);
  OPENSSL_free(der);
  return out;
}

Result<Bytes> CertSpkiSha256(X509* cert) {
  EVP_PKEY* key = X509_get0_pubkey(cert);
  if (key == nullptr) return OpenSslError("reading a certificate's public key", Code::kInvalidArgument);
  BERTH_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToSpkiDer(key));
  return Sha256(spki);
}

Result<Bytes> CertDerSpki(std::span<const uint8_t> der) {
  // Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version OPTIONAL, serialNumber,
  //   signature, issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }
  const unsigned char* p = der.data();
  const unsigned char* end = der.data() + der.size();
  auto header = [&](const char* what, bool enter) -> Result<std::span<const uint8_t>> {
    const unsigned char* start = p;
    long len = 0;
    int tag = 0, cls = 0;
    int rc = ASN1_get_object(&p, &len, &tag, &cls, end - p);
    if ((rc & 0x80) != 0 || rc == 0x21 /* indefinite length: not DER */ || len < 0 ||
        len > end - p) {
      ERR_clear_error();
      return InvalidArgument(std::string("not a DER certificate: malformed ") + what);
    }
    std::span<const uint8_t> whole(start, static_cast<size_t>(p - start) + static_cast<size_t>(len));
    if (!enter) p += len;
    return whole;
  };
  auto expect_sequence = [&](std::span<const uint8_t> tlv, const char* what) -> Status {
    if (tlv.empty() || tlv[0] != 0x30) {
      return InvalidArgument(std::string("not a DER certificate: ") + what + " is not a SEQUENCE");
    }
    return OkStatus();
  };
  BERTH_ASSIGN_OR_RETURN(auto certificate, header("Certificate", true));
  BERTH_RETURN_IF_ERROR(expect_sequence(certificate, "Certificate"));
  BERTH_ASSIGN_OR_RETURN(auto tbs, header("tbsCertificate", true));
  BERTH_RETURN_IF_ERROR(expect_sequence(tbs, "tbsCertificate"));
  end = tbs.data() + tbs.size();
  if (p < end && *p == 0xa0) BERTH_RETURN_IF_ERROR(header("version", false).status());
  for (const char* field : {"serialNumber", "signature", "issuer", "validity", "subject"}) {
    BERTH_RETURN_IF_ERROR(header(field, false).status());
  }
  BERTH_ASSIGN_OR_RETURN(auto spki, header("subjectPublicKeyInfo", false));
  BERTH_RETURN_IF_ERROR(expect_sequence(spki, "subjectPublicKeyInfo"));
  return Bytes(spki.begin(), spki.end());
}

Result<Bytes> CertPemSpkiSha256(std::string_view pem) {
  BioPtr bio = MemBio(pem);
  char* name = nullptr;
  unsigned char* der = nullptr;
  long len = 0;
  if (!bio || PEM_bytes_read_bio(&der, &len, &name, PEM_STRING_X509, bio.get(), nullptr, nullptr) != 1) {
    return OpenSslError("reading a PEM certificate", Code::kInvalidArgument);
  }
  OPENSSL_free(name);
  auto spki = CertDerSpki(std::span<const uint8_t>(der, static_cast<size_t>(len)));
  OPENSSL_free(der);
  if (!spki.ok()) return spki.status();
  return Sha256(*spki);
}

namespace {
Status AddExtension(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer ? issuer : cert, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (ext == nullptr) return OpenSslError("building extension " + value);
  int ok = X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  if (ok != 1) return OpenSslError("adding extension " + value);
  return OkStatus();
}
}  // namespace

Result<X509Ptr> IssueCert(const CertSpec& spec, EVP_PKEY* subject_key, X509* issuer,
                          EVP_PKEY* issuer_key) {
  X509Ptr cert(X509_new());
  if (!cert) return OpenSslError("allocating a certificate");
  X509_set_version(cert.get(), 2);
  Bytes serial = RandomBytes(16);
  serial[0] &= 0x7f;
  std::unique_ptr<BIGNUM, decltype(&BN_free)> bn(BN_bin2bn(serial.data(), 16, nullptr), BN_free);
  ASN1_INTEGER* asn1_serial = X509_get_serialNumber(cert.get());
  BN_to_ASN1_INTEGER(bn.get(), asn1_serial);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -static_cast<long>(spec.backdate.count()));
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(spec.validity.count()));
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(spec.common_name.c_str()), -1,
                             -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  if (X509_set_pubkey(cert.get(), subject_key) != 1) return OpenSslError("setting the public key");

  X509* iss = issuer;
  BERTH_RETURN_IF_ERROR(AddExtension(cert.get(), iss, NID_basic_constraints,
                                     spec.is_ca ? "critical,CA:TRUE" : "critical,CA:FALSE"));
  BERTH_RETURN_IF_ERROR(AddExtension(
      cert.get(), iss, NID_key_usage,
      spec.is_ca ? "critical,keyCertSign,cRLSign,digitalSignature"
                 : "critical,digitalSignature,keyEncipherment"));
  std::string eku;
  if (spec.server_auth) eku += "serverAuth";
  if (spec.client_auth) eku += eku.empty() ? "clientAuth" : ",clientAuth";
  if (!eku.empty()) BERTH_RETURN_IF_ERROR(AddExtension(cert.get(), iss, NID_ext_key_usage, eku));
  std::string san;
  for (const auto& d : spec.dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + d;
  for (const auto& ip : spec.ip_addresses) san += (san.empty() ? "IP:" : ",IP:") + ip;
  if (!san.empty()) BERTH_RETURN_IF_ERROR(AddExtension(cert.get(), iss, NID_subject_alt_name, san));
  BERTH_RETURN_IF_ERROR(AddExtension(cert.get(), iss, NID_subject_key_identifier, "hash"));
  if (issuer) {
    BERTH_RETURN_IF_ERROR(AddExtension(cert.get(), iss, NID_authority_key_identifier, "keyid:always"));
  }
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) <= 0) return OpenSslError("signing a certificate");
  return cert;
}

}  // namespace berth
