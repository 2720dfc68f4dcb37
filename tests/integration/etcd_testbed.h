// Control planes joining etcd on one host, every part real: a 3-member etcd cluster (Debian's
// etcd 3.4, TLS) on loopback, the real Kubernetes API server this test process shares
// (tests/testing/kube_cluster.h) with berthd's least-privileged identity, berthd processes
// with node records in that etcd and AdminService behind an operator CA, and nodes with their
// own swtpm whose berth-agent runs in-process (RunAgent with injected parts: a fake disk and
// mounts, since the host has no device-mapper, and an etcd starter that runs a real etcd from
// the environment file the agent wrote). A worker's kubeadm is the real one's join --dry-run.
// Stand-ins (tests/standins/README.md) remain where the real programs cannot serve: the API
// server when a test needs it slow (api_delay_ms), and kubeadm for control planes (the real
// kubeadm v1.37.2 refuses berth-agent's control-plane JoinConfiguration, and on this host a
// control plane's address is loopback, which kubeadm will not advertise).
#pragma once

#include <atomic>
#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "agent/agent.h"
#include "agent/etcd_join.h"
#include "agent/golden_ticket.h"
#include "berth/v1/nodes.pb.h"
#include "common/subprocess.h"
#include "tests/testing/etcd.h"
#include "tests/testing/kube_cluster.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::testing {

// A disk that remembers what was done to it across "boots" (the real one is tested in QEMU).
struct FakeDiskState {
  agent::ProbeResult::Kind kind = agent::ProbeResult::Kind::kBlank;
  std::string uuid, key;
  std::string subsystem;  // the LUKS2 subsystem label (the agent records the filesystem there)
  bool has_filesystem = false;
  // Set: the disk's LUKS2 header is real, in this image file (libcryptsetup formats it, checks
  // keys against its keyslots and keeps the control plane's cold-start keyslot and token in it;
  // nothing is activated, as the host has no device-mapper).
  std::string image;
};

// How long a test node's agent waits for its own API server (--control-plane-wait): long
// enough for one on a loaded host.
inline constexpr std::chrono::seconds kControlPlaneWait{180};

struct TestNode {
  std::string name;
  std::string root;
  std::unique_ptr<Swtpm> tpm;
  int boots = 0;            // RunAgent calls so far; each one is a boot
  std::string ak_sha256;    // hex SHA-256 of the AK's SPKI
  std::string policy_pcrs;  // the "  pcrs:" section berth-agent --print-identity printed
  FakeDiskState disk;
  // What the node's next boots measure besides the firmware's usual (PCR, hex digest): a
  // tampered boot.
  std::vector<std::pair<uint32_t, std::string>> extra_measurements;
  int agent_attempts = 200;  // calls to berthd before RunAgent's agent gives up
  // The operators its EnrolmentConfig pins, and the port it serves them on when it waits
  // for a recovery (docs/cluster-lifecycle.md "Recovery").
  v1::OperatorAccess operator_access;
  // The kubeadm its agent runs (empty: the testbed's choice, see RunAgent) and the addresses it
  // serves etcd at (empty: 127.0.0.1). A bootstrap runs the real kubeadm's certs phases, which
  // need an address that is not loopback.
  std::string kubeadm;
  std::vector<std::string> addresses;
  // Control planes that run their own Kubernetes control plane (the first one, and those
  // with `control_plane_units`): where the API server, controller manager and berthd they
  // start listen (0: the agent's defaults; two on one host need their own).
  int api_server_port = 0, controller_manager_port = 0, scheduler_port = 0, berthd_port = 0;
  bool control_plane_units = false;
  std::chrono::seconds control_plane_wait = kControlPlaneWait;
  // The services the agent started in its last run (RunAgent), in order; the controller
  // manager and scheduler as "NAME (API server ready)" or "NAME (API server not ready)": what
  // the node's own API server's /readyz answered as the agent started them.
  std::vector<std::string> started;
  // The CA its EnrolmentConfig pins (empty: the testbed's join CA).
  std::string cluster_ca_pem;
  int etcd_peer_port = 0, etcd_client_port = 0;
  std::string PeerUrl() const { return "https://127.0.0.1:" + std::to_string(etcd_peer_port); }
  std::string ClientUrl() const { return "https://127.0.0.1:" + std::to_string(etcd_client_port); }
  std::string Path(const std::string& rel) const { return root + rel; }
  // Lifecycle (docs/lifecycle.md): a golden ticket to join with instead of evidence, and the
  // EC2 instance the node claims to be.
  std::optional<v1::GoldenTicket> golden;
  std::string ec2_instance_id;
  // The instance metadata service its agent reads the identity document from (RunAgent), or
  // the document itself (RequestJoinTicket).
  std::string ec2_imds_url;
  std::optional<v1::Ec2InstanceIdentity> ec2_identity;
};

