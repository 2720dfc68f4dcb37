// The recovery keyslot's cryptography (docs/cluster-lifecycle.md "Recovery"): the sealed box a
// node makes for the recovery public key (common/recovery.h), and the K-of-N shares of the
// recovery secret that operators keep (cli/recovery_shares.h).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "cli/recovery_shares.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "common/recovery.h"

namespace berth::cli {
namespace {

using ::testing::HasSubstr;

SecretBytes NewSecret() { return SecretBytes(RandomBytes(recovery::kSecretSize).data(), 32); }

std::vector<RecoveryShare> Pick(const std::vector<RecoveryShare>& all, std::vector<int> indices) {
  std::vector<RecoveryShare> out;
  for (int i : indices) {
    auto parsed = ParseShare(FormatShare(all[i - 1]).view(), "share");
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
    out.push_back(std::move(*parsed));
  }
  return out;
}

TEST(RecoveryBoxTest, OpensWithTheSecretAndTheContextItWasSealedFor) {
  SecretBytes secret = NewSecret();
  Bytes public_key = *recovery::PublicKeyOf(secret);
  SecretBytes keyslot_key(RandomBytes(32).data(), 32);
  auto box = recovery::Seal(public_key, keyslot_key, AsBytes("disk-uuid-1"));
  ASSERT_TRUE(box.ok()) << box.status().ToString();
  EXPECT_EQ(box->size(), 32u + 32u + 16u);
  auto opened = recovery::Open(secret, *box, AsBytes("disk-uuid-1"));
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_TRUE(opened->Equals(keyslot_key));

  const std::string refused = "the recovery box does not open with this recovery key and context";
  EXPECT_EQ(recovery::Open(secret, *box, AsBytes("disk-uuid-2")).status().message(), refused);
  EXPECT_EQ(recovery::Open(NewSecret(), *box, AsBytes("disk-uuid-1")).status().message(), refused);
  Bytes altered = *box;
  altered[40] ^= 1;
  EXPECT_EQ(recovery::Open(secret, altered, AsBytes("disk-uuid-1")).status().code(),
            Code::kPermissionDenied);
  EXPECT_EQ(recovery::Open(secret, Bytes(40, 0), {}).status().message(),
            "the recovery box is too short");
}

TEST(RecoveryBoxTest, EveryBoxHasItsOwnEphemeralKey) {
  SecretBytes secret = NewSecret();
  Bytes public_key = *recovery::PublicKeyOf(secret);
  SecretBytes message(RandomBytes(32).data(), 32);
  EXPECT_NE(*recovery::Seal(public_key, message, {}), *recovery::Seal(public_key, message, {}));
}

TEST(RecoverySharesTest, AnyThresholdOfSharesGiveTheSecretBack) {
  SecretBytes secret = NewSecret();
  auto shares = SplitRecoverySecret(secret, "prod-eu1", 3, 5);
  ASSERT_TRUE(shares.ok()) << shares.status().ToString();
  ASSERT_EQ(shares->size(), 5u);
  for (std::vector<int> pick : {std::vector<int>{1, 2, 3}, {5, 3, 1}, {2, 4, 5}, {1, 2, 3, 4, 5}}) {
    auto combined = CombineRecoveryShares(Pick(*shares, pick));
    ASSERT_TRUE(combined.ok()) << combined.status().ToString();
    EXPECT_TRUE(combined->Equals(secret));
  }
}

TEST(RecoverySharesTest, TooFewSharesAreRefusedNamingHowManyAreNeeded) {
  auto shares = SplitRecoverySecret(NewSecret(), "prod-eu1", 3, 5);
  ASSERT_TRUE(shares.ok());
  auto two = CombineRecoveryShares(Pick(*shares, {1, 4}));
  EXPECT_EQ(two.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(two.status().message(), "2 recovery shares given, 3 needed");
}

TEST(RecoverySharesTest, AWrongShareIsRecognisedNotTurnedIntoAKey) {
  auto shares = SplitRecoverySecret(NewSecret(), "prod-eu1", 3, 5);
  auto other = SplitRecoverySecret(NewSecret(), "prod-eu1", 3, 5);
  ASSERT_TRUE(shares.ok() && other.ok());
  // Share 3 of another split, relabelled to claim this split's key: its checksum is recomputed
  // by whoever forged it, so only the combination can tell.
  std::vector<RecoveryShare> picked = Pick(*shares, {1, 2});
  RecoveryShare forged = std::move(Pick(*other, {3})[0]);
  forged.recovery_key_sha256 = picked[0].recovery_key_sha256;
  picked.push_back(std::move(forged));
  auto combined = CombineRecoveryShares(picked);
  EXPECT_EQ(combined.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(combined.status().message(),
              HasSubstr("do not combine to this cluster's recovery key"));
}

TEST(RecoverySharesTest, SharesOfAnotherSplitOrRepeatedAreRefused) {
  auto shares = SplitRecoverySecret(NewSecret(), "prod-eu1", 2, 3);
  auto other = SplitRecoverySecret(NewSecret(), "prod-eu1", 2, 3);
  ASSERT_TRUE(shares.ok() && other.ok());
  std::vector<RecoveryShare> mixed = Pick(*shares, {1});
  mixed.push_back(std::move(Pick(*other, {2})[0]));
  EXPECT_EQ(CombineRecoveryShares(mixed).status().message(),
            "recovery shares 1 and 2 are of different clusters or splits");
  EXPECT_EQ(CombineRecoveryShares(Pick(*shares, {2, 2})).status().message(),
            "recovery share 2 was given twice");
}

TEST(RecoverySharesTest, ADamagedShareFileIsNamed) {
  auto shares = SplitRecoverySecret(NewSecret(), "prod-eu1", 2, 3);
  ASSERT_TRUE(shares.ok());
  std::string text(FormatShare((*shares)[0]).view());
  size_t at = text.find("\nshare: ") + 8;
  text[at] = text[at] == '0' ? '1' : '0';
  EXPECT_EQ(ParseShare(text, "alice.share").status().message(),
            "alice.share: the share is damaged (its checksum does not match)");
  EXPECT_EQ(ParseShare("hello\n", "x").status().message(), "x:1: expected \"key: value\"");
  EXPECT_EQ(ParseShare("", "x").status().message(), "x: not a berth recovery share (v1)");
}

TEST(RecoverySharesTest, ImpossibleSplitsAreRefused) {
  EXPECT_EQ(SplitRecoverySecret(NewSecret(), "c", 1, 3).status().message(),
            "recovery shares: need 2 <= threshold (1) <= count (3) <= 255");
  EXPECT_EQ(SplitRecoverySecret(NewSecret(), "c", 4, 3).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace berth::cli
