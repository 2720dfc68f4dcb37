#include "server/join/nonce.h"

#include <openssl/crypto.h>

#include "common/crypto.h"

namespace berth::server {

namespace {

// Clocks of replicas differ a little; a nonce from slightly in the future is accepted.
constexpr int64_t kClockSkewSeconds = 30;

int64_t ReadTime(std::span<const uint8_t> nonce) {
  uint64_t t = 0;
  for (int i = 0; i < 8; ++i) t = (t << 8) | nonce[i];
  return static_cast<int64_t>(t);
}

}  // namespace

Result<NonceIssuer> NonceIssuer::Create(const SecretBytes& master_secret, Clock* clock,
                                        std::chrono::seconds ttl) {
  if (ttl.count() <= 0) return InvalidArgument("nonce lifetime must be positive");
  BERTH_ASSIGN_OR_RETURN(SecretBytes key,
                         HkdfSha256(master_secret.span(), {}, AsBytes("berth-nonce-v1"), 32));
  return NonceIssuer(std::move(key), clock, ttl);
}

Bytes NonceIssuer::Issue() {
  Bytes nonce(8);
  uint64_t t = static_cast<uint64_t>(clock_->NowUnix());
  for (int i = 7; i >= 0; --i, t >>= 8) nonce[i] = static_cast<uint8_t>(t & 0xff);
  Bytes random = RandomBytes(16);
  nonce.insert(nonce.end(), random.begin(), random.end());
  Bytes mac = HmacSha256(key_.span(), nonce);
  nonce.insert(nonce.end(), mac.begin(), mac.end());
  return nonce;
}

namespace {

const char kReused[] =
    "nonce was already used: a challenge admits one ticket call (a replayed request?); ask for "
    "a fresh challenge";

std::string UseKey(std::span<const uint8_t> nonce) {
  return std::string(reinterpret_cast<const char*>(nonce.data()), 24);  // time || random
}

}  // namespace

void NonceIssuer::ForgetExpired(int64_t now) {
  while (!used_->by_expiry.empty() && used_->by_expiry.begin()->first <= now) {
    used_->expires.erase(used_->by_expiry.begin()->second);
    used_->by_expiry.erase(used_->by_expiry.begin());
  }
}

Status NonceIssuer::CheckUnused(std::span<const uint8_t> nonce) {
  if (nonce.size() != kNonceSize) return InvalidArgument("nonce has the wrong size");
  std::lock_guard lock(used_->mu);
  if (used_->expires.contains(UseKey(nonce))) return PermissionDenied(kReused);
  return OkStatus();
}

Status NonceIssuer::MarkUsed(std::span<const uint8_t> nonce) {
  if (nonce.size() != kNonceSize) return InvalidArgument("nonce has the wrong size");
  const int64_t expires = ExpiresUnix(nonce);
  std::lock_guard lock(used_->mu);
  ForgetExpired(clock_->NowUnix());
  auto [it, inserted] = used_->expires.emplace(UseKey(nonce), expires);
  if (!inserted) return PermissionDenied(kReused);
  used_->by_expiry.emplace(expires, it->first);
  return OkStatus();
}

size_t NonceIssuer::used_count() const {
  std::lock_guard lock(used_->mu);
  return used_->expires.size();
}

int64_t NonceIssuer::ExpiresUnix(std::span<const uint8_t> nonce) const {
  return nonce.size() < 8 ? 0 : ReadTime(nonce) + ttl_.count();
}

Status NonceIssuer::Check(std::span<const uint8_t> nonce) {
  if (nonce.size() != kNonceSize) {
    return InvalidArgument("nonce has " + std::to_string(nonce.size()) + " bytes, expected " +
                           std::to_string(kNonceSize) + " (ask Challenge for one)");
  }
  Bytes mac = HmacSha256(key_.span(), nonce.first(24));
  if (CRYPTO_memcmp(mac.data(), nonce.data() + 24, 32) != 0) {
    return PermissionDenied("nonce was not issued by this cluster's berthd");
  }
  int64_t issued = ReadTime(nonce);
  int64_t now = clock_->NowUnix();
  if (issued > now + kClockSkewSeconds) {
    return PermissionDenied("nonce is dated " + std::to_string(issued - now) +
                            " s in the future");
  }
  if (now >= issued + ttl_.count()) {
    return Aborted("nonce expired " + std::to_string(now - issued - ttl_.count()) +
                   " s ago (lifetime " + std::to_string(ttl_.count()) +
                   " s); ask for a fresh challenge");
  }
  return OkStatus();
}

}  // namespace berth::server
