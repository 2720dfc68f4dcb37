#include "agent/bootstrap.h"

#include <arpa/inet.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <sstream>

#include "common/boot_policy.h"
#include "common/crypto.h"
#include "common/enrolment.h"
#include "common/etcd_pki.h"
#include "common/recovery.h"
#include "common/tpm/quote.h"

namespace berth::agent {

namespace {

// A YAML flow sequence of plain strings (IPs and DNS names need no quoting, but are quoted).
std::string YamlList(const std::vector<std::string>& items) {
  std::string out = "[";
  for (size_t i = 0; i < items.size(); ++i) out += (i ? ", \"" : "\"") + items[i] + "\"";
  return out + "]";
}

}  // namespace

Result<BootstrapParams> CheckBootstrapRequest(const v1::BootstrapRequest& request) {
  BootstrapParams p;
  p.cluster_id = request.cluster_id();
  // A DNS-1123 label: it names the cluster in kubeconfigs and kubeadm's clusterName.
  if (p.cluster_id.empty() || p.cluster_id.size() > 63 || !IsValidNodeName(p.cluster_id) ||
      p.cluster_id.find('.') != std::string::npos) {
    return InvalidArgument("bootstrap: cluster id \"" + p.cluster_id +
                           "\" is not a DNS-1123 label (lower-case letters, digits and '-', "
                           "at most 63)");
  }
  if (request.recovery_public_key().size() != recovery::kPublicKeySize) {
    return InvalidArgument("bootstrap: the recovery public key is " +
                           std::to_string(request.recovery_public_key().size()) + " bytes, not " +
                           std::to_string(recovery::kPublicKeySize));
  }
  p.recovery_public_key =
      Bytes(request.recovery_public_key().begin(), request.recovery_public_key().end());
  if (request.policy_yaml().empty()) {
    return InvalidArgument("bootstrap: no policy: berthd would admit no node");
  }
  p.policy_yaml = request.policy_yaml();
  auto bank = tpm::DigestFromTpmAlg(static_cast<uint16_t>(request.cold_start().bank()));
  if (!bank.ok()) {
    return InvalidArgument("bootstrap: the cold-start PCR bank " +
                           std::to_string(request.cold_start().bank()) + " is not a hash");
  }
  p.cold_start_bank = *bank;
  p.cold_start_pcrs.assign(request.cold_start().pcrs().begin(), request.cold_start().pcrs().end());
  if (Status ok = CheckColdStartPcrs(p.cold_start_bank, p.cold_start_pcrs); !ok.ok()) {
    return InvalidArgument("bootstrap: " + std::string(ok.message()));
  }
  for (const auto& a : request.api_server_addresses()) {
    if (!IsIpLiteral(a) && !IsValidNodeName(a)) {
      return InvalidArgument("bootstrap: API server address \"" + a +
                             "\" is neither an IP address nor a DNS name");
    }
    p.api_server_addresses.push_back(a);
  }
  if (!request.control_plane_endpoint().empty()) {
    const std::string& e = request.control_plane_endpoint();
    auto host = ControlPlaneEndpointHost(e);
    if (!host.ok()) return InvalidArgument("bootstrap: " + std::string(host.status().message()));
    p.control_plane_endpoint = e;
    if (std::find(p.api_server_addresses.begin(), p.api_server_addresses.end(), *host) ==
        p.api_server_addresses.end()) {
      p.api_server_addresses.push_back(*host);
    }
  }
  return p;
}

Result<JoinPki> MakeJoinPki(const std::string& cluster_id, const std::string& node_name,
                            const std::vector<std::string>& addresses) {
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr ca_key, GenerateP256Key());
  BERTH_ASSIGN_OR_RETURN(X509Ptr ca, IssueCert({.common_name = "berth join CA " + cluster_id,
                                                .is_ca = true,
                                                .validity = std::chrono::hours(24 * 3650)},
                                               ca_key.get(), nullptr, ca_key.get()));
  BERTH_ASSIGN_OR_RETURN(std::string ca_pem, CertToPem(ca.get()));
  BERTH_ASSIGN_OR_RETURN(SecretBytes ca_key_pem, PrivateKeyToPem(ca_key.get()));
  return IssueBerthdTls(std::move(ca_pem), std::move(ca_key_pem), node_name, addresses);
}

