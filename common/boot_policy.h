// berthd's side of control planes' cold-start keyslot (docs/cluster-lifecycle.md "Cold start"):
// the cluster's boot-policy key, and the signature it puts on the PCR policy of each
// control-plane boot berthd has verified. The key is derived from the master secret
// (HKDF, salt = cluster id, info "berth-boot-policy-v1"), so every replica signs with the same
// key and nothing new is stored. A signature is not a secret: it lets the node's own TPM
// release its cold-start key in that boot, and in no other.
//
// Thread-safe: immutable after construction.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/crypto.h"
#include "common/secret.h"
#include "common/status.h"
#include "common/tpm/quote.h"

namespace berth {

// A cold-start PCR set as BootPolicySigner::Sign requires it: a SHA-2 bank, at least one PCR,
// each 0-14 (15 is berth-agent's per-boot record, 16-23 can be reset by software), ascending
// and none twice. INVALID_ARGUMENT naming the problem. (berthd's policy parser, verify/,
// enforces the same on roles.cold_start with the policy's own words.)
Status CheckColdStartPcrs(DigestAlg bank, std::span<const uint32_t> pcrs);

class BootPolicySigner {
 public:
  static Result<BootPolicySigner> Create(const SecretBytes& master_secret,
                                         const std::string& cluster_id);

  // The key as the node's TPM loads it (marshalled TPMT_PUBLIC).
  const Bytes& public_area() const { return public_area_; }

  // The signed PolicyPCR over exactly `pcrs` of `bank`, with their values in `verified`. The
  // set is berthd's (the policy's roles.cold_start), never the node's: a quote that leaves one
  // of them out is PERMISSION_DENIED naming it, since a policy without that PCR would let the
  // TPM release the key whatever it holds. The caller passes only PCR values it has verified
  // against the quote. REQUIRES: `pcrs` non-empty, ascending, each 0-14.
  Result<v1::SignedBootPolicy> Sign(const tpm::PcrValues& verified, DigestAlg bank,
                                    std::span<const uint32_t> pcrs, int64_t now_unix) const;

  // What a control plane's ticket carries: the key and the signed policy of this boot.
  Result<v1::ColdStart> ColdStartFor(const tpm::PcrValues& verified, DigestAlg bank,
                                     std::span<const uint32_t> pcrs, int64_t now_unix) const;

 private:
  BootPolicySigner() : key_(nullptr) {}
  EvpPkeyPtr key_;
  Bytes public_area_;
};

}  // namespace berth
