// berthd under more nodes than it serves at once: the excess is refused at once with
// RESOURCE_EXHAUSTED (the agent's retry class), the admitted joins complete, and berthd
// serves again as soon as the load passes. Real berthd over TLS, the API server stand-in
// answering slowly (--delay-ms) so joins stay in flight (a real API server cannot be made
// slow on demand), and simulated nodes whose evidence is real TPM structures from a software
// AK (tests/bench/soft_ak.h). The oversized request needs no slow API server: it runs against
// the real one.
#include <gtest/gtest.h>

#include <algorithm>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>
#include <httplib.h>

#include "agent/join_client.h"
#include "berth/v1/berth.grpc.pb.h"
#include "common/rpc.h"
#include "server/join/join_service.h"
#include "tests/bench/load.h"
#include "tests/bench/soft_ak.h"
#include "tests/integration/cluster.h"

namespace berth::testing {
namespace {

using bench::JoinAttempt;

// Long enough that every simulated node has reached berthd before the first admitted join
// finishes (a TLS handshake and a challenge take milliseconds), so which calls are admitted
// does not depend on the machine's speed.
constexpr int kApiDelayMs = 6000;

class OverloadTest : public ::testing::Test {
 protected:
  void Start(const std::vector<std::string>& berthd_flags, bool slow_api_server = true) {
    if (slow_api_server) {
      ASSERT_TRUE(cluster_.StartStandinApiServer({"--delay-ms", std::to_string(kApiDelayMs)}));
    } else {
      ASSERT_TRUE(cluster_.StartKubeApiServer());
    }
    auto ak = bench::SoftAk::Create({0, 7});
    ASSERT_TRUE(ak.ok()) << ak.status().ToString();
    ak_.emplace(std::move(*ak));
    auto policy = ak_->PolicyYaml();
    ASSERT_TRUE(policy.ok());
    MustWrite(cluster_.dir().Join("policy.yaml"), *policy);
    // What is shed is berthd's own work: no node records (and so diskless joins).
    std::vector<std::string> flags = berthd_flags;
    flags.push_back("--no-etcd");
    ASSERT_TRUE(cluster_.StartBerthd(0, flags));
    options_.endpoint = "127.0.0.1:" + std::to_string(cluster_.berthd_port());
    options_.ca_pem = cluster_.join_pki().ca_pem_text;
    options_.server_name = "localhost";
    options_.with_disk = false;  // berthd --no-etcd releases no disk keys (docs/etcd.md)
  }

  // `n` nodes joining at once; their outcomes in order of completion.
  std::vector<JoinAttempt> JoinAtOnce(int n) {
    std::vector<JoinAttempt> out(static_cast<size_t>(n));
    std::vector<std::thread> threads;
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([this, i, &out] {
        out[static_cast<size_t>(i)] = bench::JoinOnce(options_, *ak_, "node-" + std::to_string(i));
      });
    }
    for (auto& t : threads) t.join();
    std::sort(out.begin(), out.end(),
              [](const JoinAttempt& a, const JoinAttempt& b) { return a.finished < b.finished; });
    return out;
  }

