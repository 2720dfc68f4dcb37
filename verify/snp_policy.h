// The `sev_snp:` section of berthd's policy (policy.h holds the file as a whole):
//
//   sev_snp:
//     measurements:             # allowed launch measurements (48-byte hex), at least one
//       - 7a1e5c26...841f
//     min_tcb:                  # minimum security patch level per component of the
//       bootloader: 3           # report's reported_tcb (the TCB the VCEK vouches for)
//       tee: 0
//       snp: 8
//       microcode: 115
//       fmc: 0                  # Turin only
//     allow_debug: false        # default false: a debuggable guest's memory is readable
//     max_vmpl: 0               # default 0: only the guest's most privileged level
//     required_policy_bits: [single_socket]   # guest policy flags that must be set
//     forbidden_policy_bits: [smt]            # ... and ones that must not be
//     allow_migrate_ma: false   # default false: a guest whose policy lets a migration agent
//                               # in (MIGRATE_MA) is refused unless this says true
//     products: [Milan, Genoa]  # default: any product with a pinned ARK
//     host_data: [<32-byte hex>, ...]           # HOST_DATA must be one of these (default: any)
//     id_key_digests: [<48-byte hex>, ...]      # the ID block's key (default: any)
//     author_key_digests: [<48-byte hex>, ...]  # the ID key's author key; also requires
//                                               # AUTHOR_KEY_EN (default: any)
//     min_launch_tcb: {snp: 8, ...}             # LAUNCH_TCB, the TCB at the guest's launch
//     min_committed_tcb: {snp: 8, ...}          # COMMITTED_TCB, below which the chip cannot go
//     vlek_csps: ["Amazon Web Services"]        # the clouds whose VLEKs are accepted (the
//                                               # VLEK's csp_id); default none: VLEK-signed
//                                               # reports are refused
//     require_crl: false        # true: refuse when no valid AMD CRL is at hand (snp_certs.h)
//
// Policy bit names: smt, migrate_ma, single_socket, cxl_allow, mem_aes_256_xts, rapl_dis,
// ciphertext_hiding, page_swap_disable (debug has its own key, allow_debug).
// That report_data equals the channel binding (and the node's identity key, docs/sev-snp.md)
// is not a policy choice: it is always checked.
#pragma once

#include <yaml-cpp/yaml.h>

#include <vector>

#include "common/snp/report.h"

namespace berth::verify {

struct SnpPolicy {
  std::vector<Bytes> measurements;
  snp::Tcb min_tcb;  // fmc compared only when the report's product has one
  bool allow_debug = false;
  uint32_t max_vmpl = 0;
  uint64_t required_policy_bits = 0;
  uint64_t forbidden_policy_bits = 0;
  bool allow_migrate_ma = false;
  std::vector<snp::Product> products;  // empty: any
  std::vector<Bytes> host_data;            // empty: any
  std::vector<Bytes> id_key_digests;       // empty: any
  std::vector<Bytes> author_key_digests;   // empty: any
  snp::Tcb min_launch_tcb, min_committed_tcb;
  std::vector<std::string> vlek_csps;      // empty: no VLEK accepted
  bool require_crl = false;

  // The policy's checks on an already authenticated report of `product`. PERMISSION_DENIED
  // naming the first failed rule ("policy: measurement ... is not allowed").
  Status Check(const snp::Report& report, snp::Product product) const;
  // For a VLEK-signed report: the VLEK's csp_id must be in vlek_csps.
  Status CheckVlekCsp(const std::string& csp_id) const;
  // Whether `product` is allowed (PERMISSION_DENIED otherwise).
  Status CheckProduct(snp::Product product) const;
  // "measurement=7a1e5c26.. min_tcb=..." for audit lines.
  std::string Describe() const;
};

// Parses the `sev_snp` node. INVALID_ARGUMENT naming the key for anything malformed or
// unknown, and for an empty measurement list (any guest image would pass).
Result<SnpPolicy> ParseSnpPolicy(const YAML::Node& node);

}  // namespace berth::verify
