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
// least one PCR: an empty one would accept any booted software. More ways to trust keys and
// boots (EK/AK certificates, PCR sets side by side, event-log allow-lists, EnrolmentConfig
// pins) are in tpm_policy.h.
//
// SEV-SNP nodes are governed by a `sev_snp:` section (snp_policy.h), beside or instead of
// `tpm:`.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "common/tpm/quote.h"
#include "verify/admission_policy.h"
#include "verify/role_policy.h"
#include "verify/snp_policy.h"
#include "verify/tpm_policy.h"

namespace berth::verify {

struct TrustedAk {
  std::string name;
  Bytes spki_sha256;
};

struct Policy {
  bool has_tpm = false;  // the policy has a `tpm:` section: TPM evidence is accepted at all
  std::vector<TrustedAk> trusted_aks;
  tpm::PcrValues pcrs;  // expected values
  // The `sev_snp:` section (snp_policy.h); absent: SEV-SNP evidence is not accepted. A policy
  // needs a `tpm:` section, a `sev_snp:` section, or both.
  std::optional<SnpPolicy> sev_snp;
  TpmTrustPolicy tpm_trust;  // EK/AK certificates, PCR sets, event log, configs (tpm_policy.h)
  RolePolicy roles;     // who may be a control plane (role_policy.h)
  AdmissionPolicy admission;  // approval, EC2 pre-authorization (admission_policy.h)

  // The trusted AK with this SPKI hash, or null.
  const TrustedAk* FindAk(std::span<const uint8_t> spki_sha256) const;
  // OK when every pinned PCR is among `quoted` with the expected value; otherwise
  // PERMISSION_DENIED naming the first PCR that is missing or differs.
  Status CheckPcrs(const tpm::PcrValues& quoted) const;
  // "sha256:0,2,4,7"
  std::string DescribePcrs() const;
};

// `require_ak_trust` = false accepts a policy that says nothing about which attestation keys
// to trust, for offline checks of the boot alone (berthctl verify tpm-quote --policy).
Result<Policy> ParsePolicy(const std::string& yaml_text, bool require_ak_trust = true);
Result<Policy> LoadPolicy(const std::string& path, bool require_ak_trust = true);

}  // namespace berth::verify
