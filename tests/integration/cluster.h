// A whole berth join on one host, every part a real process: swtpm, berthd (TLS on loopback),
// berth-agent, and the two stand-ins for what cannot be installed here (kube-apiserver and
// kubeadm; see tests/standins/README.md).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "berth/v1/berth.pb.h"
#include "common/subprocess.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::testing {

struct AgentRun {
  ProcessResult result;
  std::string log;  // stdout+stderr
};

// berthd in a network namespace of its own (made by the test), reached over a veth pair.
struct HostClusterNetwork {
  std::string netns;      // berthd runs here (ip netns exec)
  std::string berthd_ip;  // its address in the namespace: nodes connect to it
  std::string host_ip;    // the host's end of the pair: berthd reaches the API server at it
};

class HostCluster {
 public:
  // `tpm` configures the node's swtpm (e.g. manufactured with an EK certificate).
  explicit HostCluster(const SwtpmOptions& tpm = {}, const HostClusterNetwork& network = {});
  ~HostCluster();

  // Parts, started on demand so tests can order them (berthd late, API server failing...).
  bool StartApiServer(const std::vector<std::string>& extra_flags = {});
  // Writes policy.yaml from the node's current identity (berth-agent --print-identity).
  bool WritePolicyFromNode();
  bool StartBerthd(int port = 0, const std::vector<std::string>& extra_flags = {});
  void StopBerthd();
  int berthd_port() const { return berthd_port_; }

  // The node's EnrolmentConfig, written in binary under the node's root.
  v1::EnrolmentConfig BaseEnrolment() const;
  void WriteEnrolment(const v1::EnrolmentConfig& config);

  std::vector<std::string> AgentArgv(const std::vector<std::string>& extra = {}) const;
  std::vector<std::string> AgentEnv() const;
  AgentRun RunAgent(const std::vector<std::string>& extra = {});

  // JSON lines the stand-ins recorded.
  std::vector<nlohmann::json> ApiServerRecords() const;
  std::vector<nlohmann::json> KubeadmRecords() const;
  // Every file under the node's root, relative, sorted.
  std::vector<std::string> NodeFiles() const;

  Swtpm& tpm() { return *tpm_; }
  const TempDir& dir() const { return dir_; }
  std::string node_root() const { return dir_.Join("node"); }
  std::string berthd_log() const { return dir_.Join("berthd.log"); }
  const TestPki& join_pki() const { return join_pki_; }

 private:
  TempDir dir_;
  HostClusterNetwork network_;
  std::unique_ptr<Swtpm> tpm_;
  TestPki join_pki_;  // the cluster CA pinned in EnrolmentConfig, berthd's server cert
  TestPki kube_pki_;  // the Kubernetes CA and the API server's cert
  Subprocess apiserver_, berthd_;
  int apiserver_port_ = 0, berthd_port_ = 0;
};

}  // namespace berth::testing
