// A JoinService that verifies nothing, for measuring berthd's transport alone. It answers
// Challenge with a nonce of berthd's size and IssueJoinTicket with a ticket of a worker's shape
// (a 32-byte disk key, a bootstrap token, one CA hash), without looking at the request. Served
// by server::StartJoinServer, as berthd serves its own, its CPU per join is what the TLS
// handshake, gRPC's connection and two calls, and protobuf cost berthd before any of berth's
// work: BENCHMARKS.md sets it between the crypto floor and berthd. NOT a berthd: it admits
// anyone.
#pragma once

#include <atomic>
#include <cstdint>

#include "berth/v1/berth.grpc.pb.h"

namespace berth::bench {

class NullJoinService final : public v1::JoinService::Service {
 public:
  grpc::Status Challenge(grpc::ServerContext* context, const v1::ChallengeRequest* request,
                         v1::ChallengeResponse* response) override;
  grpc::Status IssueJoinTicket(grpc::ServerContext* context, const v1::JoinRequest* request,
                               v1::JoinTicket* response) override;

  int64_t challenges() const { return challenges_; }
  int64_t tickets() const { return tickets_; }

 private:
  std::atomic<int64_t> challenges_{0};
  std::atomic<int64_t> tickets_{0};
};

}  // namespace berth::bench
