#include "server/cloud/kube_client.h"

#include <spdlog/spdlog.h>
#include <yaml-cpp/yaml.h>

#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <nlohmann/json.hpp>
#include <openssl/evp.h>

#include "common/bytes.h"
#include "server/cloud/https.h"

namespace berth::server {

namespace {

Result<std::string> Base64Decode(const std::string& in, const std::string& what) {
  std::string clean;
  for (char c : in) {
    if (!std::isspace(static_cast<unsigned char>(c))) clean.push_back(c);
  }
  if (clean.size() % 4 != 0) return InvalidArgument(what + ": not valid base64");
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) return InvalidArgument(what + ": not valid base64");
  size_t pad = 0;
  if (!clean.empty() && clean.back() == '=') pad++;
  if (clean.size() > 1 && clean[clean.size() - 2] == '=') pad++;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

std::string Resolve(const std::string& base_dir, const std::string& file) {
  if (file.empty() || file[0] == '/') return file;
  return base_dir + "/" + file;
}

// Reads "<key>-data" (base64) or "<key>" (a file) from a kubeconfig map.
Result<std::string> DataOrFile(const YAML::Node& node, const std::string& key,
                               const std::string& base_dir, const std::string& where) {
  if (node[key + "-data"]) {
    return Base64Decode(node[key + "-data"].as<std::string>(), where + "." + key + "-data");
  }
  if (node[key]) {
    std::string path = Resolve(base_dir, node[key].as<std::string>());
    auto text = ReadFile(path);
    if (!text.ok()) return text.status().WithContext(where + "." + key);
    return text;
  }
  return std::string();
}

YAML::Node FindNamed(const YAML::Node& list, const std::string& name) {
  if (!list || !list.IsSequence()) return YAML::Node();
  for (const auto& entry : list) {
    if (entry["name"] && entry["name"].as<std::string>() == name) return entry;
  }
  return YAML::Node();
}

HttpsOptions KubeHttpsOptions(const KubeCredentials& creds, long timeout_ms) {
  HttpsOptions o;
  o.service = "Kubernetes API";
  o.ca_pem = creds.ca_pem;
  o.client_cert_pem = creds.client_cert_pem;
  o.client_key_pem = SecretBytes(creds.client_key_pem.data(), creds.client_key_pem.size());
  o.headers = {"Accept: application/json", "Content-Type: application/json"};
  if (!creds.token.empty()) {
    std::string auth;
    auth.reserve(64 + creds.token.size());  // one buffer: no copy of the token left behind
    auth.append("Authorization: Bearer ").append(creds.token.view());
    o.headers.push_back(std::move(auth));
  }
  o.timeout_ms = timeout_ms;
  o.max_body_bytes = 16 << 20;  // a list of Secrets
  return o;
}

// The HTTPS client keeps its connections (and TLS sessions) to the API server alive between
// requests, so a token costs one HTTP round trip, not a TCP and TLS handshake.
class CurlKubeClient : public KubeClient {
 public:
  CurlKubeClient(const KubeCredentials& creds, long timeout_ms)
      : server_(creds.server), https_(KubeHttpsOptions(creds, timeout_ms)) {}

  Result<HttpResponse> Request(const std::string& method, const std::string& path,
                               const std::string& json_body) override {
    BERTH_ASSIGN_OR_RETURN(HttpsResponse r, https_.Send(method, server_ + path, json_body));
    HttpResponse response{.status = r.status, .body = std::move(r.body)};
    // berthd's identity, not the request, is what an operator must fix: say so once here,
    // for every call, with the API server's own words (which name the missing permission).
    if (response.status == 401 || response.status == 403) {
      spdlog::error("Kubernetes API {} berthd's identity: {} {} answered {}: {} (berthd's "
                    "RBAC is kube/berthd-rbac.yaml, see docs/kubernetes.md)",
                    response.status == 401 ? "did not authenticate" : "refused", method, path,
                    response.status, KubeErrorMessage(response));
    }
    return response;
  }

