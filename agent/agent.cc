#include "agent/agent.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <filesystem>
#include <mutex>
#include <random>
#include <regex>
#include <sstream>

#include "agent/attestation.h"
#include "agent/boot_seal.h"
#include "agent/bootstrap.h"
#include "agent/control_plane_keys.h"
#include "agent/kubeadm.h"
#include "agent/operator_server.h"
#include "agent/privileges.h"
#include "agent/snp_attester.h"
#include "common/binding.h"
#include "common/boot_policy.h"
#include "common/cluster_keys.h"
#include "common/etcd_pki.h"
#include "common/log.h"
#include "common/recovery.h"
#include "common/tpm/sealed_boot.h"

namespace berth::agent {

void SdNotifier::Status(const std::string& status) {
  sd_notifyf(0, "STATUS=%s", status.c_str());
}
void SdNotifier::Ready(const std::string& status) {
  sd_notifyf(0, "READY=1\nSTATUS=%s", status.c_str());
  spdlog::info("ready ms_since_exec={}", MillisSinceExec());
}

int64_t MillisSinceExec() {
  auto stat = ReadProcStat("self");
  if (!stat.ok() || stat->size() <= 22) return -1;
  char* end = nullptr;
  long long start_ticks = std::strtoll((*stat)[22].c_str(), &end, 10);
  long ticks_per_second = sysconf(_SC_CLK_TCK);
  timespec now{};
  if (*end != '\0' || ticks_per_second <= 0 || clock_gettime(CLOCK_BOOTTIME, &now) != 0) return -1;
  int64_t start_ms = start_ticks * 1000 / ticks_per_second;
  return int64_t{now.tv_sec} * 1000 + now.tv_nsec / 1'000'000 - start_ms;
}

AgentDeps RealAgentDeps() {
  static RealClock clock;
  static RealProcessRunner runner;
  static SdNotifier notifier;
  static std::unique_ptr<Disk> disk = MakeLibDisk();
  static std::unique_ptr<Mounter> mounter = MakeRealMounter();
  static std::unique_ptr<LuksKeyslots> keyslots = MakeLibLuksKeyslots();
  AgentDeps deps{&clock, &runner, &notifier, OpenEsysTpm, nullptr};
  deps.open_sev_guest = OpenSevGuestDevice;
  deps.disk = disk.get();
  deps.mounter = mounter.get();
  deps.keyslots = keyslots.get();
  static SystemdEtcdService etcd_service(&runner);
  deps.etcd = &etcd_service;
  static SystemdControlPlaneServices control_plane(&runner, "/bin/systemctl");
  deps.control_plane = &control_plane;
  deps.make_etcd_client = etcd::MakeGrpcClient;
  deps.drop_privileges = [] { return DropCapabilitiesExcept(kJoinCapabilities); };
  deps.make_transport = [](const ClientIdentity& id, const v1::EnrolmentConfig& config) {
    return MakeGrpcJoinTransport(id, config.cluster_ca_pem(), config.tls_server_name(),
                                 std::chrono::seconds(30));
  };
  return deps;
}

Result<std::string> ResolveNodeName(const v1::EnrolmentConfig& config) {
  std::string name = config.node_name();
  if (name.empty()) {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) != 0) return ErrnoStatus("gethostname");
    name = host;
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (!IsValidNodeName(name)) {
    return InvalidArgument("node name \"" + name + "\" is not a valid Kubernetes node name");
  }
  return name;
}

std::string SnpIdentityPath(const AgentOptions& options) {
  return JoinRoot(options.root, options.snp_identity);
}

namespace {

enum class Step {
  kReadEnrolment,
  kOpenTpm,
  kMeasureEnrolment,
  kMakeIdentity,
  kProbeDisk,
  kRequestTicket,
  kRequestRejoinTicket,
  kFormatDisk,
  kUnlockDisk,
  kMakeFilesystem,
  kMount,
  kWriteEtcdPki,
  kStartEtcd,
  kKubeadmJoin,
  kStartKubelet,
  kOpenSevGuest,
  kReleaseKeys,
  kDropPrivileges,
  kEc2Identity,
  kSnpIdentity,
  kSealColdStart,
  kColdStartKey,
  kWriteClusterKeys,
  kOperatorRecovery,
  kOperatorBootstrap,
  kMakeClusterPki,
  kWriteClusterFiles,
  kStartControlPlane,
  kConfigureCluster,
  kStartBerthd,
  kWriteBerthdFiles,
  kRegisterKubelet,
};

std::string_view StepName(Step step) {
  switch (step) {
    case Step::kReadEnrolment: return "read-enrolment";
    case Step::kOpenTpm: return "open-tpm";
    case Step::kMeasureEnrolment: return "measure-enrolment";
    case Step::kMakeIdentity: return "make-identity";
    case Step::kProbeDisk: return "probe-disk";
    case Step::kRequestTicket: return "request-ticket";
    case Step::kRequestRejoinTicket: return "request-rejoin-ticket";
    case Step::kFormatDisk: return "format";
    case Step::kUnlockDisk: return "unlock";
    case Step::kMakeFilesystem: return "mkfs";
    case Step::kMount: return "mount";
    case Step::kWriteEtcdPki: return "write-etcd-pki";
    case Step::kStartEtcd: return "start-etcd";
    case Step::kKubeadmJoin: return "kubeadm-join";
    case Step::kStartKubelet: return "start-kubelet";
    case Step::kOpenSevGuest: return "open-sev-guest";
    case Step::kReleaseKeys: return "release-keys";
    case Step::kDropPrivileges: return "drop-privileges";
    case Step::kEc2Identity: return "ec2-identity";
    case Step::kSnpIdentity: return "snp-identity";
    case Step::kSealColdStart: return "seal-cold-start";
    case Step::kColdStartKey: return "cold-start-key";
    case Step::kWriteClusterKeys: return "write-cluster-keys";
    case Step::kOperatorRecovery: return "operator-recovery";
    case Step::kOperatorBootstrap: return "operator-bootstrap";
    case Step::kMakeClusterPki: return "make-cluster-pki";
    case Step::kWriteClusterFiles: return "write-cluster-files";
    case Step::kStartControlPlane: return "start-control-plane";
    case Step::kConfigureCluster: return "configure-cluster";
    case Step::kStartBerthd: return "start-berthd";
    case Step::kWriteBerthdFiles: return "write-berthd-files";
    case Step::kRegisterKubelet: return "register-kubelet";
  }
  return "?";
}

// Runs one step: STATUS to systemd, one log line with the duration and the outcome.
template <typename Fn>
auto RunStep(Step step, Notifier& notifier, std::string_view status, Fn fn) {
  notifier.Status(std::string(status));
  int64_t start = MonotonicMillis();
  auto result = fn();
  int64_t ms = MonotonicMillis() - start;
  const Status& st = [&]() -> const Status& {
    if constexpr (std::is_same_v<decltype(result), Status>) {
      return result;
    } else {
      return result.status();
    }
  }();
  if (st.ok()) {
    spdlog::info("step={} result=ok duration_ms={}", StepName(step), ms);
  } else {
    spdlog::error("step={} result=failed duration_ms={} error=\"{}\"", StepName(step), ms,
                  st.ToString());
  }
  return result;
}

struct Prepared {
  v1::EnrolmentConfig config;
  std::string file;  // the EnrolmentConfig's bytes, as measured into PCR 15
  std::string node_name;
};

Result<Prepared> ReadEnrolment(const AgentOptions& options) {
  Prepared p;
  const std::string path = JoinRoot(options.root, options.enrolment_path);
  BERTH_ASSIGN_OR_RETURN(p.config, LoadEnrolmentConfig(path));
  // The bytes that are measured must be the ones that were parsed.
  BERTH_ASSIGN_OR_RETURN(p.file, ReadFile(path, 1 << 20));
  v1::EnrolmentConfig reparsed;
  if (!reparsed.ParseFromString(p.file) ||
      reparsed.SerializeAsString() != p.config.SerializeAsString()) {
    return Aborted("enrolment config " + path + " changed while it was being read");
  }
  auto name = ResolveNodeName(p.config);
  if (!name.ok()) return name.status().WithContext("reading enrolment config");
  p.node_name = std::move(*name);
  return p;
}

}  // namespace

namespace {

// Test hook for crash-safety tests: BERTH_FAULT_AFTER=<step> stops the agent dead after that
// step (it prints a marker and waits to be killed, like a power cut). It cannot make the agent
// do anything it would not do anyway.
void MaybeStopForFaultInjection(Step step) {
  const char* after = std::getenv("BERTH_FAULT_AFTER");
  if (after == nullptr || StepName(step) != after) return;
  std::fprintf(stderr, "berth-fault: stopped after %s\n", after);
  std::fflush(stderr);
  for (;;) pause();
}

// One boot of the agent: the steps above, sharing what earlier steps established.
class Boot {
 public:
  Boot(const AgentOptions& options, AgentDeps& deps) : options_(options), deps_(deps) {}

 private:
  template <typename Fn>
  auto Timed(Step step, std::string_view status, Fn fn) {
    auto result = RunStep(step, *deps_.notifier, status, fn);
    if (result.ok()) MaybeStopForFaultInjection(step);
    return result;
  }

 public:

  Status Run() {
    auto prepared = Timed(Step::kReadEnrolment, "reading EnrolmentConfig",
                         [&] { return ReadEnrolment(options_); });
    if (!prepared.ok()) return prepared.status();
    config_ = prepared->config;
    config_file_ = prepared->file;
    node_ = prepared->node_name;
    if (config_.has_golden_ticket()) {
      // Debug enrolment instead of attestation (golden_ticket.h); release builds refuse.
      if (deps_.read_golden_ticket == nullptr) return GoldenTicketRefused();
      BERTH_ASSIGN_OR_RETURN(golden_,
                             deps_.read_golden_ticket(config_, node_, deps_.clock->NowUnix()));
    } else {
      BERTH_RETURN_IF_ERROR(OpenAttester());
    }
    ec2_instance_id_ = Ec2InstanceId();
    if (!ec2_instance_id_.empty()) ReadEc2Identity();
    // This boot's TLS key (the quote binds it) and the channel to berthd.
    Status made = Timed(Step::kMakeIdentity, "creating this boot's TLS identity", [&]() -> Status {
      BERTH_ASSIGN_OR_RETURN(identity_, MakeClientIdentity(node_));
      transport_ = deps_.make_transport(identity_, config_);
      return OkStatus();
    });
    BERTH_RETURN_IF_ERROR(made);
    if (ControlPlane()) BERTH_RETURN_IF_ERROR(PrepareControlPlane());

    if (!config_.has_state_disk()) return JoinDiskless();
    if (deps_.disk == nullptr || deps_.mounter == nullptr) {
      return FailedPrecondition(
          "the EnrolmentConfig names a state disk but no disk access was given");
    }
    disk_ = std::make_unique<StateDisk>(config_.state_disk(), options_.root, deps_.disk,
                                        deps_.mounter, deps_.runner);
    auto probe = Timed(Step::kProbeDisk, "probing state disk", [&] { return disk_->Probe(); });
    if (!probe.ok()) return probe.status().WithContext("probing the state disk");
    switch (probe->kind) {
      case ProbeResult::Kind::kBlank:
        return config_.operator_access().bootstrap() ? WaitForBootstrap() : FirstBoot();
      case ProbeResult::Kind::kLuks: return LaterBoot();
      case ProbeResult::Kind::kOther: break;
    }
    // Everything found goes to the journal; the status (systemctl status) and the error name
    // the first few.
    std::string all;
    for (const std::string& f : probe->found) all += (all.empty() ? "" : "; ") + f;
    spdlog::error("state disk {} is not blank: {}", disk_->device(), all);
    deps_.notifier->Status("refusing state disk " + disk_->device() + ": found " +
                           probe->Describe());
    return FailedPrecondition("state disk " + disk_->device() +
                              " is not blank and is not a berth LUKS2 disk, refusing to format "
                              "it: found " +
                              probe->Describe());
  }

