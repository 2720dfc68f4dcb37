// How berthd serves JoinService on the network: TLS that asks every node for a certificate but
// checks it against no CA (a node is identified by its evidence, bound to that certificate's
// key), no TLS session tickets, and gRPC settings for connections that make two calls and close.
// berth-bench's null server (tests/bench/null_join.h) serves through this too, so that its
// figures are those of berthd's own transport.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "common/secret.h"
#include "common/status.h"

namespace berth::server {

struct JoinServer {
  std::unique_ptr<grpc::Server> server;
  int port = 0;  // the bound port (listen "host:0" picks one)
};

// Also sets what the serving depends on process-wide: no TLS session tickets
// (DisableTlsSessionTickets) and no lock-order checks in absl's mutexes. UNAVAILABLE names
// `listen` when it cannot be bound.
Result<JoinServer> StartJoinServer(const std::string& listen, const std::string& tls_cert_pem,
                                   const SecretBytes& tls_key_pem, grpc::Service* service);

}  // namespace berth::server
