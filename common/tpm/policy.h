// TPM enhanced-authorization policies computed off the TPM, for the cold-start keyslot of
// control planes (docs/cluster-lifecycle.md). The keyslot's secret is sealed by the node's TPM
// with authPolicy = PolicyAuthorize(the cluster's boot-policy key, kColdStartPolicyRef): the TPM
// releases it only when shown a signature by that key over a policy that the current session
// satisfies. berthd signs the PolicyPCR digest of each control-plane boot it has verified, so a
// boot the cluster approved opens the disk without the network, an approved update adds a
// signature instead of re-sealing, and any other boot gets nothing.
//
// Digests follow TPM 2.0 Part 1 "Policy" and Part 3 (PolicyPCR, PolicyAuthorize) for a SHA-256
// policy session starting from the all-zero digest. Pure; thread-safe.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <span>
#include <string_view>
#include <vector>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/status.h"
#include "common/tpm/quote.h"

namespace berth::tpm {

// The policyRef of the cold-start keyslot: a signature for another purpose of the same key
// cannot authorize it.
inline constexpr std::string_view kColdStartPolicyRef = "berth-cold-start-v1";

// What TPM2_PolicyPCR leaves in a fresh SHA-256 policy session for `pcrs` (of `bank`) holding
// `values`: SHA-256(0^32 || TPM_CC_PolicyPCR || TPML_PCR_SELECTION || SHA-256(values in index
// order)). INVALID_ARGUMENT when a PCR has no value of the bank's size or an index is above 23.
Result<Bytes> PolicyPcrDigest(DigestAlg bank, const std::vector<uint32_t>& pcrs,
                              const PcrValues& values);

// What TPM2_PolicyAuthorize leaves in a fresh SHA-256 policy session: the authPolicy of an
// object that any policy signed by the key named `key_name` (nameAlg || H(TPMT_PUBLIC)) with
// `policy_ref` satisfies.
Bytes PolicyAuthorizeDigest(std::span<const uint8_t> key_name, std::span<const uint8_t> policy_ref);

// The public area under which the TPM loads an ECDSA P-256 verification key
// (TPM2_LoadExternal): ECC, SHA-256 name, sign only, ECDSA-SHA256.
Result<TPMT_PUBLIC> EcSigningKeyPublic(EVP_PKEY* key);

// The authorizing key's signature that TPM2_VerifySignature checks for PolicyAuthorize: ECDSA
// with SHA-256 over approved_policy || policy_ref (so the signed digest is the aHash the TPM
// computes), as a TPMT_SIGNATURE.
Result<TPMT_SIGNATURE> SignPolicy(EVP_PKEY* key, std::span<const uint8_t> approved_policy,
                                  std::span<const uint8_t> policy_ref);

// Checks such a signature in software (PERMISSION_DENIED when it does not verify).
Status VerifyPolicySignature(const TPMT_PUBLIC& key, std::span<const uint8_t> approved_policy,
                             std::span<const uint8_t> policy_ref, const TPMT_SIGNATURE& signature);

}  // namespace berth::tpm