 private:
  // The attester for the EnrolmentConfig's attestation kind.
  Status OpenAttester() {
    switch (config_.attestation()) {
      case v1::ATTESTATION_KIND_TPM: {
        auto tpm = Timed(Step::kOpenTpm, "opening TPM",
                         [&] { return deps_.open_tpm(options_.tcti); });
        if (!tpm.ok()) return tpm.status().WithContext("opening TPM");
        tpm_ = std::move(*tpm);
        auto sealed = Timed(Step::kMeasureEnrolment, "measuring EnrolmentConfig",
                            [&] { return BootSeal::Measure(*tpm_, AsBytes(config_file_)); });
        if (!sealed.ok()) return sealed.status().WithContext("measuring the EnrolmentConfig");
        if (!sealed->measured_now()) {
          spdlog::info("PCR {} already holds this EnrolmentConfig (an earlier run in this boot){}",
                       seal::kPcr,
                       sealed->keys_released() ? ", and this boot already released its keys" : "");
        }
        seal_ = std::move(*sealed);
        attester_ =
            std::make_unique<TpmAttester>(tpm_.get(), QuoteSelection(config_),
                                          JoinRoot(options_.root, kEventLogPath), seal_->Events());
        return OkStatus();
      }
      case v1::ATTESTATION_KIND_SEV_SNP:
        if (deps_.open_sev_guest) {
          auto device = Timed(Step::kOpenSevGuest, "opening SEV-SNP guest device",
                              [&] { return deps_.open_sev_guest(options_.sev_guest); });
          if (!device.ok()) return device.status().WithContext("opening the SEV-SNP guest device");
          sev_guest_ = std::move(*device);
          auto identity = Timed(Step::kSnpIdentity, "unsealing this node's SEV-SNP identity", [&] {
            return SnpIdentity::LoadOrCreate(*sev_guest_, SnpIdentityPath(options_),
                                             options_.snp_vmpl);
          });
          if (!identity.ok()) return identity.status();
          snp_identity_ = std::make_unique<SnpIdentity>(std::move(*identity));
          attester_ = std::make_unique<SnpAttester>(sev_guest_.get(), options_.snp_vmpl,
                                                    snp_identity_.get());
          return OkStatus();
        }
        [[fallthrough]];  // an agent given no SEV-SNP device access does not provide it
      default:
        return InvalidArgument("reading enrolment config: it asks for attestation kind " +
                               v1::AttestationKind_Name(config_.attestation()) +
                               ", which this agent does not provide");
    }
  }

  bool ControlPlane() const { return config_.role() == v1::NODE_ROLE_CONTROL_PLANE; }

  // A control plane's etcd keeps its data on the state disk, and serves on the node's address.
  Status PrepareControlPlane() {
    if (!config_.has_state_disk()) {
      return FailedPrecondition("a control-plane node needs a state disk: its etcd data must "
                                "survive a reboot");
    }
    if (deps_.etcd == nullptr || !deps_.make_etcd_client) {
      return FailedPrecondition("a control-plane node needs a way to start etcd");
    }
    etcd_endpoints_.peer_port = options_.etcd_peer_port;
    etcd_endpoints_.client_port = options_.etcd_client_port;
    if (!options_.node_addresses.empty()) {
      etcd_endpoints_.addresses = options_.node_addresses;
    } else {
      BERTH_ASSIGN_OR_RETURN(etcd_endpoints_.addresses, DetectNodeAddresses());
    }
    return OkStatus();
  }

  std::string EtcdDataDir() const {
    return JoinRoot(options_.root, config_.state_disk().mount_point()) + "/" + kEtcdDataSubdir;
  }

  // Challenge, evidence bound to the nonce and this boot's TLS key, then `call` with them;
  // retried across endpoints while berthd is unavailable.
  template <typename T>
  Result<T> Attested(const RetryPolicy* retry, std::string_view what,
                     const std::function<Result<T>(const std::string& endpoint, Attestation,
                                                   const std::string& nonce)>& call) {
    std::function<Result<T>(const std::string&)> attempt =
        [&](const std::string& endpoint) -> Result<T> {
      if (golden_.has_value()) return call(endpoint, Attestation{}, "");  // no evidence to bind
      BERTH_ASSIGN_OR_RETURN(v1::ChallengeRequest challenge_request,
                             attester_->MakeChallengeRequest());
      BERTH_ASSIGN_OR_RETURN(v1::ChallengeResponse challenge,
                             transport_->Challenge(endpoint, challenge_request));
      Bytes binding = ComputeBinding(AsBytes(challenge.nonce()), identity_.spki_sha256);
      auto attestation = attester_->Attest(challenge, binding);
      if (!attestation.ok()) return attestation.status().WithContext("collecting evidence");
      return call(endpoint, std::move(*attestation), challenge.nonce());
    };
    std::optional<std::chrono::milliseconds> hinted;
    auto server_delay = [&] {
      hinted = transport_->TakeRetryAfter();
      return hinted;
    };
    auto on_retry = [&](const std::string& endpoint, const Status& st,
                        std::chrono::milliseconds d) {
      spdlog::warn("{} from {} failed, retrying in {} ms: {}", what, endpoint, d.count(),
                   st.ToString());
      // berthd said when to call again: it is waiting for something (an operator's approval),
      // and its message says what.
      deps_.notifier->Status(hinted ? "waiting: " + st.message()
                                    : "waiting for berthd (" + std::string(CodeName(st.code())) +
                                          " from " + endpoint + ")");
    };
    std::vector<std::string> endpoints(config_.endpoints().begin(), config_.endpoints().end());
    Result<T> result = CallWithRetry<T>(endpoints, retry != nullptr ? *retry : options_.retry,
                                        *deps_.clock, attempt, on_retry, server_delay);
    if (!result.ok()) {
      const Status& st = result.status();
      if (st.code() == Code::kPermissionDenied) {
        return st.WithContext("berthd refused this node's evidence; not retrying");
      }
      return st.WithContext(std::string("requesting ") + std::string(what));
    }
    return result;
  }

  Result<v1::JoinTicket> RequestJoinTicket(const std::string& disk_uuid) {
    if (ControlPlane() && options_.control_plane_units) {
      BERTH_RETURN_IF_ERROR(CheckControlPlaneMount(config_.state_disk().mount_point()));
    }
    if (ControlPlane() && etcd_keys_ == nullptr) {
      // Made on this node for this join; only the CSRs leave it.
      BERTH_ASSIGN_OR_RETURN(EtcdKeys keys, MakeEtcdKeys(node_));
      etcd_keys_ = std::make_unique<EtcdKeys>(std::move(keys));
    }
    auto ticket = Timed(Step::kRequestTicket, "requesting join ticket", [&] {
      return Attested<v1::JoinTicket>(
          nullptr, "join ticket",
          [&](const std::string& endpoint, Attestation attestation, const std::string& nonce) {
            v1::JoinRequest request;
            // A golden-ticket join carries the ticket instead of evidence, not an empty one.
            if (!golden_.has_value()) *request.mutable_evidence() = std::move(attestation.evidence);
            request.set_activated_credential(std::string(attestation.activated_credential.view()));
            request.set_nonce(nonce);
            request.set_node_name(node_);
            request.set_role(config_.role());
            request.set_disk_uuid(disk_uuid);
            if (golden_.has_value()) *request.mutable_golden_ticket() = *golden_;
            request.set_ec2_instance_id(ec2_instance_id_);
            if (ec2_identity_.has_value()) *request.mutable_ec2_identity() = *ec2_identity_;
            if (ControlPlane()) {
              for (const auto& a : etcd_endpoints_.addresses) request.add_node_addresses(a);
              request.set_etcd_csr(ToString(etcd_keys_->server_csr));
              request.set_etcd_peer_csr(ToString(etcd_keys_->peer_csr));
              request.set_etcd_peer_url(etcd_endpoints_.PeerUrl());
              request.set_etcd_client_url(etcd_endpoints_.ClientUrl());
            }
            auto ticket = transport_->IssueJoinTicket(endpoint, request);
            WipeString(*request.mutable_activated_credential());
            return ticket;
          });
    });
    if (!ticket.ok()) return ticket.status();
    Status valid = ValidateJoinTicket(*ticket, !disk_uuid.empty());
    if (valid.ok() && ticket->has_cluster_keys()) {
      valid = ControlPlane() ? CheckClusterKeys(ticket->cluster_keys())
                             : InvalidArgument("malformed join ticket: cluster keys for a worker");
    }
    if (valid.ok() && ControlPlane() && options_.control_plane_units &&
        !ticket->has_cluster_keys()) {
      // Before the disk is formatted: nothing is changed on this node.
      valid = FailedPrecondition(
          "this control plane runs the Kubernetes control plane itself, but berthd shared no "
          "cluster keys with it (berthd --control-plane-pki): it cannot make its API server's "
          "certificates");
    }
    if (valid.ok() && ControlPlane()) {
      valid = ticket->has_etcd() ? ValidateEtcdMaterial(ticket->etcd(), *etcd_keys_, node_,
                                                        etcd_endpoints_.PeerUrl())
                                 : InvalidArgument("malformed join ticket: no etcd section for a "
                                                   "control plane");
    }
    if (valid.ok() && ControlPlane() && ticket->cluster_keys().has_berthd()) {
      valid = CheckBerthdKeys(ticket->cluster_keys().berthd(), config_.cluster_ca_pem(),
                              ticket->etcd().ca_certificate());
    }
    if (!valid.ok()) {
      Scrub(*ticket);
      return valid;
    }
    return ticket;
  }

  // `retry` (default: options_.retry) bounds how long berthd is waited for.
  Result<SecretBytes> RequestRejoinKey(const std::string& disk_uuid,
                                       const RetryPolicy* retry = nullptr) {
    auto ticket = Timed(Step::kRequestRejoinTicket, "requesting rejoin ticket", [&] {
      return Attested<v1::RejoinTicket>(
          retry, "rejoin ticket",
          [&](const std::string& endpoint, Attestation attestation, const std::string& nonce) {
            v1::RejoinRequest request;
            *request.mutable_evidence() = std::move(attestation.evidence);
            request.set_activated_credential(std::string(attestation.activated_credential.view()));
            request.set_nonce(nonce);
            request.set_node_name(node_);
            request.set_disk_uuid(disk_uuid);
            auto ticket = transport_->IssueRejoinTicket(endpoint, request);
            WipeString(*request.mutable_activated_credential());
            return ticket;
          });
    });
    if (!ticket.ok()) return ticket.status();
    if (ticket->disk_key().size() != 32) {
      size_t size = ticket->disk_key().size();
      WipeString(*ticket->mutable_disk_key());
      return InvalidArgument("malformed rejoin ticket: disk key has " + std::to_string(size) +
                             " bytes, expected 32");
    }
    rejoin_crl_ = ticket->etcd_crl();
    rejoin_cold_start_ = ticket->cold_start();
    rejoin_recovery_key_ = ticket->recovery_public_key();
    return SecretBytes::TakeFrom(*ticket->mutable_disk_key());
  }

  static void Scrub(v1::JoinTicket& t) {
    ScrubClusterKeys(*t.mutable_cluster_keys());
    WipeString(*t.mutable_disk_key());
    WipeString(*t.mutable_kubeadm()->mutable_token());
    WipeString(*t.mutable_discovery_kubeconfig());
  }

