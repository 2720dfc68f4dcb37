// kubeadm's file discovery (berthd --discovery file; docs/lifecycle.md "Discovery file"): the
// ticket carries a kubeconfig built from the cluster-info ConfigMap
// (GET /api/v1/namespaces/kube-public/configmaps/cluster-info, its `kubeconfig` key: the API
// server's address and CA) with the node's bootstrap token as its user, as dynk8s's
// kubeconfig resource does. kubeadm reads the cluster from it and uses the token for the TLS
// bootstrap; the agent writes it 0600 and removes it after the join.
#pragma once

#include <chrono>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/secret.h"
#include "server/cloud/kube_client.h"

namespace berth::server {

struct ClusterInfo {
  std::string server;  // https://host:port
  std::string ca_pem;  // the cluster CA
};

// The cluster of cluster-info's `kubeconfig` (its current context's, else its only one).
// INVALID_ARGUMENT naming what is missing or malformed.
Result<ClusterInfo> ParseClusterInfoConfigMap(const std::string& configmap_json);

// The discovery kubeconfig (YAML): cluster "kubernetes" with `info`, user
// "tls-bootstrap-token-user" with `token`, one context. Holds the token: a secret.
SecretBytes RenderDiscoveryKubeconfig(const ClusterInfo& info, const SecretBytes& token);

// Thread-safe; `kube` and `clock` outlive it.
class DiscoveryKubeconfigs {
 public:
  // `ca_cert_hashes` pin the CA cluster-info may announce (kubeadm's caCertHashes, from
  // berthd's Kubernetes CA); cluster-info is re-read after `cache_ttl`.
  DiscoveryKubeconfigs(KubeClient* kube, std::vector<std::string> ca_cert_hashes, Clock* clock,
                       std::chrono::seconds cache_ttl = std::chrono::seconds(60))
      : kube_(kube), hashes_(std::move(ca_cert_hashes)), clock_(clock), ttl_(cache_ttl) {}

  // UNAVAILABLE when cluster-info cannot be read; FAILED_PRECONDITION when its CA is not
  // the one berthd pins.
  Result<SecretBytes> Build(const std::string& node, const SecretBytes& token);
  // The part of Build that can fail, for callers that must know it succeeded before they
  // mint the token (a token minted for a ticket that is then refused would be left behind):
  // same errors, then RenderDiscoveryKubeconfig cannot fail.
  Result<ClusterInfo> ClusterInfoFor(const std::string& node);

 private:
  Result<ClusterInfo> Fetch();

  KubeClient* kube_;
  std::vector<std::string> hashes_;
  Clock* clock_;
  std::chrono::seconds ttl_;
  std::mutex mu_;
  std::optional<ClusterInfo> cached_;  // GUARDED_BY(mu_)
  int64_t fetched_unix_ = 0;           // GUARDED_BY(mu_)
};

}  // namespace berth::server