  HostCluster cluster_;
  std::optional<bench::SoftAk> ak_;
  bench::LoadOptions options_;
};

// One series of berthd's /metrics, or -1 when it is not there.
double Metric(int port, const std::string& series) {
  httplib::Client client("127.0.0.1", port);
  auto res = client.Get("/metrics");
  if (!res || res->status != 200) return -1;
  const std::string& body = res->body;
  size_t at = body.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  at += series.size() + 2;
  return std::stod(body.substr(at, body.find('\n', at) - at));
}

TEST_F(OverloadTest, TheExcessIsRefusedAtOnceAndServedWhenTheLoadPasses) {
  const std::string metrics_port_file = cluster_.dir().Join("metrics.port");
  Start({"--max-inflight-joins", "3", "--max-joins-per-source", "0", "--metrics-listen",
         "127.0.0.1:0", "--metrics-port-file", metrics_port_file});
  std::vector<JoinAttempt> outcomes = JoinAtOnce(10);

  // Seven refusals, all answered before any admitted join finished; then the three joins.
  for (size_t i = 0; i < 7; ++i) {
    EXPECT_EQ(outcomes[i].status.ToString(),
              "RESOURCE_EXHAUSTED: berthd is at capacity (3 joins in progress); retry later");
  }
  for (size_t i = 7; i < 10; ++i) {
    EXPECT_TRUE(outcomes[i].status.ok()) << outcomes[i].status.ToString();
    EXPECT_GE(outcomes[i].ms, kApiDelayMs);
  }
  // Exactly three bootstrap tokens were created: the refused calls did no work.
  EXPECT_EQ(cluster_.TokenSecrets().size(), 3u);

  // The load has passed: the next nodes are served.
  std::vector<JoinAttempt> later = JoinAtOnce(2);
  for (const JoinAttempt& a : later) EXPECT_TRUE(a.status.ok()) << a.status.ToString();
  EXPECT_EQ(cluster_.TokenSecrets().size(), 5u);
  EXPECT_NE(MustRead(cluster_.berthd_log())
                .find("shedding load: berthd is at capacity (3 joins in progress); retry later"),
            std::string::npos);
  // Operators see the shedding in the metrics.
  const int metrics_port = std::stoi(MustRead(metrics_port_file));
  EXPECT_EQ(Metric(metrics_port, "berth_requests_total{call=\"IssueJoinTicket\",outcome=\"shed\"}"),
            7);
  EXPECT_EQ(
      Metric(metrics_port, "berth_requests_total{call=\"IssueJoinTicket\",outcome=\"granted\"}"),
      5);
}

TEST_F(OverloadTest, OneSourceGetsItsShareAndNoMore) {
  Start({"--max-inflight-joins", "64", "--max-joins-per-source", "2"});
  std::vector<JoinAttempt> outcomes = JoinAtOnce(5);
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(outcomes[i].status.ToString(),
              "RESOURCE_EXHAUSTED: too many joins in progress from 127.0.0.1 (at most 2); retry "
              "later");
  }
  for (size_t i = 3; i < 5; ++i)
    EXPECT_TRUE(outcomes[i].status.ok()) << outcomes[i].status.ToString();
  EXPECT_EQ(cluster_.TokenSecrets().size(), 2u);
}

// A request beyond berthd's receive limit is refused by gRPC before anything parses it, and
// berthd goes on serving.
TEST_F(OverloadTest, AnOversizedRequestIsRefusedUnread) {
  Start({}, /*slow_api_server=*/false);
  auto identity = agent::MakeClientIdentity("big");
  ASSERT_TRUE(identity.ok());
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options_.ca_pem;
  ssl.pem_private_key = std::string(identity->key_pem.view());
  ssl.pem_cert_chain = identity->cert_pem;
  grpc::ChannelArguments args = ClientChannelArguments();  // as the agent's
  args.SetSslTargetNameOverride("localhost");
  auto stub = v1::JoinService::NewStub(
      grpc::CreateCustomChannel(options_.endpoint, grpc::SslCredentials(ssl), args));
  v1::JoinRequest request;
  request.set_node_name("big");
  request.mutable_evidence()->mutable_tpm()->set_event_log(
      std::string(server::kMaxJoinRequestBytes + 1, '\0'));
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
  v1::JoinTicket ticket;
  grpc::Status st = stub->IssueJoinTicket(&ctx, request, &ticket);
  EXPECT_EQ(st.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(st.error_message(), "Received message larger than max (" +
                                    std::to_string(request.ByteSizeLong()) + " vs. " +
                                    std::to_string(server::kMaxJoinRequestBytes) + ")");
  EXPECT_EQ(cluster_.TokenSecrets().size(), 0u);
  JoinAttempt after = bench::JoinOnce(options_, *ak_, "node-after");
  EXPECT_TRUE(after.status.ok()) << after.status.ToString();
  ASSERT_EQ(cluster_.TokenSecrets().size(), 1u);
  EXPECT_EQ(cluster_.TokenSecrets()[0]["metadata"]["labels"]["berth.dev/node"], "node-after");
}

}  // namespace
}  // namespace berth::testing
