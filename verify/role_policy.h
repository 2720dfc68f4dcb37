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
//     cold_start:                 # optional; these are the defaults
//       bank: sha256
//       pcrs: [0, 1, 2, 3, 4, 5, 6, 7]
//
// `cold_start` is the boot a control plane's TPM may open its state disk in when no berthd
// answers (docs/cluster-lifecycle.md "Cold start"): berthd signs these PCRs, with the values of
// the quote it has just verified, into each control plane's ticket. berthd decides the set, not
// the node: a control-plane quote that leaves one of them out gets no ticket, since its TPM
// would then release the key in any value of that PCR. The default is the firmware and the boot
// chain (UEFI code and configuration, option ROMs, the boot loader and the UKI it loads, the
// partition table, Secure Boot state).
#pragma once

#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <string>
#include <vector>

#include "common/crypto.h"
#include "common/status.h"

namespace berth::verify {

struct TrustedAk;

struct RoleGrant {
  std::string ak_sha256_hex;  // lowercase
  std::string node;           // empty: any node name
  std::string where;          // "roles.control_plane[0]", for audit lines
};

// The PCRs a control plane's cold-start policy is signed over. Only PCRs 0-14 of a SHA-2 bank:
// PCR 15 is berth-agent's per-boot record, 16-23 can be reset or extended by software at will,
// and a SHA-1 policy would approve any boot whose SHA-1 values collide.
struct ColdStartPolicy {
  DigestAlg bank = DigestAlg::kSha256;
  std::vector<uint32_t> pcrs = {0, 1, 2, 3, 4, 5, 6, 7};  // ascending, no repeats
};

struct RolePolicy {
  std::vector<RoleGrant> control_plane;
  ColdStartPolicy cold_start;

  // The first grant that authorizes `node` with attestation key `ak_sha256_hex` as a control
  // plane, or null.
  const RoleGrant* FindControlPlane(const std::string& node,
                                    const std::string& ak_sha256_hex) const;
};

// Parses the `roles:` node (absent: no grants). `trusted_aks` resolves `ak:` names.
Status ParseRolePolicy(const YAML::Node& roles, const std::vector<TrustedAk>& trusted_aks,
                       RolePolicy& out);

}  // namespace berth::verify