 private:
  const std::string server_;
  HttpsClient https_;
};

}  // namespace

Result<KubeCredentials> LoadKubeconfig(const std::string& path) {
  BERTH_ASSIGN_OR_RETURN(std::string text, ReadFile(path, 4 << 20));
  std::string base_dir = std::filesystem::path(path).parent_path().string();
  KubeCredentials creds;
  try {
    YAML::Node root = YAML::Load(text);
    WipeString(text);
    if (!root.IsMap()) return InvalidArgument(path + ": not a kubeconfig");
    std::string context_name =
        root["current-context"] ? root["current-context"].as<std::string>() : "";
    YAML::Node context = FindNamed(root["contexts"], context_name)["context"];
    if (!context)
      return InvalidArgument(path + ": current-context \"" + context_name + "\" not found");
    std::string cluster_name = context["cluster"] ? context["cluster"].as<std::string>() : "";
    std::string user_name = context["user"] ? context["user"].as<std::string>() : "";
    YAML::Node cluster = FindNamed(root["clusters"], cluster_name)["cluster"];
    if (!cluster || !cluster["server"]) {
      return InvalidArgument(path + ": cluster \"" + cluster_name +
                             "\" not found or has no server");
    }
    creds.server = cluster["server"].as<std::string>();
    while (!creds.server.empty() && creds.server.back() == '/') creds.server.pop_back();
    if (creds.server.rfind("https://", 0) != 0) {
      return InvalidArgument(path + ": server " + creds.server + " is not https://");
    }
    BERTH_ASSIGN_OR_RETURN(creds.ca_pem,
                           DataOrFile(cluster, "certificate-authority", base_dir, "cluster"));
    YAML::Node user = FindNamed(root["users"], user_name)["user"];
    if (!user) return InvalidArgument(path + ": user \"" + user_name + "\" not found");
    if (user["token"]) {
      std::string token = user["token"].as<std::string>();
      creds.token = SecretBytes::TakeFrom(token);
    } else if (user["tokenFile"]) {
      BERTH_ASSIGN_OR_RETURN(
          creds.token, ReadSecretFile(Resolve(base_dir, user["tokenFile"].as<std::string>())));
    }
    BERTH_ASSIGN_OR_RETURN(creds.client_cert_pem,
                           DataOrFile(user, "client-certificate", base_dir, "user"));
    BERTH_ASSIGN_OR_RETURN(std::string key, DataOrFile(user, "client-key", base_dir, "user"));
    creds.client_key_pem = SecretBytes::TakeFrom(key);
  } catch (const YAML::Exception& e) {
    WipeString(text);
    return InvalidArgument(path + ": YAML error: " + e.what());
  }
  // Trailing whitespace in token files is not part of the token.
  std::string_view t = creds.token.view();
  while (!t.empty() && std::isspace(static_cast<unsigned char>(t.back()))) t.remove_suffix(1);
  if (t.size() != creds.token.size()) creds.token = SecretBytes(t.data(), t.size());
  if (creds.token.empty() && creds.client_cert_pem.empty()) {
    return InvalidArgument(path + ": the user has neither a token nor a client certificate");
  }
  if (creds.client_cert_pem.empty() != creds.client_key_pem.empty()) {
    return InvalidArgument(path + ": client certificate and client key must come together");
  }
  return creds;
}

Result<KubeCredentials> LoadInClusterCredentials(const std::string& root) {
  const char* host = std::getenv("KUBERNETES_SERVICE_HOST");
  const char* port = std::getenv("KUBERNETES_SERVICE_PORT");
  if (host == nullptr || port == nullptr) {
    return FailedPrecondition(
        "not running in a pod (KUBERNETES_SERVICE_HOST/PORT unset); pass --kubeconfig");
  }
  KubeCredentials creds;
  std::string h = host;
  if (h.find(':') != std::string::npos) h = "[" + h + "]";
  creds.server = "https://" + h + ":" + port;
  const std::string dir = JoinRoot(root, "/var/run/secrets/kubernetes.io/serviceaccount");
  BERTH_ASSIGN_OR_RETURN(creds.token, ReadSecretFile(dir + "/token"));
  BERTH_ASSIGN_OR_RETURN(creds.ca_pem, ReadFile(dir + "/ca.crt"));
  return creds;
}

std::unique_ptr<KubeClient> MakeCurlKubeClient(KubeCredentials credentials, long timeout_ms) {
  return std::make_unique<CurlKubeClient>(credentials, timeout_ms);
}

std::string KubeErrorMessage(const HttpResponse& response) {
  auto j = nlohmann::json::parse(response.body, nullptr, false);
  if (!j.is_discarded() && j.is_object() && j.value("kind", "") == "Status" &&
      j.contains("message") && j["message"].is_string()) {
    return j["message"].get<std::string>();
  }
  return "HTTP " + std::to_string(response.status) + ": " + response.body.substr(0, 200);
}

}  // namespace berth::server
