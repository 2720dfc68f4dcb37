// kubeadm's file discovery (berthd --discovery file): the kubeconfig built from the
// cluster-info ConfigMap (in the format kubeadm's bootstrap-token phase publishes) and the
// node's bootstrap token, pinned to berthd's Kubernetes CA, and accepted by the agent's ticket
// check.
#include "server/join/discovery.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include "agent/kubeadm.h"
#include "common/crypto.h"
#include "server/join/join_logic.h"
#include "tests/fakes/fake_clock.h"

namespace berth::server {
namespace {

using ::testing::HasSubstr;

std::string B64(const std::string& in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

std::string NewCaPem() {
  auto key = GenerateP256Key();
  auto cert =
      IssueCert({.common_name = "kubernetes", .is_ca = true}, key->get(), nullptr, key->get());
  return *CertToPem(cert->get());
}

// The ConfigMap as `kubectl get -n kube-public configmap cluster-info -o json` shows it.
std::string ClusterInfoJson(const std::string& ca_pem, const std::string& server) {
  const std::string kubeconfig =
      "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: " + B64(ca_pem) +
      "\n    server: " + server +
      "\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\n"
      "kind: Config\npreferences: {}\nusers: null\n";
  return nlohmann::json{{"apiVersion", "v1"},
                        {"kind", "ConfigMap"},
                        {"metadata", {{"name", "cluster-info"}, {"namespace", "kube-public"}}},
                        {"data", {{"kubeconfig", kubeconfig}}}}
      .dump();
}

class FakeKube : public KubeClient {
 public:
  Result<HttpResponse> Request(const std::string& method, const std::string& path,
                               const std::string&) override {
    requests.push_back(method + " " + path);
    return HttpResponse{status, body};
  }
  long status = 200;
  std::string body;
  std::vector<std::string> requests;
};

TEST(DiscoveryTest, KubeconfigCarriesTheClusterInfoClusterAndTheNodesToken) {
  const std::string ca = NewCaPem();
  auto info = ParseClusterInfoConfigMap(ClusterInfoJson(ca, "https://10.0.0.10:6443"));
  ASSERT_TRUE(info.ok()) << info.status().ToString();
  EXPECT_EQ(info->server, "https://10.0.0.10:6443");
  EXPECT_EQ(info->ca_pem, ca);

  std::string token_text = "abcdef.0123456789abcdef";
  SecretBytes token = SecretBytes::TakeFrom(token_text);
  SecretBytes kc = RenderDiscoveryKubeconfig(*info, token);
  YAML::Node y = YAML::Load(std::string(kc.view()));
  EXPECT_EQ(y["kind"].as<std::string>(), "Config");
  EXPECT_EQ(y["clusters"][0]["cluster"]["server"].as<std::string>(), "https://10.0.0.10:6443");
  EXPECT_EQ(y["clusters"][0]["cluster"]["certificate-authority-data"].as<std::string>(), B64(ca));
  EXPECT_EQ(y["users"][0]["user"]["token"].as<std::string>(), "abcdef.0123456789abcdef");
  EXPECT_EQ(y["current-context"].as<std::string>(), y["contexts"][0]["name"].as<std::string>());

  // The agent accepts it in a ticket with the same token, and only then.
  v1::JoinTicket ticket;
  ticket.mutable_kubeadm()->set_api_server_endpoint("10.0.0.10:6443");
  ticket.mutable_kubeadm()->set_token("abcdef.0123456789abcdef");
  ticket.mutable_kubeadm()->add_ca_cert_hashes("sha256:" + std::string(64, 'a'));
  ticket.set_discovery_kubeconfig(std::string(kc.view()));
  EXPECT_TRUE(agent::ValidateJoinTicket(ticket, false).ok());
  ticket.mutable_kubeadm()->set_token("zzzzzz.0123456789abcdef");
  EXPECT_EQ(agent::ValidateJoinTicket(ticket, false).code(), Code::kInvalidArgument);
}

TEST(DiscoveryTest, MalformedClusterInfoIsNamed) {
  const std::string ca = NewCaPem();
  EXPECT_EQ(ParseClusterInfoConfigMap("{}").status().message(), "cluster-info: not a ConfigMap");
  EXPECT_EQ(ParseClusterInfoConfigMap(R"({"kind":"ConfigMap","data":{}})").status().message(),
            "cluster-info: the ConfigMap has no data.kubeconfig");
  EXPECT_EQ(
      ParseClusterInfoConfigMap(ClusterInfoJson(ca, "http://10.0.0.10:6443")).status().message(),
      "cluster-info: server http://10.0.0.10:6443 is not https://");
  EXPECT_EQ(
      ParseClusterInfoConfigMap(ClusterInfoJson("not a cert", "https://a:6443")).status().message(),
      "cluster-info: certificate-authority-data holds no certificate");
}

TEST(DiscoveryTest, OnlyTheCaBerthdPinsIsHandedOutAndClusterInfoIsCached) {
  const std::string ca = NewCaPem();
  auto hashes = KubeadmCaCertHashes(ca);
  ASSERT_TRUE(hashes.ok());
  FakeKube kube;
  kube.body = ClusterInfoJson(ca, "https://10.0.0.10:6443");
  FakeClock clock(1'800'000'000);
  DiscoveryKubeconfigs discovery(&kube, *hashes, &clock, std::chrono::seconds(60));
  std::string t1 = "abcdef.0123456789abcdef";
  SecretBytes token = SecretBytes::TakeFrom(t1);
  ASSERT_TRUE(discovery.Build("w1", token).ok());
  ASSERT_TRUE(discovery.Build("w2", token).ok());
  EXPECT_EQ(kube.requests.size(), 1u);
  EXPECT_EQ(kube.requests[0], "GET /api/v1/namespaces/kube-public/configmaps/cluster-info");

  // cluster-info replaced by one announcing another CA: refused once the cache expires.
  kube.body = ClusterInfoJson(NewCaPem(), "https://10.0.0.10:6443");
  clock.Advance(std::chrono::seconds(60));
  auto other = discovery.Build("w3", token);
  EXPECT_EQ(other.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(other.status().message(), HasSubstr("that is not berthd's Kubernetes CA"));
  kube.status = 404;
  kube.body = R"({"kind":"Status","message":"configmaps \"cluster-info\" not found"})";
  EXPECT_EQ(discovery.Build("w3", token).status().code(), Code::kUnavailable);
}

}  // namespace
}  // namespace berth::server