// What an agent run leaves behind.
struct AgentOutcome {
  Status status;
  std::vector<std::string> notifications;  // STATUS=... / READY=1
};

// Polls etcd every 100 ms while running (linearizable read through every original member and
// Status of each) and records every failure, so a test can say the cluster stayed healthy.
class HealthWatch {
 public:
  explicit HealthWatch(const EtcdCluster& cluster);
  ~HealthWatch();
  // Stops polling; returns the failures seen ("<when ms>: <what>") and the number of polls.
  std::vector<std::string> Stop();
  int polls() const { return polls_; }

 private:
  const EtcdCluster& cluster_;
  std::atomic<bool> stop_{false};
  std::atomic<int> polls_{0};
  std::vector<std::string> failures_;
  std::thread thread_;
};

struct EtcdTestbedOptions {
  // > 0: the API server stand-in instead of the real one, answering writes this much later
  // (--delay-ms).
  int api_delay_ms = 0;
  std::string policy;    // berthd's policy instead of the one made from the nodes' AKs
};

class EtcdTestbed {
 public:
  explicit EtcdTestbed(const EtcdTestbedOptions& options = {});
  ~EtcdTestbed();

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // A node with its own (booted) swtpm. Must be added before StartBerthd (the policy lists
  // every node's AK; `control_plane` puts it in the policy's roles.control_plane).
  TestNode& AddNode(const std::string& name, bool control_plane);
  TestNode& node(const std::string& name) { return *nodes_.at(name); }

  // Writes the policy and starts berthd replica `i` (0, 1, ...) listening on `port` (0: any).
  // Returns false on failure.
  bool StartBerthd(int replica = 0, int port = 0);
  // SIGKILL, as a crash would; StartBerthd(replica, its old port) restarts it where it was.
  void KillBerthd(int replica = 0);
  int berthd_port(int replica = 0) const { return berthd_ports_.at(replica); }
  // Lifecycle tests (docs/lifecycle.md), set before StartBerthd: text appended to the policy,
  // nodes left out of its trusted AKs, extra berthd flags, the berthd binary (relative to the
  // build directory), and the golden-ticket reader the in-process agent gets.
  std::string policy_extra;
  std::set<std::string> left_out_of_policy;
  std::vector<std::string> berthd_flags;
  std::string berthd_binary = "server/berthd";
  // berthd's kubeconfig (real API server); empty: berthd's identity, kube/berthd-rbac.yaml.
  std::string berthd_kubeconfig;
  agent::GoldenTicketReader golden_reader = nullptr;
  // (Re)writes the policy file berthd reads (in place) from the members above; its path.
  std::string WritePolicy();
  pid_t berthd_pid(int replica = 0) { return berthd_.at(replica).pid(); }
  int metrics_port(int replica = 0) const { return metrics_ports_.at(replica); }
  std::string BerthdEndpoint(int replica = 0) const;
  std::string BerthdLog(int replica = 0) const;
  int admin_port(int replica = 0) const { return admin_ports_.at(replica); }

  EtcdCluster& etcd() { return *etcd_; }

  // The agent of `node`, in-process, as it would run on the node at boot; role from
  // `control_plane`. Blocks until it returns. Nodes may boot at once, each from its own thread.
  AgentOutcome RunAgent(TestNode& node, bool control_plane,
                        const std::vector<std::string>& endpoints);

