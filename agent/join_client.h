// Talking to berthd: a transport per call (gRPC over TLS in production, a fake in tests) and
// the retry loop that asks every endpoint in turn until one answers.
#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/secret.h"
#include "common/status.h"

namespace berth::agent {

// The node's TLS identity for this boot: a fresh P-256 key in a self-signed certificate.
// The evidence is bound to the key's SPKI, so it is never written anywhere.
struct ClientIdentity {
  std::string cert_pem;
  SecretBytes key_pem;
  Bytes spki_sha256;
};
Result<ClientIdentity> MakeClientIdentity(const std::string& node_name);

class JoinTransport {
 public:
  virtual ~JoinTransport() = default;
  virtual Result<v1::ChallengeResponse> Challenge(const std::string& endpoint,
                                                  const v1::ChallengeRequest& request) = 0;
  virtual Result<v1::JoinTicket> IssueJoinTicket(const std::string& endpoint,
                                                 const v1::JoinRequest& request) = 0;
  virtual Result<v1::RejoinTicket> IssueRejoinTicket(const std::string& endpoint,
                                                     const v1::RejoinRequest& request) = 0;
  // berthd's "call again after this long" on the last failed call (kRetryAfterMetadata), taken
  // once: a node pending approval calls again at once instead of backing off.
  virtual std::optional<std::chrono::milliseconds> TakeRetryAfter() { return std::nullopt; }
};

// gRPC over TLS: berthd's certificate must chain to `cluster_ca_pem` and name
// `tls_server_name` (empty: the endpoint's host). Each call has `call_timeout`.
std::unique_ptr<JoinTransport> MakeGrpcJoinTransport(const ClientIdentity& identity,
                                                     const std::string& cluster_ca_pem,
                                                     const std::string& tls_server_name,
                                                     std::chrono::milliseconds call_timeout);

struct RetryPolicy {
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{30000};
  int max_attempts = 0;  // 0: until it succeeds or fails for good
};

// The delay before retry number `attempt` (0-based): exponential from initial_backoff,
// capped at max_backoff, with full jitter in [delay/2, delay] so that nodes booted together
// do not call in lockstep.
std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int attempt, std::mt19937_64& rng);

// Runs `attempt(endpoint)` against each endpoint in turn until it succeeds. A retryable
// status (IsRetryable) moves on to the next endpoint after a backoff delay; any other status
// is returned at once. `on_retry` is told about each failure (for logs and sd_notify).
// `server_delay`, when given, is asked after each retryable failure whether the server said
// when to call again; that delay replaces the backoff (and does not grow it), and the call goes
// to the same endpoint. No endpoints at all is kInvalidArgument, without a call.
template <typename T>
Result<T> CallWithRetry(
    const std::vector<std::string>& endpoints, const RetryPolicy& policy, Clock& clock,
    const std::function<Result<T>(const std::string& endpoint)>& attempt,
    const std::function<void(const std::string&, const Status&, std::chrono::milliseconds)>&
        on_retry,
    const std::function<std::optional<std::chrono::milliseconds>()>& server_delay = {}) {
  if (endpoints.empty()) return InvalidArgument("no endpoints to call");
  std::mt19937_64 rng(std::random_device{}());
  Status last = Unavailable("no endpoints");
  size_t next = 0;
  int backoffs = 0;
  for (int n = 0; policy.max_attempts == 0 || n < policy.max_attempts; ++n) {
    const std::string& endpoint = endpoints[next % endpoints.size()];
    Result<T> result = attempt(endpoint);
    if (result.ok()) return result;
    last = result.status();
    if (!IsRetryable(last)) return last;
    if (policy.max_attempts != 0 && n + 1 >= policy.max_attempts) break;
    std::optional<std::chrono::milliseconds> hinted;
    if (server_delay) hinted = server_delay();
    if (!hinted) ++next;
    auto delay = hinted ? *hinted : BackoffDelay(policy, backoffs++, rng);
    on_retry(endpoint, last, delay);
    clock.Sleep(delay);
  }
  return last.WithContext("giving up after " + std::to_string(policy.max_attempts) + " attempts");
}

}  // namespace berth::agent
