// Stateless challenge nonces (DESIGN.md): nonce = time || random || HMAC(key, time || random).
// Any berthd replica that shares the master secret accepts any replica's nonce, and no
// replica stores them. A nonce is valid from its time for `ttl`.
#pragma once

#include <chrono>
#include <span>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/secret.h"
#include "common/status.h"

namespace berth::server {

inline constexpr size_t kNonceSize = 8 + 16 + 32;

class NonceIssuer {
 public:
  // `master_secret` is the cluster's berthd master secret; the nonce key is derived from it
  // with its own HKDF label, so it is never the disk-key input itself. `clock` outlives this.
  static Result<NonceIssuer> Create(const SecretBytes& master_secret, Clock* clock,
                                    std::chrono::seconds ttl);

  Bytes Issue();
  int64_t ExpiresUnix(std::span<const uint8_t> nonce) const;

  // INVALID_ARGUMENT: wrong size. PERMISSION_DENIED: not made with this cluster's key.
  // ABORTED: expired (the node should ask for a fresh challenge, so ABORTED is retryable).
  Status Check(std::span<const uint8_t> nonce);

  std::chrono::seconds ttl() const { return ttl_; }

 private:
  NonceIssuer(SecretBytes key, Clock* clock, std::chrono::seconds ttl)
      : key_(std::move(key)), clock_(clock), ttl_(ttl) {}
  SecretBytes key_;
  Clock* clock_;
  std::chrono::seconds ttl_;
};

}  // namespace berth::server