  // One step at a time, as the agent would (challenge at `challenge_endpoint`, ticket from
  // `ticket_endpoint`, over one TLS identity), for tests that need control of the timing.
  // Control planes send CSRs for `keys` (made if null) and the node's etcd URLs.
  Result<v1::JoinTicket> RequestJoinTicket(TestNode& node, bool control_plane,
                                           const std::string& challenge_endpoint,
                                           const std::string& ticket_endpoint,
                                           agent::EtcdKeys* keys = nullptr);
  Result<v1::RejoinTicket> RequestRejoinTicket(TestNode& node, const std::string& endpoint);
  // The same in two halves, for replays: the request answering `endpoint`'s challenge and the
  // TLS identity it is bound to; then sending it (again), over that identity.
  struct PreparedRejoin {
    agent::ClientIdentity id;
    v1::RejoinRequest request;
  };
  Result<PreparedRejoin> PrepareRejoin(TestNode& node, const std::string& endpoint);
  Result<v1::RejoinTicket> SendRejoin(const PreparedRejoin& prepared, const std::string& endpoint);

  // Writes `ticket`'s etcd PKI under the node's root (as the agent does) and starts its etcd.
  bool StartNodeEtcd(TestNode& node, const v1::JoinTicket& ticket, const agent::EtcdKeys& keys);
  bool NodeEtcdRunning(const std::string& name);

  // berthctl <args> against replica `replica`'s AdminService with the operator certificate.
  ProcessResult Berthctl(const std::vector<std::string>& args, int replica = 0);
  // `berthctl nodes list --json`, parsed.
  nlohmann::json ListNodes(int replica = 0);

  // The bootstrap-token Secrets berthd made that exist, oldest first, `data` decoded (as
  // HostCluster::TokenSecrets).
  std::vector<nlohmann::json> TokenSecrets() const;
  // Every kubeadm join the agents ran: the stand-in's records (control planes) then the real
  // kubeadm's (workers; KubeadmJoinRecords), each with "ok".
  std::vector<nlohmann::json> KubeadmJoins() const;
  std::vector<nlohmann::json> StandinApiServerRecords() const;
  // The real control plane; null with api_delay_ms.
  KubeCluster* kube() { return kube_; }

  const TempDir& dir() const { return dir_; }
  std::string JoinCaPem() const { return join_pki_.ca_pem_text; }

 private:

  TempDir dir_;
  EtcdTestbedOptions options_;
  std::string error_;
  std::unique_ptr<EtcdCluster> etcd_;
  TestPki join_pki_, kube_pki_;
  std::string operator_cert_, operator_key_;
  KubeCluster* kube_ = nullptr;
  Subprocess apiserver_;
  int apiserver_port_ = 0;
  std::map<int, Subprocess> berthd_;
  std::map<int, int> berthd_ports_, admin_ports_, metrics_ports_;
  std::map<std::string, std::unique_ptr<TestNode>> nodes_;
  std::vector<std::string> control_planes_;
  // What bootstrapped nodes started (kube-apiserver, kube-controller-manager, berthd), by
  // "<node>/<name>"; stopped last. Guarded: control planes that boot at once start theirs
  // from their own threads.
  std::mutex services_mu_;
  std::map<std::string, Subprocess> services_;
  bool ServiceRunningLocked(const TestNode& node, const std::string& name);

 public:
  // The log of service `name` a bootstrapped node started.
  std::string ServiceLog(const TestNode& node, const std::string& name) const;
  // Whether it still runs.
  bool ServiceRunning(const TestNode& node, const std::string& name);
  // Starts it from the environment file the agent wrote (ControlPlaneServices).
  Status StartService(TestNode& node, const std::string& name);
  // Whether the node's own API server answers /readyz "ok" to its admin.conf.
  bool ApiServerReady(const TestNode& node) const;
  // SIGKILLs every service the node started, as a power loss does.
  void KillServices(const TestNode& node);
};

}  // namespace berth::testing
