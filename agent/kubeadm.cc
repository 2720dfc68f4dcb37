#include "agent/kubeadm.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <regex>

#include "common/bytes.h"
#include "common/enrolment.h"

namespace berth::agent {

Status ValidateJoinTicket(const v1::JoinTicket& ticket, bool want_disk_key) {
  auto bad = [](const std::string& what) { return InvalidArgument("malformed join ticket: " + what); };
  if (want_disk_key && ticket.disk_key().size() != 32) {
    return bad("disk key has " + std::to_string(ticket.disk_key().size()) + " bytes, expected 32");
  }
  if (!want_disk_key && !ticket.disk_key().empty()) return bad("a disk key for a diskless node");
  if (!ticket.has_kubeadm()) return bad("no kubeadm section");
  const v1::KubeadmJoin& k = ticket.kubeadm();
  if (!IsValidEndpoint(k.api_server_endpoint())) {
    return bad("API server endpoint \"" + k.api_server_endpoint() + "\" is not host:port");
  }
  static const std::regex kToken("^[a-z0-9]{6}\\.[a-z0-9]{16}$");
  // The token itself is never echoed back: it is a secret.
  if (!std::regex_match(k.token(), kToken)) return bad("bootstrap token is not [a-z0-9]{6}.[a-z0-9]{16}");
  if (k.ca_cert_hashes().empty()) return bad("no CA certificate hashes");
  static const std::regex kHash("^sha256:[0-9a-f]{64}$");
  for (const auto& h : k.ca_cert_hashes()) {
    if (!std::regex_match(h, kHash)) return bad("CA certificate hash \"" + h + "\" is not sha256:<hex>");
  }
  if (!ticket.discovery_kubeconfig().empty()) {
    // kubeadm trusts the CA in it: it must be a kubeconfig with an https cluster, a CA and the
    // ticket's token as its user.
    try {
      YAML::Node kc = YAML::Load(ticket.discovery_kubeconfig());
      YAML::Node cluster = kc["clusters"] && kc["clusters"].IsSequence() && kc["clusters"].size() == 1
                               ? kc["clusters"][0]["cluster"]
                               : YAML::Node();
      if (!cluster || !cluster["server"] ||
          !cluster["server"].as<std::string>().starts_with("https://") ||
          !cluster["certificate-authority-data"]) {
        return bad("the discovery kubeconfig has no https cluster with a CA");
      }
      YAML::Node user = kc["users"] && kc["users"].IsSequence() && kc["users"].size() == 1
                            ? kc["users"][0]["user"]
                            : YAML::Node();
      if (!user || !user["token"] || user["token"].as<std::string>() != k.token()) {
        return bad("the discovery kubeconfig's user is not the ticket's bootstrap token");
      }
    } catch (const YAML::Exception&) {
      return bad("the discovery kubeconfig is not YAML");
    }
  }
  return OkStatus();
}

SecretBytes RenderJoinConfiguration(const v1::KubeadmJoin& join, const std::string& node_name,
                                    const ControlPlaneJoin* control_plane,
                                    const std::string& discovery_file) {
  // Values are double-quoted: kubeadm converts YAML to JSON without type hints, so a plain
  // scalar such as a node named "123" or "no" would reach it as a number or a boolean.
  YAML::Emitter out;
  out << YAML::BeginMap;
  out << YAML::Key << "apiVersion" << YAML::Value << "kubeadm.k8s.io/v1beta4";
  out << YAML::Key << "kind" << YAML::Value << "JoinConfiguration";
  out << YAML::Key << "discovery" << YAML::Value << YAML::BeginMap;
  if (!discovery_file.empty()) {
    out << YAML::Key << "file" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "kubeConfigPath" << YAML::Value << YAML::DoubleQuoted << discovery_file;
    out << YAML::EndMap << YAML::EndMap;
  } else {
    out << YAML::Key << "bootstrapToken" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "apiServerEndpoint" << YAML::Value << YAML::DoubleQuoted
        << join.api_server_endpoint();
    out << YAML::Key << "token" << YAML::Value << YAML::DoubleQuoted << join.token();
    out << YAML::Key << "caCertHashes" << YAML::Value << YAML::BeginSeq;
    for (const auto& h : join.ca_cert_hashes()) out << YAML::DoubleQuoted << h;
    out << YAML::EndSeq << YAML::EndMap << YAML::EndMap;
  }
  out << YAML::Key << "nodeRegistration" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << YAML::DoubleQuoted << node_name;
  out << YAML::EndMap;
  if (control_plane != nullptr) {
    out << YAML::Key << "controlPlane" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "localAPIEndpoint" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "advertiseAddress" << YAML::Value << YAML::DoubleQuoted
        << control_plane->advertise_address;
    out << YAML::Key << "bindPort" << YAML::Value << control_plane->bind_port;
    out << YAML::EndMap << YAML::EndMap;
    out << YAML::Key << "skipPhases" << YAML::Value << YAML::BeginSeq
        << YAML::DoubleQuoted << "etcd-join" << YAML::EndSeq;
  }
  out << YAML::Key << "timeouts" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "discovery" << YAML::Value << YAML::DoubleQuoted << kKubeadmDiscoveryTimeout;
  out << YAML::EndMap;
  out << YAML::EndMap;
  SecretBytes config(out.c_str(), out.size());
  // The emitter's buffer held the token too.
  WipeMemory(const_cast<char*>(out.c_str()), out.size());
  return config;
}

Status RunKubeadmJoin(ProcessRunner& runner, const std::string& kubeadm, const std::string& root,
                      const SecretBytes& config, const SecretBytes* discovery_kubeconfig,
                      const std::vector<std::string>& redact) {
  const std::string path = JoinRoot(root, kJoinConfigPath);
  const std::string discovery_path = JoinRoot(root, kDiscoveryKubeconfigPath);
  BERTH_RETURN_IF_ERROR(MakeDirs(path.substr(0, path.rfind('/')), 0700));
  if (discovery_kubeconfig != nullptr) {
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(discovery_path, discovery_kubeconfig->span(), 0600));
  }
  Status written = WriteFileAtomic(path, config.span(), 0600);
  auto result = written.ok() ? runner.Run({kubeadm, "join", "--config", path})
                             : Result<ProcessResult>(written);
  // kubeadm has read the token by now; it must not outlive the call, not even in the pages
  // /run gives back.
  for (const std::string& p : {path, discovery_path}) {
    BERTH_RETURN_IF_ERROR(WipeAndRemove(p));
  }
  if (!result.ok()) return result.status().WithContext("running kubeadm");
  if (!result->success()) {
    std::string output = std::move(result->output);
    for (const std::string& secret : redact) {
      if (secret.empty()) continue;
      static constexpr std::string_view kRedacted = "<redacted>";
      for (size_t at = output.find(secret); at != std::string::npos;
           at = output.find(secret, at + kRedacted.size())) {
        WipeMemory(output.data() + at, secret.size());
        output.replace(at, secret.size(), kRedacted);
      }
    }
    std::string tail = output.size() > 2000 ? output.substr(output.size() - 2000) : output;
    WipeMemory(output.data(), output.size());
    return Unavailable("kubeadm join failed (" + result->Describe() + "): " + TrimWhitespace(tail));
  }
  return OkStatus();
}