Result<JoinPki> IssueBerthdTls(std::string ca_pem, SecretBytes ca_key_pem,
                               const std::string& node_name,
                               const std::vector<std::string>& addresses) {
  BERTH_ASSIGN_OR_RETURN(X509Ptr ca, CertFromPem(ca_pem));
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr ca_key, PrivateKeyFromPem(ca_key_pem.view()));
  BERTH_ASSIGN_OR_RETURN(CertSpec spec,
                         EtcdMemberCertSpec(node_name, addresses, std::chrono::hours(24 * 365)));
  spec.server_auth = true;
  spec.client_auth = false;
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr tls_key, GenerateP256Key());
  BERTH_ASSIGN_OR_RETURN(X509Ptr tls, IssueCert(spec, tls_key.get(), ca.get(), ca_key.get()));
  JoinPki pki{.ca_pem = std::move(ca_pem), .ca_key_pem = std::move(ca_key_pem)};
  BERTH_ASSIGN_OR_RETURN(pki.tls_pem, CertToPem(tls.get()));
  BERTH_ASSIGN_OR_RETURN(pki.tls_key_pem, PrivateKeyToPem(tls_key.get()));
  return pki;
}

std::string RenderKubeadmInitConfig(const KubeadmInit& k) {
  std::vector<std::string> etcd_sans = {k.node_name};
  if (!k.advertise_address.empty()) etcd_sans.push_back(k.advertise_address);
  const std::string api = k.control_plane_endpoint.empty()
                              ? k.advertise_address + ":" + std::to_string(k.api_port)
                              : k.control_plane_endpoint;
  const std::string kcm = k.kubeconfig_dir + "/controller-manager.conf";
  const std::string scheduler = k.kubeconfig_dir + "/scheduler.conf";
  const bool external = !k.etcd_cert_file.empty();
  std::vector<std::string> lines = {
      "# Written by berth-agent (docs/cluster-lifecycle.md \"Bootstrap\").",
      "apiVersion: kubeadm.k8s.io/v1beta4",
      "kind: InitConfiguration",
      "localAPIEndpoint:",
      "  advertiseAddress: \"" + k.advertise_address + "\"",
      "  bindPort: " + std::to_string(k.api_port),
      "nodeRegistration:",
      "  name: \"" + k.node_name + "\"",
      "---",
      "apiVersion: kubeadm.k8s.io/v1beta4",
      "kind: ClusterConfiguration",
      "clusterName: \"" + k.cluster_id + "\"",
      "kubernetesVersion: \"" + k.kubernetes_version + "\"",
      "certificatesDir: \"" + k.pki_dir + "\"",
      "controlPlaneEndpoint: \"" + api + "\"",
      "apiServer:",
      "  certSANs: " + YamlList(k.sans)};
  if (!external) {
    lines.insert(lines.end(), {"  extraArgs:",
                               "  - {name: etcd-servers, value: \"" + k.etcd_client_url + "\"}"});
  }
  lines.insert(
      lines.end(),
      {"controllerManager:", "  extraArgs:", "  - {name: kubeconfig, value: \"" + kcm + "\"}",
       "  - {name: authentication-kubeconfig, value: \"" + kcm + "\"}",
       "  - {name: authorization-kubeconfig, value: \"" + kcm + "\"}",
       "  - {name: secure-port, value: \"" + std::to_string(k.controller_manager_port) + "\"}",
       "scheduler:", "  extraArgs:", "  - {name: kubeconfig, value: \"" + scheduler + "\"}",
       "  - {name: authentication-kubeconfig, value: \"" + scheduler + "\"}",
       "  - {name: authorization-kubeconfig, value: \"" + scheduler + "\"}",
       "  - {name: secure-port, value: \"" + std::to_string(k.scheduler_port) + "\"}", "etcd:"});
  if (external) {
    lines.insert(lines.end(), {"  external:", "    endpoints: " + YamlList({k.etcd_client_url}),
                               "    caFile: \"" + k.pki_dir + "/etcd/ca.crt\"",
                               "    certFile: \"" + k.etcd_cert_file + "\"",
                               "    keyFile: \"" + k.etcd_key_file + "\""});
  } else {
    lines.insert(lines.end(), {"  local:", "    serverCertSANs: " + YamlList(etcd_sans),
                               "    peerCertSANs: " + YamlList(etcd_sans)});
  }
  std::string out;
  for (const auto& l : lines) out += l + "\n";
  return out;
}

namespace {

Status RunPhases(ProcessRunner& runner, const std::vector<std::vector<std::string>>& phases,
                 const std::vector<std::string>& env = {}) {
  for (const auto& argv : phases) {
    BERTH_ASSIGN_OR_RETURN(ProcessResult r, runner.Run(argv, env));
    if (!r.success()) {
      std::string what = "kubeadm";
      for (size_t i = 1; i < argv.size() && argv[i].rfind("--", 0) != 0; ++i) what += " " + argv[i];
      return FailedPrecondition(what + " failed (" + r.Describe() + "): " + r.output);
    }
  }
  return OkStatus();
}

}  // namespace

