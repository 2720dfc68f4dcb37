// A whole berth join on one host, every part a real process: swtpm, berthd (TLS on loopback),
// berth-agent, and Kubernetes: the real control plane this test process shares
// (tests/testing/kube_cluster.h), berthd with its least-privileged identity
// (kube/berthd-rbac.yaml), and the real kubeadm's `join --dry-run` as the agent's kubeadm
// (kube/kubeadm-join-dry-run: no kubelet runs on the host). Tests that inject a fault the real
// API server cannot produce (a 503 storm, answers late) start the stand-ins instead
// (StartStandinApiServer; tests/standins/README.md lists each and why).
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "berth/v1/berth.pb.h"
#include "common/subprocess.h"
#include "tests/testing/etcd.h"
#include "tests/testing/kube_cluster.h"
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
  // The real API server: the shared control plane, from which every bootstrap token of
  // berth's is deleted first (tests share it one after the other).
  bool StartKubeApiServer();
  // The stand-in API server with `flags` (--fail-first N, --delay-ms MS), and the stand-in
  // kubeadm checking tokens against it: for faults the real one cannot produce.
  bool StartStandinApiServer(const std::vector<std::string>& flags);
  // The stand-in, as before the real one came: what the QEMU tests (tests/e2e) still use.
  bool StartApiServer(const std::vector<std::string>& flags = {}) {
    return StartStandinApiServer(flags);
  }
  // berthd's kubeconfig instead of berthd's identity (before StartBerthd; real API server).
  void UseBerthdKubeconfig(const std::string& path) { berthd_kubeconfig_ = path; }
  // Writes policy.yaml from the node's current identity (berth-agent --print-identity).
  bool WritePolicyFromNode();
  // berthd keeps node records in a one-member etcd of its own (started with the first
  // berthd, kept across restarts), as a production berthd does: without records it releases
  // no disk keys. "--no-etcd" in `extra_flags`, or berthd in a network namespace (which cannot
  // reach the host's loopback), runs it without (diskless workers only).
  bool StartBerthd(int port = 0, const std::vector<std::string>& extra_flags = {});
  void StopBerthd();
  int berthd_port() const { return berthd_port_; }

  // The node's EnrolmentConfig, written in binary under the node's root.
  v1::EnrolmentConfig BaseEnrolment() const;
  void WriteEnrolment(const v1::EnrolmentConfig& config);

  std::vector<std::string> AgentArgv(const std::vector<std::string>& extra = {}) const;
  std::vector<std::string> AgentEnv() const;
  AgentRun RunAgent(const std::vector<std::string>& extra = {});

  // The bootstrap-token Secrets berthd made that exist, oldest first, `data` decoded: as the
  // real API server's admin reads them, or as the stand-in recorded their creation.
  std::vector<nlohmann::json> TokenSecrets() const;
  // One entry per `kubeadm join` the agent ran, whatever its outcome, with "ok" and
  // "config_mode" and "capabilities" (kubeadm's process): the real kubeadm's
  // (KubeadmJoinRecords: "output", "dir" with kubeadm's dry-run/) or the stand-in's records.
  std::vector<nlohmann::json> KubeadmJoins() const;
  // The stand-in API server's request records (StartStandinApiServer only).
  std::vector<nlohmann::json> StandinApiServerRecords() const;
  std::vector<nlohmann::json> ApiServerRecords() const { return StandinApiServerRecords(); }
  // The real control plane (after StartKubeApiServer).
  KubeCluster& kube() { return *kube_; }
  bool real_kube() const { return kube_ != nullptr; }
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
  TestPki kube_pki_;  // the stand-in's Kubernetes CA and the API server's cert
  KubeCluster* kube_ = nullptr;  // the real API server, when started
  std::unique_ptr<EtcdCluster> etcd_;  // berthd's node records
  std::string berthd_kubeconfig_;
  Subprocess apiserver_, berthd_;
  int apiserver_port_ = 0, berthd_port_ = 0;
};

}  // namespace berth::testing
