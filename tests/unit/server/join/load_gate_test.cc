// LoadGate: how many calls it admits, overall and per source, and that slots come back.
#include "server/join/load_gate.h"

#include <gtest/gtest.h>

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

}  // namespace
}  // namespace berth::server
