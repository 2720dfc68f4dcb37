#include "server/join/nonce.h"
#include "tests/fakes/fake_clock.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

namespace berth::server {
namespace {

SecretBytes Master(uint8_t fill) {
  SecretBytes s(32);
  std::memset(s.data(), fill, s.size());
  return s;
}

TEST(NonceTest, FreshNonceIsAcceptedUntilItsLifetimeEnds) {
  FakeClock clock(1'800'000'000);
  auto issuer = NonceIssuer::Create(Master(1), &clock, std::chrono::seconds(120));
  ASSERT_TRUE(issuer.ok());
  Bytes nonce = issuer->Issue();
  ASSERT_EQ(nonce.size(), kNonceSize);
  EXPECT_EQ(issuer->ExpiresUnix(nonce), 1'800'000'120);
  EXPECT_TRUE(issuer->Check(nonce).ok());
  clock.Advance(std::chrono::seconds(119));
  EXPECT_TRUE(issuer->Check(nonce).ok());
  clock.Advance(std::chrono::seconds(1));
  Status st = issuer->Check(nonce);
  EXPECT_EQ(st.code(), Code::kAborted);
  EXPECT_EQ(st.message(), "nonce expired 0 s ago (lifetime 120 s); ask for a fresh challenge");
}

TEST(NonceTest, AnotherReplicaWithTheSameSecretAcceptsIt) {
  FakeClock clock(1'800'000'000);
  auto a = NonceIssuer::Create(Master(7), &clock, std::chrono::seconds(60));
  auto b = NonceIssuer::Create(Master(7), &clock, std::chrono::seconds(60));
  EXPECT_TRUE(b->Check(a->Issue()).ok());
}

TEST(NonceTest, NonceOfAnotherClusterIsRefused) {
  FakeClock clock(1'800'000'000);
  auto ours = NonceIssuer::Create(Master(1), &clock, std::chrono::seconds(60));
  auto theirs = NonceIssuer::Create(Master(2), &clock, std::chrono::seconds(60));
  Status st = ours->Check(theirs->Issue());
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_EQ(st.message(), "nonce was not issued by this cluster's berthd");
}

TEST(NonceTest, EveryTamperedByteIsRefused) {
  FakeClock clock(1'800'000'000);
  auto issuer = NonceIssuer::Create(Master(1), &clock, std::chrono::seconds(60));
  Bytes nonce = issuer->Issue();
  for (size_t i = 0; i < nonce.size(); ++i) {
    Bytes t = nonce;
    t[i] ^= 0x01;
    EXPECT_EQ(issuer->Check(t).code(), Code::kPermissionDenied) << "byte " << i;
  }
}

TEST(NonceTest, WrongSizeIsInvalidArgument) {
  FakeClock clock(1'800'000'000);
  auto issuer = NonceIssuer::Create(Master(1), &clock, std::chrono::seconds(60));
  Status st = issuer->Check(Bytes(10, 0));
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_EQ(st.message(), "nonce has 10 bytes, expected 56 (ask Challenge for one)");
}

TEST(NonceTest, NonceFromTheFutureIsRefused) {
  FakeClock clock(1'800'000'000);
  FakeClock future(1'800'000'100);
  auto here = NonceIssuer::Create(Master(1), &clock, std::chrono::seconds(60));
  auto there = NonceIssuer::Create(Master(1), &future, std::chrono::seconds(60));
  Status st = here->Check(there->Issue());
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_EQ(st.message(), "nonce is dated 100 s in the future");
}

TEST(NonceTest, TwoNoncesDiffer) {
  FakeClock clock(1'800'000'000);
  auto issuer = NonceIssuer::Create(Master(1), &clock, std::chrono::seconds(60));
  EXPECT_NE(issuer->Issue(), issuer->Issue());
}

constexpr char kReused[] =
    "PERMISSION_DENIED: nonce was already used: a challenge admits one ticket call (a replayed "
    "request?); ask for a fresh challenge";

TEST(NonceTest, ANonceIsUsedOnceAndForgottenWhenItExpires) {
  FakeClock clock(1'800'000'000);
  auto issuer = NonceIssuer::Create(Master(1), &clock, std::chrono::seconds(60));
  Bytes nonce = issuer->Issue();
  Bytes other = issuer->Issue();
  EXPECT_TRUE(issuer->CheckUnused(nonce).ok());
  EXPECT_TRUE(issuer->MarkUsed(nonce).ok());
  EXPECT_EQ(issuer->CheckUnused(nonce).ToString(), kReused);
  EXPECT_EQ(issuer->MarkUsed(nonce).ToString(), kReused);
  EXPECT_TRUE(issuer->CheckUnused(other).ok());  // one nonce's use is not another's
  EXPECT_TRUE(issuer->MarkUsed(other).ok());
  EXPECT_EQ(issuer->used_count(), 2u);
  // Remembered exactly as long as Check accepts the nonce, then dropped.
  clock.Advance(std::chrono::seconds(59));
  EXPECT_TRUE(issuer->Check(nonce).ok());
  EXPECT_TRUE(issuer->MarkUsed(issuer->Issue()).ok());
  EXPECT_EQ(issuer->used_count(), 3u);
  clock.Advance(std::chrono::seconds(1));
  EXPECT_EQ(issuer->Check(nonce).code(), Code::kAborted);
  EXPECT_TRUE(issuer->MarkUsed(issuer->Issue()).ok());
  EXPECT_EQ(issuer->used_count(), 2u);  // the two expired ones are gone
}

TEST(NonceTest, ConcurrentUsesOfOneNonceAdmitExactlyOne) {
  FakeClock clock(1'800'000'000);
  auto issuer = NonceIssuer::Create(Master(1), &clock, std::chrono::seconds(60));
  Bytes nonce = issuer->Issue();
  std::atomic<int> passed{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 8; ++i) {
    threads.emplace_back([&] {
      if (issuer->MarkUsed(nonce).ok()) ++passed;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(passed.load(), 1);
}

TEST(NonceTest, UseIsPerReplicaInMemory) {
  // Another replica does not see this one's memory: the node registry's record in etcd is what
  // refuses a replay there (node_registry_test.cc, NonceIsSingleUseAcrossReplicas).
  FakeClock clock(1'800'000'000);
  auto a = NonceIssuer::Create(Master(7), &clock, std::chrono::seconds(60));
  auto b = NonceIssuer::Create(Master(7), &clock, std::chrono::seconds(60));
  Bytes nonce = a->Issue();
  EXPECT_TRUE(a->MarkUsed(nonce).ok());
  EXPECT_TRUE(b->CheckUnused(nonce).ok());
}

}  // namespace
}  // namespace berth::server