  // With a state disk, what kubeadm wrote there is flushed within the step, so a node whose
  // step "kubeadm-join" finished keeps its kubelet.conf whatever happens next.
  Status KubeadmJoin(const v1::JoinTicket& ticket) {
    Status joined = Timed(Step::kKubeadmJoin, "running kubeadm join", [&] {
      ControlPlaneJoin cp{.advertise_address = AdvertiseAddress()};
      // berthd --discovery file: kubeadm reads the cluster and the token from a kubeconfig,
      // written beside the JoinConfiguration.
      const bool file = !ticket.discovery_kubeconfig().empty();
      SecretBytes join_config =
          RenderJoinConfiguration(ticket.kubeadm(), node_, ControlPlane() ? &cp : nullptr,
                                  file ? JoinRoot(options_.root, kDiscoveryKubeconfigPath) : "");
      SecretBytes discovery(ticket.discovery_kubeconfig().data(),
                            ticket.discovery_kubeconfig().size());
      BERTH_RETURN_IF_ERROR(RunKubeadmJoin(*deps_.runner, options_.kubeadm, options_.root,
                                           join_config, file ? &discovery : nullptr,
                                           {ticket.kubeadm().token()}));
      return disk_ ? disk_->Sync().WithContext("flushing the state disk") : OkStatus();
    });
    if (!joined.ok()) return joined.WithContext("joining the cluster");
    return OkStatus();
  }

  // kubeadm join until the node has joined (docs/kubernetes-node.md, "When kubeadm join
  // fails"). A join that fails in a way that can pass (kubeadm exited non-zero: the API server
  // unreachable, a token or CA pin it refused, a TLS bootstrap that timed out) is logged with
  // kubeadm's own words and shown in the unit's status; what it left is cleared, and after a
  // backoff the node attests again for a fresh ticket (a new bootstrap token; with a state
  // disk, the same disk key, checked) and joins again. The state disk stays as it is: formatted,
  // mounted, its progress recorded. `ticket` is replaced by each new ticket (the caller scrubs
  // the last one); `disk_key` is null on a diskless node.
  Status KubeadmJoinUntilJoined(v1::JoinTicket& ticket, const std::string& disk_uuid,
                                const SecretBytes* disk_key) {
    std::mt19937_64 rng(std::random_device{}());
    for (int attempt = 1;; ++attempt) {
      Status st = KubeadmJoin(ticket);
      if (st.ok() || !IsRetryable(st)) return st;
      if (KubeletBootstrapped(options_.root)) {
        // kubeadm gave up after the kubelet's TLS bootstrap (waiting for the kubelet to turn
        // healthy): the node has its own credentials and has joined, and a second kubeadm join
        // would be refused by its preflight. What is wrong now is the kubelet's to say.
        spdlog::warn("kubeadm join failed after the kubelet's TLS bootstrap (its kubelet.conf and "
                     "client certificate exist): the node has joined; see the kubelet's journal: {}",
                     st.ToString());
        return disk_ ? disk_->Sync().WithContext("flushing the state disk") : OkStatus();
      }
      if (options_.join_attempts != 0 && attempt >= options_.join_attempts) {
        return attempt == 1 ? st
                            : st.WithContext("giving up after " + std::to_string(attempt) +
                                             " kubeadm join attempts");
      }
      const std::chrono::milliseconds delay = BackoffDelay(options_.retry, attempt - 1, rng);
      spdlog::warn("kubeadm join attempt {} failed; clearing what it left and joining again with a "
                   "new ticket in {} ms: {}",
                   attempt, delay.count(), st.ToString());
      deps_.notifier->Status("waiting: kubeadm join failed (attempt " + std::to_string(attempt) +
                             "): " + KubeadmErrorLine(st.message()) + "; retrying in " +
                             std::to_string((delay.count() + 999) / 1000) + " s");
      BERTH_RETURN_IF_ERROR(ClearFailedJoin(*deps_.runner, options_.root, options_.systemctl,
                                            options_.kubelet_unit)
                                .WithContext("clearing a failed kubeadm join"));
      deps_.clock->Sleep(delay);
      Scrub(ticket);
      BERTH_ASSIGN_OR_RETURN(ticket, RequestJoinTicket(disk_uuid));
      if (disk_key != nullptr) {
        SecretBytes key = SecretBytes::TakeFrom(*ticket.mutable_disk_key());
        if (!key.Equals(*disk_key)) {
          return Internal("berthd returned a different key for the same disk on one boot");
        }
      }
    }
  }

  // The line of kubeadm's failure that says what went wrong ("error execution phase ..."),
  // else the first line of `message`: short enough for a unit's status.
  static std::string KubeadmErrorLine(const std::string& message) {
    std::string first;
    size_t start = 0;
    while (start <= message.size()) {
      size_t end = message.find('\n', start);
      if (end == std::string::npos) end = message.size();
      std::string line = TrimWhitespace(message.substr(start, end - start));
      if (first.empty()) first = line;
      if (line.starts_with("error execution phase") || line.starts_with("error:")) return line;
      start = end + 1;
    }
    return first;
  }

  // The kubelet, once the node has joined (kubeadm started it then) or rejoined with its state
  // disk mounted; only when the options name its unit.
  Status StartKubeletIfConfigured() {
    if (options_.kubelet_unit.empty()) return OkStatus();
    Status st = Timed(Step::kStartKubelet, "starting the kubelet", [&] {
      return StartKubelet(*deps_.runner, options_.systemctl, options_.kubelet_unit);
    });
    if (!st.ok()) return st.WithContext("starting the kubelet");
    return OkStatus();
  }

  // The first IP literal among the node's addresses (kubeadm wants an IP).
  std::string AdvertiseAddress() const {
    for (const auto& a : etcd_endpoints_.addresses) {
      if (a.find_first_not_of("0123456789.") == std::string::npos ||
          a.find(':') != std::string::npos) {
        return a;
      }
    }
    return etcd_endpoints_.addresses.empty() ? "" : etcd_endpoints_.addresses[0];
  }

  // Writes the etcd PKI and environment (recorded as pki_written), then starts etcd.
  Status SetUpEtcd(const v1::EtcdMaterial& material, Progress& progress) {
    Status st = Timed(Step::kWriteEtcdPki, "writing etcd PKI", [&] {
      return WriteEtcdFiles(options_.root, material, *etcd_keys_, etcd_endpoints_, EtcdDataDir());
    });
    if (!st.ok()) return st.WithContext("writing the etcd PKI");
    progress.pki_written = true;
    BERTH_RETURN_IF_ERROR(disk_->WriteProgress(progress).WithContext("recording progress"));
    return StartEtcd(material.member_id());
  }

  // Starts the node's etcd and waits until it is a voting member (berthd promotes it).
  Status StartEtcd(uint64_t member_id) {
    Status st = Timed(Step::kStartEtcd, "starting etcd", [&]() -> Status {
      BERTH_RETURN_IF_ERROR(deps_.etcd->Start());
      const std::string url = etcd_endpoints_.ClientUrl();
      BERTH_ASSIGN_OR_RETURN(etcd::ClientOptions o, LocalEtcdClientOptions(options_.root, url));
      BERTH_ASSIGN_OR_RETURN(std::unique_ptr<etcd::Client> client,
                             deps_.make_etcd_client(std::move(o)));
      return WaitForEtcdMember(*client, url, member_id, *deps_.clock, options_.etcd_wait,
                               [&](const std::string& state) {
                                 spdlog::info("etcd member at {}: {}", url, state);
                                 deps_.notifier->Status("etcd: " + state);
                               });
    });
    if (!st.ok()) return st.WithContext("starting etcd");
    return OkStatus();
  }

  // The ticket's secrets are used: seal the boot ("keys released" into PCR 15, so nothing
  // later in this boot attests its way to them again), then tell systemd.
  Status Ready(const std::string& what) {
    if (seal_.has_value()) {
      Status released =
          Timed(Step::kReleaseKeys, "sealing the boot", [&] { return seal_->ReleaseKeys(*tpm_); });
      if (!released.ok()) return released.WithContext("sealing the boot after the join");
    }
    // systemd keeps the last status of a unit that stays active: `systemctl status
    // berth-agent` says what is still wrong, not only "node joined".
    deps_.notifier->Ready(api_server_not_ready_.empty()
                              ? "node joined"
                              : "node joined; its Kubernetes API server was not ready: " +
                                    api_server_not_ready_ + " (journalctl -u kube-apiserver)");
    spdlog::info("node {} {}", node_, what);
    return OkStatus();
  }

  // What the rest of the boot does needs root's file access only (privileges.h).
  Status DropPrivileges() {
    if (!deps_.drop_privileges) return OkStatus();
    Status st = Timed(Step::kDropPrivileges, "dropping privileges", deps_.drop_privileges);
    if (!st.ok()) return st.WithContext("dropping privileges");
    return OkStatus();
  }

  Status JoinDiskless() {
    BERTH_ASSIGN_OR_RETURN(v1::JoinTicket ticket, RequestJoinTicket(""));
    Status joined = DropPrivileges();
    if (joined.ok()) joined = KubeadmJoinUntilJoined(ticket, "", nullptr);
    std::string endpoint = ticket.kubeadm().api_server_endpoint();
    Scrub(ticket);
    BERTH_RETURN_IF_ERROR(joined);
    BERTH_RETURN_IF_ERROR(StartKubeletIfConfigured());
    return Ready("joined the cluster at " + endpoint);
  }

  // Unlock, filesystem, mount: the same on every boot once the disk is formatted. A control
  // plane's ticket carries berthd's signature over this boot (`cold_start`, null when the disk
  // was opened without berthd) and the cluster's recovery key: its cold-start and recovery
  // keyslots are brought up to date before the agent drops the privileges that writing the
  // LUKS2 header needs.
  Status UnlockAndMount(const SecretBytes& key, const std::string& uuid,
                        const v1::ColdStart* cold_start,
                        const std::string& recovery_public_key = "") {
    Status st =
        Timed(Step::kUnlockDisk, "unlocking state disk", [&] { return disk_->Unlock(key); });
    if (!st.ok()) return st.WithContext("unlocking the state disk");
    st = Timed(Step::kMakeFilesystem, "making state filesystem",
              [&] { return disk_->MakeFilesystemIfBlank(); });
    if (!st.ok()) return st.WithContext("making the state filesystem");
    st = Timed(Step::kMount, "mounting state disk", [&] { return disk_->Mount(); });
    if (!st.ok()) return st.WithContext("mounting the state disk");
    if (cold_start != nullptr) RefreshOwnKeyslots(key, uuid, *cold_start, recovery_public_key);
    return DropPrivileges();
  }

  // The CA keys kubeadm's control-plane join expects in /etc/kubernetes/pki (on the state
  // disk, as /etc/kubernetes is), and the master secret berthd on this node will serve with.
  Status WriteSharedKeys(const v1::ClusterKeys& keys) {
    Status st = Timed(Step::kWriteClusterKeys, "writing the cluster keys", [&] {
      return WriteClusterKeys(
          keys, JoinRoot(options_.root, kKubernetesPkiDir),
          JoinRoot(options_.root, config_.state_disk().mount_point()) + kMasterSecretOnDisk);
    });
    return st.ok() ? st : st.WithContext("writing the cluster keys");
  }

  bool CanColdStart() const {
    return ControlPlane() && deps_.keyslots != nullptr && tpm_ != nullptr;
  }
  ControlPlaneKeys OwnKeyslots(const std::string& uuid) {
    return ControlPlaneKeys(tpm_.get(), deps_.keyslots, disk_->device(), uuid);
  }

