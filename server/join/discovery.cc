#include "server/join/discovery.h"

#include <openssl/evp.h>
#include <yaml-cpp/yaml.h>

#include <nlohmann/json.hpp>

#include "common/bytes.h"
#include "common/crypto.h"
#include "server/join/join_logic.h"

namespace berth::server {

namespace {

constexpr char kClusterInfoPath[] = "/api/v1/namespaces/kube-public/configmaps/cluster-info";

std::string Base64(std::string_view in) {
  std::string out(4 * ((in.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

Result<std::string> Unbase64(const std::string& in) {
  std::string clean;
  for (char c : in) {
    if (!std::isspace(static_cast<unsigned char>(c))) clean.push_back(c);
  }
  if (clean.empty() || clean.size() % 4 != 0) return InvalidArgument("not base64");
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) return InvalidArgument("not base64");
  size_t pad = (clean.back() == '=') + (clean[clean.size() - 2] == '=');
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

}  // namespace

Result<ClusterInfo> ParseClusterInfoConfigMap(const std::string& configmap_json) {
  auto cm = nlohmann::json::parse(configmap_json, nullptr, false);
  if (cm.is_discarded() || !cm.is_object() || cm.value("kind", "") != "ConfigMap") {
    return InvalidArgument("cluster-info: not a ConfigMap");
  }
  if (!cm.contains("data") || !cm["data"].is_object() || !cm["data"].contains("kubeconfig") ||
      !cm["data"]["kubeconfig"].is_string()) {
    return InvalidArgument("cluster-info: the ConfigMap has no data.kubeconfig");
  }
  ClusterInfo info;
  try {
    YAML::Node kc = YAML::Load(cm["data"]["kubeconfig"].get<std::string>());
    YAML::Node clusters = kc["clusters"];
    if (!clusters || !clusters.IsSequence() || clusters.size() == 0) {
      return InvalidArgument("cluster-info: its kubeconfig names no cluster");
    }
    YAML::Node cluster = clusters[0]["cluster"];
    // kubeadm writes one cluster named ""; with several, take the current context's.
    if (clusters.size() > 1 && kc["current-context"] && kc["contexts"]) {
      std::string want;
      for (const auto& c : kc["contexts"]) {
        if (c["name"] && c["name"].as<std::string>() == kc["current-context"].as<std::string>()) {
          want = c["context"]["cluster"].as<std::string>("");
        }
      }
      for (const auto& c : clusters) {
        if (c["name"] && c["name"].as<std::string>() == want) cluster = c["cluster"];
      }
    }
    if (!cluster || !cluster["server"]) {
      return InvalidArgument("cluster-info: its cluster has no server");
    }
    info.server = cluster["server"].as<std::string>();
    if (!info.server.starts_with("https://")) {
      return InvalidArgument("cluster-info: server " + info.server + " is not https://");
    }
    if (!cluster["certificate-authority-data"]) {
      return InvalidArgument("cluster-info: its cluster has no certificate-authority-data");
    }
    auto ca = Unbase64(cluster["certificate-authority-data"].as<std::string>());
    if (!ca.ok()) return InvalidArgument("cluster-info: certificate-authority-data is not base64");
    info.ca_pem = *ca;
  } catch (const YAML::Exception& e) {
    return InvalidArgument(std::string("cluster-info: its kubeconfig is not YAML: ") + e.what());
  }
  if (auto certs = CertsFromPem(info.ca_pem); !certs.ok() || certs->empty()) {
    return InvalidArgument("cluster-info: certificate-authority-data holds no certificate");
  }
  return info;
}

SecretBytes RenderDiscoveryKubeconfig(const ClusterInfo& info, const SecretBytes& token) {
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "apiVersion" << YAML::Value << "v1";
  out << YAML::Key << "kind" << YAML::Value << "Config";
  out << YAML::Key << "clusters" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << "kubernetes";
  out << YAML::Key << "cluster" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "server" << YAML::Value << YAML::DoubleQuoted << info.server;
  out << YAML::Key << "certificate-authority-data" << YAML::Value << Base64(info.ca_pem);
  out << YAML::EndMap << YAML::EndMap << YAML::EndSeq;
  out << YAML::Key << "contexts" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << "tls-bootstrap-token-user@kubernetes";
  out << YAML::Key << "context" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "cluster" << YAML::Value << "kubernetes";
  out << YAML::Key << "user" << YAML::Value << "tls-bootstrap-token-user";
  out << YAML::EndMap << YAML::EndMap << YAML::EndSeq;
  out << YAML::Key << "current-context" << YAML::Value << "tls-bootstrap-token-user@kubernetes";
  out << YAML::Key << "users" << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << "tls-bootstrap-token-user";
  out << YAML::Key << "user" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "token" << YAML::Value << YAML::DoubleQuoted << std::string(token.view());
  out << YAML::EndMap << YAML::EndMap << YAML::EndSeq;
  out << YAML::EndMap;
  SecretBytes config(out.c_str(), out.size());
  WipeMemory(const_cast<char*>(out.c_str()), out.size());
  return config;
}

Result<ClusterInfo> DiscoveryKubeconfigs::Fetch() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (cached_ && clock_->NowUnix() - fetched_unix_ < ttl_.count()) return *cached_;
  }
  BERTH_ASSIGN_OR_RETURN(HttpResponse r, kube_->Request("GET", kClusterInfoPath, ""));
  if (r.status != 200) {
    return Unavailable("reading cluster-info: Kubernetes API answered " + std::to_string(r.status) +
                       ": " + KubeErrorMessage(r));
  }
  auto info = ParseClusterInfoConfigMap(r.body);
  if (!info.ok()) return Unavailable(info.status().message());
  // berthd hands nodes only a CA it pins itself: the one whose hashes token discovery uses.
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> hashes, KubeadmCaCertHashes(info->ca_pem));
  for (const auto& h : hashes) {
    if (std::find(hashes_.begin(), hashes_.end(), h) == hashes_.end()) {
      return FailedPrecondition("cluster-info announces a CA (" + h +
                                ") that is not berthd's Kubernetes CA; refusing to hand it out");
    }
  }
  std::lock_guard<std::mutex> lock(mu_);
  cached_ = *info;
  fetched_unix_ = clock_->NowUnix();
  return info;
}

Result<ClusterInfo> DiscoveryKubeconfigs::ClusterInfoFor(const std::string& node) {
  auto info = Fetch();
  if (!info.ok()) return info.status().WithContext("discovery kubeconfig for node " + node);
  return info;
}

Result<SecretBytes> DiscoveryKubeconfigs::Build(const std::string& node, const SecretBytes& token) {
  BERTH_ASSIGN_OR_RETURN(ClusterInfo info, ClusterInfoFor(node));
  return RenderDiscoveryKubeconfig(info, token);
}

}  // namespace berth::server
