// AMD's production SEV-SNP trust anchors, compiled in: every verifier must ship them (AMD's KDS
// publishes them; go-sev-guest and virtee/sev embed the same certificates). Each ARK is pinned
// by the SHA-256 of its DER encoding, so the embedded PEM cannot be swapped silently.
#pragma once

#include <string_view>

#include "common/snp/report.h"

namespace berth::snp {

struct AmdRoots {
  std::string_view ark_pem;         // AMD Root Key, self-signed
  std::string_view ask_pem;         // AMD SEV Key: signs VCEKs
  std::string_view asvk_pem;        // AMD SEV VLEK Key: signs VLEKs
  std::string_view ark_sha256_hex;  // pinned fingerprint of ark_pem's DER
};

// The roots for `product`; null for kUnknown.
const AmdRoots* AmdRootsFor(Product product);

}  // namespace berth::snp
