// berthd's software TPM2_MakeCredential against a real TPM's TPM2_ActivateCredential (swtpm):
// the proof that the two agree byte for byte, for RSA and ECC endorsement keys. Also the
// endorsement key the agent finds (with the EK certificate swtpm_setup writes into NV), and
// tpm2-tools' own MakeCredential (`tpm2_makecredential --tcti none`) activated by the agent.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <tss2/tss2_mu.h>

#include <cstring>

#include "agent/hw/tpm.h"
#include "common/crypto.h"
#include "common/subprocess.h"
#include "common/tpm/certs.h"
#include "common/tpm/credential.h"
#include "common/tpm/quote.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::agent {
namespace {

using ::testing::HasSubstr;

std::unique_ptr<Tpm> Open(const testing::Swtpm& swtpm) {
  auto tpm = OpenEsysTpm(swtpm.Tcti());
  EXPECT_TRUE(tpm.ok()) << tpm.status().ToString();
  return tpm.ok() ? std::move(*tpm) : nullptr;
}

Bytes AkName(Tpm& tpm) {
  auto pub = tpm::ParsePublic(*tpm.AttestationKeyPublic());
  EXPECT_TRUE(pub.ok());
  auto name = tpm::PublicName(*pub);
  EXPECT_TRUE(name.ok());
  return *name;
}

TPMT_PUBLIC EkPublic(Tpm& tpm) {
  TPMT_PUBLIC out;
  std::memset(&out, 0, sizeof out);
  auto ek = tpm.EndorsementKey();
  EXPECT_TRUE(ek.ok()) << ek.status().ToString();
  if (!ek.ok()) return out;
  auto pub = tpm::ParsePublic(ek->ek_public);
  EXPECT_TRUE(pub.ok()) << pub.status().ToString();
  return pub.ok() ? *pub : out;
}

std::string Activated(Tpm& tpm, const tpm::MadeCredential& made) {
  auto secret = tpm.ActivateCredential(made.credential_blob, made.encrypted_secret);
  EXPECT_TRUE(secret.ok()) << secret.status().ToString();
  return secret.ok() ? std::string(secret->view()) : "";
}

// A TPM manufactured with EK certificates (swtpm_setup + swtpm_localca).
class ManufacturedTpmTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(swtpm_.ok()) << swtpm_.error(); }
  testing::TempDir dir_;
  testing::Swtpm swtpm_{dir_.Join("tpm"), {.ek_ca_dir = dir_.Join("ca")}};
};

TEST_F(ManufacturedTpmTest, EndorsementKeyIsTheRsaTemplateKeyItsNvCertificateCertifies) {
  Bytes first_ek;
  {
    auto tpm = Open(swtpm_);
    ASSERT_NE(tpm, nullptr);
    auto ek = tpm->EndorsementKey();
    ASSERT_TRUE(ek.ok()) << ek.status().ToString();
    ASSERT_FALSE(ek->ek_certificate.empty());
    first_ek = ek->ek_public;
    auto pub = tpm::ParsePublic(ek->ek_public);
    ASSERT_TRUE(pub.ok());
    EXPECT_EQ(pub->type, TPM2_ALG_RSA);
    EXPECT_EQ(pub->objectAttributes, tpm::EkTemplateRsa2048().objectAttributes);
    EXPECT_TRUE(tpm::CheckEndorsementKey(*pub).ok());

    // Exactly one DER certificate (the NV padding is trimmed), for this key, chaining to the
    // local CA.
    auto cert = CertFromDer(ek->ek_certificate);
    ASSERT_TRUE(cert.ok()) << cert.status().ToString();
    Status match = tpm::CheckCertKeyMatches(cert->get(), *pub, "EK certificate");
    EXPECT_TRUE(match.ok()) << match.ToString();
    auto roots = CertsFromPem(testing::Swtpm::EkCaBundlePem(dir_.Join("ca")));
    ASSERT_TRUE(roots.ok());
    std::vector<X509*> trusted;
    for (auto& r : *roots) trusted.push_back(r.get());
    auto chain = tpm::VerifyTpmCertChain(cert->get(), {}, trusted, time(nullptr));
    ASSERT_TRUE(chain.ok()) << chain.status().ToString();
    EXPECT_EQ(chain->anchor_subject, "CN=swtpm-localca");
  }
  // The same EK on the next open: a primary key from a fixed template.
  auto tpm = Open(swtpm_);
  ASSERT_NE(tpm, nullptr);
  auto ek = tpm->EndorsementKey();
  ASSERT_TRUE(ek.ok());
  EXPECT_EQ(ek->ek_public, first_ek);
}

