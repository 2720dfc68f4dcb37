// Channel binding (DESIGN.md): evidence commits to the nonce and to the TLS client key of the
// call that carries it, so evidence replayed by another client is useless.
#pragma once

#include <span>

#include "common/bytes.h"

namespace berth {

inline constexpr std::string_view kBindingLabel = "berth-evidence-v1";

// SHA-256("berth-evidence-v1" || nonce || client_spki_sha256)
Bytes ComputeBinding(std::span<const uint8_t> nonce, std::span<const uint8_t> client_spki_sha256);

// SEV-SNP (docs/sev-snp.md "Node identity"): the report commits to the channel binding and to
// the node's own identity key, which the node proves it holds by signing the binding.
//   report_data = binding || SHA-256("berth-snp-identity-v1" || identity SPKI DER)
//   proof       = ECDSA P-256 / SHA-256 over "berth-snp-identity-proof-v1" || binding
Bytes SnpReportData(std::span<const uint8_t> binding, std::span<const uint8_t> identity_spki);
Bytes SnpIdentityProofMessage(std::span<const uint8_t> binding);

}  // namespace berth
