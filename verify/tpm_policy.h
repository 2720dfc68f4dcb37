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
//       required_pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9] # every quote covers these; the log
//                                                     # may extend no other
//       boot_applications: [{name: shim 15.8, digest: ...}]
//       kernels: [...]
//       initrds: [...]
//       kernel_cmdlines: [...]
//       secure_boot_variables:
//         SecureBoot: [{digest: ...}]
//         db: [...]
//       other_events:                                 # what no class covers, by place
//         - {name: "grub_cmd: insmod part_gpt", pcr: 8, type: EV_IPL, digest: ...}
//
// Immutable after parsing; thread-safe to read.
#pragma once

#include <map>
#include <optional>
#include <set>
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

// An event accepted by where it was measured and what: its PCR, its type and its digest in
// the rules' bank (tpm.event_log.other_events). For the events no class speaks for: GRUB's
// commands and the files it reads besides the kernel and initrd, a UKI's sections besides
// .linux/.initrd/.cmdline, the authorities that verified images, firmware actions with a
// meaning (e.g. "DMA Protection Disabled").
struct ListedEvent {
  std::string name;  // a label; may be empty
  uint32_t pcr = 0;
  uint32_t type = 0;
  Bytes digest;
};

// Measured-boot rules (docs/attestation.md, "How the event log is trusted"). Default deny:
// every event in a PCR the policy covers must be accepted by a rule.
struct EventLogPolicy {
  DigestAlg bank = DigestAlg::kSha256;
  // The PCRs (in `bank`) every quote must cover. They and the PCRs the policy pins in `bank`
  // (tpm.pcrs, the matching tpm.pcr_sets entry) are the PCRs the policy covers; the log may
  // extend no other, and the quoted value of each must be the log's replay of it (its reset
  // value when the log has no event there). Required: the verifier, not the node, decides
  // what is quoted.
  std::set<uint32_t> required_pcrs;
  // Per event class (boot_applications, kernels, initrds, kernel_cmdlines): the digests an
  // event measured where the class lives (eventlog::ClassesMeasuredAt) may have; at least one
  // event must match each non-empty list.
  std::map<eventlog::EventClass, std::vector<NamedDigest>> allowed;
  // Secure Boot variable name -> allowed digests of its EV_EFI_VARIABLE_DRIVER_CONFIG event in
  // PCR 7; every listed variable must be measured.
  std::map<std::string, std::vector<NamedDigest>> secure_boot_variables;
  // Events accepted by PCR, type and digest.
  std::vector<ListedEvent> other_events;
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

// Trusts the event log only as far as the quote vouches for it.
//
// With `policy` (default deny; `pinned` are the PCRs of `policy->bank` whose quoted values the
// policy's `pcrs` or the matching `pcr_sets` entry already fixed, checked by the caller):
//  1. every PCR of `required_pcrs` must be quoted in the rules' bank (PERMISSION_DENIED names
//     the first one missing);
//  2. in every bank both the quote and the log have, the quoted value of every PCR the log
//     extends or the policy covers must be the log's replay (PERMISSION_DENIED names the PCR);
//  3. every event, in log order: its PCR must be covered (required or pinned); its type must
//     be in the PCR the specifications give it (eventlog::CheckEventPcr); data the
//     specifications tie to the digest must match it (eventlog::CheckEventDataDigests); and a
//     rule must accept it: a pinned PCR, a fixed event (eventlog::FixedEventKind), an
//     allow-listed digest of a class measured at its place (eventlog::ClassesMeasuredAt), or an
//     `other_events` entry. What its data says it is never decides which list is consulted.
//     PERMISSION_DENIED names the event (index, type, PCR, digest, what it says it is);
//  4. every non-empty class list and every listed Secure Boot variable matched at least once.
// Without a policy: step 2 for the PCRs both the log and the quote have, and in them the
// checks of step 3 that need no rules. Returns a short description of what was checked, for
// the audit line; without a policy it also names the PCRs the log extends that the quote
// does not cover (nothing vouches for their events).
Result<std::string> CheckEventLog(const eventlog::EventLog& log, const tpm::PcrValues& quoted,
                                  const EventLogPolicy* policy,
                                  const std::set<uint32_t>& pinned = {});

// berth-agent's own measurements (common/tpm/sealed_boot.h) against the quoted PCR 15: the quote
// must cover PCR 15, the events must replay to it in every quoted bank, the boot must not
// have released its keys yet, and when `enrolment_configs` is not empty the measured config
// must be one of them. Returns the config's description for the audit line.
Result<std::string> CheckSealedBoot(const TpmTrustPolicy& policy, const v1::TpmEvidence& evidence,
                                    const tpm::PcrValues& quoted);

// ---- writing policies ----

// A policy (YAML) that accepts exactly the boot recorded in `log`, to be edited: an event_log
// section with every PCR the log extends in `bank` as `required_pcrs`, every classified
// event's digest in its class's list, the replayed values of the PCRs without a classified
// event pinned under `pcrs`, and every other event of the unpinned PCRs that is not a fixed
// one under `other_events`. The AK trust keys are left for the operator (a comment says so).
// The policy is checked against the log before it is returned: a log that breaks berth's
// placement rules (eventlog::CheckEventPcr) is INVALID_ARGUMENT naming the event.
Result<std::string> PolicyFromEventLog(const eventlog::EventLog& log, DigestAlg bank,
                                       const std::string& source_name);

}  // namespace berth::verify