TEST_F(ManufacturedTpmTest, SoftwareMakeCredentialToTheRsaEkActivatesInTheTpm) {
  auto tpm = Open(swtpm_);
  ASSERT_NE(tpm, nullptr);
  const TPMT_PUBLIC ek = EkPublic(*tpm);
  ASSERT_EQ(ek.type, TPM2_ALG_RSA);
  for (int i = 0; i < 3; ++i) {
    const Bytes secret = RandomBytes(32);
    auto made = tpm::MakeCredential(ek, AkName(*tpm), secret);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    EXPECT_EQ(Activated(*tpm, *made), ToString(secret));
  }
}

TEST_F(ManufacturedTpmTest, CredentialForAnotherObjectNameDoesNotActivate) {
  auto tpm = Open(swtpm_);
  ASSERT_NE(tpm, nullptr);
  Bytes name = AkName(*tpm);
  name.back() ^= 0x01;  // the Name of a key this TPM does not hold
  auto made = tpm::MakeCredential(EkPublic(*tpm), name, RandomBytes(32));
  ASSERT_TRUE(made.ok());
  auto secret = tpm->ActivateCredential(made->credential_blob, made->encrypted_secret);
  ASSERT_FALSE(secret.ok());
  EXPECT_EQ(secret.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(secret.status().message(),
              HasSubstr("activating berthd's credential with this TPM's AK and EK"));
}

TEST_F(ManufacturedTpmTest, CredentialForAnotherTpmsEkDoesNotActivate) {
  testing::Swtpm other(dir_.Join("other"), {.ek_ca_dir = dir_.Join("ca")});
  ASSERT_TRUE(other.ok()) << other.error();
  TPMT_PUBLIC other_ek;
  {
    auto t = Open(other);
    ASSERT_NE(t, nullptr);
    other_ek = EkPublic(*t);
  }
  auto tpm = Open(swtpm_);
  ASSERT_NE(tpm, nullptr);
  auto made = tpm::MakeCredential(other_ek, AkName(*tpm), RandomBytes(32));
  ASSERT_TRUE(made.ok());
  auto secret = tpm->ActivateCredential(made->credential_blob, made->encrypted_secret);
  ASSERT_FALSE(secret.ok());
  EXPECT_EQ(secret.status().code(), Code::kPermissionDenied);
}

TEST_F(ManufacturedTpmTest, TamperedBlobOrSecretDoesNotActivate) {
  auto tpm = Open(swtpm_);
  ASSERT_NE(tpm, nullptr);
  auto made = tpm::MakeCredential(EkPublic(*tpm), AkName(*tpm), RandomBytes(32));
  ASSERT_TRUE(made.ok());
  tpm::MadeCredential blob = *made, seed = *made;
  blob.credential_blob.back() ^= 0x01;  // encIdentity: the outer HMAC no longer matches
  seed.encrypted_secret.back() ^= 0x01;
  EXPECT_EQ(tpm->ActivateCredential(blob.credential_blob, blob.encrypted_secret).status().code(),
            Code::kPermissionDenied);
  EXPECT_EQ(tpm->ActivateCredential(seed.credential_blob, seed.encrypted_secret).status().code(),
            Code::kPermissionDenied);
  EXPECT_EQ(tpm->ActivateCredential(Bytes{0x00}, made->encrypted_secret).status().code(),
            Code::kInvalidArgument);
  // The genuine one still works.
  EXPECT_EQ(Activated(*tpm, *made).size(), 32u);
}

TEST_F(ManufacturedTpmTest, Tpm2ToolsMakeCredentialActivatesThroughTheAgent) {
  std::string ek_pub_path = dir_.Join("ek.pub"), secret_path = dir_.Join("secret.bin"),
              out_path = dir_.Join("cred.out");
  const Bytes secret = RandomBytes(32);
  std::string name_hex;
  {
    auto tpm = Open(swtpm_);
    ASSERT_NE(tpm, nullptr);
    TPM2B_PUBLIC ek{};
    ek.publicArea = EkPublic(*tpm);
    Bytes marshalled(sizeof ek);
    size_t offset = 0;
    ASSERT_EQ(Tss2_MU_TPM2B_PUBLIC_Marshal(&ek, marshalled.data(), marshalled.size(), &offset),
              TSS2_RC_SUCCESS);
    marshalled.resize(offset);
    testing::MustWrite(ek_pub_path, ToString(marshalled));
    name_hex = HexEncode(AkName(*tpm));
  }
  testing::MustWrite(secret_path, ToString(secret));
  RealProcessRunner runner;
  auto r = runner.Run({"/usr/bin/tpm2_makecredential", "--tcti", "none", "-u", ek_pub_path, "-s",
                       secret_path, "-n", name_hex, "-o", out_path});
  ASSERT_TRUE(r.ok() && r->success()) << (r.ok() ? r->output : r.status().ToString());
  // tpm2-tools' file: magic 0xBADCC0DE, version 1, TPM2B_ID_OBJECT, TPM2B_ENCRYPTED_SECRET.
  Bytes file = ToBytes(testing::MustRead(out_path));
  ASSERT_GT(file.size(), 8u);
  EXPECT_EQ(HexEncode(std::span<const uint8_t>(file).first(8)), "badcc0de00000001");
  std::span<const uint8_t> rest = std::span<const uint8_t>(file).subspan(8);
  const size_t blob_size = 2 + ((rest[0] << 8) | rest[1]);
  tpm::MadeCredential made;
  made.credential_blob.assign(rest.begin(), rest.begin() + blob_size);
  made.encrypted_secret.assign(rest.begin() + blob_size, rest.end());

  auto tpm = Open(swtpm_);
  ASSERT_NE(tpm, nullptr);
  EXPECT_EQ(Activated(*tpm, made), ToString(secret));
}

// A TPM without EK certificates: the agent's EK is the ECC P-256 template key, and the
// ECDH + KDFe path of MakeCredential must match the TPM's.
class PlainTpmTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(swtpm_.ok()) << swtpm_.error(); }
  testing::TempDir dir_;
  testing::Swtpm swtpm_{dir_.path()};
};