  // The keyslots a control plane opens its disk with when no berthd answers
  // (docs/cluster-lifecycle.md): the cold-start one, sealed to the cluster's boot-policy key
  // with berthd's signed policy of this boot added, and the recovery one, sealed to the
  // cluster's recovery key. A failure is not the join's: the node serves, but cannot open its
  // disk without berthd until a later boot seals the keyslots, and says so.
  void RefreshOwnKeyslots(const SecretBytes& key, const std::string& uuid,
                          const v1::ColdStart& cold_start, const std::string& recovery_public_key) {
    if (!ControlPlane()) return;
    if (deps_.keyslots == nullptr) {
      spdlog::warn(
          "this agent keeps no cold-start or recovery keyslot: this control plane cannot open "
          "its state disk while no berthd answers");
      return;
    }
    v1::ColdStart sealed_to = cold_start;
    if (!cold_start.has_policy()) {
      spdlog::warn(
          "berthd signed no cold-start policy for this boot (the node has no TPM): this "
          "control plane cannot open its state disk by itself while no berthd answers");
      sealed_to.Clear();
    } else if (tpm_ == nullptr) {
      spdlog::warn("this agent has no TPM to seal a cold-start keyslot to");
      sealed_to.Clear();
    }
    if (recovery_public_key.empty()) {
      spdlog::warn(
          "berthd hands out no recovery key (berthd --recovery-key): operators cannot recover "
          "this control plane's state disk when it cannot open it by itself");
    }
    if (!sealed_to.has_policy() && recovery_public_key.empty()) return;
    Status st = Timed(Step::kSealColdStart, "sealing the cold-start and recovery keyslots", [&] {
      return OwnKeyslots(uuid).Refresh(key, sealed_to, AsBytes(recovery_public_key));
    });
    if (!st.ok()) {
      spdlog::error("this control plane cannot open its state disk while no berthd answers: {}",
                    st.ToString());
    }
  }

  // Where a later boot's disk key came from.
  enum class KeySource { kBerthd, kColdStart, kRecovery };

  // A control plane's later boot: berthd's key when some berthd answers in the first round of
  // calls; when none does (every control plane restarting at once), the key its TPM releases
  // in a boot the cluster signed; when neither, berthd's key whenever one answers, or the
  // recovery keyslot's key from operators (WaitForBerthdOrRecovery).
  Result<SecretBytes> LaterBootKey(const std::string& uuid, KeySource* source) {
    *source = KeySource::kBerthd;
    if (!CanColdStart()) return RequestRejoinKey(uuid);
    // A first control plane whose EnrolmentConfig still says bootstrap names no berthd: its
    // disk opens by cold start or recovery until the operator adds endpoints.
    const bool no_berthd = config_.endpoints().empty();
    if (!no_berthd) {
      RetryPolicy first_round = FirstRound();
      auto online = RequestRejoinKey(uuid, &first_round);
      if (online.ok() || !IsRetryable(online.status())) return online;
    }
    auto sealed = Timed(Step::kColdStartKey, "no berthd answers: unsealing the cold-start key",
                        [&] { return OwnKeyslots(uuid).ColdStartKey(); });
    if (sealed.ok()) {
      *source = KeySource::kColdStart;
      return sealed;
    }
    const std::string why =
        (no_berthd ? "the EnrolmentConfig names no berthd, and " : "no berthd answers, and ") +
        std::string(sealed.status().message());
    if (config_.operator_access().operator_spki_sha256_size() > 0) {
      return WaitForBerthdOrRecovery(uuid, why, source);
    }
    spdlog::warn(
        "no berthd answers and this boot cannot open the state disk by itself ({}); "
        "waiting for berthd (no operator is pinned in the EnrolmentConfig to recover it)",
        sealed.status().ToString());
    deps_.notifier->Status("waiting for berthd: " + why);
    return RequestRejoinKey(uuid);
  }

  // One call per berthd endpoint, the agent's own limit if lower.
  RetryPolicy FirstRound() const {
    RetryPolicy round = options_.retry;
    const int endpoints = std::max(config_.endpoints_size(), 1);
    if (round.max_attempts == 0 || round.max_attempts > endpoints) round.max_attempts = endpoints;
    return round;
  }

  // What the operator server does with a recovery (operator_server.h): the key is checked
  // against the disk's keyslots, and kept for the boot, or refused with nothing changed.
  class RecoveryHandler : public OperatorHandler {
   public:
    explicit RecoveryHandler(StateDisk* disk) : disk_(disk) {}
    Result<v1::BootstrapResponse> Bootstrap(const v1::BootstrapRequest&) override {
      return FailedPrecondition("this node is waiting for a recovery, not a bootstrap");
    }
    Status Recover(const SecretBytes& keyslot_key) override {
      Status opens = disk_->CheckKey(keyslot_key);
      if (!opens.ok()) {
        spdlog::error("an operator's recovery key opens no keyslot of the state disk: {}",
                      opens.ToString());
        return PermissionDenied("the key opens no keyslot of this node's state disk");
      }
      std::lock_guard<std::mutex> lock(mu_);
      key_ = keyslot_key.Clone();
      return OkStatus();
    }
    SecretBytes TakeKey() {
      std::lock_guard<std::mutex> lock(mu_);
      return std::move(key_);
    }

   private:
    StateDisk* disk_;
    std::mutex mu_;
    SecretBytes key_;  // GUARDED_BY(mu_)
  };

  // The operator endpoint in `mode`: the EnrolmentConfig's port and pinned operators.
  OperatorServerConfig OperatorConfig(v1::OperatorMode mode, const std::string& reason) const {
    OperatorServerConfig c{
        .listen = "0.0.0.0:" + std::to_string(config_.operator_access().port() != 0
                                                  ? config_.operator_access().port()
                                                  : kOperatorPort),
        .mode = mode,
        .node_name = node_,
        .reason = reason};
    for (const auto& hex : config_.operator_access().operator_spki_sha256()) {
      auto pin = HexDecode(hex);
      if (pin.ok() && pin->size() == 32) c.operator_spki_sha256.push_back(*pin);
    }
    return c;
  }

  // docs/cluster-lifecycle.md "Recovery": the node says on the console and in systemctl status
  // that it waits, serves the operator endpoint in recovery mode, and keeps calling berthd;
  // whichever comes first opens the disk. A recovery that fails (a key that opens nothing)
  // leaves it waiting. Without a recovery keyslot, or when it cannot listen, it waits for
  // berthd alone.
  Result<SecretBytes> WaitForBerthdOrRecovery(const std::string& uuid, const std::string& why,
                                              KeySource* source) {
    auto box = OwnKeyslots(uuid).Recovery();
    OperatorServerConfig server_config = OperatorConfig(v1::OPERATOR_MODE_RECOVERY, why);
    server_config.disk_uuid = uuid;
    RecoveryHandler recovery(disk_.get());
    std::unique_ptr<OperatorServer> server;  // stops before `recovery` goes
    if (!box.ok()) {
      spdlog::warn(
          "no berthd answers and this boot cannot open the state disk by itself, and "
          "it has no recovery keyslot for an operator ({}): waiting for berthd",
          box.status().ToString());
    } else {
      server_config.recovery_box = std::move(box->box);
      server_config.recovery_key_sha256 = box->recovery_key_sha256;
      attester_ = std::make_unique<SerializedAttester>(std::move(attester_));
      auto started = OperatorServer::Start(std::move(server_config), attester_.get(), &recovery);
      if (!started.ok()) {
        spdlog::error("cannot serve the operator's recovery: {}; waiting for berthd",
                      started.status().ToString());
      } else {
        server = std::move(*started);
        const std::string waiting =
            "waiting for berthd or an operator's recovery (berthctl recover --node <this "
            "node>:" +
            std::to_string(server->port()) +
            ", node key sha256:" + server->key_sha256().substr(0, 16) + "...): " + why;
        spdlog::warn("{}", waiting);
        deps_.notifier->Status(waiting);
      }
    }
    if (server == nullptr) {
      deps_.notifier->Status("waiting for berthd: " + why);
      return RequestRejoinKey(uuid);
    }
    const int64_t started_ms = MonotonicMillis();
    std::mt19937_64 rng(std::random_device{}());
    const RetryPolicy round = FirstRound();
    for (int attempt = 0;; ++attempt) {
      if (server->WaitFor(BackoffDelay(options_.retry, attempt, rng))) {
        *source = KeySource::kRecovery;
        spdlog::info("step={} result=ok duration_ms={}", StepName(Step::kOperatorRecovery),
                     MonotonicMillis() - started_ms);
        return recovery.TakeKey();
      }
      if (config_.endpoints().empty()) continue;  // only an operator can open it
      auto online = RequestRejoinKey(uuid, &round);
      if (online.ok() || !IsRetryable(online.status())) return online;
      if (options_.retry.max_attempts != 0 && attempt + 1 >= options_.retry.max_attempts) {
        return online;
      }
    }
  }

  // docs/cluster-lifecycle.md "Bootstrap": a blank node whose EnrolmentConfig says it makes the
  // cluster waits for an operator's `berthctl cluster init`, saying where and with which key
  // on the console and in systemctl status. The operator attests it first; one successful
  // Bootstrap (MakeCluster) ends the wait. A refused one changes nothing and it waits on.
  class BootstrapHandler : public OperatorHandler {
   public:
    explicit BootstrapHandler(Boot* boot) : boot_(boot) {}
    Result<v1::BootstrapResponse> Bootstrap(const v1::BootstrapRequest& request) override {
      auto made = boot_->MakeCluster(request);
      if (!made.ok()) spdlog::error("bootstrap refused: {}", made.status().ToString());
      return made;
    }
    Status Recover(const SecretBytes&) override {
      return FailedPrecondition("this node is waiting to bootstrap a cluster, not a recovery");
    }

   private:
    Boot* boot_;
  };

  Status WaitForBootstrap() {
    if (!ControlPlane() || tpm_ == nullptr || deps_.keyslots == nullptr ||
        deps_.control_plane == nullptr) {
      return FailedPrecondition(
          "the EnrolmentConfig asks this node to bootstrap a cluster, which needs a control "
          "plane with a TPM, LUKS2 keyslots (its cold-start keyslot) and its services");
    }
    BERTH_RETURN_IF_ERROR(CheckControlPlaneMount(config_.state_disk().mount_point()));
    OperatorServerConfig server_config = OperatorConfig(
        v1::OPERATOR_MODE_BOOTSTRAP, "a blank state disk, waiting to bootstrap a cluster");
    serialized_ = new SerializedAttester(std::move(attester_));
    attester_.reset(serialized_);
    BootstrapHandler handler(this);
    BERTH_ASSIGN_OR_RETURN(
        std::unique_ptr<OperatorServer> server,
        OperatorServer::Start(std::move(server_config), attester_.get(), &handler));
    const std::string waiting =
        "waiting for an operator's bootstrap (berthctl cluster init "
        "--node <this node>:" +
        std::to_string(server->port()) + ", node key sha256:" + server->key_sha256().substr(0, 16) +
        "...)";
    spdlog::warn("{}", waiting);
    deps_.notifier->Status(waiting);
    const int64_t started_ms = MonotonicMillis();
    // Until one Bootstrap succeeds, or one fails after it formatted the disk.
    while (!server->WaitFor(std::chrono::seconds(1))) {
      std::lock_guard<std::mutex> lock(failed_mu_);
      if (!failed_bootstrap_.ok()) {
        server->Shutdown();  // the operator's call gets its answer first (operator_server.h)
        return failed_bootstrap_;
      }
    }
    server->Shutdown();  // the operator has its answer (operator_server.h)
    spdlog::info("step={} result=ok duration_ms={}", StepName(Step::kOperatorBootstrap),
                 MonotonicMillis() - started_ms);
    return Ready(bootstrapped_);
  }

  // A failure to wipe the bootstrap's stage is logged: the bootstrap's own outcome is what the
  // operator is told.
  static void WipeStage(const std::string& stage) {
    Status st = WipeAndRemove(stage);
    if (!st.ok()) spdlog::error("wiping the bootstrap's stage {}: {}", stage, st.ToString());
  }

