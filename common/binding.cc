#include "common/binding.h"

#include "common/crypto.h"

namespace berth {

Bytes ComputeBinding(std::span<const uint8_t> nonce, std::span<const uint8_t> client_spki_sha256) {
  Bytes input(kBindingLabel.begin(), kBindingLabel.end());
  input.insert(input.end(), nonce.begin(), nonce.end());
  input.insert(input.end(), client_spki_sha256.begin(), client_spki_sha256.end());
  return Sha256(input);
}

Bytes SnpReportData(std::span<const uint8_t> binding) {
  Bytes out(binding.begin(), binding.end());
  out.resize(64, 0);
  return out;
}

}  // namespace berth
