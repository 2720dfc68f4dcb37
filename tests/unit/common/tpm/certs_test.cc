// TPM certificate chains: the real GCE and GCP AK certificate chains (at fixed times inside
// their validity, as the testdata README says), what breaks them, and the TCG quirks that must
// not.
#include "common/tpm/certs.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <filesystem>

#include "common/tpm/quote.h"
#include "tests/testing/testing.h"

namespace berth::tpm {
namespace {

using ::testing::HasSubstr;
using testing::Testdata;

#define REQUIRE_TESTDATA()                                                                \
  if (!std::filesystem::exists(testing::TestdataDir())) {                                 \
    GTEST_FAIL() << "the real attestation testdata is not at " << testing::TestdataDir(); \
  }

constexpr int64_t k2026Feb04 = 1770163200;  // inside every fixture's validity
constexpr int64_t k2060 = 2840140800;

X509Ptr DerCert(const std::string& rel) {
  auto c = CertFromDer(AsBytes(testing::MustRead(Testdata(rel))));
  EXPECT_TRUE(c.ok()) << rel << ": " << c.status().ToString();
  return c.ok() ? std::move(*c) : nullptr;
}

std::vector<X509Ptr> PemCerts(const std::string& rel) {
  auto c = CertsFromPem(testing::MustRead(Testdata(rel)));
  EXPECT_TRUE(c.ok()) << rel;
  return c.ok() ? std::move(*c) : std::vector<X509Ptr>{};
}

TPMT_PUBLIC GceAk() {
  auto pub = ParsePublic(
      AsBytes(testing::MustRead(Testdata("tpm-gce-cos85-nonce9009/ak_pub.tpmt_public"))));
  EXPECT_TRUE(pub.ok());
  return *pub;
}

// The P-256 AK of the vaportpm fixtures as a TPMT_PUBLIC (the fixture gives it as PEM; the
// key match only looks at the key).
TPMT_PUBLIC EccPublicFromPem(const std::string& rel) {
  TPMT_PUBLIC out;
  std::memset(&out, 0, sizeof out);
  auto key = PublicKeyFromPem(testing::MustRead(Testdata(rel)));
  EXPECT_TRUE(key.ok());
  uint8_t point[65];
  size_t len = 0;
  EXPECT_EQ(EVP_PKEY_get_octet_string_param(key->get(), OSSL_PKEY_PARAM_ENCODED_PUBLIC_KEY, point,
                                            sizeof point, &len),
            1);
  EXPECT_EQ(len, 65u);
  out.type = TPM2_ALG_ECC;
  out.nameAlg = TPM2_ALG_SHA256;
  out.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  out.unique.ecc.x.size = 32;
  std::memcpy(out.unique.ecc.x.buffer, point + 1, 32);
  out.unique.ecc.y.size = 32;
  std::memcpy(out.unique.ecc.y.buffer, point + 33, 32);
  return out;
}

TEST(AkCertificateTest, GceChainVerifiesAndCertifiesTheAk) {
  REQUIRE_TESTDATA();
  X509Ptr leaf = DerCert("tpm-gce-cos85-nonce9009/ak_cert.der");
  X509Ptr intermediate = DerCert("tpm-gce-cos85-nonce9009/tpm_ek_intermediate_2.crt");
  X509Ptr root = DerCert("tpm-gce-cos85-nonce9009/tpm_ek_root_1.cer");
  ASSERT_TRUE(leaf && intermediate && root);
  auto chain = VerifyTpmCertChain(leaf.get(), {intermediate.get()}, {root.get()}, k2026Feb04);
  ASSERT_TRUE(chain.ok()) << chain.status().ToString();
  EXPECT_EQ(chain->leaf_subject, "(empty subject)");  // GCE AK certs name the TPM in the SAN
  EXPECT_THAT(chain->anchor_subject, HasSubstr("tpm_ek_v1_cloud_host_root-signer"));
  Status match = CheckCertKeyMatches(leaf.get(), GceAk(), "the AK certificate");
  EXPECT_TRUE(match.ok()) << match.ToString();

  // The intermediate alone is trusted as well (a bundle may hold only it).
  EXPECT_TRUE(VerifyTpmCertChain(leaf.get(), {}, {intermediate.get()}, k2026Feb04).ok());
}

TEST(AkCertificateTest, GcpEccChainsVerifyAt20260204) {
  REQUIRE_TESTDATA();
  for (std::string vm : {"amd", "tdx"}) {
    SCOPED_TRACE(vm);
    auto certs = PemCerts("tpm-gcp-ecc-ak-vaportpm/" + vm + "_ak_cert_chain.pem");
    ASSERT_EQ(certs.size(), 3u);
    auto chain = VerifyTpmCertChain(certs[0].get(), {certs[1].get()}, {certs[2].get()}, k2026Feb04);
    ASSERT_TRUE(chain.ok()) << chain.status().ToString();
    EXPECT_THAT(chain->anchor_subject,
                ::testing::StartsWith("CN=EK/AK CA Root,OU=Google Cloud,O=Google LLC"));
    EXPECT_TRUE(
        CheckCertKeyMatches(certs[0].get(),
                            EccPublicFromPem("tpm-gcp-ecc-ak-vaportpm/" + vm + "_ak_pub.pem"),
                            "the AK certificate")
            .ok());
  }
}

TEST(AkCertificateTest, WhatBreaksAChain) {
  REQUIRE_TESTDATA();
  X509Ptr leaf = DerCert("tpm-gce-cos85-nonce9009/ak_cert.der");
  X509Ptr intermediate = DerCert("tpm-gce-cos85-nonce9009/tpm_ek_intermediate_2.crt");
  X509Ptr root = DerCert("tpm-gce-cos85-nonce9009/tpm_ek_root_1.cer");
  auto gcp = PemCerts("tpm-gcp-ecc-ak-vaportpm/amd_ak_cert_chain.pem");
  ASSERT_EQ(gcp.size(), 3u);

  // Expired (the leaf ends in 2051).
  auto expired = VerifyTpmCertChain(leaf.get(), {intermediate.get()}, {root.get()}, k2060);
  EXPECT_EQ(expired.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(expired.status().message(), HasSubstr("certificate has expired"));
  // Not yet valid (the leaf starts in 2021).
  auto early = VerifyTpmCertChain(leaf.get(), {intermediate.get()}, {root.get()}, 1577836800);
  EXPECT_THAT(early.status().message(), HasSubstr("certificate is not yet valid"));
  // Another cloud's root.
  auto foreign = VerifyTpmCertChain(leaf.get(), {intermediate.get()}, {gcp[2].get()}, k2026Feb04);
  EXPECT_EQ(foreign.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(foreign.status().message(), HasSubstr("unable to get local issuer certificate"));
  // A broken signature on the leaf.
  auto der = CertToDer(leaf.get());
  ASSERT_TRUE(der.ok());
  (*der)[der->size() - 10] ^= 0x01;
  auto tampered = CertFromDer(*der);
  ASSERT_TRUE(tampered.ok());
  auto bad_sig =
      VerifyTpmCertChain(tampered->get(), {intermediate.get()}, {root.get()}, k2026Feb04);
  EXPECT_EQ(bad_sig.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(bad_sig.status().message(), HasSubstr("certificate signature failure"));
  // Nothing trusted at all.
  EXPECT_EQ(VerifyTpmCertChain(leaf.get(), {}, {}, k2026Feb04).status().code(),
            Code::kInvalidArgument);
  // The right chain, for another key.
  Status other_key = CheckCertKeyMatches(
      leaf.get(), EccPublicFromPem("tpm-gcp-ecc-ak-vaportpm/amd_ak_pub.pem"), "the AK certificate");
  EXPECT_EQ(other_key.code(), Code::kPermissionDenied);
  EXPECT_EQ(other_key.message(), "the AK certificate certifies another key than the one presented");
}

// A TCG extension OpenSSL does not know, marked critical, must not break an EK chain.
TEST(EkCertificateTest, UnknownCriticalTcgExtensionIsTolerated) {
  auto ca_key = GenerateP256Key();
  auto ek_key = GenerateRsaKey(2048);
  ASSERT_TRUE(ca_key.ok() && ek_key.ok());
  auto ca = IssueCert({.common_name = "Manufacturer Root", .is_ca = true}, ca_key->get(), nullptr,
                      ca_key->get());
  ASSERT_TRUE(ca.ok());
  auto ek = IssueCert({.common_name = "ek"}, ek_key->get(), ca->get(), ca_key->get());
  ASSERT_TRUE(ek.ok());
  // Re-sign with a critical TPM specification extension (2.23.133.2.16 in subject directory
  // attributes style: an OID OpenSSL has no handler for).
  ASN1_OBJECT* oid = OBJ_txt2obj("2.23.133.2.16", 1);
  ASN1_OCTET_STRING* value = ASN1_OCTET_STRING_new();
  const unsigned char body[] = {0x30, 0x00};
  ASN1_OCTET_STRING_set(value, body, sizeof body);
  X509_EXTENSION* ext = X509_EXTENSION_create_by_OBJ(nullptr, oid, 1, value);
  ASSERT_EQ(X509_add_ext(ek->get(), ext, -1), 1);
  X509_EXTENSION_free(ext);
  ASN1_OCTET_STRING_free(value);
  ASN1_OBJECT_free(oid);
  ASSERT_GT(X509_sign(ek->get(), ca_key->get(), EVP_sha256()), 0);

  auto chain = VerifyTpmCertChain(ek->get(), {}, {ca->get()}, time(nullptr));
  EXPECT_TRUE(chain.ok()) << chain.status().ToString();

  // A certificate that is not a CA cannot issue one, whatever else is tolerated.
  auto leaf_key = GenerateP256Key();
  auto fake_issuer =
      IssueCert({.common_name = "not a CA"}, leaf_key->get(), ca->get(), ca_key->get());
  auto issued =
      IssueCert({.common_name = "ek2"}, ek_key->get(), fake_issuer->get(), leaf_key->get());
  auto refused =
      VerifyTpmCertChain(issued->get(), {fake_issuer->get()}, {ca->get()}, time(nullptr));
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(refused.status().message(), HasSubstr("invalid CA certificate"));
}

TEST(TrimDerTest, DropsNvPaddingAndRefusesTruncation) {
  auto key = GenerateP256Key();
  auto cert = IssueCert({.common_name = "x"}, key->get(), nullptr, key->get());
  auto der = CertToDer(cert->get());
  ASSERT_TRUE(der.ok());
  Bytes padded = *der;
  padded.resize(padded.size() + 300, 0xff);
  auto trimmed = TrimDerCertificate(padded);
  ASSERT_TRUE(trimmed.ok());
  EXPECT_EQ(*trimmed, *der);
  Bytes cut(der->begin(), der->end() - 1);
  EXPECT_EQ(TrimDerCertificate(cut).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(TrimDerCertificate(Bytes{0x04, 0x01}).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace berth::tpm