  // What the first control plane makes (bootstrap.h), in an order that fails early: the
  // request is checked, kubeadm's version read, the secrets and this boot's cold-start policy
  // made in memory before the disk is touched; then the disk is formatted with the key the
  // master secret derives (as berthd derives it on later boots), its keyslots sealed, the
  // Kubernetes PKI made by kubeadm and berth's files written onto it, and etcd started as the
  // cluster's first voter. A failure after formatting leaves a disk that is not blank: the
  // node refuses a second bootstrap (FormatIfBlank) and says so.
  Result<v1::BootstrapResponse> MakeCluster(const v1::BootstrapRequest& request) {
    BERTH_ASSIGN_OR_RETURN(BootstrapParams params, CheckBootstrapRequest(request));
    auto advertised = ApiServerAddress();
    if (!advertised.ok()) return advertised.status().WithContext("bootstrap");
    const std::string advertise = *advertised;
    BERTH_ASSIGN_OR_RETURN(std::string kube_version,
                           KubeadmVersion(*deps_.runner, options_.kubeadm));
    SecretBytes master(RandomBytes(32).data(), 32);
    const std::string uuid = NewDiskUuid();
    BERTH_ASSIGN_OR_RETURN(SecretBytes disk_key, DeriveDiskKey(master, params.cluster_id, uuid));
    BERTH_ASSIGN_OR_RETURN(v1::ColdStart cold_start, SignOwnBoot(master, params));
    std::vector<std::string> addresses = etcd_endpoints_.addresses;
    for (const auto& a : params.api_server_addresses) {
      if (std::find(addresses.begin(), addresses.end(), a) == addresses.end()) {
        addresses.push_back(a);
      }
    }
    const std::string stage = JoinRoot(options_.root, "/run/berth/bootstrap");
    // The stage, in /run, holds the CAs' keys until they are on the state disk: each way out
    // wipes it (WipeAndRemove), and one left by an earlier attempt is wiped before it is used.
    auto made = Timed(Step::kMakeClusterPki, "making the cluster's PKI", [&]() -> Result<JoinPki> {
      BERTH_RETURN_IF_ERROR(WipeAndRemove(stage));
      BERTH_RETURN_IF_ERROR(MakeDirs(stage, 0700));
      const std::string config = stage + "/kubeadm-init.yaml";
      BERTH_RETURN_IF_ERROR(WriteFileAtomic(
          config,
          RenderKubeadmInitConfig(KubeadmConfig(params.cluster_id, advertise, addresses,
                                                kube_version, stage + "/pki", stage,
                                                params.control_plane_endpoint)),
          0600));
      BERTH_RETURN_IF_ERROR(RunKubeadmCertPhases(*deps_.runner, options_.kubeadm, config, stage));
      return MakeJoinPki(params.cluster_id, node_, addresses);
    });
    if (!made.ok()) {
      WipeStage(stage);
      return made.status().WithContext("bootstrap");
    }
    Status st = Timed(Step::kFormatDisk, "formatting state disk",
                      [&] { return disk_->FormatIfBlank(uuid, disk_key); });
    const bool formatted = st.ok();
    if (st.ok()) {
      st = serialized_->Exclusive([&] {
        return UnlockAndMount(disk_key, uuid, &cold_start, ToString(params.recovery_public_key));
      });
    }
    if (st.ok()) {
      st = Timed(Step::kWriteClusterFiles, "writing the cluster's files to the state disk",
                 [&] { return WriteClusterFiles(params, master, *made, stage, advertise); });
    }
    WipeStage(stage);
    if (st.ok()) st = StartEtcd(0);
    if (st.ok()) st = StartControlPlane(params, advertise, addresses, kube_version);
    // Only now is the node a cluster's first control plane: a later boot of a disk whose
    // bootstrap stopped before this says so (LaterBoot) rather than serve half a cluster.
    if (st.ok()) {
      st = disk_->WriteProgress(Progress{.join_started = true, .joined = true, .pki_written = true})
               .WithContext("recording progress");
    }
    if (!st.ok() && formatted) {
      // The disk is no longer blank, so no bootstrap can succeed on this boot: the wait ends
      // with this (WaitForBootstrap), after the operator has been told.
      std::lock_guard<std::mutex> lock(failed_mu_);
      failed_bootstrap_ = FailedPrecondition(
          "bootstrap: state disk " + uuid + " was formatted, then: " + std::string(st.message()) +
          "; it is not formatted again: wipe it and run berthctl cluster init again");
      return failed_bootstrap_;
    }
    if (!st.ok()) return st.WithContext("bootstrap");

    v1::BootstrapResponse response;
    const std::string kube = JoinRoot(options_.root, "/etc/kubernetes");
    BERTH_ASSIGN_OR_RETURN(std::string admin, ReadFile(kube + "/admin.conf"));
    response.set_admin_kubeconfig(std::move(admin));
    WipeString(admin);
    response.set_join_ca_pem(made->ca_pem);
    BERTH_ASSIGN_OR_RETURN(std::string kube_ca, ReadFile(kube + "/pki/ca.crt"));
    response.set_kubernetes_ca_pem(kube_ca);
    response.set_berthd_endpoint(advertise + ":" + std::to_string(options_.berthd_port));
    response.set_api_server_endpoint(TicketApiEndpoint(params.control_plane_endpoint, advertise));
    bootstrapped_ = "bootstrapped cluster " + params.cluster_id + ": state disk " + uuid +
                    " formatted and mounted; etcd (its first voter), the Kubernetes API at " +
                    response.api_server_endpoint() + " and berthd at " +
                    response.berthd_endpoint() + " started";
    return response;
  }

  // The address kubeadm advertises this node's API server at: an IP (AdvertiseAddress), not
  // loopback.
  Result<std::string> ApiServerAddress() const {
    const std::string advertise = AdvertiseAddress();
    if (advertise.empty() || advertise.rfind("127.", 0) == 0 || advertise == "::1") {
      return FailedPrecondition(
          "kubeadm needs an IP address of this node that is not loopback to advertise the API "
          "server at; it has " +
          (advertise.empty() ? std::string("none") : advertise));
    }
    return advertise;
  }

  KubeadmInit KubeadmConfig(const std::string& cluster_id, const std::string& advertise,
                            const std::vector<std::string>& addresses,
                            const std::string& kube_version, const std::string& pki_dir,
                            const std::string& kubeconfig_dir,
                            const std::string& control_plane_endpoint = "") const {
    return {.pki_dir = pki_dir,
            .kubeconfig_dir = kubeconfig_dir,
            .cluster_id = cluster_id,
            .node_name = node_,
            .advertise_address = advertise,
            .api_port = options_.api_server_port,
            .controller_manager_port = options_.controller_manager_port,
            .scheduler_port = options_.scheduler_port,
            .sans = addresses,
            .control_plane_endpoint = control_plane_endpoint,
            .etcd_client_url = etcd_endpoints_.ClientUrl(),
            .kubernetes_version = kube_version};
  }

  // The Kubernetes control plane from kubeadm's own static Pod manifests (their flags, run by
  // the node image's units: docs/kubernetes.md "Control planes"), what `kubeadm init` puts into
  // the cluster (by its own phases) and berthd's RBAC, then berthd.
  Status StartControlPlane(const BootstrapParams& params, const std::string& advertise,
                           const std::vector<std::string>& addresses,
                           const std::string& kube_version) {
    const std::string kube = JoinRoot(options_.root, "/etc/kubernetes");
    const std::string config = kube + "/kubeadm-init.yaml";
    const std::string super_admin = kube + "/super-admin.conf";
    Status st = Timed(Step::kStartControlPlane, "starting the Kubernetes control plane", [&] {
      BERTH_RETURN_IF_ERROR(WriteFileAtomic(
          config,
          RenderKubeadmInitConfig(KubeadmConfig(
              params.cluster_id, advertise, addresses, kube_version,
              JoinRoot(options_.root, kKubernetesPkiDir), kube, params.control_plane_endpoint)),
          0600));
      return StartKubeComponents(config, /*first=*/true, super_admin, advertise);
    });
    if (!st.ok()) return st.WithContext("starting the Kubernetes control plane");
    st = Timed(Step::kConfigureCluster, "configuring the new cluster", [&]() -> Status {
      // kubeadm's admin.conf is in the group kubeadm:cluster-admins, which `kubeadm init`
      // binds to cluster-admin with super-admin.conf.
      BERTH_RETURN_IF_ERROR(Kubectl(
          super_admin, {"create", "clusterrolebinding", "kubeadm:cluster-admins", "--clusterrole",
                        "cluster-admin", "--group", "kubeadm:cluster-admins"}));
      BERTH_RETURN_IF_ERROR(
          RunKubeadmUploadPhases(*deps_.runner, options_.kubeadm, config, kube + "/admin.conf"));
      BERTH_RETURN_IF_ERROR(Kubectl(kube + "/admin.conf", {"apply", "-f", options_.berthd_rbac}));
      return WaitForBootstrapSigner(kube + "/admin.conf");
    });
    if (!st.ok()) return st.WithContext("configuring the new cluster");
    st = Timed(Step::kStartBerthd, "starting berthd",
               [&] { return deps_.control_plane->Start("berthd"); });
    if (!st.ok()) return st.WithContext("starting berthd");
    RegisterKubelet(config, kube + "/admin.conf");
    return OkStatus();
  }

  // A control plane is a node of its cluster too, when its image runs a kubelet
  // (options_.kubelet_unit): kubeadm's own phases make the kubelet's kubeconfig (a client
  // certificate for system:node:<name> from the cluster CA, which this node holds) and its
  // configuration (the cluster's, as `kubeadm init` writes it), the kubelet starts and
  // registers, and kubeadm marks the node a control plane (its label and NoSchedule taint,
  // which a kubelet may not set on itself). Later boots start the kubelet from those files.
  // kubeadm's kubelet phases know only the real root's paths (/var/lib/kubelet,
  // /etc/kubernetes/admin.conf): a node with a kubelet unit runs with root "/".
  // A failure is an error in the journal, not the control plane's: it runs and serves, and
  // the disk it formatted stays its own (a failed bootstrap could not be retried on it).
  void RegisterKubelet(const std::string& config, const std::string& admin) {
    if (options_.kubelet_unit.empty()) return;
    Status st = RegisterKubeletOnce(config, admin);
    if (!st.ok()) {
      spdlog::error("this control plane runs but is not a node of its cluster: {}", st.message());
    }
  }
  Status RegisterKubeletOnce(const std::string& config, const std::string& admin) {
    if (options_.root != "/") {
      return FailedPrecondition(
          "a control plane's kubelet is registered by kubeadm's phases, "
          "which write under / only, not under --root " +
          options_.root);
    }
    Status st = Timed(Step::kRegisterKubelet, "registering this control plane's kubelet", [&] {
      BERTH_RETURN_IF_ERROR(RunKubeadmKubeletPhases(*deps_.runner, options_.kubeadm, config,
                                                    JoinRoot(options_.root, "/etc/kubernetes")));
      BERTH_RETURN_IF_ERROR(StartKubelet(*deps_.runner, options_.systemctl, options_.kubelet_unit));
      BERTH_RETURN_IF_ERROR(PollEverySecond("the kubelet", "register node " + node_, [&] {
        return Kubectl(admin, {"get", "node", node_});
      }));
      // Again until it succeeds (it is idempotent): on a loaded node one of its requests to
      // the API server can take longer than kubeadm's 10 s (seen with three control planes on
      // emulated CPUs: the node then never got its control-plane label and taint).
      return PollEverySecond("kubeadm", "mark node " + node_ + " a control plane", [&] {
        return RunKubeadmMarkControlPlane(*deps_.runner, options_.kubeadm, config);
      });
    });
    return st.ok() ? st : st.WithContext("registering this control plane's kubelet");
  }

