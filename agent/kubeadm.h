// The kubeadm side of a join: checking the ticket, rendering the JoinConfiguration and
// running `kubeadm join --config`.
#pragma once

#include <string>

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

// kubeadm.k8s.io/v1beta4 JoinConfiguration (YAML). It holds the bootstrap token, so it is a
// secret. With `control_plane`, it adds controlPlane.localAPIEndpoint and skips kubeadm's
// control-plane-join/etcd phase: berth has made the node an etcd member already, and kubeadm
// adding it again would fail (or add a second member).
// With `discovery_file` (the kubeconfig's path as kubeadm sees it), discovery.file replaces
// discovery.bootstrapToken: kubeadm takes the cluster and the token from that kubeconfig.
SecretBytes RenderJoinConfiguration(const v1::KubeadmJoin& join, const std::string& node_name,
                                    const ControlPlaneJoin* control_plane = nullptr,
                                    const std::string& discovery_file = "");

// Writes the configuration to <root>/run/berth/kubeadm-join.yaml (0600), runs
// `<kubeadm> join --config <file>`, and removes the file whatever the outcome.
// With `discovery_kubeconfig`, it is written to <root>/run/berth/discovery-kubeconfig.yaml
// (0600) first and removed with the configuration.
Status RunKubeadmJoin(ProcessRunner& runner, const std::string& kubeadm, const std::string& root,
                      const SecretBytes& config,
                      const SecretBytes* discovery_kubeconfig = nullptr);

}  // namespace berth::agent
