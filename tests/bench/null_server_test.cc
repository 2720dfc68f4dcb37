// berth-bench's null server is served the way berthd serves JoinService (StartJoinServer), and a
// join against it makes both of a node's calls: so its CPU per join (BENCHMARKS.md) is that of
// two real calls over berthd's TLS and gRPC settings.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/crypto.h"
#include "server/join_server.h"
#include "tests/bench/load.h"
#include "tests/bench/null_join.h"

namespace berth::bench {
namespace {

struct ServerIdentity {
  std::string cert_pem;
  SecretBytes key_pem;
};

ServerIdentity MakeServer() {
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

TEST(NullServerTest, AJoinMakesBothCallsOverBerthdsTransport) {
  ServerIdentity identity = MakeServer();
  NullJoinService service;
  auto serving = server::StartJoinServer("127.0.0.1:0", identity.cert_pem, identity.key_pem,
                                         &service);
  ASSERT_TRUE(serving.ok()) << serving.status().ToString();
  ASSERT_GT(serving->port, 0);
  auto ak = SoftAk::Create({0, 7});
  ASSERT_TRUE(ak.ok()) << ak.status().ToString();
  LoadOptions options{.endpoint = "127.0.0.1:" + std::to_string(serving->port),
                      .ca_pem = identity.cert_pem,
                      .server_name = "localhost"};

  JoinAttempt first = JoinOnce(options, *ak, "node-a");
  JoinAttempt second = JoinOnce(options, *ak, "node-b");

  EXPECT_TRUE(first.status.ok()) << first.status.ToString();
  EXPECT_TRUE(second.status.ok()) << second.status.ToString();
  EXPECT_EQ(service.challenges(), 2);
  EXPECT_EQ(service.tickets(), 2);
  serving->server->Shutdown();
}

TEST(NullServerTest, AClientThatDoesNotTrustTheServerGetsNoTicket) {
  ServerIdentity identity = MakeServer();
  ServerIdentity stranger = MakeServer();
  NullJoinService service;
  auto serving = server::StartJoinServer("127.0.0.1:0", identity.cert_pem, identity.key_pem,
                                         &service);
  ASSERT_TRUE(serving.ok()) << serving.status().ToString();
  auto ak = SoftAk::Create({0});
  ASSERT_TRUE(ak.ok());
  LoadOptions options{.endpoint = "127.0.0.1:" + std::to_string(serving->port),
                      .ca_pem = stranger.cert_pem,
                      .server_name = "localhost"};

  JoinAttempt attempt = JoinOnce(options, *ak, "node-a");

  EXPECT_EQ(attempt.status.code(), Code::kUnavailable) << attempt.status.ToString();
  EXPECT_EQ(service.challenges(), 0);
  EXPECT_EQ(service.tickets(), 0);
  serving->server->Shutdown();
}

}  // namespace
}  // namespace berth::bench