  // kubeadm's kubeconfigs and static Pod manifests from `config` (--dry-run: no kubelet runs
  // them), their flags written as the units' environment files, the units started; then until
  // this node's API server (at `advertise`, not the control plane endpoint, which may lead to
  // another) answers `kubeconfig`. `first`: the first control plane's super-admin.conf.
  //
  // The first control plane fails if its API server is not ready by --control-plane-wait: the
  // operator who asked for the bootstrap is told, and no cluster exists yet. A control plane
  // that joins goes on: its etcd member is already a voter, counted in the cluster's quorum,
  // and what keeps its API server from being ready (etcd slow to answer, its port taken, a flag
  // it refuses) no second ticket fixes, while systemd restarts it (Restart=always). Failing the
  // join would leave that member on a node whose agent stopped, its services half started,
  // until a reboot. So it finishes as a later boot does (WaitForRestartedApiServer): the others
  // start, the node is recorded joined, and its status says the API server was not ready, with
  // its last answer (Ready).
  Status StartKubeComponents(const std::string& config, bool first, const std::string& kubeconfig,
                             const std::string& advertise) {
    const std::string kube = JoinRoot(options_.root, "/etc/kubernetes");
    const std::string manifests = JoinRoot(options_.root, "/run/berth/manifests");
    BERTH_RETURN_IF_ERROR(MakeDirs(manifests, 0700));
    BERTH_RETURN_IF_ERROR(RunKubeadmControlPlanePhases(*deps_.runner, options_.kubeadm, config,
                                                       kube, manifests, first));
    const std::string args_dir = JoinRoot(options_.root, kControlPlaneArgsDir);
    BERTH_RETURN_IF_ERROR(MakeDirs(args_dir, 0755));
    for (const char* component : kKubeComponents) {
      BERTH_ASSIGN_OR_RETURN(std::string manifest, ReadFile(manifests + "/" + component + ".yaml"));
      BERTH_ASSIGN_OR_RETURN(std::vector<std::string> args, ManifestCommand(manifest, component));
      BERTH_ASSIGN_OR_RETURN(std::string env, RenderArgsEnvironment("ARGS", args));
      BERTH_RETURN_IF_ERROR(WriteFileAtomic(args_dir + "/" + component + ".env", env, 0644));
    }
    // The API server alone until it is ready (WaitForRestartedApiServer says why), then the
    // others.
    BERTH_RETURN_IF_ERROR(deps_.control_plane->Start(kApiServer));
    Status ready = WaitForApiServer(kubeconfig, advertise);
    if (!ready.ok()) {
      if (first) return ready;
      NoteApiServerNotReady(ready);
    }
    for (const char* component : kApiServerClients) {
      BERTH_RETURN_IF_ERROR(deps_.control_plane->Start(component));
    }
    return OkStatus();
  }

  // A control plane that joined a cluster whose control plane runs as units
  // (options_.control_plane_units), once its etcd is a voter and the cluster's keys are on its
  // state disk: kubeadm makes its API server's, front-proxy client's and kubelet client's
  // certificates with the shared CAs, and its admin and controller-manager kubeconfigs, on
  // this node (`init phase certs all`: the CAs and the service-account key exist, so kubeadm
  // uses them; etcd is external to it, so it makes no etcd certificate), and the units start.
  // kubeadm's upload phases are not run: the cluster has its configuration. The cluster's
  // `control_plane_endpoint` (a load balancer's) is kubeadm's controlPlaneEndpoint here too, so
  // this API server's certificate names it. Later boots start the units again from their files
  // (RestartControlPlaneServices).
  Status StartJoinedControlPlane(const std::string& control_plane_endpoint) {
    Status st = Timed(Step::kStartControlPlane, "starting the Kubernetes control plane", [&] {
      BERTH_ASSIGN_OR_RETURN(std::string advertise, ApiServerAddress());
      BERTH_ASSIGN_OR_RETURN(std::string kube_version,
                             KubeadmVersion(*deps_.runner, options_.kubeadm));
      const std::string kube = JoinRoot(options_.root, "/etc/kubernetes");
      const std::string pki = JoinRoot(options_.root, kKubernetesPkiDir);
      KubeadmInit init = KubeadmConfig(config_.cluster_id(), advertise, etcd_endpoints_.addresses,
                                       kube_version, pki, kube, control_plane_endpoint);
      const std::string etcd_pki = JoinRoot(options_.root, kEtcdPkiDir);
      init.etcd_cert_file = etcd_pki + "/server.crt";
      init.etcd_key_file = etcd_pki + "/server.key";
      const std::string config = kube + "/kubeadm-init.yaml";
      BERTH_RETURN_IF_ERROR(WriteFileAtomic(config, RenderKubeadmInitConfig(init), 0600));
      BERTH_RETURN_IF_ERROR(RunKubeadmCertPhases(*deps_.runner, options_.kubeadm, config, kube));
      return StartKubeComponents(config, /*first=*/false, kube + "/admin.conf", advertise);
    });
    if (!st.ok()) return st.WithContext("starting the Kubernetes control plane");
    const std::string kube = JoinRoot(options_.root, "/etc/kubernetes");
    RegisterKubelet(kube + "/kubeadm-init.yaml", kube + "/admin.conf");
    return OkStatus();
  }

  // kubectl's output (stdout and stderr), or FAILED_PRECONDITION with it.
  Result<std::string> KubectlOutput(const std::string& kubeconfig,
                                    const std::vector<std::string>& args) {
    std::vector<std::string> argv = {options_.kubectl, "--kubeconfig", kubeconfig,
                                     "--request-timeout", "10s"};
    argv.insert(argv.end(), args.begin(), args.end());
    BERTH_ASSIGN_OR_RETURN(ProcessResult r, deps_.runner->Run(argv));
    if (!r.success()) {
      return FailedPrecondition("kubectl " + args[0] + " " + args[1] + " failed (" + r.Describe() +
                                "): " + r.output);
    }
    return std::move(r.output);
  }
  Status Kubectl(const std::string& kubeconfig, const std::vector<std::string>& args) {
    return KubectlOutput(kubeconfig, args).status();
  }

  // kubeadm's bootstrap-token phase makes a token of its own (24 h), which berth does not
  // hand out: berthd mints one per node. Once the controller manager's bootstrap signer has
  // signed cluster-info for it (so a node's token discovery will find its signature) it is
  // deleted.
  Status WaitForBootstrapSigner(const std::string& admin) {
    BERTH_ASSIGN_OR_RETURN(
        std::string names,
        KubectlOutput(admin, {"get", "secrets", "-n", "kube-system", "--field-selector",
                              "type=bootstrap.kubernetes.io/token", "-o",
                              "jsonpath={.items[*].metadata.name}"}));
    std::istringstream in(names);
    std::vector<std::string> tokens;
    for (std::string name; in >> name;) tokens.push_back(name);
    if (tokens.size() != 1 || tokens[0].rfind("bootstrap-token-", 0) != 0) {
      return FailedPrecondition("expected the one bootstrap token kubeadm made, found \"" + names +
                                "\"");
    }
    const std::string jws = "jws-kubeconfig-" + tokens[0].substr(16);
    BERTH_RETURN_IF_ERROR(PollEverySecond(
        "the controller manager's bootstrap signer", "sign cluster-info", [&]() -> Status {
          BERTH_ASSIGN_OR_RETURN(std::string keys,
                                 KubectlOutput(admin, {"get", "configmap", "cluster-info", "-n",
                                                       "kube-public", "-o", "jsonpath={.data}"}));
          if (keys.find("\"" + jws + "\"") != std::string::npos) return OkStatus();
          return Unavailable("cluster-info has no " + jws + " yet");
        }));
    return Kubectl(admin, {"delete", "secret", "-n", "kube-system", tokens[0]});
  }

  // Until this node's API server answers /readyz.
  Status WaitForApiServer(const std::string& kubeconfig, const std::string& advertise) {
    const std::string server = "https://" + LocalApiEndpoint(advertise);
    return PollEverySecond("the Kubernetes API server", "become ready", [&] {
      return Kubectl(kubeconfig, {"--server", server, "get", "--raw", "/readyz"});
    });
  }

  // `ready` every second until it is OK, at most options_.control_plane_wait; the unit's status
  // says what the node waits for. UNAVAILABLE naming `who`, `what` and the last answer.
  Status PollEverySecond(const std::string& who, const std::string& what,
                         const std::function<Status()>& ready) {
    const int64_t deadline = MonotonicMillis() + options_.control_plane_wait.count() * 1000;
    for (;;) {
      Status st = ready();
      if (st.ok()) return st;
      if (MonotonicMillis() >= deadline) {
        return Unavailable(who + " did not " + what + " in " +
                           std::to_string(options_.control_plane_wait.count()) +
                           " s: " + std::string(st.message()));
      }
      deps_.notifier->Status("waiting for " + who + " to " + what);
      deps_.clock->Sleep(std::chrono::seconds(1));
    }
  }

  // A later boot of a control plane that runs the control plane: the services its bootstrap
  // or its join configured (their files are on the state disk), after etcd. Control planes
  // that joined with kubeadm's static Pods have none of these files.
  Status RestartControlPlaneServices() {
    if (deps_.control_plane == nullptr) return OkStatus();
    auto configured = [&](const char* component) {
      return std::filesystem::exists(JoinRoot(options_.root, kControlPlaneArgsDir) + "/" +
                                     component + ".env");
    };
    const bool berthd =
        std::filesystem::exists(JoinRoot(options_.root, config_.state_disk().mount_point()) +
                                kBerthdDirOnDisk + "/berthd.env");
    const bool api_server = configured(kApiServer);
    std::vector<const char*> clients;
    for (const char* component : kApiServerClients) {
      if (configured(component)) clients.push_back(component);
    }
    if (!berthd && !api_server && clients.empty()) return OkStatus();
    Status st = Timed(Step::kStartControlPlane, "starting the control plane's services", [&] {
      // berthd and the API server first; the controller manager and the scheduler once the
      // API server is ready (WaitForRestartedApiServer).
      if (berthd) BERTH_RETURN_IF_ERROR(deps_.control_plane->Start("berthd"));
      if (api_server) {
        BERTH_RETURN_IF_ERROR(deps_.control_plane->Start(kApiServer));
        WaitForRestartedApiServer();
      }
      for (const char* c : clients) BERTH_RETURN_IF_ERROR(deps_.control_plane->Start(c));
      return OkStatus();
    });
    return st.ok() ? st : st.WithContext("starting the control plane's services");
  }

  // The controller manager and the scheduler start once the API server is ready: they would
  // take the node's CPU while it starts, and list everything through it as soon as it answers.
  // On fast machines that costs nothing. On slow ones an API server that starts with everything
  // else may never get there: kube-apiserver exits when one of its startup hooks (reconciling
  // the built-in RBAC roles, the system priority classes) takes over 30 s, and systemd starts
  // it again from the beginning. When every control plane of a QEMU test on emulated CPUs
  // booted at once (tests/e2e/image_cluster_e2e_test.cc), no API server was ready after 25
  // minutes, refusing connections between TLS timeouts.
  //
  // On a later boot the wait is bounded by --control-plane-wait and never fails the boot: if the
  // API server is not ready by then, the rest starts anyway and retries by itself.
  void WaitForRestartedApiServer() {
    const std::string admin = JoinRoot(options_.root, "/etc/kubernetes/admin.conf");
    Result<std::string> advertise = ApiServerAddress();
    if (!advertise.ok() || !std::filesystem::exists(admin)) {
      spdlog::warn("not waiting for this node's API server before its other services: {}",
                   advertise.ok() ? admin + " does not exist" : advertise.status().ToString());
      return;
    }
    Status ready = WaitForApiServer(admin, *advertise);
    if (!ready.ok()) NoteApiServerNotReady(ready);
  }

  // This node's API server was not ready within --control-plane-wait: the other services start
  // anyway, and the status the agent leaves with READY=1 says so (Ready), on one line (a
  // newline would end sd_notify's STATUS).
  void NoteApiServerNotReady(const Status& ready) {
    spdlog::warn("starting the other control-plane services anyway: {}", ready.ToString());
    api_server_not_ready_ = std::string(ready.message());
    std::replace(api_server_not_ready_.begin(), api_server_not_ready_.end(), '\n', ' ');
  }