Status RunKubeadmCertPhases(ProcessRunner& runner, const std::string& kubeadm,
                            const std::string& config, const std::string& kubeconfig_dir) {
  return RunPhases(runner, {{kubeadm, "init", "phase", "certs", "all", "--config", config},
                            {kubeadm, "init", "phase", "kubeconfig", "admin", "--config", config,
                             "--kubeconfig-dir", kubeconfig_dir}});
}

Status RunKubeadmControlPlanePhases(ProcessRunner& runner, const std::string& kubeadm,
                                    const std::string& config, const std::string& kubeconfig_dir,
                                    const std::string& manifest_dir, bool super_admin) {
  std::vector<std::vector<std::string>> kubeconfigs;
  for (const char* name : {"super-admin", "controller-manager", "scheduler"}) {
    if (std::string(name) == "super-admin" && !super_admin) continue;
    kubeconfigs.push_back({kubeadm, "init", "phase", "kubeconfig", name, "--config", config,
                           "--kubeconfig-dir", kubeconfig_dir});
  }
  BERTH_RETURN_IF_ERROR(RunPhases(runner, kubeconfigs));
  return RunPhases(
      runner,
      {{kubeadm, "init", "phase", "control-plane", "apiserver", "--config", config, "--dry-run"},
       {kubeadm, "init", "phase", "control-plane", "controller-manager", "--config", config,
        "--dry-run"},
       {kubeadm, "init", "phase", "control-plane", "scheduler", "--config", config, "--dry-run"}},
      {"KUBEADM_INIT_DRYRUN_DIR=" + manifest_dir});
}

Status RunKubeadmKubeletPhases(ProcessRunner& runner, const std::string& kubeadm,
                               const std::string& config, const std::string& kubeconfig_dir) {
  return RunPhases(runner, {{kubeadm, "init", "phase", "kubeconfig", "kubelet", "--config", config,
                             "--kubeconfig-dir", kubeconfig_dir},
                            {kubeadm, "init", "phase", "kubelet-start", "--config", config}});
}

Status RunKubeadmMarkControlPlane(ProcessRunner& runner, const std::string& kubeadm,
                                  const std::string& config) {
  return RunPhases(runner, {{kubeadm, "init", "phase", "mark-control-plane", "--config", config}});
}

Status RunKubeadmUploadPhases(ProcessRunner& runner, const std::string& kubeadm,
                              const std::string& config, const std::string& admin_kubeconfig) {
  const std::vector<std::string> as = {"--config", config, "--kubeconfig", admin_kubeconfig};
  std::vector<std::vector<std::string>> phases;
  for (std::vector<std::string> phase : {std::vector<std::string>{"upload-config", "kubeadm"},
                                         {"upload-config", "kubelet"},
                                         {"bootstrap-token", "--skip-token-print"}}) {
    std::vector<std::string> argv = {kubeadm, "init", "phase"};
    argv.insert(argv.end(), phase.begin(), phase.end());
    argv.insert(argv.end(), as.begin(), as.end());
    phases.push_back(std::move(argv));
  }
  return RunPhases(runner, phases);
}

Status CheckControlPlaneMount(const std::string& mount_point) {
  if (mount_point == kControlPlaneStateMount) return OkStatus();
  return FailedPrecondition(
      "a control plane that runs the control plane mounts its state disk at " +
      std::string(kControlPlaneStateMount) +
      ", where berthd-control-plane.service reads berthd's files; the "
      "EnrolmentConfig says " +
      mount_point);
}

Status SystemdControlPlaneServices::Start(const std::string& name) {
  const std::string unit = (name == "berthd" ? "berthd-control-plane" : name) + ".service";
  BERTH_ASSIGN_OR_RETURN(ProcessResult r, runner_->Run({systemctl_, "start", "--no-block", unit}));
  if (!r.success()) {
    return Unavailable("systemctl start " + unit + " failed (" + r.Describe() + "): " + r.output);
  }
  return OkStatus();
}

