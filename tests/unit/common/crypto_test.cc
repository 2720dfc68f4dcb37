// OpenSSL wrappers against published test vectors and independent computations.
#include "common/crypto.h"

#include <gtest/gtest.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/param_build.h>
#include <openssl/x509v3.h>

#include <set>

#include "tests/testing/testing.h"
#include "tests/unit/common/tpm/real_quotes.h"

namespace berth {
namespace {

Bytes Range(int from, int to) {  // from..to-1
  Bytes out;
  for (int i = from; i < to; ++i) out.push_back(static_cast<uint8_t>(i));
  return out;
}

TEST(DigestTest, KnownAnswersForAbc) {
  const Bytes abc = ToBytes("abc");
  EXPECT_EQ(HexEncode(Digest(DigestAlg::kSha1, abc)), "a9993e364706816aba3e25717850c26c9cd0d89d");
  EXPECT_EQ(HexEncode(Digest(DigestAlg::kSha256, abc)),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(HexEncode(Digest(DigestAlg::kSha384, abc)),
            "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed"
            "8086072ba1e7cc2358baeca134c825a7");
  EXPECT_EQ(HexEncode(Digest(DigestAlg::kSha512, abc)),
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
            "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f");
  EXPECT_EQ(HexEncode(Sha256(Bytes{})),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
}

// DigestInto is Digest of the concatenation, also when it writes over its first input (a PCR
// extend in place), and the reused per-thread context leaves nothing behind between digests.
TEST(DigestTest, DigestIntoIsTheDigestOfTheConcatenation) {
  for (DigestAlg alg :
       {DigestAlg::kSha1, DigestAlg::kSha256, DigestAlg::kSha384, DigestAlg::kSha512}) {
    SCOPED_TRACE(DigestName(alg));
    Bytes pcr(DigestSize(alg), 0);
    for (int i = 0; i < 3; ++i) {
      const Bytes event = Digest(alg, Range(0, 10 + i));
      Bytes concatenated = pcr;
      concatenated.insert(concatenated.end(), event.begin(), event.end());
      const Bytes want = Digest(alg, concatenated);
      DigestInto(alg, pcr, event, pcr);
      EXPECT_EQ(HexEncode(pcr), HexEncode(want));
    }
    Bytes out(DigestSize(alg));
    DigestInto(alg, ToBytes("ab"), ToBytes("c"), out);
    EXPECT_EQ(out, Digest(alg, ToBytes("abc")));
    DigestInto(alg, ToBytes("abc"), {}, out);
    EXPECT_EQ(out, Digest(alg, ToBytes("abc")));
  }
  EXPECT_EQ(HexEncode(Sha256(ToBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(DigestTest, NamesAndSizes) {
  const std::pair<DigestAlg, std::pair<const char*, size_t>> algs[] = {
      {DigestAlg::kSha1, {"sha1", 20}},
      {DigestAlg::kSha256, {"sha256", 32}},
      {DigestAlg::kSha384, {"sha384", 48}},
      {DigestAlg::kSha512, {"sha512", 64}}};
  for (const auto& [alg, info] : algs) {
    EXPECT_EQ(DigestName(alg), info.first);
    EXPECT_EQ(DigestSize(alg), info.second);
    EXPECT_EQ(*DigestFromName(info.first), alg);
  }
  EXPECT_EQ(DigestFromName("md5").status().ToString(),
            "INVALID_ARGUMENT: unknown hash algorithm \"md5\"");
  EXPECT_EQ(DigestFromName("SHA256").status().code(), Code::kInvalidArgument);
}

// RFC 4231 test cases 1 and 2.
TEST(HmacTest, Rfc4231Vectors) {
  EXPECT_EQ(HexEncode(HmacSha256(Bytes(20, 0x0b), ToBytes("Hi There"))),
            "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
  EXPECT_EQ(HexEncode(HmacSha256(ToBytes("Jefe"), ToBytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

// RFC 5869 appendix A, test cases 1 to 3 (the SHA-256 ones).
TEST(HkdfTest, Rfc5869Vectors) {
  auto t1 = HkdfSha256(Bytes(22, 0x0b), Range(0x00, 0x0d), Range(0xf0, 0xfa), 42);
  ASSERT_TRUE(t1.ok()) << t1.status().ToString();
  EXPECT_EQ(HexEncode(t1->span()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
            "34007208d5b887185865");

  auto t2 = HkdfSha256(Range(0x00, 0x50), Range(0x60, 0xb0), Range(0xb0, 0x100), 82);
  ASSERT_TRUE(t2.ok());
  EXPECT_EQ(HexEncode(t2->span()),
            "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c"
            "59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71"
            "cc30c58179ec3e87c14c01d5c1f3434f1d87");

  // Zero-length salt and info: the salt defaults to HashLen zeros.
  auto t3 = HkdfSha256(Bytes(22, 0x0b), Bytes{}, Bytes{}, 42);
  ASSERT_TRUE(t3.ok());
  EXPECT_EQ(HexEncode(t3->span()),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
            "9d201395faa4b61a96c8");
  auto zeros_salt = HkdfSha256(Bytes(22, 0x0b), Bytes(32, 0), Bytes{}, 42);
  EXPECT_TRUE(zeros_salt->Equals(*t3));
}

TEST(HkdfTest, RefusesMoreThan255Blocks) {
  auto r = HkdfSha256(Bytes(32, 1), Bytes{}, Bytes{}, 255 * 32 + 1);
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInternal);
  EXPECT_EQ(r.status().message().rfind("HKDF-SHA256: ", 0), 0u) << r.status().message();
  EXPECT_TRUE(HkdfSha256(Bytes(32, 1), Bytes{}, Bytes{}, 255 * 32).ok());
}

TEST(RandomTest, LengthsAlphabetAndVariety) {
  EXPECT_EQ(RandomBytes(0).size(), 0u);
  EXPECT_EQ(RandomBytes(33).size(), 33u);
  EXPECT_NE(RandomBytes(32), RandomBytes(32));
  const std::string alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  std::set<char> seen;
  for (int i = 0; i < 50; ++i) {
    std::string s = RandomString(16, alphabet);
    ASSERT_EQ(s.size(), 16u);
    for (char c : s) {
      ASSERT_NE(alphabet.find(c), std::string::npos) << c;
      seen.insert(c);
    }
  }
  // 800 draws over 36 symbols: every symbol appears unless the generator is broken
  // (probability of a miss ~ 36 * (35/36)^800 < 1e-8).
  EXPECT_EQ(seen.size(), alphabet.size());
}

TEST(KeyTest, PemAndDerRoundTrips) {
  auto key = GenerateP256Key();
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(EVP_PKEY_get_base_id(key->get()), EVP_PKEY_EC);
  EXPECT_EQ(EVP_PKEY_get_bits(key->get()), 256);

  auto private_pem = PrivateKeyToPem(key->get());
  ASSERT_TRUE(private_pem.ok());
  EXPECT_EQ(private_pem->view().rfind("-----BEGIN PRIVATE KEY-----", 0), 0u);
  auto reread = PrivateKeyFromPem(private_pem->view());
  ASSERT_TRUE(reread.ok());
  EXPECT_EQ(EVP_PKEY_eq(key->get(), reread->get()), 1);

  auto spki = PublicKeyToSpkiDer(key->get());
  ASSERT_TRUE(spki.ok());
  EXPECT_EQ(spki->size(), 91u);  // P-256 SPKI: 26 bytes of header + 65-byte point
  auto from_der = PublicKeyFromSpkiDer(*spki);
  ASSERT_TRUE(from_der.ok());
  EXPECT_EQ(EVP_PKEY_eq(key->get(), from_der->get()), 1);

  auto public_pem = PublicKeyToPem(key->get());
  ASSERT_TRUE(public_pem.ok());
  EXPECT_EQ(public_pem->rfind("-----BEGIN PUBLIC KEY-----", 0), 0u);
  auto from_pem = PublicKeyFromPem(*public_pem);
  ASSERT_TRUE(from_pem.ok());
  EXPECT_EQ(*PublicKeyToSpkiDer(from_pem->get()), *spki);

  auto rsa = GenerateRsaKey(2048);
  ASSERT_TRUE(rsa.ok());
  EXPECT_EQ(EVP_PKEY_get_base_id(rsa->get()), EVP_PKEY_RSA);
  EXPECT_EQ(EVP_PKEY_get_bits(rsa->get()), 2048);
}

TEST(KeyTest, GarbageIsInvalidArgument) {
  EXPECT_EQ(PublicKeyFromPem("not pem").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(PublicKeyFromPem("-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n")
                .status()
                .code(),
            Code::kInvalidArgument);
  EXPECT_EQ(PrivateKeyFromPem("x").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(PublicKeyFromSpkiDer(ToBytes("junk")).status().code(), Code::kInvalidArgument);
  auto key = GenerateP256Key();
  Bytes spki = *PublicKeyToSpkiDer(key->get());
  spki.push_back(0);  // trailing bytes are not a key
  EXPECT_EQ(PublicKeyFromSpkiDer(spki).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(PublicKeyFromPem("not pem").status().message().rfind("parsing a PEM public key: ", 0),
            0u);
}

class CertTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_key_ = GenerateP256Key().value();
    leaf_key_ = GenerateP256Key().value();
    auto ca =
        IssueCert({.common_name = "test CA", .is_ca = true}, ca_key_.get(), nullptr, ca_key_.get());
    ASSERT_TRUE(ca.ok()) << ca.status().ToString();
    ca_ = std::move(*ca);
    auto leaf = IssueCert({.common_name = "berthd",
                           .dns_names = {"berthd.example", "localhost"},
                           .ip_addresses = {"127.0.0.1"},
                           .server_auth = true,
                           .client_auth = true},
                          leaf_key_.get(), ca_.get(), ca_key_.get());
    ASSERT_TRUE(leaf.ok()) << leaf.status().ToString();
    leaf_ = std::move(*leaf);
  }
  EvpPkeyPtr ca_key_, leaf_key_;
  X509Ptr ca_, leaf_;
};

TEST_F(CertTest, IssuedCertificatesChainAndCarryTheirExtensions) {
  EXPECT_EQ(X509_verify(ca_.get(), ca_key_.get()), 1);    // self-signed
  EXPECT_EQ(X509_verify(leaf_.get(), ca_key_.get()), 1);  // signed by the CA
  EXPECT_EQ(X509_verify(leaf_.get(), leaf_key_.get()), 0);
  EXPECT_EQ(X509_check_ca(ca_.get()), 1);
  EXPECT_EQ(X509_check_ca(leaf_.get()), 0);
  EXPECT_EQ(X509_check_host(leaf_.get(), "berthd.example", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(leaf_.get(), "other.example", 0, 0, nullptr), 0);
  EXPECT_EQ(X509_check_ip_asc(leaf_.get(), "127.0.0.1", 0), 1);
  EXPECT_NE(X509_get_extended_key_usage(leaf_.get()) & XKU_SSL_SERVER, 0u);
  EXPECT_NE(X509_get_extended_key_usage(leaf_.get()) & XKU_SSL_CLIENT, 0u);
  EXPECT_EQ(X509_cmp_current_time(X509_get0_notBefore(leaf_.get())), -1);  // backdated
  EXPECT_EQ(X509_cmp_current_time(X509_get0_notAfter(leaf_.get())), 1);

  X509_STORE* store = X509_STORE_new();
  X509_STORE_add_cert(store, ca_.get());
  X509_STORE_CTX* ctx = X509_STORE_CTX_new();
  X509_STORE_CTX_init(ctx, store, leaf_.get(), nullptr);
  EXPECT_EQ(X509_verify_cert(ctx), 1)
      << X509_verify_cert_error_string(X509_STORE_CTX_get_error(ctx));
  X509_STORE_CTX_free(ctx);
  X509_STORE_free(store);
}

TEST_F(CertTest, PemDerAndBundleRoundTrips) {
  std::string pem = *CertToPem(leaf_.get());
  auto again = CertFromPem(pem);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(X509_cmp(leaf_.get(), again->get()), 0);
  Bytes der = *CertToDer(leaf_.get());
  EXPECT_EQ(X509_cmp(leaf_.get(), CertFromDer(der)->get()), 0);
  der.push_back(0);
  EXPECT_EQ(CertFromDer(der).status().code(), Code::kInvalidArgument);

  auto bundle = CertsFromPem(pem + *CertToPem(ca_.get()));
  ASSERT_TRUE(bundle.ok());
  ASSERT_EQ(bundle->size(), 2u);
  EXPECT_EQ(X509_cmp((*bundle)[0].get(), leaf_.get()), 0);
  EXPECT_EQ(X509_cmp((*bundle)[1].get(), ca_.get()), 0);
  EXPECT_EQ(CertsFromPem("garbage").status().ToString(),
            "INVALID_ARGUMENT: no PEM certificate found");
  EXPECT_EQ(CertFromPem("garbage").status().code(), Code::kInvalidArgument);
}

// CertSpkiSha256 against the SPKI as X509 itself encodes it (not through EVP_PKEY).
TEST_F(CertTest, SpkiHashIsSha256OfTheCertificatesSubjectPublicKeyInfo) {
  unsigned char* der = nullptr;
  int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(leaf_.get()), &der);
  ASSERT_GT(n, 0);
  Bytes spki(der, der + n);
  OPENSSL_free(der);
  EXPECT_EQ(*CertSpkiSha256(leaf_.get()), Sha256(spki));
  EXPECT_EQ(*CertSpkiSha256(leaf_.get()), Sha256(*PublicKeyToSpkiDer(leaf_key_.get())));
  EXPECT_NE(*CertSpkiSha256(leaf_.get()), *CertSpkiSha256(ca_.get()));
}

// The real GCE AK certificate certifies the AK given beside it (the README's claim).
TEST(RealCertTest, GceAkCertificateHoldsTheAk) {
  BERTH_REQUIRE_TESTDATA();
  const std::string dir = testing::Testdata("tpm-gce-cos85-nonce9009/");
  auto cert = CertFromDer(ToBytes(testing::MustRead(dir + "ak_cert.der")));
  ASSERT_TRUE(cert.ok()) << cert.status().ToString();
  auto ak = PublicKeyFromPem(testing::MustRead(dir + "ak_pub.pem"));
  ASSERT_TRUE(ak.ok()) << ak.status().ToString();
  EXPECT_EQ(*CertSpkiSha256(cert->get()), Sha256(*PublicKeyToSpkiDer(ak->get())));
}


// PublicKeyToSpkiDer writes EC and RSA keys by hand: the bytes must be OpenSSL's own.
Bytes OpenSslSpki(EVP_PKEY* key) {
  unsigned char* der = nullptr;
  int n = i2d_PUBKEY(key, &der);
  EXPECT_GT(n, 0);
  Bytes out(der, der + n);
  OPENSSL_free(der);
  return out;
}

EvpPkeyPtr GenerateKey(const char* type, const char* param, const char* value) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr);
  EVP_PKEY* key = nullptr;
  EXPECT_EQ(EVP_PKEY_keygen_init(ctx), 1);
  OSSL_PARAM params[2] = {OSSL_PARAM_construct_end(), OSSL_PARAM_construct_end()};
  unsigned int bits = 0;
  if (std::string(type) == "RSA") {
    bits = static_cast<unsigned int>(std::stoul(value));
    params[0] = OSSL_PARAM_construct_uint(param, &bits);
  } else {
    params[0] = OSSL_PARAM_construct_utf8_string(param, const_cast<char*>(value), 0);
  }
  EXPECT_EQ(EVP_PKEY_CTX_set_params(ctx, params), 1);
  EXPECT_EQ(EVP_PKEY_generate(ctx, &key), 1);
  EVP_PKEY_CTX_free(ctx);
  return EvpPkeyPtr(key);
}

TEST(SpkiTest, HandWrittenDerEqualsOpenSslsForEcAndRsaKeys) {
  std::vector<EvpPkeyPtr> keys;
  for (const char* curve : {"P-256", "P-384", "P-521"}) {
    for (int i = 0; i < 8; ++i) keys.push_back(GenerateKey("EC", "group", curve));
  }
  for (const char* bits : {"1024", "2048", "3072", "2056"}) {
    keys.push_back(GenerateKey("RSA", "bits", bits));
  }
  // A public-only key, as berthd holds them.
  keys.push_back(std::move(PublicKeyFromPem(*PublicKeyToPem(keys.back().get())).value()));
  for (const auto& key : keys) {
    EXPECT_EQ(HexEncode(*PublicKeyToSpkiDer(key.get())), HexEncode(OpenSslSpki(key.get())));
  }
  // Ed25519 takes OpenSSL's encoder, and round-trips.
  EvpPkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  EXPECT_EQ(*PublicKeyToSpkiDer(ed.get()), OpenSslSpki(ed.get()));
}

TEST(SpkiTest, RsaExponentThreeAndHighBitModulus) {
  EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "RSA", nullptr);
  ASSERT_EQ(EVP_PKEY_keygen_init(ctx), 1);
  unsigned int bits = 2048;
  BIGNUM* e = BN_new();
  BN_set_word(e, 3);
  OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
  OSSL_PARAM_BLD_push_uint(bld, "bits", bits);
  OSSL_PARAM_BLD_push_BN(bld, "e", e);
  OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
  ASSERT_EQ(EVP_PKEY_CTX_set_params(ctx, params), 1);
  EVP_PKEY* key = nullptr;
  ASSERT_EQ(EVP_PKEY_generate(ctx, &key), 1);
  EvpPkeyPtr owned(key);
  EXPECT_EQ(HexEncode(*PublicKeyToSpkiDer(key)), HexEncode(OpenSslSpki(key)));
  OSSL_PARAM_free(params);
  OSSL_PARAM_BLD_free(bld);
  BN_free(e);
  EVP_PKEY_CTX_free(ctx);
}

// CertPemSpkiSha256 reads the SPKI out of the DER without decoding the key: it must agree with
// the full parse for every certificate, generated and real.
TEST_F(CertTest, PemSpkiHashAgreesWithTheFullParse) {
  for (X509* cert : {leaf_.get(), ca_.get()}) {
    auto pem = CertToPem(cert);
    ASSERT_TRUE(pem.ok());
    EXPECT_EQ(*CertPemSpkiSha256(*pem), *CertSpkiSha256(cert));
  }
  auto rsa = GenerateKey("RSA", "bits", "2048");
  CertSpec spec{.common_name = "rsa"};
  auto cert = IssueCert(spec, rsa.get(), nullptr, rsa.get());
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(*CertPemSpkiSha256(*CertToPem(cert->get())), *CertSpkiSha256(cert->get()));
}

TEST(RealCertTest, PemSpkiHashAgreesOnTheRealCertificates) {
  BERTH_REQUIRE_TESTDATA();
  for (const char* rel :
       {"tpm-gce-cos85-nonce9009/ak_cert.der", "snp-virtee-milan/vcek_milan.der"}) {
    SCOPED_TRACE(rel);
    auto der = ToBytes(testing::MustRead(testing::Testdata(rel)));
    auto cert = CertFromDer(der);
    ASSERT_TRUE(cert.ok()) << cert.status().ToString();
    auto pem = CertToPem(cert->get());
    EXPECT_EQ(*CertPemSpkiSha256(*pem), *CertSpkiSha256(cert->get()));
    EXPECT_EQ(Sha256(*CertDerSpki(der)), *CertSpkiSha256(cert->get()));
  }
}

TEST(SpkiTest, MalformedCertificatesAreInvalidArgument) {
  auto key = GenerateKey("EC", "group", "P-256");
  CertSpec spec{.common_name = "x"};
  auto cert = IssueCert(spec, key.get(), nullptr, key.get());
  Bytes der = *CertToDer(cert->get());
  EXPECT_EQ(CertDerSpki(Bytes(der.begin(), der.begin() + 40)).status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(CertDerSpki(Bytes{0x02, 0x01, 0x00}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CertDerSpki(Bytes{}).status().code(), Code::kInvalidArgument);
  Bytes indefinite = {0x30, 0x80, 0x30, 0x80, 0x00, 0x00, 0x00, 0x00};
  EXPECT_EQ(CertDerSpki(indefinite).status().code(), Code::kInvalidArgument);
  // A length that runs past the end.
  Bytes overlong = der;
  overlong[2] = 0x7f;
  EXPECT_EQ(CertDerSpki(overlong).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CertPemSpkiSha256("not a certificate").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CertPemSpkiSha256(*PublicKeyToPem(key.get())).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace berth
