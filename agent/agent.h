// The agent's boot flow (DESIGN.md "Node flow"), as explicit, timed steps:
//   ReadEnrolment -> OpenTpm -> MeasureEnrolment -> MakeIdentity -> ProbeDisk
//     blank disk:  RequestTicket -> FormatDisk -> UnlockDisk -> MakeFilesystem -> Mount ->
//     KubeadmJoin berth LUKS:  RequestRejoinTicket -> UnlockDisk -> MakeFilesystem -> Mount
//                  -> (not yet joined: RequestTicket -> KubeadmJoin)
//     diskless:    RequestTicket -> KubeadmJoin
//   after Mount (diskless: after RequestTicket), DropPrivileges: only root's file access is
//   kept, for the agent and for kubeadm (privileges.h)
//   a KubeadmJoin that fails is retried (AgentOptions::join_attempts): RequestTicket again
//   (the same disk key), KubeadmJoin; once joined or rejoined, StartKubelet (when a
//   kubelet_unit is given)
//   control planes (state disk required), before KubeadmJoin: WriteEtcdPki -> StartEtcd (waits
//   until the node's etcd is a voting member); on later boots: StartEtcd
// Progress is recorded on the state disk, so a crash at any point resumes: the disk is never
// formatted twice (a LUKS header is never overwritten) and kubeadm never joins twice.
// Each step logs one line with its duration and reports itself to systemd. Every OS touchpoint
// (TPM, transport, process runner, clock, notifier, filesystem root) is injected.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>

#include "agent/bootstrap.h"
#include "agent/ec2_identity.h"
#include "agent/etcd_join.h"
#include "agent/golden_ticket.h"
#include "agent/hw/sev_guest.h"
#include "agent/hw/tpm.h"
#include "agent/join_client.h"
#include "agent/snp_identity.h"
#include "agent/state_disk.h"
#include "berth/v1/berth.pb.h"
#include "common/clock.h"
#include "common/enrolment.h"
#include "common/subprocess.h"

