// The host side of the node image's tests and benchmark (docs/kubernetes-node.md): a real
// Kubernetes control plane of the pinned release (kube/control-plane), whose API server QEMU
// guests reach at 10.0.2.2 (their user network's name for this host's loopback:
// --endpoint-address puts it into the API server's certificate and cluster-info), and berthd
// minting bootstrap tokens in it with its own least-privileged identity
// (kube/berthd-rbac.yaml). Nodes reach berthd at 10.0.2.2 too. Everything listens on 127.0.0.1
// only.
// Not thread-safe.
#pragma once

#include <chrono>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/subprocess.h"
#include "tests/testing/testing.h"

namespace berth::testing {

// The address QEMU's user network gives the host.
inline constexpr char kGuestHostAddress[] = "10.0.2.2";

// kubectl with the arguments that say which cluster and as whom (`prefix`: the binary, the
// kubeconfig, ...), and a request timeout of 30 s.
class KubectlAs {
 public:
  explicit KubectlAs(std::vector<std::string> prefix) : prefix_(std::move(prefix)) {}
  Result<ProcessResult> Run(const std::vector<std::string>& args) const;
  // `kubectl get ARGS -o json`, parsed; a null json if kubectl failed (NotFound included).
  nlohmann::json Get(const std::vector<std::string>& args) const;
  // The node's Ready status and its kubelet's boot ID ("" when there is no such node).
  std::pair<std::string, std::string> Ready(const std::string& node) const;
  // Node names, sorted ({"(kubectl failed)"} if kubectl did).
  std::vector<std::string> Nodes() const;

 private:
  std::vector<std::string> prefix_;
};

class ImageCluster {
 public:
  // Brings the control plane up in `dir` (absolute; made) and makes berthd's PKI and master
  // secret there. ok() says whether it came up (error() why not).
  explicit ImageCluster(std::string dir);
  // Stops berthd and every forwarder, and brings the control plane down.
  ~ImageCluster();
  ImageCluster(const ImageCluster&) = delete;
  ImageCluster& operator=(const ImageCluster&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // berthd with `policy_yaml` on 127.0.0.1:`port` (0: any). Its tickets name
  // `api_server_endpoint` (default: the control plane's, 10.0.2.2:<API server port>) and its
  // tokens live `token_ttl`.
  bool StartBerthd(const std::string& policy_yaml, int port = 0,
                   const std::string& api_server_endpoint = "",
                   std::chrono::seconds token_ttl = std::chrono::seconds(900));
  void StopBerthd();
  int berthd_port() const { return berthd_port_; }
  std::string berthd_log() const { return dir_ + "/berthd.log"; }
  // Every "audit ..." line berthd logged so far.
  std::vector<std::string> AuditLines() const;

  // A TCP forwarder from 127.0.0.1:`listen_port` to the API server (guests reach it at
  // 10.0.2.2:`listen_port`): a second way in, which a test opens and closes.
  bool StartApiForwarder(int listen_port);

  // An EnrolmentConfig for an image node named `node`: berthd at 10.0.2.2 with its CA pinned
  // (ImageEnrolment adds the state disk and the PCR selection).
  v1::EnrolmentConfig Enrolment(const std::string& node) const;

  // `kube/control-plane env`'s variables (KUBE_BIN, KUBECONFIG, KUBE_CA, KUBE_APISERVER_PORT,
  // KUBE_JOIN_ENDPOINT, KUBE_CA_CERT_HASH, ...).
  std::string Env(const std::string& name) const;
  // kubectl as the cluster's admin (admin.conf).
  Result<ProcessResult> Kubectl(const std::vector<std::string>& args) const;
  // `kubectl get ARGS -o json`, parsed; a null json if kubectl failed (NotFound included).
  nlohmann::json GetJson(const std::vector<std::string>& args) const;
  // The node's Ready condition's status ("True", "False", "Unknown"), "" if there is no such
  // node.
  std::string NodeReady(const std::string& node) const;

 private:
  std::string dir_, cp_dir_, error_;
  std::vector<std::pair<std::string, std::string>> env_;
  TestPki join_pki_;
  Subprocess berthd_;
  std::vector<Subprocess> forwarders_;
  int berthd_port_ = 0;
};

// The Ready condition of a Node object (.status.conditions[type=Ready]), null if none.
nlohmann::json ReadyCondition(const nlohmann::json& node);

}  // namespace berth::testing
