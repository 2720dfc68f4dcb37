// The gRPC adapter of JoinService: unpacks each call (request, TLS peer certificate) and
// forwards to JoinLogic. No logic lives here.
#pragma once

#include <atomic>
#include <cstdint>

#include "berth/v1/berth.grpc.pb.h"
#include "server/join/join_logic.h"
#include "server/join/load_gate.h"
#include "server/metrics.h"

namespace berth::server {

// The largest request berthd reads (gRPC's max receive size): the biggest part of a join is
// the firmware's event log, tens of KiB on the machines seen, some hundreds with many boot
// entries; SEV-SNP certificates are a few KiB. Anything larger is refused by gRPC with
// RESOURCE_EXHAUSTED before it is parsed.
inline constexpr int kMaxJoinRequestBytes = 2 << 20;

class JoinServiceImpl final : public v1::JoinService::Service {
 public:
  // `metrics` (may be null) counts each call's outcome and latency; `gate` (may be null: no
  // limits) admits the ticket calls and the challenges that present an EK (credential
  // activation costs berthd an EK chain check and a MakeCredential); a plain Challenge is an
  // HMAC and always answered.
  explicit JoinServiceImpl(JoinLogic* logic, Metrics* metrics = nullptr, LoadGate* gate = nullptr)
      : logic_(logic), metrics_(metrics), gate_(gate) {}

  grpc::Status Challenge(grpc::ServerContext* context, const v1::ChallengeRequest* request,
                         v1::ChallengeResponse* response) override;
  grpc::Status IssueJoinTicket(grpc::ServerContext* context, const v1::JoinRequest* request,
                               v1::JoinTicket* response) override;
  grpc::Status IssueRejoinTicket(grpc::ServerContext* context, const v1::RejoinRequest* request,
                                 v1::RejoinTicket* response) override;

 private:
  Result<LoadGate::Pass> Admit(const grpc::ServerContext& context);

  JoinLogic* logic_;
  Metrics* metrics_;
  LoadGate* gate_;
  std::atomic<int64_t> last_shed_log_{0};  // steady-clock seconds of the last refusal log line
};

// The caller as TLS saw it: the SHA-256 of its client certificate's SPKI (empty when it
// presented none) and its address.
Peer PeerFromContext(const grpc::ServerContext& context);

}  // namespace berth::server
