// The first control plane (docs/cluster-lifecycle.md "Bootstrap"): what berth-agent makes on the
// node when an operator's `berthctl cluster init` asks it to, after the operator has verified
// its attestation. Every secret of the new cluster is made here, on the node, and written only
// to its encrypted state disk: the master secret, berth's join CA (what EnrolmentConfigs pin)
// and berthd's TLS key, Kubernetes' CAs and service-account key (kubeadm's own
// `init phase certs all`, so they are exactly what kubeadm makes), the etcd CA with this
// node's etcd certificates, berthd's etcd client key and its Kubernetes identity. The operator
// receives public material and the admin kubeconfig; the ESP is never written.
//
// This file holds the parts that need no device: checking the request, the certificates berth
// makes itself, and the configuration files. agent.cc runs them in order (Boot::Bootstrap).
#pragma once

#include <string>
#include <vector>

#include "berth/v1/operator.pb.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "common/secret.h"
#include "common/status.h"
#include "common/subprocess.h"

namespace berth::agent {

// What berthd on this node serves with, under the state disk's mount point (beside
// kMasterSecretOnDisk): berthd.env (its flags), policy.yaml, recovery-key.txt, join-ca.pem
// and .key, tls.pem and .key, etcd-client.pem and .key, kubeconfig.
inline constexpr char kBerthdDirOnDisk[] = "/berthd";
// Where berthd serves joins on the first control plane.
inline constexpr int kBerthdPort = 7400;
// The Kubernetes API's port, the controller manager's and the scheduler's (kubeadm's defaults).
inline constexpr int kApiServerPort = 6443;
inline constexpr int kControllerManagerPort = 10257;
inline constexpr int kSchedulerPort = 10259;

// A BootstrapRequest, checked.
struct BootstrapParams {
  std::string cluster_id;
  Bytes recovery_public_key;  // X25519
  std::string policy_yaml;
  // The policy's roles.cold_start, as berthctl read it with berthd's parser.
  DigestAlg cold_start_bank = DigestAlg::kSha256;
  std::vector<uint32_t> cold_start_pcrs;
  std::vector<std::string> api_server_addresses;  // the endpoint's host among them
  std::string control_plane_endpoint;             // host:port; empty: the node's own
};

// INVALID_ARGUMENT naming what is wrong, before anything is made: a cluster ID that is not a
// DNS-1123 label (it salts every disk key and names the cluster in kubeconfigs), a recovery
// key that is not 32 bytes, no policy, a cold-start PCR set the boot-policy signer refuses
// (CheckColdStartPcrs), an address that is neither an IP literal nor a DNS name, a control
// plane endpoint that is not host:port. The policy
// itself is the operator's, checked by berthctl with berthd's parser; berthd refuses to start
// on one it cannot parse.
Result<BootstrapParams> CheckBootstrapRequest(const v1::BootstrapRequest& request);

// berth's join CA (P-256, ten years) and berthd's TLS certificate from it (one year; the node's
// name, localhost and every address in `addresses` as SANs).
struct JoinPki {
  std::string ca_pem;
  SecretBytes ca_key_pem;
  std::string tls_pem;
  SecretBytes tls_key_pem;
};
Result<JoinPki> MakeJoinPki(const std::string& cluster_id, const std::string& node_name,
                            const std::vector<std::string>& addresses);
// berthd's TLS certificate, as MakeJoinPki makes it, from an existing join CA: a control plane
// that joined makes its own berthd's with the CA key berthd shared with it.
Result<JoinPki> IssueBerthdTls(std::string ca_pem, SecretBytes ca_key_pem,
                               const std::string& node_name,
                               const std::vector<std::string>& addresses);

// kubeadm's InitConfiguration and ClusterConfiguration: certificates under `pki_dir`, the API
// server at `advertise_address`:`api_port` with `sans` as extra SANs and this node's etcd at
// `etcd_client_url`, etcd's certificates for the node's name and address, and the controller
// manager's and the scheduler's kubeconfigs under `kubeconfig_dir` (kubeadm's manifests
// otherwise name fixed paths under /etc/kubernetes), serving on `controller_manager_port` and
// `scheduler_port`.
//
// The first control plane has the etcd CA's key in kubeadm's PKI, and kubeadm makes the API
// server's etcd client certificate with it. A control plane that joined has not (berthd signed
// its etcd member's certificates from CSRs made on it): with `etcd_cert_file` and
// `etcd_key_file`, the member's certificate (EKU serverAuth and clientAuth) is the API
// server's etcd client identity, and kubeadm is told etcd is external, so that it makes no
// etcd certificate.
struct KubeadmInit {
  std::string pki_dir;
  std::string kubeconfig_dir;
  std::string cluster_id;
  std::string node_name;
  std::string advertise_address;
  int api_port = kApiServerPort;
  int controller_manager_port = kControllerManagerPort;
  int scheduler_port = kSchedulerPort;
  std::vector<std::string> sans;
  // kubeadm's controlPlaneEndpoint (admin.conf's and cluster-info's server); empty:
  // advertise_address:api_port.
  std::string control_plane_endpoint;
  std::string etcd_client_url;
  std::string etcd_cert_file, etcd_key_file;
  std::string kubernetes_version;  // kubeadm's own (`kubeadm version -o short`)
};
std::string RenderKubeadmInitConfig(const KubeadmInit& init);

// kubeadm phases, FAILED_PRECONDITION with kubeadm's words when one fails. `config` is the
// file RenderKubeadmInitConfig's output was written to.
//   the cluster's Kubernetes PKI and the admin kubeconfig (no cluster needed): `init phase
//   certs all`, `init phase kubeconfig admin` into `kubeconfig_dir`;
Status RunKubeadmCertPhases(ProcessRunner& runner, const std::string& kubeadm,
                            const std::string& config, const std::string& kubeconfig_dir);
//   the control plane's kubeconfigs (controller-manager; super-admin, the break-glass
//   credential `kubeadm init` makes on the first control plane only, when `super_admin`) into
//   `kubeconfig_dir` and the static Pod manifests kubeadm would run, into `manifest_dir`
//   (--dry-run);
Status RunKubeadmControlPlanePhases(ProcessRunner& runner, const std::string& kubeadm,
                                    const std::string& config, const std::string& kubeconfig_dir,
                                    const std::string& manifest_dir, bool super_admin);
//   a control plane's kubelet: its kubeconfig (`init phase kubeconfig kubelet`, into
//   `kubeconfig_dir`) and its configuration (`init phase kubelet-start`, into /var/lib/kubelet:
//   kubeadm has no flag for another place; it also asks systemd to restart kubelet.service);
Status RunKubeadmKubeletPhases(ProcessRunner& runner, const std::string& kubeadm,
                               const std::string& config, const std::string& kubeconfig_dir);
//   the control plane's label and taint on its registered node (`init phase
//   mark-control-plane`, as /etc/kubernetes/admin.conf: kubeadm has no flag for another);
Status RunKubeadmMarkControlPlane(ProcessRunner& runner, const std::string& kubeadm,
                                  const std::string& config);
//   what `kubeadm init` puts into a running cluster, as `admin_kubeconfig`: the kubeadm and
//   kubelet configuration, cluster-info and the RBAC that lets bootstrap tokens join.
Status RunKubeadmUploadPhases(ProcessRunner& runner, const std::string& kubeadm,
                              const std::string& config, const std::string& admin_kubeconfig);

// A control plane's services besides etcd: the Kubernetes API server and controller manager,
// then berthd. In the node image each is a systemd unit (systemd/kube-apiserver.service,
// kube-controller-manager.service, berthd-control-plane.service) that reads its flags from
// <name>.env (ARGS=..., BERTHD_ARGS=... for berthd) under kControlPlaneArgsDir (berthd: the
// state disk's berthd directory); tests start the real programs from the same files. Docs:
// docs/kubernetes.md "Control planes".
class ControlPlaneServices {
 public:
  virtual ~ControlPlaneServices() = default;
  // Starts `name` ("kube-apiserver", "kube-controller-manager", "berthd") if it is not
  // running.
  virtual Status Start(const std::string& name) = 0;
};
// `systemctl start --no-block <name>.service`; berthd's is berthd-control-plane.service
// (berthd.service is an operator's berthd, with its files under /etc/berth).
class SystemdControlPlaneServices : public ControlPlaneServices {
 public:
  SystemdControlPlaneServices(ProcessRunner* runner, std::string systemctl)
      : runner_(runner), systemctl_(std::move(systemctl)) {}
  Status Start(const std::string& name) override;

