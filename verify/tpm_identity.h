// Which TPM an attestation key belongs to, and whether berthd trusts it (DESIGN.md "AK
// trust"). Three ways, tried in this order:
//   1. the AK itself is pinned (tpm.trusted_aks);
//   2. an AK certificate chain in the evidence leads to a configured AK CA (cloud vTPMs),
//      and the certificate's key is the AK;
//   3. the EK is trusted (its certificate chains to a configured manufacturer CA and
//      certifies the EK presented, or the EK is pinned in tpm.trusted_eks), and the node
//      proves the AK lives next to it by credential activation: the result then carries the
//      names the join logic must check the activated credential against.
// Pure functions over an immutable policy; thread-safe.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <optional>
#include <span>
#include <string>

#include "berth/v1/berth.pb.h"
#include "verify/policy.h"

namespace berth::verify {

// The names a credential was made for; the join logic checks the activated secret.
struct CredentialCheck {
  Bytes ak_name;
  Bytes ek_name;
  size_t secret_size = 32;
};

struct AkTrust {
  std::string label;  // the AK's name for audit lines ("node-a", the certificate subject)
  std::string rule;   // "trusted_aks[node-a]", "ak_certificate[...]", "ek_certificate[...] + ..."
  std::optional<CredentialCheck> credential;  // set for the EK route
};

struct TrustedEk {
  TPMT_PUBLIC pub;
  Bytes name;
  std::string rule;  // "ek_certificate[<issuer>]" or "trusted_eks[<name>]"
};

// The EK of `ek_public` (marshalled TPMT_PUBLIC) when the policy trusts it: a well-formed
// endorsement key (restricted decryption key, fixedTPM) whose certificate (`ek_certificate`,
// DER) chains to tpm.ek_ca at `now_unix` (or tpm.certificate_time) and certifies exactly this
// key, or whose SubjectPublicKeyInfo hash is in tpm.trusted_eks. PERMISSION_DENIED says why
// not (no EK, untrusted CA, expired, key mismatch).
Result<TrustedEk> TrustEndorsementKey(const TpmTrustPolicy& policy, std::string_view ek_public,
                                      std::string_view ek_certificate, int64_t now_unix);

// How the policy trusts `ak` (whose DER SubjectPublicKeyInfo hash is `ak_spki_sha256`).
// PERMISSION_DENIED "attestation key sha256:<hex> is not in the policy's trusted_aks; ..."
// with the reason each other configured way failed.
Result<AkTrust> TrustAttestationKey(const Policy& policy, const v1::TpmEvidence& evidence,
                                    const TPMT_PUBLIC& ak, std::span<const uint8_t> ak_spki_sha256,
                                    int64_t now_unix);

}  // namespace berth::verify