  // The boot-policy key derives from the master secret (common/boot_policy.h): the node
  // signs its own boot, read from its TPM, over the policy's roles.cold_start PCRs, as berthd
  // signs each later boot it verifies. The operator has just verified this boot.
  Result<v1::ColdStart> SignOwnBoot(const SecretBytes& master, const BootstrapParams& params) {
    BERTH_ASSIGN_OR_RETURN(BootPolicySigner signer,
                           BootPolicySigner::Create(master, params.cluster_id));
    v1::PcrSelection selection;
    selection.set_bank(
        static_cast<v1::HashAlgorithm>(tpm::TpmAlgFromDigest(params.cold_start_bank)));
    for (uint32_t p : params.cold_start_pcrs) selection.add_pcrs(p);
    BERTH_ASSIGN_OR_RETURN(tpm::PcrValues pcrs,
                           serialized_->Exclusive([&] { return tpm_->ReadPcrs({selection}); }));
    return signer.ColdStartFor(pcrs, params.cold_start_bank, params.cold_start_pcrs,
                               deps_.clock->NowUnix());
  }

  // Onto the mounted state disk: kubeadm's PKI and admin.conf from the staging directory,
  // etcd's CRL and environment (a new one-member cluster), berthd's directory (bootstrap.h),
  // and the progress record of a node with its etcd PKI (joined once the control plane is
  // configured: MakeCluster).
  Status WriteClusterFiles(const BootstrapParams& params, const SecretBytes& master,
                           const JoinPki& join, const std::string& stage,
                           const std::string& advertise) {
    const std::string kube = JoinRoot(options_.root, "/etc/kubernetes");
    const std::string pki = JoinRoot(options_.root, kKubernetesPkiDir);
    BERTH_RETURN_IF_ERROR(MakeDirs(kube, 0755));
    std::error_code ec;
    std::filesystem::copy(stage + "/pki", pki,
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::overwrite_existing,
                          ec);
    if (ec) return Internal("copying kubeadm's PKI to " + pki + ": " + ec.message());
    BERTH_ASSIGN_OR_RETURN(std::string admin, ReadFile(stage + "/admin.conf"));
    Status written = WriteFileAtomic(kube + "/admin.conf", admin, 0600);
    WipeString(admin);
    BERTH_RETURN_IF_ERROR(written);

    // etcd: kubeadm made its CA and this node's server and peer certificates; the CRL is
    // berth's (berthd keeps it current in later tickets).
    BERTH_ASSIGN_OR_RETURN(std::string etcd_ca_pem, ReadFile(pki + "/etcd/ca.crt"));
    BERTH_ASSIGN_OR_RETURN(std::string etcd_ca_key, ReadFile(pki + "/etcd/ca.key"));
    SecretBytes etcd_key_pem = SecretBytes::TakeFrom(etcd_ca_key);
    BERTH_ASSIGN_OR_RETURN(
        std::unique_ptr<EtcdCa> etcd_ca,
        EtcdCa::FromPem(etcd_ca_pem, etcd_key_pem, std::chrono::hours(24 * 365)));
    BERTH_ASSIGN_OR_RETURN(std::string crl, etcd_ca->MakeCrl({}, deps_.clock->NowUnix(), 1));
    BERTH_RETURN_IF_ERROR(WriteEtcdCrl(options_.root, crl));
    v1::EtcdMaterial member;
    member.set_member_name(node_);
    member.add_initial_cluster(node_ + "=" + etcd_endpoints_.PeerUrl());
    BERTH_RETURN_IF_ERROR(MakeDirs(EtcdDataDir(), 0700));
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(
        JoinRoot(options_.root, kEtcdEnvPath),
        RenderEtcdEnvironment(options_.root, member, etcd_endpoints_, EtcdDataDir(), true), 0644));

