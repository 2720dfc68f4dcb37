// gRPC status <-> berth Status, in one place each direction.
#pragma once

#include <grpcpp/support/status.h>

#include "common/status.h"

namespace berth {

// Trailing metadata berthd adds to an answer that means "not yet, call again after this many
// milliseconds" (a node pending approval): the agent calls again then instead of backing off.
inline constexpr char kRetryAfterMetadata[] = "berth-retry-after-ms";

grpc::Status ToGrpcStatus(const Status& status);
Status FromGrpcStatus(const grpc::Status& status, std::string_view what);

}  // namespace berth
