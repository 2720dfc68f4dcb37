#include "server/join/join_service.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>

#include <optional>

#include <spdlog/spdlog.h>

#include <chrono>

#include "common/crypto.h"
#include "common/rpc.h"

namespace berth::server {

Peer PeerFromContext(const grpc::ServerContext& context) {
  Peer peer;
  peer.address = context.peer();
  auto auth = context.auth_context();
  if (auth == nullptr) return peer;
  auto pems = auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
  if (pems.empty()) return peer;
  // TLS has checked the certificate's signature with this key; only its identity is needed.
  auto hash = CertPemSpkiSha256(std::string_view(pems.front().data(), pems.front().size()));
  if (hash.ok()) peer.spki_sha256 = std::move(*hash);
  return peer;
}

namespace {

template <typename Response>
grpc::Status Reply(Result<Response> result, Response* response) {
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(result).value();
  return grpc::Status::OK;
}

// Counts a call's outcome and latency when it ends.
class Observe {
 public:
  Observe(Metrics* metrics, std::string_view call)
      : metrics_(metrics), call_(call), start_(std::chrono::steady_clock::now()) {}
  template <typename T>
  void Done(const Result<T>& result, bool pending = false) {
    if (metrics_ == nullptr) return;
    metrics_->CountRequest(call_, RequestOutcome(result.status(), pending));
    metrics_->ObserveRequestSeconds(
        call_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }

 private:
  Metrics* metrics_;
  std::string_view call_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace

Result<LoadGate::Pass> JoinServiceImpl::Admit(const grpc::ServerContext& context) {
  auto pass = gate_->Enter(context.peer());
  if (!pass.ok()) {
    // One line per ten seconds at most: under overload, a line per refusal would be a flood.
    int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count();
    int64_t last = last_shed_log_.load();
    if (now - last >= 10 && last_shed_log_.compare_exchange_strong(last, now)) {
      LoadGate::Counts c = gate_->counts();
      spdlog::warn("shedding load: {} (refused so far: {} at capacity, {} per source)",
                   pass.status().message(), c.refused_busy, c.refused_per_source);
    }
  }
  return pass;
}

grpc::Status JoinServiceImpl::Challenge(grpc::ServerContext* context,
                                        const v1::ChallengeRequest* request,
                                        v1::ChallengeResponse* response) {
  // A challenge that asks for credential activation (it presents an EK) makes berthd check an
  // EK certificate chain and run MakeCredential for a caller nobody has authenticated yet:
  // it takes a slot of the join gate like a ticket call (BENCHMARKS.md has the cost of each),
  // so a flood of them is refused at once instead of taking the CPU. A plain challenge (an
  // HMAC) is always answered.
  std::optional<LoadGate::Pass> pass;
  if (gate_ != nullptr && !request->ek_public().empty()) {
    auto admitted = Admit(*context);
    if (!admitted.ok()) {
      if (metrics_ != nullptr) metrics_->CountRequest("Challenge", "shed");
      return ToGrpcStatus(admitted.status());
    }
    pass.emplace(std::move(*admitted));
  }
  Observe observe(metrics_, "Challenge");
  // A challenge binds nothing to the caller's TLS key (the evidence that answers it does, and
  // the ticket call checks that): its peer is the address alone, without decoding the client
  // certificate (PeerFromContext: ~2% of berthd's CPU per join for the two calls).
  auto result = logic_->Challenge(*request, Peer{.address = context->peer()});
  observe.Done(result);
  return Reply(std::move(result), response);
}

grpc::Status JoinServiceImpl::IssueJoinTicket(grpc::ServerContext* context,
                                              const v1::JoinRequest* request,
                                              v1::JoinTicket* response) {
  std::optional<LoadGate::Pass> pass;
  if (gate_ != nullptr) {
    auto admitted = Admit(*context);
    if (!admitted.ok()) {
      if (metrics_ != nullptr) {
        metrics_->CountRequest("IssueJoinTicket",
                               "shed");  // refused by the gate (server/join/load_gate.h)
      }
      return ToGrpcStatus(admitted.status());
    }
    pass.emplace(std::move(*admitted));
  }
  Observe observe(metrics_, "IssueJoinTicket");
  ReplyHints hints;
  auto result = logic_->IssueJoinTicket(*request, PeerFromContext(*context), &hints);
  observe.Done(result, hints.pending);
  if (hints.retry_after.has_value()) {
    context->AddTrailingMetadata(kRetryAfterMetadata, std::to_string(hints.retry_after->count()));
  }
  return Reply(std::move(result), response);
}

grpc::Status JoinServiceImpl::IssueRejoinTicket(grpc::ServerContext* context,
                                                const v1::RejoinRequest* request,
                                                v1::RejoinTicket* response) {
  std::optional<LoadGate::Pass> pass;
  if (gate_ != nullptr) {
    auto admitted = Admit(*context);
    if (!admitted.ok()) {
      if (metrics_ != nullptr) {
        metrics_->CountRequest("IssueRejoinTicket",
                               "shed");  // refused by the gate (server/join/load_gate.h)
      }
      return ToGrpcStatus(admitted.status());
    }
    pass.emplace(std::move(*admitted));
  }
  Observe observe(metrics_, "IssueRejoinTicket");
  auto result = logic_->IssueRejoinTicket(*request, PeerFromContext(*context));
  observe.Done(result);
  return Reply(std::move(result), response);
}

}  // namespace berth::server
