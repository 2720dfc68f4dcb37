// berth-agent: flags -> AgentOptions -> RunAgent (or DescribeIdentity), undumpable. Nothing else.
#include <CLI/CLI.hpp>

#include "agent/agent.h"
#include "agent/golden_ticket.h"
#include "agent/identity.h"
#include "agent/privileges.h"
#include "common/log.h"

int main(int argc, char** argv) {
  berth::agent::AgentOptions o;
  bool verbose = false, print_identity = false;
  int64_t initial_ms = o.retry.initial_backoff.count(), max_ms = o.retry.max_backoff.count();
  CLI::App app{"berth-agent: attest this node and join it to its cluster"};
  app.add_option("--root", o.root, "filesystem root all paths are under")->capture_default_str();
  app.add_option("--enrolment", o.enrolment_path, "EnrolmentConfig path (inside --root)")->capture_default_str();
  app.add_option("--tcti", o.tcti, "tpm2-tss TCTI of the TPM")->capture_default_str();
  app.add_option("--kubeadm", o.kubeadm, "kubeadm binary")->capture_default_str();
  app.add_option("--kubelet-unit", o.kubelet_unit, "the kubelet's systemd unit, started once the node has joined with its state disk mounted (default: none is started)");
  app.add_option("--join-attempts", o.join_attempts, "kubeadm join attempts before giving up, each with a fresh ticket (0: until the node joins)")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--sev-guest", o.sev_guest, "SEV-SNP guest device")->capture_default_str();
  app.add_option("--snp-vmpl", o.snp_vmpl, "VMPL to request SEV-SNP reports at")->capture_default_str()->check(CLI::Range(0, 3));
  app.add_option("--snp-identity", o.snp_identity, "SEV-SNP nodes: the sealed identity key (inside --root; made at the first boot)")->capture_default_str();
  app.add_option("--max-attempts", o.retry.max_attempts, "ticket attempts before giving up (0: no limit)")->capture_default_str()->check(CLI::NonNegativeNumber);
  app.add_option("--retry-initial-ms", initial_ms, "first retry delay")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--retry-max-ms", max_ms, "longest retry delay")->capture_default_str()->check(CLI::PositiveNumber);
  int64_t etcd_wait = o.etcd_wait.count(), control_plane_wait = o.control_plane_wait.count();
  app.add_option("--node-address", o.node_addresses, "control planes: address etcd serves on (repeatable; default: the node's global addresses)");
  app.add_option("--etcd-peer-port", o.etcd_peer_port, "control planes: etcd peer port")->capture_default_str();
  app.add_option("--etcd-client-port", o.etcd_client_port, "control planes: etcd client port")->capture_default_str();
  app.add_option("--etcd-wait", etcd_wait, "control planes: seconds to wait for etcd to become a voting member")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--api-server-port", o.api_server_port, "control planes: port of the Kubernetes API server it starts")->capture_default_str();
  app.add_option("--controller-manager-port", o.controller_manager_port, "control planes: port of the Kubernetes controller manager it starts")->capture_default_str();
  app.add_option("--scheduler-port", o.scheduler_port, "control planes: port of the Kubernetes scheduler it starts")->capture_default_str();
  app.add_option("--control-plane-wait", control_plane_wait, "control planes: seconds each Kubernetes service and the kubelet may take to answer")->capture_default_str()->check(CLI::PositiveNumber);
  app.add_option("--berthd-port", o.berthd_port, "control planes: port of the berthd it starts")->capture_default_str();
  app.add_flag("--control-plane-units", o.control_plane_units, "control planes: this image runs the Kubernetes control plane as systemd units; a joining control plane starts them instead of kubeadm's static Pods");
  app.add_option("--kubectl", o.kubectl, "the first control plane: kubectl binary")->capture_default_str();
  app.add_option("--berthd-rbac", o.berthd_rbac, "the first control plane: berthd's RBAC manifest (kube/berthd-rbac.yaml)")->capture_default_str();
  app.add_option("--ec2-instance-id", o.ec2_instance_id, "EC2 instance ID to claim (default: the DMI board asset tag, as Nitro instances carry it)");
  app.add_option("--ec2-imds-url", o.ec2_imds_url, "instance metadata service the claim's signed identity document is read from")->capture_default_str();
  app.add_flag("--print-identity", print_identity, "print this node's AK and PCRs as a berthd policy snippet, then exit");
  app.add_flag("-v,--verbose", verbose, "debug logging");
  CLI11_PARSE(app, argc, argv);
  o.retry.initial_backoff = std::chrono::milliseconds(initial_ms);
  o.retry.max_backoff = std::chrono::milliseconds(max_ms);
  o.etcd_wait = std::chrono::seconds(etcd_wait);
  o.control_plane_wait = std::chrono::seconds(control_plane_wait);
  berth::InitLogging("berth-agent", verbose);
  // Loading the shared libraries and their static initialisers: part of every node's boot.
  spdlog::info("started ms_since_exec={}", berth::agent::MillisSinceExec());
  // Before any key is in memory: no core dump of it, no ptrace by non-root.
  if (berth::Status st = berth::agent::MakeUndumpable(); !st.ok()) {
    spdlog::critical("berth-agent: {}", st.ToString());
    return 1;
  }
  berth::agent::AgentDeps deps = berth::agent::RealAgentDeps();
  deps.read_golden_ticket = berth::agent::ReadGoldenTicket;  // the flavour this binary links
  if (print_identity) {
    auto identity = berth::agent::DescribeIdentity(o, deps);
    if (!identity.ok()) {
      spdlog::error("{}", identity.status().ToString());
      return 1;
    }
    std::fputs(identity->c_str(), stdout);
    return 0;
  }
  berth::Status status = berth::agent::RunAgent(o, deps);
  if (!status.ok()) {
    deps.notifier->Status("failed: " + status.ToString());
    spdlog::critical("berth-agent: {}", status.ToString());
    return 1;
  }
  return 0;
}
