// berth-bench's null server is served the way berthd serves JoinService (StartJoinServer), and a
// join against it makes both of a node's calls: so its CPU per join (BENCHMARKS.md) is that of
// two real calls over berthd's TLS and gRPC settings.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/bytes.h"
#include "server/join/join_server.h"
#include "tests/bench/load.h"
#include "tests/bench/null_join.h"
#include "tests/testing/testing.h"

namespace berth::bench {
namespace {

class NullServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(ak_.ok()) << ak_.status().ToString();
    auto key = ReadSecretFile(pki_.server_key);
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    serving_ = server::StartJoinServer("127.0.0.1:0", testing::MustRead(pki_.server_pem), *key,
                                       &service_);
    ASSERT_TRUE(serving_.ok()) << serving_.status().ToString();
    ASSERT_GT(serving_->port, 0);
  }
  void TearDown() override {
    if (serving_.ok()) serving_->server->Shutdown();
  }
  // A simulated node, trusting the CA in `ca_pem`.
  JoinAttempt Join(const std::string& name, const std::string& ca_pem) {
    LoadOptions options{.endpoint = "127.0.0.1:" + std::to_string(serving_->port),
                        .ca_pem = ca_pem,
                        .server_name = "localhost"};
    return JoinOnce(options, *ak_, name);
  }

  testing::TempDir dir_;
  testing::TestPki pki_ = testing::MakeTestPki(dir_.path());  // berthd's cluster CA
  Result<SoftAk> ak_ = SoftAk::Create({0, 7});
  NullJoinService service_;
  Result<server::JoinServer> serving_ = Internal("not started");
};

TEST_F(NullServerTest, AJoinMakesBothCallsOverBerthdsTransport) {
  JoinAttempt first = Join("node-a", pki_.ca_pem_text);
  JoinAttempt second = Join("node-b", pki_.ca_pem_text);

  EXPECT_TRUE(first.status.ok()) << first.status.ToString();
  EXPECT_TRUE(second.status.ok()) << second.status.ToString();
  EXPECT_EQ(service_.challenges(), 2);
  EXPECT_EQ(service_.tickets(), 2);
}

TEST_F(NullServerTest, AClientThatDoesNotTrustTheServerGetsNoTicket) {
  testing::TempDir other;
  const std::string stranger_ca = testing::MakeTestPki(other.path()).ca_pem_text;

  JoinAttempt attempt = Join("node-a", stranger_ca);

  EXPECT_EQ(attempt.status.code(), Code::kUnavailable) << attempt.status.ToString();
  EXPECT_EQ(service_.challenges(), 0);
  EXPECT_EQ(service_.tickets(), 0);
}

}  // namespace
}  // namespace berth::bench