namespace berth::agent {

// Where a control plane keeps what berthd shared with it (common/cluster_keys.h): kubeadm's
// PKI directory, and the master secret under the state disk's mount point.
inline constexpr char kKubernetesPkiDir[] = "/etc/kubernetes/pki";
inline constexpr char kMasterSecretOnDisk[] = "/berthd/master.secret";

struct AgentOptions {
  std::string root = "/";
  std::string enrolment_path = kDefaultEnrolmentPath;  // inside root
  std::string tcti = "device:/dev/tpmrm0";
  std::string kubeadm = "/usr/bin/kubeadm";           // not inside root: the tool to run
  std::string systemctl = "/bin/systemctl";           // not inside root
  // The kubelet's systemd unit (the node image: kubelet.service). The agent starts it once the
  // node has joined or rejoined with its state disk mounted (on a first boot kubeadm join has
  // started it already), and stops it before a failed kubeadm join is tried again. Empty: the
  // agent never starts or stops a kubelet (hosts, and guests without systemd).
  std::string kubelet_unit;
  // kubeadm join attempts before giving up (0: until the node joins). Each retry clears what
  // the failed attempt left and joins with a fresh ticket; the backoff is `retry`'s.
  int join_attempts = 0;
  RetryPolicy retry;
  std::chrono::milliseconds call_timeout{30000};
  std::string sev_guest = kSevGuestDevice;  // SEV-SNP nodes: the guest device (not inside root)
  uint32_t snp_vmpl = 0;                    // SEV-SNP nodes: the VMPL reports are requested at
  // SEV-SNP nodes: the node's sealed identity key (snp_identity.h), inside root.
  std::string snp_identity = kSnpIdentityPath;
  // Control planes (docs/etcd.md): where the node's etcd serves, and how long to wait for it
  // to become a voting member.
  std::vector<std::string> node_addresses;  // empty: the node's global addresses
  int etcd_peer_port = 2380;
  int etcd_client_port = 2379;
  std::chrono::seconds etcd_wait{900};
  // The first control plane (bootstrap.h): where its Kubernetes API server, controller manager
  // and berthd serve, how long the API server may take to answer, kubectl (not inside root)
  // and berthd's RBAC (kube/berthd-rbac.yaml, installed by the image; not inside root).
  int api_server_port = kApiServerPort;
  int controller_manager_port = kControllerManagerPort;
  int scheduler_port = kSchedulerPort;
  int berthd_port = kBerthdPort;
  // The node image runs the control plane as systemd units (bootstrap.h ControlPlaneServices):
  // a control plane that joins makes its API server's certificates with kubeadm's phases and
  // starts those units with kubeadm's flags, instead of `kubeadm join --control-plane`, whose
  // static Pods need images from a registry (docs/kubernetes.md "Control planes").
  bool control_plane_units = false;
  // How long each control-plane service may take to answer (an emulated CPU took 200 s for the
  // API server: a bootstrap that gives up after formatting cannot be retried on that disk).
  std::chrono::seconds control_plane_wait{900};
  std::string kubectl = "/usr/bin/kubectl";
  std::string berthd_rbac = "/usr/share/berth/berthd-rbac.yaml";
  // The EC2 instance this node claims to be (docs/lifecycle.md "Cloud events"); empty: the
  // DMI board asset tag under root, when it is an instance ID (Nitro instances carry it there).
  std::string ec2_instance_id;
  // Where the instance metadata service answers: a node that claims an instance sends the
  // instance identity document and signature read from it (ec2_identity.h).
  std::string ec2_imds_url = kDefaultImdsUrl;
};

// Where Linux exposes the DMI board asset tag, which holds the instance ID on EC2 Nitro.
inline constexpr char kDmiAssetTagPath[] = "/sys/devices/virtual/dmi/id/board_asset_tag";

// systemd's view of the agent (sd_notify); a fake records it in tests.
class Notifier {
 public:
  virtual ~Notifier() = default;
  virtual void Status(const std::string& status) = 0;
  // READY=1 with the status the unit keeps while it stays active, in one message.
  virtual void Ready(const std::string& status) = 0;
};
// systemd's: STATUS= and READY=1; READY is also logged with the time since exec
// ("ready ms_since_exec=N"), the node's figure for how long the agent kept it waiting.
class SdNotifier : public Notifier {
 public:
  void Status(const std::string& status) override;
  void Ready(const std::string& status) override;
};

// Milliseconds since this process was exec'd (its start time in /proc/self/stat against
// CLOCK_BOOTTIME, at the kernel's clock-tick resolution); -1 if that cannot be read.
int64_t MillisSinceExec();

struct AgentDeps {
  Clock* clock;
  ProcessRunner* runner;
  Notifier* notifier;
  std::function<Result<std::unique_ptr<Tpm>>(const std::string& tcti)> open_tpm;
  std::function<std::unique_ptr<JoinTransport>(const ClientIdentity&, const v1::EnrolmentConfig&)>
      make_transport;
  // The state disk (needed only when the EnrolmentConfig names one).
  Disk* disk = nullptr;
  Mounter* mounter = nullptr;
  // The SEV-SNP guest device (needed only when the EnrolmentConfig asks for SEV-SNP).
  std::function<Result<std::unique_ptr<SevGuest>>(const std::string& path)> open_sev_guest;
  // Control planes: the state disk's extra keyslots (control_plane_keys.h; null: a control
  // plane keeps no cold-start keyslot and waits for berthd on every boot).
  LuksKeyslots* keyslots = nullptr;
  // Control planes: starting the node's etcd, and a client to watch it become a member.
  EtcdService* etcd = nullptr;
  std::function<Result<std::unique_ptr<etcd::Client>>(etcd::ClientOptions)> make_etcd_client;
  // The first control plane: starting its Kubernetes API server, controller manager and
  // berthd (bootstrap.h; null: a bootstrap is refused before anything is made).
  ControlPlaneServices* control_plane = nullptr;
  // The instance metadata service at a URL (null: the real one, over libcurl).
  std::function<std::unique_ptr<InstanceMetadata>(const std::string& url)> make_imds;
  // Golden tickets (golden_ticket.h): the reader of the flavour berth-agent links. Null: a
  // release build, which refuses an EnrolmentConfig that carries one.
  GoldenTicketReader read_golden_ticket = nullptr;
  // Least privilege (privileges.h): called once the state disk is mounted, or on a diskless
  // node once the ticket is in hand, before anything else runs. Null: nothing is dropped
  // (tests of the flow that run in the test process).
  std::function<Status()> drop_privileges;
};

// The production dependencies: real clock, processes, sd_notify, ESYS, gRPC.
AgentDeps RealAgentDeps();

// Runs the whole flow. On failure the Status names the step and the cause; nothing is
// written unless a ticket was granted.
Status RunAgent(const AgentOptions& options, AgentDeps& deps);

// The PCRs the agent quotes: the EnrolmentConfig's selection (or the default), always with
// sha256 PCR 15, whose events say whether this boot already released its keys.
std::vector<v1::PcrSelection> QuoteSelection(const v1::EnrolmentConfig& config);

// Where an SEV-SNP node's sealed identity is (options.snp_identity under options.root).
std::string SnpIdentityPath(const AgentOptions& options);

// The node name: the EnrolmentConfig's, else the host name (lower-cased).
Result<std::string> ResolveNodeName(const v1::EnrolmentConfig& config);

}  // namespace berth::agent
