// LoadGate: how many calls it admits, overall and per source, and that slots come back.
#include "server/join/load_gate.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include "server/join/join_service.h"
#include "tests/fakes/fake_clock.h"

#include <optional>
#include <vector>

namespace berth::server {
namespace {

TEST(PeerSourceTest, StripsThePortFromGrpcPeerStrings) {
  EXPECT_EQ(PeerSource("ipv4:10.0.0.5:41234"), "10.0.0.5");
  EXPECT_EQ(PeerSource("ipv6:[fd00::5]:41234"), "fd00::5");
  EXPECT_EQ(PeerSource("ipv6:[::1]:1"), "::1");
  EXPECT_EQ(PeerSource("unix:/run/berthd.sock"), "unix:/run/berthd.sock");
  EXPECT_EQ(PeerSource("ipv6:[broken"), "ipv6:[broken");
}

TEST(JoinGateTest, AdmitsUpToTheLimitThenRefusesUntilASlotIsReturned) {
  LoadGate gate({.max_in_flight = 2, .max_per_source = 0});
  std::vector<LoadGate::Pass> held;
  for (const char* peer : {"ipv4:10.0.0.1:1", "ipv4:10.0.0.2:1"}) {
    auto pass = gate.Enter(peer);
    ASSERT_TRUE(pass.ok()) << pass.status().ToString();
    held.push_back(std::move(*pass));
  }
  auto refused = gate.Enter("ipv4:10.0.0.3:1");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().ToString(),
            "RESOURCE_EXHAUSTED: berthd is at capacity (2 joins in progress); retry later");
  EXPECT_TRUE(IsRetryable(refused.status()));

  held.pop_back();  // a call finished
  EXPECT_TRUE(gate.Enter("ipv4:10.0.0.3:1").ok());  // admitted, and released at once
  LoadGate::Counts c = gate.counts();
  EXPECT_EQ(c.in_flight, 1);
  EXPECT_EQ(c.admitted, 3);
  EXPECT_EQ(c.refused_busy, 1);
  EXPECT_EQ(c.refused_per_source, 0);
}

TEST(JoinGateTest, OneSourceCannotTakeEverySlot) {
  LoadGate gate({.max_in_flight = 10, .max_per_source = 2});
  std::vector<LoadGate::Pass> held;
  for (int port : {1, 2}) {
    auto pass = gate.Enter("ipv4:10.0.0.1:" + std::to_string(port));
    ASSERT_TRUE(pass.ok());
    held.push_back(std::move(*pass));
  }
  auto refused = gate.Enter("ipv4:10.0.0.1:3");
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().ToString(),
            "RESOURCE_EXHAUSTED: too many joins in progress from 10.0.0.1 (at most 2); retry "
            "later");
  // Other sources still get in; IPv6 addresses are sources of their own.
  auto other = gate.Enter("ipv4:10.0.0.2:1");
  ASSERT_TRUE(other.ok());
  auto v6 = gate.Enter("ipv6:[fd00::1]:1");
  ASSERT_TRUE(v6.ok());
  held.clear();
  EXPECT_TRUE(gate.Enter("ipv4:10.0.0.1:4").ok());
  LoadGate::Counts c = gate.counts();
  EXPECT_EQ(c.in_flight, 2);  // `other` and `v6`
  EXPECT_EQ(c.refused_busy, 0);
  EXPECT_EQ(c.refused_per_source, 1);
}

TEST(JoinGateTest, AMovedPassReturnsItsSlotOnce) {
  LoadGate gate({.max_in_flight = 1, .max_per_source = 1});
  {
    auto pass = gate.Enter("ipv4:10.0.0.1:1");
    ASSERT_TRUE(pass.ok());
    std::optional<LoadGate::Pass> moved(std::move(*pass));
    EXPECT_EQ(gate.counts().in_flight, 1);
  }
  EXPECT_EQ(gate.counts().in_flight, 0);
  EXPECT_TRUE(gate.Enter("ipv4:10.0.0.1:2").ok());
}

// Issue 22, section 6: Challenge ran outside the gate, so any unauthenticated caller that
// presents an EK made berthd check an EK chain and run MakeCredential, as often as it liked.
class NoEvidence : public verify::EvidenceVerifier {
 public:
  int targets = 0;
  Result<verify::VerifiedEvidence> Verify(const v1::Evidence&, std::span<const uint8_t>) override {
    return PermissionDenied("no");
  }
  std::optional<verify::CredentialTarget> CredentialTargetFor(const v1::ChallengeRequest&) override {
    ++targets;  // where the EK chain check and MakeCredential would run
    return std::nullopt;
  }
};

TEST(JoinGateTest, ChallengesThatPresentAnEkTakeASlotPlainOnesDoNot) {
  FakeClock clock(1'800'000'000);
  auto nonces = NonceIssuer::Create(SecretBytes(Bytes(32, 1).data(), 32), &clock,
                                    std::chrono::seconds(60));
  NoEvidence verifier;
  JoinLogic logic(JoinOptions{.cluster_id = "c", .api_server_endpoint = "10.0.0.1:6443"},
                  SecretBytes(Bytes(32, 1).data(), 32), &*nonces, &verifier, nullptr);
  LoadGate gate({.max_in_flight = 1, .max_per_source = 0});
  Metrics metrics;
  JoinServiceImpl service(&logic, &metrics, &gate);
  v1::ChallengeRequest with_ek;
  with_ek.set_ek_public("ek");
  with_ek.set_ak_public("ak");
  v1::ChallengeResponse response;
  grpc::ServerContext free_context;
  EXPECT_TRUE(service.Challenge(&free_context, &with_ek, &response).ok());
  EXPECT_EQ(verifier.targets, 1);
  EXPECT_EQ(gate.counts().admitted, 1);
  EXPECT_EQ(gate.counts().in_flight, 0);  // the slot came back

  auto held = gate.Enter("ipv4:10.0.0.9:1");  // the gate is full
  ASSERT_TRUE(held.ok());
  grpc::ServerContext busy_context;
  grpc::Status shed = service.Challenge(&busy_context, &with_ek, &response);
  EXPECT_EQ(shed.error_code(), grpc::RESOURCE_EXHAUSTED);
  EXPECT_EQ(shed.error_message(), "berthd is at capacity (1 joins in progress); retry later");
  EXPECT_EQ(verifier.targets, 1);  // no work done for it
  grpc::ServerContext plain_context;
  v1::ChallengeRequest plain;
  EXPECT_TRUE(service.Challenge(&plain_context, &plain, &response).ok());
  EXPECT_EQ(response.nonce().size(), kNonceSize);
  EXPECT_EQ(gate.counts().refused_busy, 1);
  EXPECT_NE(metrics.Exposition().find("berth_requests_total{call=\"Challenge\",outcome=\"shed\"} 1"),
            std::string::npos)
      << metrics.Exposition();
}

}  // namespace
}  // namespace berth::server
