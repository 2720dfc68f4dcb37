// The TPM policy beyond an AK allow-list and one set of PCR values (docs/attestation.md):
// how else an attestation key is trusted (EK certificate chains and credential activation,
// pinned EKs, AK certificate chains), which boots are good (PCR sets accepted side by side,
// allow-lists over the events of the measured-boot log), and which EnrolmentConfigs a node may
// have booted with. Its YAML keys live under `tpm:` next to `trusted_aks` and `pcrs`:
//
//   tpm:
//     ek_ca_bundles: [/etc/berth/tpm-ca/vendor.pem]  # manufacturer CAs (roots, intermediates)
//     ek_ca_pem: |                                  # the same, inline
//       -----BEGIN CERTIFICATE-----...
//     trusted_eks:                                  # EKs pinned by key (no certificate needed)
//       - {name: rack1-node07, sha256: <SHA-256 of the EK's DER SubjectPublicKeyInfo>}
//     ak_ca_bundles: [/etc/berth/gce-ak-ca.pem]     # CAs that certify AKs (cloud vTPMs)
//     ak_ca_pem: |
//     certificate_time: 2026-02-04T00:00:00Z        # check validity then, not now (offline use)
//     enrolment_configs:                            # SHA-256 of acceptable EnrolmentConfig files
//       - {name: workers-v3, sha256: ...}
//     pcr_sets:                                     # at least one must match entirely
//       - name: firmware-2024.10
//         sha256: {0: ..., 2: ...}
//     event_log:                                    # the boot, event by event
//       bank: sha256
//       boot_applications: [{name: shim 15.8, digest: ...}]
//       kernels: [...]
//       initrds: [...]
//       kernel_cmdlines: [...]
//       secure_boot_variables:
//         SecureBoot: [{digest: ...}]
//         db: [...]
//
// Immutable after parsing; thread-safe to read.
#pragma once

#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/bytes.h"
#include "common/tpm/eventlog.h"
#include "common/tpm/quote.h"

namespace YAML {
class Node;
}

namespace berth::verify {

struct NamedDigest {
  std::string name;  // a label for audit lines and refusals; may be empty
  Bytes digest;
};

struct PcrSet {
  std::string name;
  tpm::PcrValues pcrs;
};

struct EventLogPolicy {
  DigestAlg bank = DigestAlg::kSha256;
  // Per event class (boot_applications, kernels, initrds, kernel_cmdlines): every event of
  // the class in a quoted PCR must have one of these digests, and at least one such event
  // must be there. A class without a list is not checked.
  std::map<eventlog::EventClass, std::vector<NamedDigest>> allowed;
  // Secure Boot variable name -> allowed digests of its EV_EFI_VARIABLE_DRIVER_CONFIG event.
  // When set, every such event in PCR 7 must be listed, and every listed variable measured.
  std::map<std::string, std::vector<NamedDigest>> secure_boot_variables;
};

struct TpmTrustPolicy {
  std::vector<Bytes> ek_ca_certs;  // DER
  std::vector<NamedDigest> trusted_eks;
  std::vector<Bytes> ak_ca_certs;           // DER
  std::optional<int64_t> certificate_time;  // unix seconds
  std::vector<NamedDigest> enrolment_configs;
  std::vector<PcrSet> pcr_sets;
  std::optional<EventLogPolicy> event_log;

  // Whether an AK can be trusted other than by `trusted_aks`.
  bool TrustsKeysByCertificateOrEk() const {
    return !ek_ca_certs.empty() || !trusted_eks.empty() || !ak_ca_certs.empty();
  }
  // Whether the boot state is constrained other than by `pcrs`.
  bool ConstrainsBoot() const { return !pcr_sets.empty() || event_log.has_value(); }
  // The time certificates are checked at: `certificate_time` when set, else `now_unix`.
  int64_t CertificateTime(int64_t now_unix) const { return certificate_time.value_or(now_unix); }
};

// Whether `key` (under `tpm:`) belongs to this section.
bool IsTpmTrustPolicyKey(std::string_view key);

// Parses this section's keys from the `tpm` map (other keys are left alone). Errors name the
// key ("tpm.event_log.kernels[2].digest: ...") and are INVALID_ARGUMENT. Reads CA bundle
// files (absolute paths).
Status ParseTpmTrustPolicy(const YAML::Node& tpm, TpmTrustPolicy& out);

// ---- checks ----

// OK when `pcr_sets` is empty or one of the sets matches `quoted` entirely (the name of the
// matching set is returned); otherwise PERMISSION_DENIED naming, for each set, the first PCR
// that differs or is missing.
Result<std::string> CheckPcrSets(const std::vector<PcrSet>& sets, const tpm::PcrValues& quoted);

// Trusts the event log only as far as the quote vouches for it, then applies `policy`:
//  1. the log's replay must equal the quoted value of every PCR that both the log touches
//     and the quote covers, in every bank both have (PERMISSION_DENIED names the PCR); at
//     least one PCR must be both in the rules' bank (without a policy: sha256 if the quote
//     covers it, else the first bank it covers);
//  2. events in those PCRs whose data the specifications tie to their digest must agree
//     (eventlog::CheckEventDataDigests, naming the event);
//  3. with a policy: every classified event in a vouched-for PCR against its allow-list
//     (naming the event index, type, PCR, digest and what it is), and every configured class
//     present at least once.
// Events in PCRs the quote does not cover are ignored: nothing vouches for them. Returns a
// short description of what was checked, for the audit line.
Result<std::string> CheckEventLog(const eventlog::EventLog& log, const tpm::PcrValues& quoted,
                                  const EventLogPolicy* policy);

// berth-agent's own measurements (common/tpm/sealed_boot.h) against the quoted PCR 15: the quote
// must cover PCR 15, the events must replay to it in every quoted bank, the boot must not
// have released its keys yet, and when `enrolment_configs` is not empty the measured config
// must be one of them. Returns the config's description for the audit line.
Result<std::string> CheckSealedBoot(const TpmTrustPolicy& policy, const v1::TpmEvidence& evidence,
                                    const tpm::PcrValues& quoted);

// ---- writing policies ----

// A policy (YAML) that accepts exactly the boot recorded in `log`, to be edited: an
// event_log section with every classified event's digest in `bank`, and the replayed values
// of the PCRs no event class covers pinned under `pcrs`. The AK trust keys are left for the
// operator (a comment says so).
Result<std::string> PolicyFromEventLog(const eventlog::EventLog& log, DigestAlg bank,
                                       const std::string& source_name);

}  // namespace berth::verify