TEST_F(PlainTpmTest, WithoutACertificateTheEkIsTheEccP256TemplateKey) {
  auto tpm = Open(swtpm_);
  ASSERT_NE(tpm, nullptr);
  auto ek = tpm->EndorsementKey();
  ASSERT_TRUE(ek.ok()) << ek.status().ToString();
  EXPECT_TRUE(ek->ek_certificate.empty());
  auto pub = tpm::ParsePublic(ek->ek_public);
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(pub->type, TPM2_ALG_ECC);
  EXPECT_EQ(pub->parameters.eccDetail.curveID, TPM2_ECC_NIST_P256);
  EXPECT_EQ(pub->authPolicy.size, 32);
  EXPECT_TRUE(tpm::CheckEndorsementKey(*pub).ok());
}

TEST_F(PlainTpmTest, SoftwareMakeCredentialToTheEccEkActivatesInTheTpm) {
  auto tpm = Open(swtpm_);
  ASSERT_NE(tpm, nullptr);
  const TPMT_PUBLIC ek = EkPublic(*tpm);
  ASSERT_EQ(ek.type, TPM2_ALG_ECC);
  // Each run has a fresh ephemeral key; several runs cover coordinates of every length.
  for (int i = 0; i < 8; ++i) {
    const Bytes secret = RandomBytes(1 + i * 4);
    auto made = tpm::MakeCredential(ek, AkName(*tpm), secret);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    EXPECT_EQ(Activated(*tpm, *made), ToString(secret)) << "run " << i;
  }
}

TEST(MakeCredentialTest, RefusesKeysThatAreNotEndorsementKeysAndOversizedCredentials) {
  TPMT_PUBLIC signing = tpm::EkTemplateEccP256();
  signing.objectAttributes =
      (signing.objectAttributes & ~TPMA_OBJECT_DECRYPT) | TPMA_OBJECT_SIGN_ENCRYPT;
  auto made = tpm::MakeCredential(signing, Bytes(34, 1), Bytes(32, 2));
  EXPECT_EQ(made.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(made.status().message(), "the endorsement key lacks the decrypt attribute");

  TPMT_PUBLIC unrestricted = tpm::EkTemplateRsa2048();
  unrestricted.objectAttributes &= ~TPMA_OBJECT_RESTRICTED;
  EXPECT_EQ(tpm::CheckEndorsementKey(unrestricted).message(),
            "the endorsement key lacks the restricted attribute");

  auto too_long = tpm::MakeCredential(tpm::EkTemplateEccP256(), Bytes(34, 1), Bytes(33, 2));
  EXPECT_EQ(too_long.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(too_long.status().message(), "a credential must have 1 to 32 bytes");
}

}  // namespace
}  // namespace berth::agent
