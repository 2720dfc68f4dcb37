// Credential activation for berthd, statelessly (DESIGN.md "AK trust"): the secret berthd
// protects for a node's EK and AK is not stored anywhere but derived, from a key of its own
// (HKDF of the master secret with the label "berth-credential-v1") over the challenge nonce,
// the AK's Name and the EK's Name. Any replica recomputes it when the join request arrives;
// a node that activated the credential returns exactly that secret.
//
// Thread-safe: immutable after construction.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <span>

#include "common/secret.h"
#include "common/status.h"
#include "common/tpm/credential.h"

namespace berth::server {

class CredentialIssuer {
 public:
  explicit CredentialIssuer(const SecretBytes& master_secret);

  // MakeCredential to `ek` over the AK's Name, protecting Secret(nonce, ak_name, ek_name).
  Result<tpm::MadeCredential> Make(const TPMT_PUBLIC& ek, std::span<const uint8_t> ek_name,
                                   std::span<const uint8_t> ak_name,
                                   std::span<const uint8_t> nonce) const;

  // PERMISSION_DENIED unless `activated` equals the secret made for these names and nonce
  // (constant-time comparison); an empty `activated` says credential activation did not
  // happen. `secret_size` is the EK's credential size limit.
  Status Check(std::span<const uint8_t> nonce, std::span<const uint8_t> ak_name,
               std::span<const uint8_t> ek_name, size_t secret_size,
               const SecretBytes& activated) const;

 private:
  Result<SecretBytes> Secret(std::span<const uint8_t> nonce, std::span<const uint8_t> ak_name,
                             std::span<const uint8_t> ek_name, size_t size) const;
  SecretBytes key_;  // empty if the derivation failed (every call then fails)
};

}  // namespace berth::server