bool KubeletBootstrapped(const std::string& root) {
  return access(JoinRoot(root, kKubeletConfPath).c_str(), F_OK) == 0 &&
         access(JoinRoot(root, kKubeletClientCertPath).c_str(), F_OK) == 0;
}

Status ClearFailedJoin(ProcessRunner& runner, const std::string& root,
                       const std::string& systemctl, const std::string& kubelet_unit) {
  if (KubeletBootstrapped(root)) {
    return FailedPrecondition(JoinRoot(root, kKubeletConfPath) + " and " +
                              JoinRoot(root, kKubeletClientCertPath) +
                              " exist: this node has joined; not clearing it");
  }
  if (!kubelet_unit.empty()) {
    BERTH_ASSIGN_OR_RETURN(ProcessResult r, runner.Run({systemctl, "stop", kubelet_unit}));
    if (!r.success()) {
      return Unavailable(systemctl + " stop " + kubelet_unit + " failed (" + r.Describe() +
                         "): " + TrimWhitespace(r.output));
    }
  }
  for (const char* leftover : kJoinLeftovers) {
    const std::string path = JoinRoot(root, leftover);
    if (unlink(path.c_str()) != 0 && errno != ENOENT) return ErrnoStatus("removing " + path);
  }
  return OkStatus();
}

Status StartKubelet(ProcessRunner& runner, const std::string& systemctl,
                    const std::string& kubelet_unit) {
  BERTH_ASSIGN_OR_RETURN(ProcessResult r, runner.Run({systemctl, "start", kubelet_unit}));
  if (!r.success()) {
    return Unavailable(systemctl + " start " + kubelet_unit + " failed (" + r.Describe() +
                       "): " + TrimWhitespace(r.output));
  }
  return OkStatus();
}

}  // namespace berth::agent