    // berthd: its secrets, its certificates, its identities in etcd and in Kubernetes.
    const std::string dir = BerthdDir();
    BERTH_RETURN_IF_ERROR(MakeDirs(dir, 0700));
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(dir + "/master.secret", master.span(), 0600));
    BERTH_RETURN_IF_ERROR(WriteBerthdDir(params.cluster_id, params.policy_yaml,
                                         params.recovery_public_key, join, pki + "/etcd/ca.key",
                                         advertise, params.control_plane_endpoint));
    return disk_->WriteProgress(Progress{.join_started = true, .pki_written = true});
  }

  // Where nodes reach the cluster's API server: the operator's control plane endpoint (a load
  // balancer, a DNS name), else this node's address.
  std::string TicketApiEndpoint(const std::string& control_plane_endpoint,
                                const std::string& advertise) const {
    return control_plane_endpoint.empty() ? LocalApiEndpoint(advertise) : control_plane_endpoint;
  }
  // This node's own API server, host:port.
  std::string LocalApiEndpoint(const std::string& advertise) const {
    const std::string host =
        advertise.find(':') != std::string::npos ? "[" + advertise + "]" : advertise;
    return host + ":" + std::to_string(options_.api_server_port);
  }

  std::string BerthdDir() const {
    return JoinRoot(options_.root, config_.state_disk().mount_point()) + kBerthdDirOnDisk;
  }

  // What berthd serves with on this control plane, in its directory on the state disk beside
  // the master secret (bootstrap.h kBerthdDirOnDisk): the policy, the recovery public key
  // (none: no --recovery-key), the join CA and berthd's TLS certificate from it (`join`),
  // client certificates for etcd (from the etcd CA, whose key is at `etcd_ca_key`) and for
  // the Kubernetes API (from the cluster CA: kube/berthd-rbac.yaml's user), its kubeconfig for
  // this node's API server (at `advertise`), and berthd.env with every flag: its tickets name
  // the API server at the cluster's `control_plane_endpoint`, else at this node's.
  Status WriteBerthdDir(const std::string& cluster_id, const std::string& policy_yaml,
                        std::span<const uint8_t> recovery_public_key, const JoinPki& join,
                        const std::string& etcd_ca_key, const std::string& advertise,
                        const std::string& control_plane_endpoint) {
    const std::string dir = BerthdDir();
    const std::string pki = JoinRoot(options_.root, kKubernetesPkiDir);
    BERTH_RETURN_IF_ERROR(MakeDirs(dir, 0700));
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(dir + "/policy.yaml", policy_yaml, 0644));
    if (!recovery_public_key.empty()) {
      BERTH_RETURN_IF_ERROR(
          WriteFileAtomic(dir + "/recovery-key.txt",
                          "recovery-key-sha256: " + recovery::Fingerprint(recovery_public_key) +
                              "\nrecovery-public-key: " + HexEncode(recovery_public_key) + "\n",
                          0644));
    }
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(dir + "/join-ca.pem", join.ca_pem, 0644));
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(dir + "/join-ca.key", join.ca_key_pem.span(), 0600));
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(dir + "/tls.pem", join.tls_pem, 0644));
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(dir + "/tls.key", join.tls_key_pem.span(), 0600));
    BERTH_RETURN_IF_ERROR(IssueClientCert(pki + "/etcd/ca.crt", etcd_ca_key, dir + "/etcd-client"));
    BERTH_RETURN_IF_ERROR(IssueClientCert(pki + "/ca.crt", pki + "/ca.key", dir + "/kube-client"));
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(
        dir + "/kubeconfig",
        RenderKubeconfig(cluster_id, LocalApiEndpoint(advertise), pki + "/ca.crt", "berthd",
                         dir + "/kube-client.pem", dir + "/kube-client.key"),
        0600));
    return WriteFileAtomic(
        dir + "/berthd.env",
        RenderBerthdEnvironment(
            {.dir = dir,
             .pki_dir = pki,
             .etcd_ca_key = etcd_ca_key,
             .recovery_key = !recovery_public_key.empty(),
             .cluster_id = cluster_id,
             .listen = "0.0.0.0:" + std::to_string(options_.berthd_port),
             .api_server_endpoint = TicketApiEndpoint(control_plane_endpoint, advertise),
             .control_plane_endpoint = control_plane_endpoint,
             .etcd_client_url = etcd_endpoints_.ClientUrl()}),
        0644);
  }

  // A control plane that joined, with berthd's keys from its ticket (checked against the join
  // CA it pins and the ticket's etcd CA): the etcd CA's key in berthd's directory (not in
  // kubeadm's pki, where kubeadm would take it for its own), its own berthd TLS certificate
  // from the join CA, and the rest as on the first control plane.
  Status WriteJoinedBerthd(const v1::BerthdKeys& keys, const std::string& recovery_public_key,
                           const std::string& control_plane_endpoint) {
    Status st = Timed(Step::kWriteBerthdFiles, "writing berthd's files", [&]() -> Status {
      BERTH_ASSIGN_OR_RETURN(std::string advertise, ApiServerAddress());
      const std::string dir = BerthdDir();
      BERTH_RETURN_IF_ERROR(MakeDirs(dir, 0700));
      BERTH_RETURN_IF_ERROR(WriteFileAtomic(dir + "/etcd-ca.key", keys.etcd_ca_key(), 0600));
      SecretBytes ca_key(keys.join_ca_key().data(), keys.join_ca_key().size());
      BERTH_ASSIGN_OR_RETURN(JoinPki join,
                             IssueBerthdTls(config_.cluster_ca_pem(), std::move(ca_key), node_,
                                            etcd_endpoints_.addresses));
      return WriteBerthdDir(config_.cluster_id(), keys.policy(), AsBytes(recovery_public_key), join,
                            dir + "/etcd-ca.key", advertise, control_plane_endpoint);
    });
    return st.ok() ? st : st.WithContext("writing berthd's files");
  }

  // berthd's client certificate (CN=berthd, one year) from the CA in `ca_cert`/`ca_key`, as
  // `out`.pem and `out`.key (0600): its identity in etcd, and kube/berthd-rbac.yaml's user.
  static Status IssueClientCert(const std::string& ca_cert, const std::string& ca_key,
                                const std::string& out) {
    BERTH_ASSIGN_OR_RETURN(std::string ca_pem, ReadFile(ca_cert));
    BERTH_ASSIGN_OR_RETURN(std::string key_text, ReadFile(ca_key));
    SecretBytes key_pem = SecretBytes::TakeFrom(key_text);
    BERTH_ASSIGN_OR_RETURN(X509Ptr ca, CertFromPem(ca_pem));
    BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr signer, PrivateKeyFromPem(key_pem.view()));
    BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, GenerateP256Key());
    BERTH_ASSIGN_OR_RETURN(X509Ptr cert, IssueCert({.common_name = "berthd",
                                                    .client_auth = true,
                                                    .validity = std::chrono::hours(24 * 365)},
                                                   key.get(), ca.get(), signer.get()));
    BERTH_ASSIGN_OR_RETURN(SecretBytes key_out, PrivateKeyToPem(key.get()));
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(out + ".key", key_out.span(), 0600));
    BERTH_ASSIGN_OR_RETURN(std::string cert_pem, CertToPem(cert.get()));
    return WriteFileAtomic(out + ".pem", cert_pem, 0644);
  }

  // kubeadm join, recorded before and after so a crash in between is recognised: a node
  // whose kubelet.conf exists has joined, whatever the record says. A join that started before
  // a restart and did not finish is cleared first (kubeadm's preflight would refuse what it
  // left). Failed joins are retried with fresh tickets (KubeadmJoinUntilJoined), which replace
  // `ticket`.
  Status JoinOnce(v1::JoinTicket& ticket, Progress progress, const std::string& disk_uuid,
                  const SecretBytes& disk_key) {
    // A control plane's etcd first, also when kubeadm already ran before a restart: this boot
    // has not started etcd yet, and the ticket's certificates are for this boot's keys.
    if (ControlPlane()) BERTH_RETURN_IF_ERROR(SetUpEtcd(ticket.etcd(), progress));
    if (ticket.has_cluster_keys()) BERTH_RETURN_IF_ERROR(WriteSharedKeys(ticket.cluster_keys()));
    if (ControlPlane() && options_.control_plane_units) {
      // No kubeadm join: the control plane's own units, its kubelet registered by kubeadm's
      // phases as the first control plane's is (StartJoinedControlPlane;
      // docs/cluster-lifecycle.md), and berthd when the berthd that admitted it shared its keys.
      if (deps_.control_plane == nullptr) {
        return FailedPrecondition(
            "--control-plane-units: this agent has no control-plane services");
      }
      const bool berthd = ticket.cluster_keys().has_berthd();
      if (berthd) {
        BERTH_RETURN_IF_ERROR(WriteJoinedBerthd(ticket.cluster_keys().berthd(),
                                                ticket.recovery_public_key(),
                                                ticket.cluster_keys().control_plane_endpoint()));
      } else {
        spdlog::warn(
            "the berthd that admitted this control plane shared no berthd keys "
            "(berthd --join-ca-key): no berthd runs here, and joins go through others");
      }
      BERTH_RETURN_IF_ERROR(
          StartJoinedControlPlane(ticket.cluster_keys().control_plane_endpoint()));
      if (berthd) {
        Status st = Timed(Step::kStartBerthd, "starting berthd",
                          [&] { return deps_.control_plane->Start("berthd"); });
        if (!st.ok()) return st.WithContext("starting berthd");
      }
      progress.joined = true;
      return disk_->WriteProgress(progress).WithContext("recording progress");
    }
    if (progress.join_started && KubeletBootstrapped(options_.root)) {
      spdlog::info("kubeadm join completed before a restart (the kubelet's kubelet.conf and client "
                   "certificate exist); not joining again");
    } else {
      if (progress.join_started) {
        spdlog::info("a kubeadm join started before a restart did not finish; clearing what it "
                     "left before joining again");
        BERTH_RETURN_IF_ERROR(ClearFailedJoin(*deps_.runner, options_.root, options_.systemctl,
                                              options_.kubelet_unit)
                                  .WithContext("clearing an unfinished kubeadm join"));
      }
      progress.join_started = true;
      BERTH_RETURN_IF_ERROR(disk_->WriteProgress(progress).WithContext("recording progress"));
      BERTH_RETURN_IF_ERROR(KubeadmJoinUntilJoined(ticket, disk_uuid, &disk_key));
    }
    progress.joined = true;
    BERTH_RETURN_IF_ERROR(disk_->WriteProgress(progress).WithContext("recording progress"));
    return StartKubeletIfConfigured();
  }

  Status FirstBoot() {
    const std::string uuid = NewDiskUuid();
    BERTH_ASSIGN_OR_RETURN(v1::JoinTicket ticket, RequestJoinTicket(uuid));
    SecretBytes key = SecretBytes::TakeFrom(*ticket.mutable_disk_key());
    Status st = Timed(Step::kFormatDisk, "formatting state disk",
                     [&] { return disk_->FormatIfBlank(uuid, key); });
    if (st.ok()) st = UnlockAndMount(key, uuid, &ticket.cold_start(), ticket.recovery_public_key());
    if (st.ok()) st = JoinOnce(ticket, Progress{}, uuid, key);
    std::string endpoint = ticket.kubeadm().api_server_endpoint();
    Scrub(ticket);
    if (!st.ok()) return st;
    return Ready("joined the cluster at " + endpoint + "; state disk " + uuid +
                 " formatted and mounted");
  }

  Status LaterBoot() {
    if (golden_.has_value()) {
      return FailedPrecondition("a golden ticket admits one first join, and this node's state "
                                "disk is already a berth disk: a later boot needs attestation");
    }
    BERTH_ASSIGN_OR_RETURN(std::string uuid, disk_->BerthUuid());
    if (seal_.has_value() && seal_->keys_released()) {
      // PCR 15 says an earlier run in this boot got its keys and sealed the boot (the last
      // step), and berthd refuses a second attestation in a sealed boot. The earlier run was
      // killed after that: if it left the node joined and mounted there is nothing to redo.
      BERTH_ASSIGN_OR_RETURN(bool mounted, disk_->IsMounted());
      if (mounted) {
        BERTH_ASSIGN_OR_RETURN(Progress progress, disk_->ReadProgress());
        if (progress.joined) {
          BERTH_RETURN_IF_ERROR(disk_->Mount());  // the bind mounts, if those were not made
          BERTH_RETURN_IF_ERROR(DropPrivileges());
          if (ControlPlane() && progress.pki_written) BERTH_RETURN_IF_ERROR(StartEtcd(0));
          BERTH_RETURN_IF_ERROR(StartKubeletIfConfigured());
          return Ready("node joined by an earlier run in this boot; state disk " + uuid +
                       " mounted");
        }
      }
      return FailedPrecondition("this boot already released its keys (PCR 15) but the state "
                                "disk is not mounted as joined: reboot the node");
    }
    KeySource source = KeySource::kBerthd;
    BERTH_ASSIGN_OR_RETURN(SecretBytes key, LaterBootKey(uuid, &source));
    const bool cold = source != KeySource::kBerthd;
    BERTH_RETURN_IF_ERROR(
        UnlockAndMount(key, uuid, cold ? nullptr : &rejoin_cold_start_, rejoin_recovery_key_));
    BERTH_ASSIGN_OR_RETURN(Progress progress, disk_->ReadProgress());
    if (progress.joined) {
      if (ControlPlane() && progress.pki_written) {
        if (!rejoin_crl_.empty()) {
          BERTH_RETURN_IF_ERROR(
              WriteEtcdCrl(options_.root, rejoin_crl_).WithContext("updating the etcd CRL"));
        }
        BERTH_RETURN_IF_ERROR(StartEtcd(0));
        BERTH_RETURN_IF_ERROR(RestartControlPlaneServices());
      }
      BERTH_RETURN_IF_ERROR(StartKubeletIfConfigured());
      if (source == KeySource::kColdStart) {
        return Ready("cold start: no berthd answered; state disk " + uuid +
                     " unlocked with the key this node's TPM released for a boot the cluster "
                     "signed, and mounted");
      }
      if (source == KeySource::kRecovery) {
        return Ready("recovered by operators: state disk " + uuid +
                     " unlocked with the recovery keyslot's key, and mounted; its cold-start "
                     "keyslot is signed for this boot at its next berthd ticket");
      }
      return Ready("rejoined; state disk " + uuid + " unlocked and mounted");
    }
    if (config_.operator_access().bootstrap()) {
      return FailedPrecondition(
          "state disk " + uuid +
          " holds a bootstrap that did not finish (it stopped before the control plane was "
          "configured): it is not formatted again; wipe it and run berthctl cluster init again");
    }
    if (cold) {
      // Not possible with berth's own disks (the keyslots are sealed once joined); a disk whose
      // join never finished needs a ticket, so berthd.
      return FailedPrecondition("state disk " + uuid +
                                " opened without berthd but its node never "
                                "finished joining: a join needs berthd");
    }
    // Formatted on an earlier boot that did not get as far as joining: join now.
    BERTH_ASSIGN_OR_RETURN(v1::JoinTicket ticket, RequestJoinTicket(uuid));
    SecretBytes second_key = SecretBytes::TakeFrom(*ticket.mutable_disk_key());
    Status st = second_key.Equals(key)
                    ? JoinOnce(ticket, progress, uuid, key)
                    : Internal("berthd returned a different key for the same disk on one boot");
    std::string endpoint = ticket.kubeadm().api_server_endpoint();
    Scrub(ticket);
    if (!st.ok()) return st;
    return Ready("joined the cluster at " + endpoint + " (resumed); state disk " + uuid +
                 " mounted");
  }

  const AgentOptions& options_;
  AgentDeps& deps_;
  v1::EnrolmentConfig config_;
  std::string config_file_;
  std::string node_;
  std::unique_ptr<Tpm> tpm_;
  std::unique_ptr<SevGuest> sev_guest_;
  std::unique_ptr<SnpIdentity> snp_identity_;  // SEV-SNP nodes
  std::optional<BootSeal> seal_;  // TPM nodes
  std::unique_ptr<Attester> attester_;
  ClientIdentity identity_;
  std::unique_ptr<JoinTransport> transport_;
  std::unique_ptr<StateDisk> disk_;
  // Control planes.
  EtcdEndpoints etcd_endpoints_;
  std::unique_ptr<EtcdKeys> etcd_keys_;
  std::string rejoin_crl_;
  v1::ColdStart rejoin_cold_start_;
  std::string rejoin_recovery_key_;
  std::optional<v1::GoldenTicket> golden_;  // debug enrolment instead of attestation
  std::string ec2_instance_id_;
  std::optional<v1::Ec2InstanceIdentity> ec2_identity_;
  // Bootstrap: the attester, shared with the operator server; what the node made.
  SerializedAttester* serialized_ = nullptr;
  std::string bootstrapped_;
  std::mutex failed_mu_;
  Status failed_bootstrap_;  // GUARDED_BY(failed_mu_): a bootstrap that failed after formatting
  // Control planes: why this node's API server was not ready when the agent stopped waiting.
  std::string api_server_not_ready_;

  // The claimed instance's identity document and AWS's signature, from the instance metadata
  // service. Without them the claim is still sent, and berthd says why it refuses it; a
  // cluster that does not admit by EC2 events ignores both.
  void ReadEc2Identity() {
    auto read = Timed(Step::kEc2Identity, "reading the EC2 instance identity document", [&] {
      std::unique_ptr<InstanceMetadata> imds =
          deps_.make_imds ? deps_.make_imds(options_.ec2_imds_url)
                          : MakeCurlInstanceMetadata(options_.ec2_imds_url,
                                                     std::chrono::seconds(5));
      return FetchEc2Identity(*imds);
    });
    if (!read.ok()) {
      spdlog::warn("claiming EC2 instance {} without its identity document: {}", ec2_instance_id_,
                   read.status().ToString());
      return;
    }
    ec2_identity_ = std::move(*read);
  }

  // The EC2 instance ID to claim: the option, else the DMI board asset tag (Nitro instances
  // carry their instance ID there), else none.
  std::string Ec2InstanceId() const {
    if (!options_.ec2_instance_id.empty()) return options_.ec2_instance_id;
    auto tag = ReadFile(JoinRoot(options_.root, kDmiAssetTagPath), 256);
    if (!tag.ok()) return "";
    std::string id = TrimWhitespace(*tag);
    static const std::regex kId("^i-([0-9a-f]{8}|[0-9a-f]{17})$");
    return std::regex_match(id, kId) ? id : "";
  }
};

}  // namespace

std::vector<v1::PcrSelection> QuoteSelection(const v1::EnrolmentConfig& config) {
  std::vector<v1::PcrSelection> out =
      config.pcr_selection().empty() ? DefaultPcrSelection()
                                     : std::vector<v1::PcrSelection>(config.pcr_selection().begin(),
                                                                     config.pcr_selection().end());
  for (auto& s : out) {
    if (s.bank() != v1::HASH_ALGORITHM_SHA256) continue;
    for (uint32_t p : s.pcrs()) {
      if (p == seal::kPcr) return out;
    }
    s.add_pcrs(seal::kPcr);
    return out;
  }
  v1::PcrSelection sealed;
  sealed.set_bank(v1::HASH_ALGORITHM_SHA256);
  sealed.add_pcrs(seal::kPcr);
  out.push_back(sealed);
  return out;
}

Status RunAgent(const AgentOptions& options, AgentDeps& deps) {
  return Boot(options, deps).Run();
}

}  // namespace berth::agent
