#include "common/rpc.h"

namespace berth {

grpc::Status ToGrpcStatus(const Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), status.message());
}

Status FromGrpcStatus(const grpc::Status& status, std::string_view what) {
  if (status.ok()) return OkStatus();
  return Status(static_cast<Code>(status.error_code()), std::string(what) + ": " + status.error_message());
}

grpc::ChannelArguments ClientChannelArguments() {
  grpc::ChannelArguments args;
  args.SetInt(GRPC_ARG_ENABLE_RETRIES, 0);
  return args;
}

}  // namespace berth
