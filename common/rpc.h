// gRPC status <-> berth Status, in one place each direction.
#pragma once

#include <grpcpp/support/status.h>

#include "common/status.h"

namespace berth {

grpc::Status ToGrpcStatus(const Status& status);
Status FromGrpcStatus(const grpc::Status& status, std::string_view what);

}  // namespace berth
