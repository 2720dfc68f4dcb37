// berthd's attestation policy, from a YAML file the operator writes:
//
//   tpm:
//     trusted_aks:              # attestation keys of known TPMs
//       - name: node-a          # a label for audit lines
//         sha256: 3f2a...       # SHA-256 of the AK's DER SubjectPublicKeyInfo
//     pcrs:                     # the expected boot state, per bank and index
//       sha256:
//         0: 24af...
//         7: b5a1...
//
// `berth-agent --print-identity` prints both for a reference node. A policy must pin at
// least one PCR: an empty one would accept any booted software.
#pragma once

#include <map>
#include <string>

#include "common/tpm_quote.h"
#include "server/role_policy.h"

namespace berth::server {

struct TrustedAk {
  std::string name;
  Bytes spki_sha256;
};

struct Policy {
  std::vector<TrustedAk> trusted_aks;
  tpm::PcrValues pcrs;  // expected values
  RolePolicy roles;     // who may be a control plane (role_policy.h)

  // The trusted AK with this SPKI hash, or null.
  const TrustedAk* FindAk(std::span<const uint8_t> spki_sha256) const;
  // OK when every pinned PCR is among `quoted` with the expected value; otherwise
  // PERMISSION_DENIED naming the first PCR that is missing or differs.
  Status CheckPcrs(const tpm::PcrValues& quoted) const;
  // "sha256:0,2,4,7"
  std::string DescribePcrs() const;
};

Result<Policy> ParsePolicy(const std::string& yaml_text);
Result<Policy> LoadPolicy(const std::string& path);

}  // namespace berth::server
