#include "common/binding.h"

#include "common/crypto.h"

namespace berth {

Bytes ComputeBinding(std::span<const uint8_t> nonce, std::span<const uint8_t> client_spki_sha256) {
  Bytes input(kBindingLabel.begin(), kBindingLabel.end());
  input.insert(input.end(), nonce.begin(), nonce.end());
  input.insert(input.end(), client_spki_sha256.begin(), client_spki_sha256.end());
  return Sha256(input);
}

Bytes SnpReportData(std::span<const uint8_t> binding, std::span<const uint8_t> identity_spki) {
  static constexpr std::string_view kLabel = "berth-snp-identity-v1";
  Bytes commitment_input(kLabel.begin(), kLabel.end());
  commitment_input.insert(commitment_input.end(), identity_spki.begin(), identity_spki.end());
  Bytes out(binding.begin(), binding.end());
  out.resize(32, 0);
  Bytes commitment = Sha256(commitment_input);
  out.insert(out.end(), commitment.begin(), commitment.end());
  return out;
}

Bytes SnpIdentityProofMessage(std::span<const uint8_t> binding) {
  static constexpr std::string_view kLabel = "berth-snp-identity-proof-v1";
  Bytes out(kLabel.begin(), kLabel.end());
  out.insert(out.end(), binding.begin(), binding.end());
  return out;
}

}  // namespace berth
