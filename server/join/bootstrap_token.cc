#include "server/join/bootstrap_token.h"

#include <ctime>
#include <nlohmann/json.hpp>

#include "common/crypto.h"
#include "common/time.h"

namespace berth::server {

namespace {

constexpr std::string_view kTokenAlphabet = "abcdefghijklmnopqrstuvwxyz0123456789";

bool AllOf(std::string_view s, size_t size) {
  if (s.size() != size) return false;
  for (char c : s) {
    if (kTokenAlphabet.find(c) == std::string_view::npos) return false;
  }
  return true;
}

}  // namespace

SecretBytes BootstrapToken::Joined() const {
  SecretBytes out(id.size() + 1 + secret.size());
  std::memcpy(out.data(), id.data(), id.size());
  out.data()[id.size()] = '.';
  std::memcpy(out.data() + id.size() + 1, secret.data(), secret.size());
  return out;
}

BootstrapToken GenerateBootstrapToken(int64_t expires_unix) {
  BootstrapToken token;
  token.id = RandomString(6, kTokenAlphabet);
  std::string secret = RandomString(16, kTokenAlphabet);
  token.secret = SecretBytes::TakeFrom(secret);
  token.expires_unix = expires_unix;
  return token;
}

bool IsValidTokenId(std::string_view id) { return AllOf(id, 6); }
bool IsValidTokenSecret(std::string_view secret) { return AllOf(secret, 16); }

std::string BootstrapTokenSecretJson(const BootstrapToken& token, const std::string& node_name) {
  nlohmann::json secret = {
      {"apiVersion", "v1"},
      {"kind", "Secret"},
      {"metadata",
       {{"name", "bootstrap-token-" + token.id},
        {"namespace", "kube-system"},
        {"labels", {{"app.kubernetes.io/managed-by", "berth"}, {"berth.dev/node", node_name}}}}},
      {"type", "bootstrap.kubernetes.io/token"},
      {"stringData",
       {{"description", "berth: attested join of node " + node_name},
        {"token-id", token.id},
        {"token-secret", std::string(token.secret.view())},
        {"expiration", Rfc3339(token.expires_unix)},
        {"usage-bootstrap-authentication", "true"},
        {"usage-bootstrap-signing", "true"},
        {"auth-extra-groups", "system:bootstrappers:kubeadm:default-node-token"}}},
  };
  std::string out = secret.dump();
  // The json object's copy of the secret goes with it; wipe it first.
  WipeString(secret["stringData"]["token-secret"].get_ref<std::string&>());
  return out;
}

Result<BootstrapToken> KubeTokenIssuer::Issue(const std::string& node_name) {
  constexpr int kAttempts = 3;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    BootstrapToken token = GenerateBootstrapToken(clock_->NowUnix() + ttl_.count());
    std::string body = BootstrapTokenSecretJson(token, node_name);
    auto response = client_->Request("POST", "/api/v1/namespaces/kube-system/secrets", body);
    WipeString(body);
    if (!response.ok()) return response.status().WithContext("creating bootstrap token");
    if (response->status == 201 || response->status == 200) return token;
    if (response->status == 409) continue;  // the id is taken: draw another
    return Unavailable("creating bootstrap token: Kubernetes API answered " +
                       std::to_string(response->status) + ": " + KubeErrorMessage(*response));
  }
  return Unavailable("creating bootstrap token: " + std::to_string(kAttempts) +
                     " token ids in a row already existed");
}

}  // namespace berth::server
