// gRPC status <-> berth Status, in one place each direction; the arguments of berth's client
// channels.
#pragma once

#include <grpcpp/support/channel_arguments.h>
#include <grpcpp/support/status.h>

#include "common/status.h"

namespace berth {

// Trailing metadata berthd adds to an answer that means "not yet, call again after this many
// milliseconds" (a node pending approval): the agent calls again then instead of backing off.
inline constexpr char kRetryAfterMetadata[] = "berth-retry-after-ms";

grpc::Status ToGrpcStatus(const Status& status);
Status FromGrpcStatus(const grpc::Status& status, std::string_view what);

// What every berth client channel (agent -> berthd, berthd -> etcd, berthctl -> berthd) starts
// from: gRPC's retry filter off. berth retries by itself (the agent's backoff, the etcd
// client's failover to the next member), and the retry filter of Debian 12's gRPC (1.51)
// aborts the process (libgrpc is built with its assertions on) when a call's trailing metadata
// comes without a status, which can happen when the server goes away mid-call: berthd aborted
// so when an etcd member was stopped under load (RELIABILITY.md; grpc/grpc#34683, fixed
// upstream in #42405).
grpc::ChannelArguments ClientChannelArguments();

}  // namespace berth
