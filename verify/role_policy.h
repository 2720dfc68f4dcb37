// Which nodes may take which role: the `roles:` section of berthd's policy. A node's request to
// be a control plane is a claim; berthd hands out control-plane material (etcd certificates,
// etcd membership) only to a node that this section, or an operator (`berthctl nodes
// authorize`), authorized. Grants name attestation keys, never just node names, since a name
// is whatever the node says it is:
//
//   roles:
//     control_plane:
//       - ak: rack1-node07        # a name from tpm.trusted_aks
//       - ak_sha256: 3f2a...      # an AK fingerprint (SHA-256 of its DER SPKI)
//         node: cp-2              # optional: only when it joins under this node name
#pragma once

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

#include "common/status.h"

namespace berth::verify {

struct TrustedAk;

struct RoleGrant {
  std::string ak_sha256_hex;  // lowercase
  std::string node;           // empty: any node name
  std::string where;          // "roles.control_plane[0]", for audit lines
};

struct RolePolicy {
  std::vector<RoleGrant> control_plane;

  // The first grant that authorizes `node` with attestation key `ak_sha256_hex` as a control
  // plane, or null.
  const RoleGrant* FindControlPlane(const std::string& node,
                                    const std::string& ak_sha256_hex) const;
};

// Parses the `roles:` node (absent: no grants). `trusted_aks` resolves `ak:` names.
Status ParseRolePolicy(const YAML::Node& roles, const std::vector<TrustedAk>& trusted_aks,
                       RolePolicy& out);

}  // namespace berth::verify
