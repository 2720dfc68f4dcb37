// PublicKeyFromSpkiDer and PublicKeyFromPem read RSA and NIST-curve keys by hand (crypto.h):
// every real key must come out as OpenSSL's own parse makes it, and no input may be accepted
// that OpenSSL refuses or read as another key.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "tests/testing/testing.h"
#include "tests/unit/common/tpm/real_quotes.h"

namespace berth {
namespace {

// OpenSSL 3.0's own parse, as PublicKeyFromSpkiDer did it before: d2i_PUBKEY, all consumed.
EvpPkeyPtr OpenSslParse(std::span<const uint8_t> der) {
  const unsigned char* p = der.data();
  EvpPkeyPtr key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  ERR_clear_error();
  if (key && p != der.data() + der.size()) return nullptr;
  return key;
}

EvpPkeyPtr OpenSslParsePem(const std::string& pem) {
  BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
  EvpPkeyPtr key(PEM_read_bio_PUBKEY(bio, nullptr, nullptr, nullptr));
  BIO_free(bio);
  ERR_clear_error();
  return key;
}

std::string Pem(const char* name, std::span<const uint8_t> der) {
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio(bio, name, "", der.data(), static_cast<long>(der.size()));
  char* p = nullptr;
  long n = BIO_get_mem_data(bio, &p);
  std::string out(p, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

// The key both parsers make of `der` must be the same key, in the same encoding.
void ExpectSameKeyAsOpenSsl(std::span<const uint8_t> der, const std::string& what) {
  SCOPED_TRACE(what);
  EvpPkeyPtr want = OpenSslParse(der);
  ASSERT_TRUE(want) << "OpenSSL refuses it";
  auto got = PublicKeyFromSpkiDer(der);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(EVP_PKEY_eq(got->get(), want.get()), 1);
  EXPECT_EQ(EVP_PKEY_get_base_id(got->get()), EVP_PKEY_get_base_id(want.get()));
  EXPECT_EQ(EVP_PKEY_get_bits(got->get()), EVP_PKEY_get_bits(want.get()));
  EXPECT_EQ(HexEncode(*PublicKeyToSpkiDer(got->get())), HexEncode(*PublicKeyToSpkiDer(want.get())));
}

Bytes SpkiOf(EVP_PKEY* key) { return PublicKeyToSpkiDer(key).value(); }

// Every key in the testdata: the AKs given as PEM and the key of every certificate (RSA AK and
// EK chains, the vaportpm ECDSA P-256 AKs, the SEV-SNP VCEKs on P-384, and the RSA-PSS AMD roots,
// which go through OpenSSL's decoder).
TEST(SpkiParseTest, EveryRealKeyIsTheKeyOpenSslReads) {
  BERTH_REQUIRE_TESTDATA();
  int keys = 0, hand_read = 0;
  for (const auto& entry : std::filesystem::recursive_directory_iterator(testing::TestdataDir())) {
    if (!entry.is_regular_file()) continue;
    const std::string path = entry.path().string();
    const std::string ext = entry.path().extension().string();
    if (ext != ".pem" && ext != ".der" && ext != ".cer" && ext != ".crt") continue;
    const std::string data = testing::MustRead(path);
    std::vector<Bytes> spkis;
    if (data.find("-----BEGIN PUBLIC KEY-----") != std::string::npos) {
      EvpPkeyPtr want = OpenSslParsePem(data);
      ASSERT_TRUE(want) << path;
      auto got = PublicKeyFromPem(data);
      ASSERT_TRUE(got.ok()) << path << ": " << got.status().ToString();
      EXPECT_EQ(EVP_PKEY_eq(got->get(), want.get()), 1) << path;
      spkis.push_back(SpkiOf(want.get()));
    } else if (auto certs = CertsFromPem(data); certs.ok()) {
      for (auto& c : *certs) spkis.push_back(CertDerSpki(*CertToDer(c.get())).value());
    } else if (auto spki = CertDerSpki(AsBytes(data)); spki.ok()) {
      spkis.push_back(*spki);
    }
    for (const Bytes& spki : spkis) {
      ExpectSameKeyAsOpenSsl(spki, path);
      const int id = EVP_PKEY_get_base_id(OpenSslParse(spki).get());
      hand_read += (id == EVP_PKEY_RSA || id == EVP_PKEY_EC) ? 1 : 0;
      ++keys;
    }
  }
  // 4 PEM AKs and some 40 certificates; most of them RSA or EC.
  EXPECT_GE(keys, 30);
  EXPECT_GE(hand_read, 20);
}

TEST(SpkiParseTest, GeneratedKeysOfEveryHandReadKind) {
  std::vector<EvpPkeyPtr> keys;
  for (const char* curve : {"P-256", "P-384", "P-521"}) {
    for (int i = 0; i < 4; ++i) keys.emplace_back(EVP_EC_gen(curve));
  }
  for (unsigned bits : {1024u, 2048u, 2056u}) keys.emplace_back(EVP_RSA_gen(bits));
  for (const auto& key : keys) {
    const Bytes spki = SpkiOf(key.get());
    ExpectSameKeyAsOpenSsl(spki, HexEncode(spki).substr(0, 48));
    auto from_pem = PublicKeyFromPem(*PublicKeyToPem(key.get()));
    ASSERT_TRUE(from_pem.ok()) << from_pem.status().ToString();
    EXPECT_EQ(EVP_PKEY_eq(from_pem->get(), key.get()), 1);
  }
  // Ed25519 and secp256k1 are not read by hand: OpenSSL's decoders take them, as before.
  EvpPkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  ExpectSameKeyAsOpenSsl(SpkiOf(ed.get()), "Ed25519");
  EvpPkeyPtr k1(EVP_EC_gen("secp256k1"));
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(k1.get(), &der);
  ASSERT_GT(n, 0);
  ExpectSameKeyAsOpenSsl(Bytes(der, der + n), "secp256k1");
  OPENSSL_free(der);
}

// A compressed point is a valid SEC 1 encoding: accepted, as OpenSSL accepts it.
TEST(SpkiParseTest, CompressedEcPointIsTheSameKey) {
  EvpPkeyPtr key(EVP_EC_gen("P-256"));
  Bytes spki = SpkiOf(key.get());
  // The uncompressed point is the last 65 bytes; its compressed form is 0x02|0x03 and X.
  const Bytes point(spki.end() - 65, spki.end());
  Bytes compressed = {
      0x30, 0x39, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48,
      0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48,
      0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x22, 0x00, static_cast<uint8_t>(0x02 | (point[64] & 1))};
  compressed.insert(compressed.end(), point.begin() + 1, point.begin() + 33);
  ExpectSameKeyAsOpenSsl(compressed, "compressed P-256");
  EXPECT_EQ(EVP_PKEY_eq(PublicKeyFromSpkiDer(compressed)->get(), key.get()), 1);
}

// PKCS #1 "RSA PUBLIC KEY" blocks, which PEM_read_bio_PUBKEY also takes, and PEM blocks of
// other kinds before the key, which it skips.
TEST(SpkiParseTest, PemBlocksAsOpenSslTakesThem) {
  EvpPkeyPtr rsa(EVP_RSA_gen(2048));
  unsigned char* der = nullptr;
  const int n = i2d_PublicKey(rsa.get(), &der);  // RSAPublicKey
  ASSERT_GT(n, 0);
  const std::string pkcs1 = Pem("RSA PUBLIC KEY", Bytes(der, der + n));
  OPENSSL_free(der);
  ASSERT_TRUE(OpenSslParsePem(pkcs1));
  auto from_pkcs1 = PublicKeyFromPem(pkcs1);
  ASSERT_TRUE(from_pkcs1.ok()) << from_pkcs1.status().ToString();
  EXPECT_EQ(EVP_PKEY_eq(from_pkcs1->get(), rsa.get()), 1);

  EvpPkeyPtr ec(EVP_EC_gen("P-256"));
  auto cert = IssueCert({.common_name = "x"}, ec.get(), nullptr, ec.get());
  const std::string behind = "some text\n" + *CertToPem(cert->get()) + *PublicKeyToPem(rsa.get());
  ASSERT_TRUE(OpenSslParsePem(behind));
  auto skipped = PublicKeyFromPem(behind);
  ASSERT_TRUE(skipped.ok()) << skipped.status().ToString();
  EXPECT_EQ(EVP_PKEY_eq(skipped->get(), rsa.get()), 1);

  // A certificate or a private key alone is not a public key, for either.
  for (const std::string& not_a_key :
       {*CertToPem(cert->get()), std::string(PrivateKeyToPem(ec.get())->view()), std::string(""),
        std::string("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")}) {
    EXPECT_FALSE(OpenSslParsePem(not_a_key));
    auto got = PublicKeyFromPem(not_a_key);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), Code::kInvalidArgument);
    EXPECT_EQ(got.status().message().rfind("parsing a PEM public key: ", 0), 0u)
        << got.status().message();
  }
}

struct Malformed {
  const char* what;
  Bytes der;
  const char* error;  // a substring of the refusal
};

Bytes Cat(std::initializer_list<Bytes> parts) {
  Bytes out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

// Attacker inputs: each is refused with INVALID_ARGUMENT naming what is wrong.
TEST(SpkiParseTest, MalformedInputsAreRefusedWithTheReason) {
  EvpPkeyPtr ec(EVP_EC_gen("P-256"));
  const Bytes p256 =
      SpkiOf(ec.get());  // 30 59 30 13 06 07 <ecPublicKey> 06 08 <P-256> 03 42 00 04..
  ASSERT_EQ(p256.size(), 91u);
  const Bytes point(p256.begin() + 26, p256.end());  // 04 | X | Y
  const Bytes ec_alg(p256.begin() + 2, p256.begin() + 23);
  EvpPkeyPtr rsa(EVP_RSA_gen(2048));
  const Bytes rsa_spki =
      SpkiOf(rsa.get());  // 30 82 01 22 30 0d 06 09 <rsaEncryption> 05 00 03 82 01 0f 00 30 82 01
                          // 0a 02 82 01 01 00 <n> 02 03 01 00 01
  ASSERT_EQ(rsa_spki.size(), 294u);
  const Bytes rsa_alg(rsa_spki.begin() + 4, rsa_spki.begin() + 19);
  const Bytes n(rsa_spki.begin() + 32, rsa_spki.begin() + 32 + 257);  // 00 | 256 bytes
  const Bytes e = {0x01, 0x00, 0x01};
  auto rsa_key = [&](Bytes alg, Bytes n_tlv, Bytes e_tlv, Bytes extra = {}) {
    Bytes seq_body = Cat({n_tlv, e_tlv, extra});
    Bytes rsa_pub = Cat({{0x30, 0x82, static_cast<uint8_t>(seq_body.size() >> 8),
                          static_cast<uint8_t>(seq_body.size())},
                         seq_body});
    Bytes bits = Cat({{0x03, 0x82, static_cast<uint8_t>((rsa_pub.size() + 1) >> 8),
                       static_cast<uint8_t>(rsa_pub.size() + 1), 0x00},
                      rsa_pub});
    Bytes body = Cat({alg, bits});
    return Cat(
        {{0x30, 0x82, static_cast<uint8_t>(body.size() >> 8), static_cast<uint8_t>(body.size())},
         body});
  };
  const Bytes n_tlv = Cat({{0x02, 0x82, 0x01, 0x01}, n});
  const Bytes e_tlv = Cat({{0x02, 0x03}, e});
  ASSERT_EQ(rsa_key(rsa_alg, n_tlv, e_tlv), rsa_spki);  // the builder makes the real thing

  auto ec_key = [&](Bytes alg, Bytes bits) {
    Bytes body = Cat({alg, bits});
    return Cat({{0x30, static_cast<uint8_t>(body.size())}, body});
  };
  const Bytes ec_bits = Cat({{0x03, 0x42, 0x00}, point});
  ASSERT_EQ(ec_key(ec_alg, ec_bits), p256);

  Bytes flipped_point = point;
  flipped_point.back() ^= 0x01;
  Bytes huge = p256;
  huge[1] = 0x84;
  huge.insert(huge.begin() + 2, {0x7f, 0xff, 0xff, 0xff});

  const std::vector<Malformed> cases = {
      {"empty", {}, "SubjectPublicKeyInfo is missing"},
      {"not a SEQUENCE", ToBytes("junk"), "has tag 0x6a, not 0x30"},
      {"trailing byte", Cat({p256, {0x00}}), "followed by 1 trailing bytes"},
      {"length past the end", Bytes(p256.begin(), p256.end() - 1), "claims 89 bytes where 88"},
      {"4-octet length of 2 GiB", huge, "claims 2147483647 bytes"},
      {"5-octet length",
       Cat({{0x30, 0x85, 0x00, 0x00, 0x00, 0x00, 0x59}, Bytes(p256.begin() + 2, p256.end())}),
       "more than 4 octets"},
      {"indefinite length", Cat({{0x30, 0x80}, Bytes(p256.begin() + 2, p256.end()), {0x00, 0x00}}),
       "indefinite length"},
      {"non-minimal length", Cat({{0x30, 0x81, 0x59}, Bytes(p256.begin() + 2, p256.end())}),
       "shortest form"},
      {"high-tag-number form", Cat({{0x1f, 0x10}, Bytes(p256.begin() + 2, p256.end())}),
       "has tag 0x1f"},
      {"unused bits in the key", ec_key(ec_alg, Cat({{0x03, 0x42, 0x01}, point})),
       "not a whole number of bytes"},
      {"empty BIT STRING", ec_key(ec_alg, {0x03, 0x00}), "not a whole number of bytes"},
      {"EC point off the curve", ec_key(ec_alg, Cat({{0x03, 0x42, 0x00}, flipped_point})),
       "building an EC public key"},
      {"EC point one byte short",
       ec_key(ec_alg, Cat({{0x03, 0x41, 0x00}, Bytes(point.begin(), point.end() - 1)})),
       "building an EC public key"},
      {"trailing bytes inside the AlgorithmIdentifier",
       ec_key(Cat({{0x30, 0x15}, Bytes(ec_alg.begin() + 2, ec_alg.end()), {0x05, 0x00}}), ec_bits),
       "EC curve OID is followed by 2 trailing bytes"},
      {"RSA parameters missing",
       rsa_key({0x30, 0x0b, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01},
               n_tlv, e_tlv),
       "RSA parameters is missing"},
      {"RSA parameters not NULL",
       rsa_key({0x30, 0x0e, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05,
                0x01, 0x00},
               n_tlv, e_tlv),
       "RSA parameters are not NULL"},
      {"wrong algorithm OID (sha256WithRSAEncryption)",
       rsa_key({0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0b, 0x05,
                0x00},
               n_tlv, e_tlv),
       "parsing a DER public key"},
      {"negative modulus",
       rsa_key(rsa_alg, Cat({{0x02, 0x82, 0x01, 0x00}, Bytes(n.begin() + 1, n.end())}), e_tlv),
       "modulus is negative"},
      {"modulus with a superfluous zero byte",
       rsa_key(rsa_alg, Cat({{0x02, 0x82, 0x01, 0x02, 0x00}, n}), e_tlv), "leading zero byte"},
      {"empty exponent", rsa_key(rsa_alg, n_tlv, {0x02, 0x00}), "publicExponent is empty"},
      {"exponent missing", rsa_key(rsa_alg, n_tlv, {}), "publicExponent is missing"},
      {"a third INTEGER in RSAPublicKey", rsa_key(rsa_alg, n_tlv, e_tlv, {0x02, 0x01, 0x01}),
       "publicExponent is followed by 3 trailing bytes"},
  };
  for (const Malformed& m : cases) {
    SCOPED_TRACE(m.what);
    auto got = PublicKeyFromSpkiDer(m.der);
    ASSERT_FALSE(got.ok());
    EXPECT_EQ(got.status().code(), Code::kInvalidArgument);
    EXPECT_NE(got.status().message().find(m.error), std::string::npos) << got.status().message();
    // The same refusal through PEM, prefixed.
    auto pem = PublicKeyFromPem(Pem("PUBLIC KEY", m.der));
    ASSERT_FALSE(pem.ok());
    EXPECT_EQ(pem.status().message().rfind("parsing a PEM public key: ", 0), 0u);
  }
}

// Every truncation and every single-byte change of an RSA and a P-256 key: whatever berth
// accepts, OpenSSL accepts too and reads as the same key. (berth refuses some inputs OpenSSL
// takes: lengths not in their shortest form, absent RSA parameters, trailing bytes inside the
// key; DER allows none of them.)
TEST(SpkiParseTest, NeverAcceptsWhatOpenSslRefusesNorReadsAnotherKey) {
  EvpPkeyPtr ec(EVP_EC_gen("P-256"));
  EvpPkeyPtr rsa(EVP_RSA_gen(1024));
  int accepted = 0, refused = 0;
  for (const Bytes& base : {SpkiOf(ec.get()), SpkiOf(rsa.get())}) {
    std::vector<Bytes> variants;
    for (size_t len = 0; len < base.size(); ++len)
      variants.emplace_back(base.begin(), base.begin() + len);
    for (size_t i = 0; i < base.size(); ++i) {
      for (uint8_t x : {0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80, 0xff}) {
        Bytes v = base;
        v[i] ^= x;
        variants.push_back(std::move(v));
      }
    }
    for (const Bytes& v : variants) {
      auto got = PublicKeyFromSpkiDer(v);
      if (!got.ok()) {
        EXPECT_EQ(got.status().code(), Code::kInvalidArgument);
        ++refused;
        continue;
      }
      ++accepted;
      EvpPkeyPtr want = OpenSslParse(v);
      ASSERT_TRUE(want) << "accepted what OpenSSL refuses: " << HexEncode(v);
      EXPECT_EQ(EVP_PKEY_eq(got->get(), want.get()), 1) << HexEncode(v);
    }
  }
  EXPECT_GT(accepted, 0);  // e.g. changes of the modulus, which is any number
  EXPECT_GT(refused, 0);
}

}  // namespace
}  // namespace berth
