// berthd's flags that share its own keys with control planes (--join-ca-key,
// docs/cluster-lifecycle.md): a configuration that would hand out a key nodes do not trust is
// refused at start, naming the problem, before berthd connects to anything.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/crypto.h"
#include "common/subprocess.h"
#include "tests/testing/testing.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

template <typename T>
T Must(Result<T> r) {
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return std::move(*r);
}

struct Ca {
  EvpPkeyPtr key;
  X509Ptr cert;
};
Ca MakeCa(const std::string& name) {
  Ca ca{.key = Must(GenerateP256Key())};
  ca.cert = Must(IssueCert({.common_name = name, .is_ca = true, .validity = std::chrono::hours(24)},
                           ca.key.get(), nullptr, ca.key.get()));
  return ca;
}
std::string KeyPem(EVP_PKEY* key) { return std::string(PrivateKeyToPem(key)->view()); }

class BerthdFlagsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // berthd's TLS certificate, from the join CA.
    Ca join = MakeCa("berth join CA test");
    EvpPkeyPtr tls_key = Must(GenerateP256Key());
    X509Ptr tls = Must(IssueCert(
        {.common_name = "cp-1", .server_auth = true, .validity = std::chrono::hours(24)},
        tls_key.get(), join.cert.get(), join.key.get()));
    MustWrite(dir_.Join("tls.pem"), *CertToPem(tls.get()));
    MustWrite(dir_.Join("tls.key"), KeyPem(tls_key.get()), 0600);
    MustWrite(dir_.Join("join-ca.key"), KeyPem(join.key.get()), 0600);
    Ca other = MakeCa("another CA");
    MustWrite(dir_.Join("other-ca.key"), KeyPem(other.key.get()), 0600);
    MustWrite(dir_.Join("etcd-ca.key"), KeyPem(MakeCa("etcd").key.get()), 0600);
    MustWrite(dir_.Join("master.secret"), std::string(32, 'm'), 0600);
    MustWrite(dir_.Join("policy.yaml"), "tpm:\n  trusted_aks:\n    - name: cp-1\n      sha256: " +
                                            std::string(64, 'a') + "\n  pcrs:\n    sha256:\n"
                                            "      0: " + std::string(64, 'b') + "\n");
  }

  ProcessResult Berthd(const std::vector<std::string>& extra) {
    std::vector<std::string> argv = {
        BuildDir() + "/server/berthd", "--tls-cert", dir_.Join("tls.pem"), "--tls-key",
        dir_.Join("tls.key"), "--policy", dir_.Join("policy.yaml"), "--master-secret-file",
        dir_.Join("master.secret"), "--cluster-id", "c", "--api-server-endpoint",
        "127.0.0.1:6443", "--kubeconfig", dir_.Join("absent-kubeconfig"), "--etcd-endpoints",
        "https://127.0.0.1:1", "--etcd-ca-cert", dir_.Join("absent-etcd-ca.pem"),
        "--control-plane-pki", dir_.Join("pki")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto r = RealProcessRunner().Run(argv);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : ProcessResult{.exit_code = -1};
  }

  TempDir dir_;
};

TEST_F(BerthdFlagsTest, AJoinCaKeyThatDidNotSignBerthdsCertificateIsRefusedAtStart) {
  ProcessResult r = Berthd({"--join-ca-key", dir_.Join("other-ca.key"), "--etcd-ca-key",
                            dir_.Join("etcd-ca.key")});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, HasSubstr("--join-ca-key " + dir_.Join("other-ca.key") +
                                  " did not sign --tls-cert " + dir_.Join("tls.pem")));
  EXPECT_THAT(r.output, Not(HasSubstr("PRIVATE KEY")));
}

TEST_F(BerthdFlagsTest, AJoinCaKeyWithoutTheEtcdCaOrTheControlPlanePkiIsRefused) {
  ProcessResult no_etcd = Berthd({"--join-ca-key", dir_.Join("join-ca.key")});
  EXPECT_EQ(no_etcd.exit_code, 1) << no_etcd.output;
  EXPECT_THAT(no_etcd.output, HasSubstr("--join-ca-key: control planes that serve joins need the "
                                        "etcd CA (--etcd-ca-cert, --etcd-ca-key), which is not "
                                        "given"));
  std::vector<std::string> argv = {BuildDir() + "/server/berthd", "--tls-cert",
                                   dir_.Join("tls.pem"), "--tls-key", dir_.Join("tls.key"),
                                   "--policy", dir_.Join("policy.yaml"), "--master-secret-file",
                                   dir_.Join("master.secret"), "--cluster-id", "c",
                                   "--api-server-endpoint", "127.0.0.1:6443", "--join-ca-key",
                                   dir_.Join("join-ca.key")};
  auto no_pki = RealProcessRunner().Run(argv);
  ASSERT_TRUE(no_pki.ok());
  EXPECT_EQ(no_pki->exit_code, 1) << no_pki->output;
  EXPECT_THAT(no_pki->output, HasSubstr("--join-ca-key is shared with control planes with "
                                        "--control-plane-pki, which is not given"));
}

// The cluster's control plane endpoint goes to control planes with the cluster keys: a
// malformed one, or one without --control-plane-pki, is refused before berthd serves.
TEST_F(BerthdFlagsTest, AControlPlaneEndpointMustBeHostPortAndGoWithTheControlPlanePki) {
  ProcessResult bad = Berthd({"--control-plane-endpoint", "lb.example"});
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_THAT(bad.output, HasSubstr("--control-plane-endpoint: control plane endpoint "
                                    "\"lb.example\" is not host:port (a name, an IPv4 address "
                                    "or a bracketed IPv6)"));
  std::vector<std::string> argv = {BuildDir() + "/server/berthd",
                                   "--tls-cert",
                                   dir_.Join("tls.pem"),
                                   "--tls-key",
                                   dir_.Join("tls.key"),
                                   "--policy",
                                   dir_.Join("policy.yaml"),
                                   "--master-secret-file",
                                   dir_.Join("master.secret"),
                                   "--cluster-id",
                                   "c",
                                   "--api-server-endpoint",
                                   "lb.example:6443",
                                   "--control-plane-endpoint",
                                   "lb.example:6443"};
  auto no_pki = RealProcessRunner().Run(argv);
  ASSERT_TRUE(no_pki.ok());
  EXPECT_EQ(no_pki->exit_code, 1) << no_pki->output;
  EXPECT_THAT(no_pki->output, HasSubstr("--control-plane-endpoint is handed to control planes "
                                        "with --control-plane-pki, which is not given"));
  // A good one passes the check: berthd goes on to what it reads next (the absent kubeconfig).
  ProcessResult good = Berthd({"--control-plane-endpoint", "lb.example:6443"});
  EXPECT_EQ(good.exit_code, 1) << good.output;
  EXPECT_THAT(good.output, HasSubstr(dir_.Join("absent-kubeconfig")));
}

// With the key that signed its certificate, the check passes and berthd goes on to what it
// reads next (here a kubeconfig that does not exist, which it names).
TEST_F(BerthdFlagsTest, TheJoinCaKeyThatSignedBerthdsCertificatePassesTheCheck) {
  ProcessResult r = Berthd({"--join-ca-key", dir_.Join("join-ca.key"), "--etcd-ca-key",
                            dir_.Join("etcd-ca.key")});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_THAT(r.output, Not(HasSubstr("--join-ca-key")));
  EXPECT_THAT(r.output, HasSubstr(dir_.Join("absent-kubeconfig")));
}

}  // namespace
}  // namespace berth::testing
