// berthctl's connection to berthd's AdminService (its own port, mutual TLS with an operator
// certificate; docs/etcd.md), shared by the command groups that talk to it.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "berth/v1/nodes.grpc.pb.h"
#include "cli/commands.h"
#include "common/rpc.h"

namespace berth::cli {

struct AdminConnection {
  std::string server, ca, cert, key, tls_server_name;
};

// --server, --ca, --cert, --key, --tls-server-name.
void AddConnectionFlags(CLI::App* cmd, AdminConnection& c);

Result<std::unique_ptr<v1::AdminService::Stub>> Connect(const AdminConnection& c);

// Exit code and message for a failed call: 1 for a refusal berthd gave (NOT_FOUND,
// FAILED_PRECONDITION, PERMISSION_DENIED, ABORTED), 2 for everything else (transport, input).
int AdminExit(Context& ctx, const Status& st);

// One AdminService call with a 60 s deadline.
template <typename Response, typename Fn>
Result<Response> CallAdmin(const AdminConnection& c, const char* method, Fn fn) {
  auto stub = Connect(c);
  // Unreadable files or a bad --server are the operator's input, whatever errno said.
  if (!stub.ok()) return InvalidArgument(stub.status().message());
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(60));
  Response response;
  grpc::Status st = fn(**stub, &ctx, &response);
  if (!st.ok()) return FromGrpcStatus(st, std::string(method) + " at " + c.server);
  return response;
}

}  // namespace berth::cli
