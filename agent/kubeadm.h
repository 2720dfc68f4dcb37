// The kubeadm side of a join: checking the ticket, rendering the JoinConfiguration and
// running `kubeadm join --config`.
#pragma once

#include <string>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/secret.h"
#include "common/subprocess.h"

namespace berth::agent {

// Where the JoinConfiguration is written (under --root); /run is a tmpfs, and the file is
// removed once kubeadm has read it.
inline constexpr char kJoinConfigPath[] = "/run/berth/kubeadm-join.yaml";
// Where a ticket's discovery kubeconfig is written for kubeadm's discovery.file (berthd
// --discovery file); it holds the token, so it is 0600 and removed after the join too.
inline constexpr char kDiscoveryKubeconfigPath[] = "/run/berth/discovery-kubeconfig.yaml";

// A ticket from berthd is still input: every field kubeadm will use is checked. INVALID_ARGUMENT
// ("malformed join ticket: ...") names the bad field; `want_disk_key` says whether the request
// named a disk (then a 32-byte key must be present, otherwise none).
Status ValidateJoinTicket(const v1::JoinTicket& ticket, bool want_disk_key);

// A control plane's part of the JoinConfiguration (docs/etcd.md).
struct ControlPlaneJoin {
  std::string advertise_address;  // an IP address of the node
  int bind_port = 6443;
};

// How long one `kubeadm join` looks for the cluster (discovery: the cluster-info ConfigMap
// and its signature for the token) before it gives up; kubeadm's default is 5 minutes. berth
// retries the whole join itself, with a fresh ticket and a status an operator can read, so one
// attempt need not wait long (under QEMU's emulation, discovery takes seconds).
inline constexpr char kKubeadmDiscoveryTimeout[] = "1m0s";

// kubeadm.k8s.io/v1beta4 JoinConfiguration (YAML). It holds the bootstrap token, so it is a
// secret. timeouts.discovery is kKubeadmDiscoveryTimeout. With `control_plane`, it adds controlPlane.localAPIEndpoint and skips kubeadm's
// etcd-join phase (kubeadm v1.37's name; before v1.31's ControlPlaneKubeletLocalMode it was
// control-plane-join/etcd, which v1.37 refuses as an invalid phase): berth has made the node an
// etcd member already, and kubeadm adding it again would fail (or add a second member).
// With `discovery_file` (the kubeconfig's path as kubeadm sees it), discovery.file replaces
// discovery.bootstrapToken: kubeadm takes the cluster and the token from that kubeconfig.
SecretBytes RenderJoinConfiguration(const v1::KubeadmJoin& join, const std::string& node_name,
                                    const ControlPlaneJoin* control_plane = nullptr,
                                    const std::string& discovery_file = "");

// Writes the configuration to <root>/run/berth/kubeadm-join.yaml (0600), runs
// `<kubeadm> join --config <file>`, and removes the file whatever the outcome.
// With `discovery_kubeconfig`, it is written to <root>/run/berth/discovery-kubeconfig.yaml
// (0600) first and removed with the configuration.
// kubeadm exiting non-zero (the API server unreachable, a token or CA pin it refuses, a TLS
// bootstrap that timed out) is UNAVAILABLE, "kubeadm join failed (<exit>): <the end of its
// output>", with every `redact` string in that output replaced by "<redacted>": a join may be
// tried again (after ClearFailedJoin). Failing to write or remove the files keeps its own code.
Status RunKubeadmJoin(ProcessRunner& runner, const std::string& kubeadm, const std::string& root,
                      const SecretBytes& config,
                      const SecretBytes* discovery_kubeconfig = nullptr,
                      const std::vector<std::string>& redact = {});

// The kubeconfig the kubelet's TLS bootstrap ends with, and the client certificate (with its
// key) it names, under the root.
inline constexpr char kKubeletConfPath[] = "/etc/kubernetes/kubelet.conf";
inline constexpr char kKubeletClientCertPath[] = "/var/lib/kubelet/pki/kubelet-client-current.pem";

// Whether the kubelet has finished its TLS bootstrap under `root`: kubelet.conf and its client
// certificate both exist. A node for which this holds has joined. kubelet.conf alone does not
// say so: the kubelet writes it first, naming the certificate it is about to ask for, and
// writes the certificate once its CSR is signed.
bool KubeletBootstrapped(const std::string& root);

// What a `kubeadm join` that did not finish leaves on a worker, relative to the root: files
// its preflight refuses to find again (FileAvailable--...) or that would let a half-made
// configuration outlive the attempt, kubelet.conf without its certificate among them.
inline constexpr const char* kJoinLeftovers[] = {
    "/etc/kubernetes/kubelet.conf",
    "/etc/kubernetes/bootstrap-kubelet.conf",
    "/etc/kubernetes/pki/ca.crt",
    "/var/lib/kubelet/config.yaml",
    "/var/lib/kubelet/instance-config.yaml",
    "/var/lib/kubelet/kubeadm-flags.env",
};

// Before a join is tried again: stops the kubelet that the failed attempt started (when
// `kubelet_unit` is given: `<systemctl> stop <unit>`; its port would fail kubeadm's preflight)
// and removes kJoinLeftovers under `root`. FAILED_PRECONDITION if KubeletBootstrapped(root):
// that node has joined, and nothing of it is removed.
Status ClearFailedJoin(ProcessRunner& runner, const std::string& root,
                       const std::string& systemctl, const std::string& kubelet_unit);

// `<systemctl> start <unit>`: the kubelet, once the state disk is mounted and the node joined
// (kubelet.service.d/20-berth.conf in the node image). UNAVAILABLE if systemctl fails.
Status StartKubelet(ProcessRunner& runner, const std::string& systemctl,
                    const std::string& kubelet_unit);

}  // namespace berth::agent
