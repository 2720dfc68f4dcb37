// Golden tickets in a release build (this binary links server_golden_off and agent_golden_off,
// as berthd and berth-agent do unless -DBERTH_GOLDEN_TICKETS=ON): nothing issues, accepts or
// reads one, and each refusal says why.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/golden_ticket.h"
#include "server/join/join_logic.h"
#include "server/nodes/golden_ticket.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_etcd.h"

namespace berth::server {
namespace {

using ::testing::HasSubstr;

class NeverVerifier : public verify::EvidenceVerifier {
 public:
  int calls = 0;
  Result<verify::VerifiedEvidence> Verify(const v1::Evidence&, std::span<const uint8_t>) override {
    ++calls;
    return PermissionDenied("no evidence");
  }
};

class CountingTokens : public TokenIssuer {
 public:
  int calls = 0;
  Result<BootstrapToken> Issue(const std::string&) override {
    ++calls;
    return Internal("no token may be minted here");
  }
};

TEST(GoldenTicketReleaseTest, ReleaseBuildHasNoTickets) {
  EXPECT_FALSE(GoldenTicketsCompiledIn());
  berth::testing::FakeEtcd etcd;
  NodeStore store(&etcd);
  FakeClock clock(1'800'000'000);
  EXPECT_EQ(MakeGoldenTickets(&store, &clock, {}), nullptr);
  EXPECT_TRUE(etcd.calls().empty());
}

TEST(GoldenTicketReleaseTest, ReleaseAgentRefusesToReadOne) {
  v1::EnrolmentConfig c;
  c.mutable_golden_ticket()->set_id(std::string(32, 'a'));
  c.mutable_golden_ticket()->set_secret(std::string(32, 's'));
  c.mutable_golden_ticket()->set_expires_unix(1'900'000'000);
  auto read = agent::ReadGoldenTicket(c, "w1", 1'800'000'000);
  EXPECT_EQ(read.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(read.status().message(), HasSubstr("this berth-agent is a release build"));
}

TEST(GoldenTicketReleaseTest, ReleaseBerthdRefusesAJoinThatPresentsOne) {
  FakeClock clock(1'800'000'000);
  SecretBytes master(32);
  auto nonces = NonceIssuer::Create(master, &clock, std::chrono::seconds(60));
  ASSERT_TRUE(nonces.ok());
  NeverVerifier verifier;
  CountingTokens tokens;
  JoinLogic logic(JoinOptions{.cluster_id = "c",
                              .api_server_endpoint = "10.0.0.1:6443",
                              .ca_cert_hashes = {"sha256:" + std::string(64, 'b')}},
                  std::move(master), &*nonces, &verifier, &tokens,
                  /*nodes=*/nullptr, MakeGoldenTickets(nullptr, &clock, {}).get());
  v1::JoinRequest r;
  r.set_node_name("w1");
  r.set_role(v1::NODE_ROLE_WORKER);
  r.mutable_golden_ticket()->set_id(std::string(32, 'a'));
  r.mutable_golden_ticket()->set_secret(std::string(32, 's'));
  Peer peer;
  peer.address = "ipv4:10.0.0.7:41000";
  peer.spki_sha256 = Bytes(32, 1);
  auto ticket = logic.IssueJoinTicket(r, peer);
  EXPECT_EQ(ticket.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(ticket.status().message(),
              HasSubstr("golden tickets are compiled out of this berthd (a release build"));
  EXPECT_EQ(verifier.calls, 0);
  EXPECT_EQ(tokens.calls, 0);
}

}  // namespace
}  // namespace berth::server