Result<std::vector<std::string>> ManifestCommand(const std::string& manifest_yaml,
                                                 const std::string& program) {
  YAML::Node command;
  try {
    command = YAML::Load(manifest_yaml)["spec"]["containers"][0]["command"];
  } catch (const YAML::Exception& e) {
    return InvalidArgument("the " + program + " manifest is not YAML: " + e.what());
  }
  auto is_string = [](const YAML::Node& n) { return n.IsScalar(); };
  if (!command || !command.IsSequence() || command.size() < 1 || !is_string(command[0]) ||
      command[0].as<std::string>() != program) {
    return InvalidArgument("the " + program + " manifest's first container does not run " +
                           program);
  }
  std::vector<std::string> args;
  for (size_t i = 1; i < command.size(); ++i) {
    if (!is_string(command[i])) {
      return InvalidArgument("the " + program + " manifest's command has an argument that is " +
                             "not a string (number " + std::to_string(i) + ")");
    }
    args.push_back(command[i].as<std::string>());
  }
  return args;
}

Result<std::string> RenderArgsEnvironment(const std::string& var,
                                          const std::vector<std::string>& args) {
  std::string out = "# Written by berth-agent at bootstrap (docs/kubernetes.md).\n" + var + "=";
  for (size_t i = 0; i < args.size(); ++i) {
    if (args[i].empty() || args[i].find_first_of(" \t\n\"'\\") != std::string::npos) {
      return InvalidArgument("argument \"" + args[i] + "\" cannot be passed through " + var);
    }
    out += (i ? " " : "") + args[i];
  }
  return out + "\n";
}

Result<std::string> KubeadmVersion(ProcessRunner& runner, const std::string& kubeadm) {
  BERTH_ASSIGN_OR_RETURN(ProcessResult r, runner.Run({kubeadm, "version", "-o", "short"}));
  std::string v = TrimWhitespace(r.output);
  if (!r.success() || v.empty() || v[0] != 'v' || v.find_first_of(" \n") != std::string::npos) {
    return FailedPrecondition("kubeadm version -o short (" + r.Describe() +
                              ") did not print a version: " + r.output);
  }
  return v;
}

std::string RenderKubeconfig(const std::string& cluster, const std::string& server,
                             const std::string& ca_file, const std::string& user,
                             const std::string& cert_file, const std::string& key_file) {
  return "apiVersion: v1\nkind: Config\nclusters:\n- name: " + cluster +
         "\n  cluster:\n    server: https://" + server + "\n    certificate-authority: " + ca_file +
         "\nusers:\n- name: " + user + "\n  user:\n    client-certificate: " + cert_file +
         "\n    client-key: " + key_file + "\ncontexts:\n- name: " + user + "@" + cluster +
         "\n  context:\n    cluster: " + cluster + "\n    user: " + user +
         "\ncurrent-context: " + user + "@" + cluster + "\n";
}

std::string RenderBerthdEnvironment(const BerthdSetup& s) {
  const std::vector<std::pair<std::string, std::string>> flags = {
      {"--listen", s.listen},
      {"--cluster-id", s.cluster_id},
      {"--api-server-endpoint", s.api_server_endpoint},
      {"--control-plane-endpoint", s.control_plane_endpoint},
      {"--tls-cert", s.dir + "/tls.pem"},
      {"--tls-key", s.dir + "/tls.key"},
      {"--policy", s.dir + "/policy.yaml"},
      {"--master-secret-file", s.dir + "/master.secret"},
      {"--recovery-key", s.recovery_key ? s.dir + "/recovery-key.txt" : ""},
      {"--kubeconfig", s.dir + "/kubeconfig"},
      {"--control-plane-pki", s.pki_dir},
      {"--join-ca-key", s.dir + "/join-ca.key"},
      {"--etcd-endpoints", s.etcd_client_url},
      {"--etcd-ca-cert", s.pki_dir + "/etcd/ca.crt"},
      {"--etcd-ca-key", s.etcd_ca_key},
      {"--etcd-client-cert", s.dir + "/etcd-client.pem"},
      {"--etcd-client-key", s.dir + "/etcd-client.key"}};
  std::string out =
      "# Written by berth-agent (docs/cluster-lifecycle.md \"Bootstrap\"): the flags of berthd\n"
      "# on this control plane, every file on the state disk.\nBERTHD_ARGS=";
  bool first = true;
  for (const auto& [flag, value] : flags) {
    if (value.empty()) continue;
    out += (first ? "" : " ") + flag + " " + value;
    first = false;
  }
  return out + "\n";
}

Result<std::vector<std::string>> ArgsFromEnvironment(const std::string& text,
                                                     const std::string& var) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind(var + "=", 0) != 0) continue;
    std::vector<std::string> args;
    std::istringstream words(line.substr(var.size() + 1));
    for (std::string w; words >> w;) args.push_back(w);
    return args;
  }
  return InvalidArgument("no " + var + "= line in the environment file");
}

}  // namespace berth::agent
