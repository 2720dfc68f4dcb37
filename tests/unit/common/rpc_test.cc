#include "common/rpc.h"

#include <grpc/grpc.h>
#include <gtest/gtest.h>

#include <map>
#include <string>

namespace berth {
namespace {

std::map<std::string, int> IntArguments(const grpc::ChannelArguments& args) {
  std::map<std::string, int> out;
  grpc_channel_args c = args.c_channel_args();
  for (size_t i = 0; i < c.num_args; ++i) {
    if (c.args[i].type == GRPC_ARG_INTEGER) out[c.args[i].key] = c.args[i].value.integer;
  }
  return out;
}

// gRPC's retry filter aborts berthd when a call ends without a status (common/rpc.h): every
// client channel berth makes starts from arguments that leave it out.
TEST(ClientChannelArgumentsTest, TurnGrpcRetriesOff) {
  EXPECT_EQ(IntArguments(ClientChannelArguments()),
            (std::map<std::string, int>{{GRPC_ARG_ENABLE_RETRIES, 0}}));
}

TEST(RpcStatusTest, CodesAndMessagesRoundTrip) {
  Status st = FromGrpcStatus(ToGrpcStatus(Unavailable("etcd has no leader")), "etcd Range");
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_EQ(st.message(), "etcd Range: etcd has no leader");
  EXPECT_TRUE(FromGrpcStatus(ToGrpcStatus(OkStatus()), "x").ok());
}

}  // namespace
}  // namespace berth
