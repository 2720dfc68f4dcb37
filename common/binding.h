// Channel binding (DESIGN.md): evidence commits to the nonce and to the TLS client key of the
// call that carries it, so evidence replayed by another client is useless.
#pragma once

#include <span>

#include "common/bytes.h"

namespace berth {

inline constexpr std::string_view kBindingLabel = "berth-evidence-v1";

// SHA-256("berth-evidence-v1" || nonce || client_spki_sha256)
Bytes ComputeBinding(std::span<const uint8_t> nonce, std::span<const uint8_t> client_spki_sha256);

// SEV-SNP report_data: binding || 32 zero bytes.
Bytes SnpReportData(std::span<const uint8_t> binding);

}  // namespace berth
