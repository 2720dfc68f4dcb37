#include "server/join/join_server.h"

#include <absl/synchronization/mutex.h>

#include "common/bytes.h"
#include "server/join/join_service.h"
#include "server/join/tls_tickets.h"

namespace berth::server {

Result<JoinServer> StartJoinServer(const std::string& listen, const std::string& tls_cert_pem,
                                   const SecretBytes& tls_key_pem, grpc::Service* service) {
  // gRPC's absl mutexes check lock order on every acquisition unless told not to: measurable
  // on every call berthd answers, and a debugging aid rather than a safety net.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  BERTH_RETURN_IF_ERROR(DisableTlsSessionTickets());
  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  ssl.pem_key_cert_pairs.push_back({std::string(tls_key_pem.view()), tls_cert_pem});
  JoinServer out;
  grpc::ServerBuilder builder;
  // Every node is a new connection that makes two calls: skip the per-connection bookkeeping
  // (channelz, bandwidth probes) that long-lived channels want (BENCHMARKS.md).
  builder.AddChannelArgument(GRPC_ARG_ENABLE_CHANNELZ, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.SetMaxReceiveMessageSize(kMaxJoinRequestBytes);
  builder.AddListeningPort(listen, grpc::SslServerCredentials(ssl), &out.port);
  WipeString(ssl.pem_key_cert_pairs.front().private_key);
  builder.RegisterService(service);
  out.server = builder.BuildAndStart();
  if (out.server == nullptr || out.port == 0) return Unavailable("cannot listen on " + listen);
  return out;
}

}  // namespace berth::server