 private:
  ProcessRunner* runner_;
  std::string systemctl_;
};
inline constexpr char kControlPlaneArgsDir[] = "/etc/kubernetes/berth";
// Where berthd-control-plane.service finds berthd's directory: a control plane that runs the
// control plane mounts its state disk here (CheckControlPlaneMount).
inline constexpr char kControlPlaneStateMount[] = "/var/lib/berth/state";
// FAILED_PRECONDITION when `mount_point` is not kControlPlaneStateMount: the unit would find no
// berthd.env and, started with --no-block, fail without the agent knowing.
Status CheckControlPlaneMount(const std::string& mount_point);
// The control plane's Kubernetes services, each a unit of that name whose flags are in
// kControlPlaneArgsDir/NAME.env, in the order they start: the API server alone, then the
// others once it is ready (berth-agent's StartKubeComponents, WaitForRestartedApiServer).
inline constexpr char kApiServer[] = "kube-apiserver";
inline constexpr const char* kApiServerClients[] = {"kube-controller-manager", "kube-scheduler"};
inline constexpr const char* kKubeComponents[] = {kApiServer, kApiServerClients[0],
                                                  kApiServerClients[1]};

// The command of a static Pod manifest's first container without the program (`program`, which
// it must start with): the flags kubeadm chose. INVALID_ARGUMENT naming what is missing.
Result<std::vector<std::string>> ManifestCommand(const std::string& manifest_yaml,
                                                 const std::string& program);
// An environment file with `var`=the arguments, space-separated. INVALID_ARGUMENT for an
// argument with whitespace or a newline (systemd splits $VAR at whitespace).
Result<std::string> RenderArgsEnvironment(const std::string& var,
                                          const std::vector<std::string>& args);
// `kubeadm version -o short`: the release it makes configuration for.
Result<std::string> KubeadmVersion(ProcessRunner& runner, const std::string& kubeadm);

// A client kubeconfig for https://`server` naming its files (the CA, a client certificate and
// its key), so the key stays in its own 0600 file.
std::string RenderKubeconfig(const std::string& cluster, const std::string& server,
                             const std::string& ca_file, const std::string& user,
                             const std::string& cert_file, const std::string& key_file);

// berthd's flags on this node, as the environment file berthd reads (BERTHD_ARGS=...):
// everything under `dir` (the state disk's berthd directory as the node sees it), kubeadm's
// PKI and the etcd CA's certificate under `pki_dir`, the etcd CA's key at `etcd_ca_key`
// (kubeadm's <pki_dir>/etcd/ca.key on the first control plane; <dir>/etcd-ca.key on one that
// joined, which kubeadm must not take for its own), the node's etcd at `etcd_client_url`.
// berthd shares its keys with the control planes it admits (--control-plane-pki,
// --join-ca-key), so that each of them serves joins too.
struct BerthdSetup {
  std::string dir;
  std::string pki_dir;
  std::string etcd_ca_key;
  bool recovery_key = true;  // <dir>/recovery-key.txt exists (berthd --recovery-key)
  std::string cluster_id;
  std::string listen;               // host:port
  std::string api_server_endpoint;  // host:port
  // The cluster's control plane endpoint (BootstrapParams), which the control planes this
  // berthd admits get with the cluster keys; empty: none.
  std::string control_plane_endpoint;
  std::string etcd_client_url;
};
std::string RenderBerthdEnvironment(const BerthdSetup& setup);
// `var` of such a file (BERTHD_ARGS, ARGS), split at spaces (the paths hold none).
Result<std::vector<std::string>> ArgsFromEnvironment(const std::string& text,
                                                     const std::string& var);

}  // namespace berth::agent
