// The etcd PKI: CSR checks (key type and size, CN, proof of possession), the certificates the
// etcd CA signs, and the CRL, checked with the openssl command line where an independent
// reading helps.
#include "common/etcd_pki.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/x509v3.h>

#include "agent/etcd_join.h"
#include "common/subprocess.h"
#include "tests/testing/testing.h"

namespace berth {
namespace {

using ::testing::HasSubstr;
using ::testing::UnorderedElementsAre;

Bytes Csr(EVP_PKEY* key, const std::string& cn) { return *agent::MakeCsr(key, cn); }

EvpPkeyPtr P256() { return std::move(GenerateP256Key()).value(); }

// A CSR with an extra subject attribute: O=evil, CN=<cn>.
Bytes CsrWithOrganization(EVP_PKEY* key, const std::string& cn) {
  X509_REQ* req = X509_REQ_new();
  X509_NAME* name = X509_REQ_get_subject_name(req);
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("evil"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_REQ_set_pubkey(req, key);
  X509_REQ_sign(req, key, EVP_sha256());
  unsigned char* der = nullptr;
  int n = i2d_X509_REQ(req, &der);
  Bytes out(der, der + n);
  OPENSSL_free(der);
  X509_REQ_free(req);
  return out;
}

TEST(CheckEtcdCsrTest, AcceptsP256WithTheNodeNameAndReturnsItsKey) {
  EvpPkeyPtr key = P256();
  auto checked = CheckEtcdCsr(Csr(key.get(), "cp-1"), "cp-1", "server");
  ASSERT_TRUE(checked.ok()) << checked.status().ToString();
  EXPECT_EQ(EVP_PKEY_eq(checked->get(), key.get()), 1);
}

TEST(CheckEtcdCsrTest, AcceptsRsa2048) {
  auto key = GenerateRsaKey(2048);
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE(CheckEtcdCsr(Csr(key->get(), "cp-1"), "cp-1", "peer").ok());
}

TEST(CheckEtcdCsrTest, RefusesAnotherCommonName) {
  EvpPkeyPtr key = P256();
  EXPECT_EQ(CheckEtcdCsr(Csr(key.get(), "cp-2"), "cp-1", "server").status().ToString(),
            "INVALID_ARGUMENT: etcd server CSR: CN \"cp-2\" is not the node name \"cp-1\"");
  EXPECT_EQ(
      CheckEtcdCsr(CsrWithOrganization(key.get(), "cp-1"), "cp-1", "peer").status().ToString(),
      "INVALID_ARGUMENT: etcd peer CSR: the subject must be exactly CN=cp-1");
}

TEST(CheckEtcdCsrTest, RefusesASmallRsaKey) {
  auto key = GenerateRsaKey(1024);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(CheckEtcdCsr(Csr(key->get(), "cp-1"), "cp-1", "server").status().ToString(),
            "INVALID_ARGUMENT: etcd server CSR: RSA key of 1024 bits is too small (at least 2048)");
}

TEST(CheckEtcdCsrTest, RefusesOtherCurves) {
  EvpPkeyPtr key(EVP_EC_gen("secp521r1"));
  ASSERT_NE(key, nullptr);
  EXPECT_EQ(CheckEtcdCsr(Csr(key.get(), "cp-1"), "cp-1", "server").status().ToString(),
            "INVALID_ARGUMENT: etcd server CSR: EC curve secp521r1 is not P-256 or P-384");
  EvpPkeyPtr ed(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
  ASSERT_NE(ed, nullptr);
  X509_REQ* req = X509_REQ_new();
  X509_NAME_add_entry_by_txt(X509_REQ_get_subject_name(req), "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("cp-1"), -1, -1, 0);
  X509_REQ_set_pubkey(req, ed.get());
  X509_REQ_sign(req, ed.get(), nullptr);
  unsigned char* der = nullptr;
  int n = i2d_X509_REQ(req, &der);
  Bytes csr(der, der + n);
  OPENSSL_free(der);
  X509_REQ_free(req);
  EXPECT_EQ(CheckEtcdCsr(csr, "cp-1", "server").status().ToString(),
            "INVALID_ARGUMENT: etcd server CSR: key type ED25519 is not EC (P-256, P-384) or RSA");
}

TEST(CheckEtcdCsrTest, RefusesABadSignature) {
  EvpPkeyPtr key = P256();
  Bytes csr = Csr(key.get(), "cp-1");
  csr[csr.size() - 5] ^= 0x01;  // inside the signature BIT STRING
  EXPECT_EQ(
      CheckEtcdCsr(csr, "cp-1", "server").status().ToString(),
      "INVALID_ARGUMENT: etcd server CSR: its signature does not verify with the EC P-256 key "
      "it carries");
}

TEST(CheckEtcdCsrTest, RefusesGarbageTrailingDataAndNothing) {
  EvpPkeyPtr key = P256();
  Bytes csr = Csr(key.get(), "cp-1");
  csr.push_back(0);
  EXPECT_EQ(CheckEtcdCsr(csr, "cp-1", "server").status().ToString(),
            "INVALID_ARGUMENT: etcd server CSR: trailing data after the request");
  EXPECT_EQ(CheckEtcdCsr({}, "cp-1", "peer").status().ToString(),
            "INVALID_ARGUMENT: etcd peer CSR is missing");
  EXPECT_THAT(CheckEtcdCsr(ToBytes("not a csr"), "cp-1", "peer").status().ToString(),
              HasSubstr("INVALID_ARGUMENT: etcd peer CSR: not a DER PKCS#10 request"));
}

class EtcdCaTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_key_ = P256();
    auto ca =
        IssueCert({.common_name = "etcd-ca", .is_ca = true, .validity = std::chrono::hours(48)},
                  ca_key_.get(), nullptr, ca_key_.get());
    ASSERT_TRUE(ca.ok());
    ca_pem_ = *CertToPem(ca->get());
    ca_path_ = dir_.Join("ca.crt");
    key_path_ = dir_.Join("ca.key");
    berth::testing::MustWrite(ca_path_, ca_pem_);
    berth::testing::MustWrite(key_path_, std::string((*PrivateKeyToPem(ca_key_.get())).view()),
                              0600);
    auto loaded = EtcdCa::Load(ca_path_, key_path_, std::chrono::hours(24 * 365));
    ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
    ca_ = std::move(*loaded);
  }

  // `openssl <args>` in the test directory; returns its output, fails the test on error.
  std::string OpenSsl(const std::string& args) {
    RealProcessRunner runner;
    auto r = runner.Run({"/bin/sh", "-c", "cd " + dir_.path() + " && openssl " + args});
    EXPECT_TRUE(r.ok() && r->success()) << args << ": " << (r.ok() ? r->output : "");
    return r.ok() ? r->output : "";
  }

  berth::testing::TempDir dir_;
  EvpPkeyPtr ca_key_;
  std::string ca_pem_, ca_path_, key_path_;
  std::unique_ptr<EtcdCa> ca_;
};

TEST_F(EtcdCaTest, SignsServerAndPeerCertificatesEtcdAccepts) {
  EvpPkeyPtr key = P256();
  auto issued =
      ca_->Issue("peer", key.get(), "cp-1", {"10.0.0.7", "cp-1.example", "fd00::7"}, 1'800'000'000);
  ASSERT_TRUE(issued.ok()) << issued.status().ToString();
  berth::testing::MustWrite(dir_.Join("peer.crt"), issued->pem);
  // openssl verifies the chain for both purposes etcd uses the certificate for.
  EXPECT_THAT(OpenSsl("verify -CAfile ca.crt -purpose sslserver peer.crt"),
              HasSubstr("peer.crt: OK"));
  EXPECT_THAT(OpenSsl("verify -CAfile ca.crt -purpose sslclient peer.crt"),
              HasSubstr("peer.crt: OK"));
  std::string text = OpenSsl("x509 -in peer.crt -noout -text");
  EXPECT_THAT(text, HasSubstr("Subject: CN = cp-1"));
  EXPECT_THAT(text, HasSubstr("TLS Web Server Authentication, TLS Web Client Authentication"));
  EXPECT_THAT(text, HasSubstr("DNS:cp-1, DNS:cp-1.example, DNS:localhost, IP Address:10.0.0.7, "
                              "IP Address:FD00:0:0:0:0:0:0:7, IP Address:127.0.0.1, "
                              "IP Address:0:0:0:0:0:0:0:1"));
  EXPECT_THAT(text, HasSubstr("CA:FALSE"));
  // The log entry describes the certificate.
  auto cert = CertFromPem(issued->pem);
  EXPECT_EQ(issued->log.serial(), SerialHex(cert->get()));
  EXPECT_EQ(issued->log.node(), "cp-1");
  EXPECT_EQ(issued->log.kind(), "peer");
  EXPECT_EQ(issued->log.issued_unix(), 1'800'000'000);
  EXPECT_NEAR(issued->log.not_after_unix() - issued->log.not_before_unix(), 365 * 24 * 3600 + 300,
              2);
  EXPECT_EQ(issued->log.spki_sha256(), HexEncode(*CertSpkiSha256(cert->get())));
}

TEST_F(EtcdCaTest, RefusesAddressesThatAreNeitherIpNorName) {
  EvpPkeyPtr key = P256();
  EXPECT_EQ(
      ca_->Issue("server", key.get(), "cp-1", {"10.0.0.7", "bad address!"}, 0).status().ToString(),
      "INVALID_ARGUMENT: node address \"bad address!\" is neither an IP address nor a DNS name");
  std::vector<std::string> many(17, "10.0.0.1");
  EXPECT_EQ(ca_->Issue("server", key.get(), "cp-1", many, 0).status().code(),
            Code::kInvalidArgument);
}

TEST_F(EtcdCaTest, CrlListsRevokedSerialsAndVerifiesWithTheCa) {
  EvpPkeyPtr key = P256();
  auto a = ca_->Issue("server", key.get(), "cp-1", {}, 0);
  auto b = ca_->Issue("peer", key.get(), "cp-1", {}, 0);
  ASSERT_TRUE(a.ok() && b.ok());
  v1::EtcdRevokedCertificate ra, rb;
  ra.set_serial(a->log.serial());
  ra.set_revoked_unix(1'800'000'000);
  rb.set_serial(b->log.serial());
  rb.set_revoked_unix(1'800'000'100);
  auto crl = ca_->MakeCrl({ra, rb}, 1'800'000'200, 42);
  ASSERT_TRUE(crl.ok()) << crl.status().ToString();
  berth::testing::MustWrite(dir_.Join("crl.pem"), *crl);
  EXPECT_THAT(OpenSsl("crl -in crl.pem -CAfile ca.crt -noout 2>&1"), HasSubstr("verify OK"));
  std::string text = OpenSsl("crl -in crl.pem -noout -text");
  auto upper = [](std::string s) {
    for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return s;
  };
  EXPECT_THAT(text, HasSubstr("Serial Number: " + upper(a->log.serial())));
  EXPECT_THAT(text, HasSubstr("Serial Number: " + upper(b->log.serial())));
  EXPECT_THAT(text, HasSubstr("X509v3 CRL Number: \n                42"));
  EXPECT_THAT(text, HasSubstr("Last Update: Jan 15 08:03:20 2027 GMT"));
  // A revoked certificate fails verification against the CRL; openssl says why.
  berth::testing::MustWrite(dir_.Join("a.crt"), a->pem);
  RealProcessRunner runner;
  auto v = runner.Run({"/bin/sh", "-c",
                       "cd " + dir_.path() +
                           " && openssl verify -crl_check -CAfile ca.crt "
                           "-CRLfile crl.pem a.crt 2>&1"});
  ASSERT_TRUE(v.ok());
  EXPECT_THAT(v->output, HasSubstr("certificate revoked"));

  auto empty = ca_->MakeCrl({}, 1'800'000'200, 0);
  ASSERT_TRUE(empty.ok());
  berth::testing::MustWrite(dir_.Join("empty.pem"), *empty);
  EXPECT_THAT(OpenSsl("crl -in empty.pem -noout -text"), HasSubstr("No Revoked Certificates."));
  v1::EtcdRevokedCertificate bad;
  bad.set_serial("zz");
  EXPECT_EQ(ca_->MakeCrl({bad}, 0, 1).status().code(), Code::kDataLoss);
}

TEST_F(EtcdCaTest, LoadRefusesANonCaOrAMismatchedKey) {
  EvpPkeyPtr leaf_key = P256();
  auto leaf = IssueCert({.common_name = "leaf"}, leaf_key.get(), nullptr, leaf_key.get());
  berth::testing::MustWrite(dir_.Join("leaf.crt"), *CertToPem(leaf->get()));
  berth::testing::MustWrite(dir_.Join("leaf.key"),
                            std::string((*PrivateKeyToPem(leaf_key.get())).view()), 0600);
  EXPECT_EQ(EtcdCa::Load(dir_.Join("leaf.crt"), dir_.Join("leaf.key"), std::chrono::hours(1))
                .status()
                .ToString(),
            "INVALID_ARGUMENT: etcd CA " + dir_.Join("leaf.crt") + ", " + dir_.Join("leaf.key") +
                ": the certificate is not a CA certificate");
  EXPECT_THAT(
      EtcdCa::Load(ca_path_, dir_.Join("leaf.key"), std::chrono::hours(1)).status().ToString(),
      HasSubstr("the key is not the CA certificate's key"));
  EXPECT_EQ(EtcdCa::Load(ca_path_, dir_.Join("missing.key"), std::chrono::hours(1)).status().code(),
            Code::kNotFound);
}

}  // namespace
}  // namespace berth
