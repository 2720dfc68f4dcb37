// How berthd serves JoinService (server/join/join_server.h): over TLS that requires a client
// certificate, any client certificate (a node's is self-signed, made at boot, and checked by
// the evidence bound to its key, not by a CA); and a listen address it cannot bind is named.
#include "server/join/join_server.h"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>

#include "agent/join_client.h"
#include "berth/v1/berth.grpc.pb.h"
#include "common/bytes.h"
#include "tests/testing/testing.h"

namespace berth::server {
namespace {

// A Challenge call from a client that trusts `ca_pem`, presenting `client` (or no
// certificate): the gRPC status it gets.
grpc::StatusCode CallChallenge(int port, const std::string& ca_pem,
                               const agent::ClientIdentity* client) {
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = ca_pem;
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

// Answers Challenge and counts the calls that reached it through TLS.
class CountingJoinService final : public v1::JoinService::Service {
 public:
  grpc::Status Challenge(grpc::ServerContext*, const v1::ChallengeRequest*,
                         v1::ChallengeResponse* response) override {
    calls_++;
    response->set_nonce("nonce");
    return grpc::Status::OK;
  }
  int calls() const { return calls_; }

 private:
  std::atomic<int> calls_{0};
};

class StartJoinServerTest : public ::testing::Test {
 protected:
  Result<JoinServer> Start(const std::string& listen, grpc::Service* service) {
    BERTH_ASSIGN_OR_RETURN(SecretBytes key, ReadSecretFile(pki_.server_key));
    return StartJoinServer(listen, testing::MustRead(pki_.server_pem), key, service);
  }

  testing::TempDir dir_;
  testing::TestPki pki_ = testing::MakeTestPki(dir_.path());  // berthd's cluster CA
};

TEST_F(StartJoinServerTest, TakesAnyClientCertificateAndNoCallWithoutOne) {
  CountingJoinService service;
  auto serving = Start("127.0.0.1:0", &service);
  ASSERT_TRUE(serving.ok()) << serving.status().ToString();
  ASSERT_GT(serving->port, 0);
  auto node = agent::MakeClientIdentity("node-a");
  ASSERT_TRUE(node.ok()) << node.status().ToString();

  EXPECT_EQ(CallChallenge(serving->port, pki_.ca_pem_text, &*node), grpc::OK);
  EXPECT_EQ(service.calls(), 1);
  EXPECT_EQ(CallChallenge(serving->port, pki_.ca_pem_text, nullptr), grpc::UNAVAILABLE);
  EXPECT_EQ(service.calls(), 1);  // the call without a certificate never reached it
  serving->server->Shutdown();
}

TEST_F(StartJoinServerTest, APortThatIsTakenIsNamed) {
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
  CountingJoinService service;

  auto serving = Start(listen_on, &service);

  EXPECT_EQ(serving.status().code(), Code::kUnavailable);
  EXPECT_EQ(serving.status().message(), "cannot listen on " + listen_on);
  close(fd);
}

}  // namespace
}  // namespace berth::server
