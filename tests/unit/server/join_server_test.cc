// How berthd serves JoinService (server/join_server.h): over TLS that requires a client
// certificate, any client certificate (a node's is self-signed, made at boot, and checked by
// the evidence bound to its key, not by a CA); and a listen address it cannot bind is named.
#include "server/join_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include "agent/join_client.h"
#include "berth/v1/berth.grpc.pb.h"
#include "common/crypto.h"

namespace berth::server {
namespace {

struct ServerIdentity {
  std::string cert_pem;
  SecretBytes key_pem;
};

ServerIdentity MakeServerIdentity() {
  auto key = GenerateP256Key();
  EXPECT_TRUE(key.ok());
  CertSpec spec{.common_name = "berthd", .dns_names = {"localhost"}, .server_auth = true};
  auto cert = IssueCert(spec, key->get(), nullptr, key->get());
  EXPECT_TRUE(cert.ok()) << cert.status().ToString();
  auto cert_pem = CertToPem(cert->get());
  auto key_pem = PrivateKeyToPem(key->get());
  EXPECT_TRUE(cert_pem.ok() && key_pem.ok());
  return {*cert_pem, std::move(*key_pem)};
}

// A Challenge call from a client that trusts `server_cert_pem`, presenting `client` (or no
// certificate): the gRPC status it gets.
grpc::StatusCode CallChallenge(int port, const std::string& server_cert_pem,
                               const agent::ClientIdentity* client) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = server_cert_pem;
  if (client != nullptr) {
    ssl.pem_private_key = std::string(client->key_pem.view());
    ssl.pem_cert_chain = client->cert_pem;
  }
  grpc::ChannelArguments args;
  args.SetSslTargetNameOverride("localhost");
  auto channel = grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                           grpc::SslCredentials(ssl), args);
  WipeString(ssl.pem_private_key);
  auto stub = v1::JoinService::NewStub(channel);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
  v1::ChallengeResponse response;
  return stub->Challenge(&ctx, v1::ChallengeRequest(), &response).error_code();
}

TEST(StartJoinServerTest, TakesAnyClientCertificateAndNoCallWithoutOne) {
  ServerIdentity identity = MakeServerIdentity();
  v1::JoinService::Service service;  // every call UNIMPLEMENTED: it got through TLS
  auto serving = StartJoinServer("127.0.0.1:0", identity.cert_pem, identity.key_pem, &service);
  ASSERT_TRUE(serving.ok()) << serving.status().ToString();
  ASSERT_GT(serving->port, 0);
  auto node = agent::MakeClientIdentity("node-a");
  ASSERT_TRUE(node.ok()) << node.status().ToString();

  EXPECT_EQ(CallChallenge(serving->port, identity.cert_pem, &*node), grpc::UNIMPLEMENTED);
  EXPECT_EQ(CallChallenge(serving->port, identity.cert_pem, nullptr), grpc::UNAVAILABLE);
  serving->server->Shutdown();
}

TEST(StartJoinServerTest, APortThatIsTakenIsNamed) {
  // A listener without SO_REUSEPORT: gRPC's own (with it) cannot share the port.
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  ASSERT_EQ(listen(fd, 1), 0);
  socklen_t len = sizeof(addr);
  ASSERT_EQ(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string listen_on = "127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
  ServerIdentity identity = MakeServerIdentity();
  v1::JoinService::Service service;

  auto serving = StartJoinServer(listen_on, identity.cert_pem, identity.key_pem, &service);

  EXPECT_EQ(serving.status().code(), Code::kUnavailable);
  EXPECT_EQ(serving.status().message(), "cannot listen on " + listen_on);
  close(fd);
}

}  // namespace
}  // namespace berth::server
