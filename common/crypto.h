// OpenSSL wrappers: digests, HMAC, HKDF, randomness, keys and X.509.
//
// OpenSSL objects are held in unique_ptrs with their *_free deleters. OpenSSL's error queue
// is converted to a Status in exactly one place (OpenSslError).
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <chrono>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/secret.h"
#include "common/status.h"

namespace berth {

struct EvpPkeyFree { void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); } };
struct X509Free { void operator()(X509* p) const { X509_free(p); } };
using EvpPkeyPtr = std::unique_ptr<EVP_PKEY, EvpPkeyFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;

// Drains OpenSSL's error queue into a Status: "<what>: <first openssl reason>".
Status OpenSslError(std::string_view what, Code code = Code::kInternal);

enum class DigestAlg { kSha1, kSha256, kSha384, kSha512 };
const EVP_MD* EvpMd(DigestAlg alg);
size_t DigestSize(DigestAlg alg);
std::string_view DigestName(DigestAlg alg);  // "sha1", "sha256", ...
Result<DigestAlg> DigestFromName(std::string_view name);

Bytes Digest(DigestAlg alg, std::span<const uint8_t> data);
// The digest of `a` followed by `b`, written to `out` (DigestSize(alg) bytes; it may be `a`):
// a PCR extend with no concatenation built and nothing allocated.
void DigestInto(DigestAlg alg, std::span<const uint8_t> a, std::span<const uint8_t> b,
                std::span<uint8_t> out);
inline Bytes Sha256(std::span<const uint8_t> data) { return Digest(DigestAlg::kSha256, data); }
Bytes HmacSha256(std::span<const uint8_t> key, std::span<const uint8_t> data);
// HKDF-SHA256 (RFC 5869), extract and expand.
Result<SecretBytes> HkdfSha256(std::span<const uint8_t> ikm, std::span<const uint8_t> salt,
                               std::span<const uint8_t> info, size_t length);
Bytes RandomBytes(size_t n);
// Random string over `alphabet` without modulo bias.
std::string RandomString(size_t n, std::string_view alphabet);

// ---- keys ----
Result<EvpPkeyPtr> GenerateP256Key();
// The P-256 key whose private scalar is derived from `seed` (at least 32 bytes of key material):
// the same seed always gives the same key, so replicas that share a secret share the key.
Result<EvpPkeyPtr> DeriveP256Key(const SecretBytes& seed);
Result<EvpPkeyPtr> GenerateRsaKey(int bits);
// PKCS#8 PEM of the private key.
Result<SecretBytes> PrivateKeyToPem(EVP_PKEY* key);
Result<EvpPkeyPtr> PrivateKeyFromPem(std::string_view pem);
// DER SubjectPublicKeyInfo.
Result<Bytes> PublicKeyToSpkiDer(EVP_PKEY* key);
Result<std::string> PublicKeyToPem(EVP_PKEY* key);
// A "PUBLIC KEY" (SubjectPublicKeyInfo) or "RSA PUBLIC KEY" (PKCS #1) PEM block, the first
// in `pem`. INVALID_ARGUMENT, prefixed "parsing a PEM public key: ", for anything else.
Result<EvpPkeyPtr> PublicKeyFromPem(std::string_view pem);
// A DER SubjectPublicKeyInfo, the whole of `der`. RSA keys and EC keys on P-256, P-384 and
// P-521 are read by hand (strict DER: shortest lengths, no trailing bytes at any level, NULL
// RSA parameters, whole-byte BIT STRING) and built from their parameters, which costs a few
// thousand instructions where OpenSSL 3.0's decoders cost millions; other algorithms and
// curves go through OpenSSL's d2i_PUBKEY. INVALID_ARGUMENT naming the faulty element.
Result<EvpPkeyPtr> PublicKeyFromSpkiDer(std::span<const uint8_t> der);
// Public keys from their parameters (EVP_PKEY_fromdata): an RSA modulus and exponent
// (big-endian, unsigned), an EC point (SEC 1 encoding) on `group` ("P-256", "P-384", "P-521";
// OpenSSL checks that the point is on the curve). INVALID_ARGUMENT when OpenSSL refuses them.
Result<EvpPkeyPtr> RsaPublicKeyFromParams(std::span<const uint8_t> n, std::span<const uint8_t> e);
Result<EvpPkeyPtr> EcPublicKeyFromPoint(const char* group, std::span<const uint8_t> point);

// ECDSA with SHA-256 (P-256 keys): the DER ECDSA-Sig-Value over `data`, and its check.
Result<Bytes> EcdsaSignSha256(EVP_PKEY* key, std::span<const uint8_t> data);
// False for a signature that does not verify or does not parse (never an error to report).
bool EcdsaVerifySha256(EVP_PKEY* key, std::span<const uint8_t> data,
                       std::span<const uint8_t> signature);

// AES-256-GCM with a 12-byte IV and a 16-byte tag appended to the ciphertext. Open returns
// PERMISSION_DENIED when the tag does not verify (a wrong key, tampered input or AAD).
Result<Bytes> AesGcmSeal(std::span<const uint8_t> key, std::span<const uint8_t> iv,
                         std::span<const uint8_t> aad, std::span<const uint8_t> plaintext);
Result<SecretBytes> AesGcmOpen(std::span<const uint8_t> key, std::span<const uint8_t> iv,
                               std::span<const uint8_t> aad, std::span<const uint8_t> sealed);

// ---- certificates ----
Result<X509Ptr> CertFromPem(std::string_view pem);
Result<std::vector<X509Ptr>> CertsFromPem(std::string_view pem);  // a bundle
Result<X509Ptr> CertFromDer(std::span<const uint8_t> der);
Result<std::string> CertToPem(X509* cert);
Result<Bytes> CertToDer(X509* cert);
// SHA-256 over the certificate's DER SubjectPublicKeyInfo (kubeadm's caCertHashes and the
// channel binding both use it).
Result<Bytes> CertSpkiSha256(X509* cert);
// The same for a certificate that is only to be identified, not used: reads the SPKI straight
// out of the DER (no key decoding), so it is cheap enough for every call a server answers.
// INVALID_ARGUMENT when the input is not a PEM / DER certificate.
Result<Bytes> CertPemSpkiSha256(std::string_view pem);
// The DER SubjectPublicKeyInfo inside a DER certificate, as it is encoded there.
Result<Bytes> CertDerSpki(std::span<const uint8_t> der);

struct CertSpec {
  std::string common_name;
  std::vector<std::string> dns_names;
  std::vector<std::string> ip_addresses;
  bool is_ca = false;
  bool server_auth = false;
  bool client_auth = false;
  std::chrono::seconds validity = std::chrono::hours(24);
  std::chrono::seconds backdate = std::chrono::minutes(5);
};
// Issues a certificate for `subject_key` signed by `issuer_key`; self-signed when `issuer`
// is null. SHA-256 signatures; serial random.
Result<X509Ptr> IssueCert(const CertSpec& spec, EVP_PKEY* subject_key, X509* issuer,
                          EVP_PKEY* issuer_key);

}  // namespace berth
