#include "common/time.h"
#include "server/join/bootstrap_token.h"
#include "tests/fakes/fake_clock.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>

namespace berth::server {
namespace {

TEST(BootstrapTokenTest, GeneratedTokensHaveKubeadmsFormat) {
  const std::regex id("^[a-z0-9]{6}$"), secret("^[a-z0-9]{16}$");
  std::set<std::string> ids;
  for (int i = 0; i < 200; ++i) {
    BootstrapToken t = GenerateBootstrapToken(100);
    EXPECT_TRUE(std::regex_match(t.id, id));
    EXPECT_TRUE(std::regex_match(std::string(t.secret.view()), secret));
    EXPECT_TRUE(IsValidTokenId(t.id));
    EXPECT_TRUE(IsValidTokenSecret(t.secret.view()));
    EXPECT_EQ(std::string(t.Joined().view()), t.id + "." + std::string(t.secret.view()));
    ids.insert(t.id);
  }
  EXPECT_GT(ids.size(), 195u);  // 36^6 ids: collisions among 200 are vanishingly rare
}

TEST(BootstrapTokenTest, ValidatorsRejectOtherShapes) {
  EXPECT_FALSE(IsValidTokenId("abc12"));
  EXPECT_FALSE(IsValidTokenId("ABC123"));
  EXPECT_FALSE(IsValidTokenId("abc-12"));
  EXPECT_FALSE(IsValidTokenSecret("0123456789abcdeF"));
  EXPECT_FALSE(IsValidTokenSecret("0123456789abcde"));
  EXPECT_TRUE(IsValidTokenSecret("0123456789abcdef"));
}

TEST(BootstrapTokenTest, SecretJsonIsWhatKubeApiserverExpects) {
  BootstrapToken t;
  t.id = "abc123";
  std::string s = "0123456789abcdef";
  t.secret = SecretBytes::TakeFrom(s);
  t.expires_unix = 1'795'000'000;
  auto j = nlohmann::json::parse(BootstrapTokenSecretJson(t, "node-1"));
  const nlohmann::json want = {
      {"apiVersion", "v1"},
      {"kind", "Secret"},
      {"metadata",
       {{"name", "bootstrap-token-abc123"},
        {"namespace", "kube-system"},
        {"labels", {{"app.kubernetes.io/managed-by", "berth"}, {"berth.dev/node", "node-1"}}}}},
      {"type", "bootstrap.kubernetes.io/token"},
      {"stringData",
       {{"description", "berth: attested join of node node-1"},
        {"token-id", "abc123"},
        {"token-secret", "0123456789abcdef"},
        {"expiration", "2026-11-18T11:06:40Z"},
        {"usage-bootstrap-authentication", "true"},
        {"usage-bootstrap-signing", "true"},
        {"auth-extra-groups", "system:bootstrappers:kubeadm:default-node-token"}}}};
  EXPECT_EQ(j, want);
}

// A Kubernetes API that answers from a script and records what it was sent.
class ScriptedKube : public KubeClient {
 public:
  std::vector<Result<HttpResponse>> answers;
  std::vector<std::string> paths, methods;
  std::vector<nlohmann::json> bodies;
  Result<HttpResponse> Request(const std::string& method, const std::string& path,
                               const std::string& body) override {
    methods.push_back(method);
    paths.push_back(path);
    bodies.push_back(nlohmann::json::parse(body));
    Result<HttpResponse> a = std::move(answers.front());
    answers.erase(answers.begin());
    return a;
  }
};

TEST(KubeTokenIssuerTest, CreatesTheSecretAndRetriesOnIdCollision) {
  FakeClock clock(1'795'000'000);
  ScriptedKube kube;
  kube.answers.push_back(HttpResponse{409, R"({"kind":"Status","message":"exists"})"});
  kube.answers.push_back(HttpResponse{201, "{}"});
  KubeTokenIssuer issuer(&kube, &clock, std::chrono::seconds(900));
  auto token = issuer.Issue("node-1");
  ASSERT_TRUE(token.ok()) << token.status().ToString();
  ASSERT_EQ(kube.paths.size(), 2u);
  EXPECT_EQ(kube.methods[1], "POST");
  EXPECT_EQ(kube.paths[1], "/api/v1/namespaces/kube-system/secrets");
  EXPECT_NE(kube.bodies[0]["stringData"]["token-id"], kube.bodies[1]["stringData"]["token-id"]);
  EXPECT_EQ(kube.bodies[1]["stringData"]["token-id"], token->id);
  EXPECT_EQ(kube.bodies[1]["stringData"]["token-secret"], std::string(token->secret.view()));
  EXPECT_EQ(kube.bodies[1]["stringData"]["expiration"], "2026-11-18T11:21:40Z");
  EXPECT_EQ(token->expires_unix, 1'795'000'900);
}

TEST(KubeTokenIssuerTest, ApiErrorsAreUnavailableWithTheStatusMessage) {
  FakeClock clock(1'795'000'000);
  ScriptedKube kube;
  kube.answers.push_back(HttpResponse{
      403,
      R"({"kind":"Status","apiVersion":"v1","status":"Failure","message":"secrets is forbidden: User \"x\" cannot create","reason":"Forbidden","code":403})"});
  KubeTokenIssuer issuer(&kube, &clock, std::chrono::seconds(900));
  auto token = issuer.Issue("node-1");
  ASSERT_FALSE(token.ok());
  EXPECT_EQ(token.status().code(), Code::kUnavailable);
  EXPECT_EQ(token.status().message(),
            "creating bootstrap token: Kubernetes API answered 403: secrets is forbidden: User "
            "\"x\" cannot create");
}

TEST(KubeTokenIssuerTest, TransportErrorPassesThrough) {
  FakeClock clock(1'795'000'000);
  ScriptedKube kube;
  kube.answers.push_back(Unavailable("Kubernetes API https://127.0.0.1:1: Connection refused"));
  KubeTokenIssuer issuer(&kube, &clock, std::chrono::seconds(900));
  auto token = issuer.Issue("node-1");
  EXPECT_EQ(token.status().ToString(),
            "UNAVAILABLE: creating bootstrap token: Kubernetes API https://127.0.0.1:1: Connection "
            "refused");
}

}  // namespace
}  // namespace berth::server
