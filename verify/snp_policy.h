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
//     forbidden_policy_bits: [migrate_ma]     # ... and ones that must not be
//     products: [Milan, Genoa]  # default: any product with a pinned ARK
//
// Policy bit names: smt, migrate_ma, single_socket, cxl_allow, mem_aes_256_xts, rapl_dis,
// ciphertext_hiding, page_swap_disable (debug has its own key, allow_debug).
// That report_data equals the channel binding is not a policy choice: it is always checked.
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
  std::vector<snp::Product> products;  // empty: any

  // The policy's checks on an already authenticated report of `product`. PERMISSION_DENIED
  // naming the first failed rule ("policy: measurement ... is not allowed").
  Status Check(const snp::Report& report, snp::Product product) const;
  // Whether `product` is allowed (PERMISSION_DENIED otherwise).
  Status CheckProduct(snp::Product product) const;
  // "measurement=7a1e5c26.. min_tcb=..." for audit lines.
  std::string Describe() const;
};

// Parses the `sev_snp` node. INVALID_ARGUMENT naming the key for anything malformed or
// unknown, and for an empty measurement list (any guest image would pass).
Result<SnpPolicy> ParseSnpPolicy(const YAML::Node& node);

}  // namespace berth::verify
