#include "server/cloud/kube_client.h"

#include <gtest/gtest.h>

#include <cstdlib>

#include "tests/testing/testing.h"

namespace berth::server {
namespace {

using testing::MustWrite;
using testing::TempDir;

std::string Kubeconfig(const std::string& cluster_extra, const std::string& user) {
  return "apiVersion: v1\nkind: Config\ncurrent-context: admin@c\n"
         "clusters:\n- name: other\n  cluster:\n    server: https://10.9.9.9:6443\n"
         "- name: c\n  cluster:\n    server: https://127.0.0.1:6443/\n" + cluster_extra +
         "contexts:\n- name: admin@c\n  context:\n    cluster: c\n    user: admin\n"
         "users:\n- name: admin\n  user:\n" + user;
}

TEST(KubeconfigTest, TokenAndCaData) {
  TempDir dir;
  // base64("CA PEM") = Q0EgUEVN; base64 of a token is not used: tokens are plain.
  MustWrite(dir.Join("kc"), Kubeconfig("    certificate-authority-data: Q0EgUEVN\n",
                                       "    token: abc.def\n"));
  auto c = LoadKubeconfig(dir.Join("kc"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://127.0.0.1:6443");
  EXPECT_EQ(c->ca_pem, "CA PEM");
  EXPECT_EQ(std::string(c->token.view()), "abc.def");
  EXPECT_TRUE(c->client_cert_pem.empty());
}

TEST(KubeconfigTest, RelativeFilesResolveAgainstTheKubeconfigDirectory) {
  TempDir dir;
  MustWrite(dir.Join("ca.crt"), "CA");
  MustWrite(dir.Join("client.crt"), "CERT");
  MustWrite(dir.Join("client.key"), "KEY", 0600);
  MustWrite(dir.Join("kc"), Kubeconfig("    certificate-authority: ca.crt\n",
                                       "    client-certificate: client.crt\n"
                                       "    client-key: " + dir.Join("client.key") + "\n"));
  auto c = LoadKubeconfig(dir.Join("kc"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->ca_pem, "CA");
  EXPECT_EQ(c->client_cert_pem, "CERT");
  EXPECT_EQ(std::string(c->client_key_pem.view()), "KEY");
  EXPECT_TRUE(c->token.empty());
}

TEST(KubeconfigTest, TokenFileIsTrimmed) {
  TempDir dir;
  MustWrite(dir.Join("token"), "sekret\n", 0600);
  MustWrite(dir.Join("kc"), Kubeconfig("", "    tokenFile: token\n"));
  auto c = LoadKubeconfig(dir.Join("kc"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(std::string(c->token.view()), "sekret");
}

TEST(KubeconfigTest, ProblemsAreNamed) {
  TempDir dir;
  struct Case {
    std::string text, message;
  };
  const std::vector<Case> cases = {
      {Kubeconfig("", ""), "the user has neither a token nor a client certificate"},
      {Kubeconfig("", "    client-certificate-data: Q0EgUEVN\n"),
       "client certificate and client key must come together"},
      {Kubeconfig("    certificate-authority-data: [\n", "    token: t\n"), "YAML error"},
      {Kubeconfig("    certificate-authority-data: Q0E\n", "    token: t\n"),
       "cluster.certificate-authority-data: not valid base64"},
      {Kubeconfig("    certificate-authority: missing.crt\n", "    token: t\n"),
       "cluster.certificate-authority: open(" + dir.path() + "/missing.crt)"},
      {"current-context: nope\ncontexts: []\n", "current-context \"nope\" not found"},
      {"- a\n", "not a kubeconfig"},
  };
  for (const auto& c : cases) {
    MustWrite(dir.Join("kc"), c.text);
    auto r = LoadKubeconfig(dir.Join("kc"));
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.message), std::string::npos)
        << "got: " << r.status().message() << "\nwant: " << c.message;
  }
  auto missing = LoadKubeconfig(dir.Join("absent"));
  EXPECT_EQ(missing.status().code(), Code::kNotFound);
}

TEST(KubeconfigTest, PlainHttpServerIsRefused) {
  TempDir dir;
  std::string text = Kubeconfig("", "    token: t\n");
  text.replace(text.find("https://127.0.0.1"), 8, "http://");
  MustWrite(dir.Join("kc"), text);
  auto r = LoadKubeconfig(dir.Join("kc"));
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
}

TEST(InClusterTest, ReadsTheServiceAccountUnderRoot) {
  TempDir root;
  ASSERT_TRUE(MakeDirs(root.Join("var/run/secrets/kubernetes.io/serviceaccount")).ok());
  MustWrite(root.Join("var/run/secrets/kubernetes.io/serviceaccount/token"), "sa-token", 0600);
  MustWrite(root.Join("var/run/secrets/kubernetes.io/serviceaccount/ca.crt"), "SA CA");
  setenv("KUBERNETES_SERVICE_HOST", "fd00::1", 1);
  setenv("KUBERNETES_SERVICE_PORT", "443", 1);
  auto c = LoadInClusterCredentials(root.path());
  unsetenv("KUBERNETES_SERVICE_HOST");
  unsetenv("KUBERNETES_SERVICE_PORT");
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_EQ(c->server, "https://[fd00::1]:443");
  EXPECT_EQ(std::string(c->token.view()), "sa-token");
  EXPECT_EQ(c->ca_pem, "SA CA");
  EXPECT_EQ(LoadInClusterCredentials(root.path()).status().code(), Code::kFailedPrecondition);
}

TEST(CurlKubeClientTest, UnreachableServerIsUnavailable) {
  KubeCredentials creds;
  creds.server = "https://127.0.0.1:" + std::to_string(testing::UnusedPort());
  std::string t = "t";
  creds.token = SecretBytes::TakeFrom(t);
  auto client = MakeCurlKubeClient(std::move(creds), 2000);
  auto r = client->Request("GET", "/version", "");
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("Kubernetes API https://127.0.0.1:"), std::string::npos);
}

TEST(KubeErrorMessageTest, StatusBodyOrRaw) {
  EXPECT_EQ(
      KubeErrorMessage({409, R"({"kind":"Status","message":"secrets \"x\" already exists"})"}),
      "secrets \"x\" already exists");
  EXPECT_EQ(KubeErrorMessage({502, "bad gateway"}), "HTTP 502: bad gateway");
}

}  // namespace
}  // namespace berth::server
