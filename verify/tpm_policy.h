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

// The event classes a policy lists by digest (boot_applications, kernels, initrds,
// kernel_cmdlines), in the order policies write them.
inline constexpr eventlog::EventClass kListedEventClasses[] = {
    eventlog::EventClass::kBootApplication, eventlog::EventClass::kKernel,
    eventlog::EventClass::kInitrd, eventlog::EventClass::kKernelCmdline};

// Whether `key` (under `tpm:`) belongs to this section.
bool IsTpmTrustPolicyKey(std::string_view key);

// Parses this section's keys from the `tpm` map (other keys are left alone). Errors name the
// key ("tpm.event_log.kernels[2].digest: ...") and are INVALID_ARGUMENT. Reads CA bundle
// files (absolute paths).
Status ParseTpmTrustPolicy(const YAML::Node& tpm, TpmTrustPolicy& out);

}  // namespace berth::verify
