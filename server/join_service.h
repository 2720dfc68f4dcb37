// The gRPC adapter of JoinService: unpacks each call (request, TLS peer certificate) and
// forwards to JoinLogic. No logic lives here.
#pragma once

#include "berth/v1/berth.grpc.pb.h"
#include "server/join_logic.h"
#include "server/metrics.h"

namespace berth::server {

class JoinServiceImpl final : public v1::JoinService::Service {
 public:
  // `metrics` (may be null) counts each call's outcome and latency.
  explicit JoinServiceImpl(JoinLogic* logic, Metrics* metrics = nullptr)
      : logic_(logic), metrics_(metrics) {}

  grpc::Status Challenge(grpc::ServerContext* context, const v1::ChallengeRequest* request,
                         v1::ChallengeResponse* response) override;
  grpc::Status IssueJoinTicket(grpc::ServerContext* context, const v1::JoinRequest* request,
                               v1::JoinTicket* response) override;
  grpc::Status IssueRejoinTicket(grpc::ServerContext* context, const v1::RejoinRequest* request,
                                 v1::RejoinTicket* response) override;

 private:
  JoinLogic* logic_;
  Metrics* metrics_;
};

// The caller as TLS saw it: the SHA-256 of its client certificate's SPKI (empty when it
// presented none) and its address.
Peer PeerFromContext(const grpc::ServerContext& context);

}  // namespace berth::server
