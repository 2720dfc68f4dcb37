// Challenge nonces (DESIGN.md): nonce = time || random || HMAC(key, time || random).
// Any berthd replica that shares the master secret accepts any replica's nonce (the MAC says
// the cluster issued it; nothing is stored at issue). A nonce is valid from its time for `ttl`
// (berthd: --nonce-ttl, 60 s by default) and admits one ticket call: docs/nonces.md.
//
// Single use, without a write per call: this replica remembers, for their lifetime, the
// nonces whose evidence it verified (MarkUsed; verified evidence only, so the set grows with
// real attestations, not with what anyone sends). Across replicas, the node registry records
// a granted nonce in the same etcd transaction as the node's record (node_registry.h), so a
// replay to another replica is refused too.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <span>
#include <string>

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
  // Stateless: says nothing about earlier use (CheckUnused, MarkUsed).
  Status Check(std::span<const uint8_t> nonce);

  // PERMISSION_DENIED when this replica has already verified evidence for `nonce`. A cheap
  // early refusal; MarkUsed is what makes the use single.
  Status CheckUnused(std::span<const uint8_t> nonce);
  // Records that evidence for `nonce` verified here. PERMISSION_DENIED when it already was
  // (of two concurrent calls with one nonce, exactly one passes). Entries are forgotten once
  // their nonce has expired. REQUIRES: Check(nonce) passed. Thread-safe.
  Status MarkUsed(std::span<const uint8_t> nonce);
  size_t used_count() const;  // nonces remembered right now (tests, metrics)

  std::chrono::seconds ttl() const { return ttl_; }
  // The clock nonces expire by (the join service dates what it signs by it too).
  Clock* clock() const { return clock_; }

 private:
  NonceIssuer(SecretBytes key, Clock* clock, std::chrono::seconds ttl)
      : key_(std::move(key)), clock_(clock), ttl_(ttl), used_(std::make_unique<Used>()) {}
  void ForgetExpired(int64_t now);  // REQUIRES: used_->mu held

  SecretBytes key_;
  Clock* clock_;
  std::chrono::seconds ttl_;
  struct Used {
    mutable std::mutex mu;
    std::map<std::string, int64_t> expires;        // time || random -> expiry (unix)
    std::multimap<int64_t, std::string> by_expiry;  // the same, oldest first
  };
  std::unique_ptr<Used> used_;  // behind a pointer: NonceIssuer is returned by value
};

}  // namespace berth::server
