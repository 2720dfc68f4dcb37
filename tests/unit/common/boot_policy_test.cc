// berthd's boot-policy key and signatures (common/boot_policy.h), down to a real TPM
// (swtpm) releasing a cold-start key under a policy berthd signed.
#include "common/boot_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>

#include "agent/hw/tpm.h"
#include "common/tpm/policy.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth {
namespace {

SecretBytes Master(uint8_t fill = 0x42) { return SecretBytes(Bytes(32, fill).data(), 32); }

tpm::PcrValues Quoted(uint8_t boot) {
  tpm::PcrValues v;
  for (uint32_t i : {0u, 4u, 7u, 15u}) v[DigestAlg::kSha256][i] = Bytes(32, boot + i);
  return v;
}

TEST(BootPolicySignerTest, EveryReplicaDerivesTheSameKeyAndAnotherClusterAnother) {
  auto a = BootPolicySigner::Create(Master(), "prod-eu1");
  auto b = BootPolicySigner::Create(Master(), "prod-eu1");
  auto other_cluster = BootPolicySigner::Create(Master(), "prod-us1");
  auto other_secret = BootPolicySigner::Create(Master(0x43), "prod-eu1");
  ASSERT_TRUE(a.ok() && b.ok() && other_cluster.ok() && other_secret.ok());
  EXPECT_EQ(a->public_area(), b->public_area());
  EXPECT_NE(a->public_area(), other_cluster->public_area());
  EXPECT_NE(a->public_area(), other_secret->public_area());
}

constexpr std::array<uint32_t, 3> kBoot = {0, 4, 7};

// The signed set is the one berthd asks for (the policy's roles.cold_start), with the quote's
// values: PCR 15, quoted too, is left out because it was not asked for.
TEST(BootPolicySignerTest, SignsExactlyThePcrsItIsAskedForWithTheQuotedValues) {
  auto signer = BootPolicySigner::Create(Master(), "prod-eu1");
  ASSERT_TRUE(signer.ok());
  auto signed_policy = signer->Sign(Quoted(1), DigestAlg::kSha256, kBoot, 1'800'000'000);
  ASSERT_TRUE(signed_policy.ok()) << signed_policy.status().ToString();
  EXPECT_THAT(signed_policy->pcrs(), ::testing::ElementsAre(0u, 4u, 7u));
  EXPECT_EQ(signed_policy->bank(), v1::HASH_ALGORITHM_SHA256);
  EXPECT_EQ(signed_policy->signed_unix(), 1'800'000'000);
  Bytes expected = *tpm::PolicyPcrDigest(DigestAlg::kSha256, {0, 4, 7}, Quoted(1));
  EXPECT_EQ(ToBytes(signed_policy->approved_policy()), expected);
  TPMT_PUBLIC key = *tpm::ParsePublic(signer->public_area());
  TPMT_SIGNATURE sig = *tpm::ParseSignature(AsBytes(signed_policy->signature()));
  EXPECT_TRUE(tpm::VerifyPolicySignature(key, expected, AsBytes(tpm::kColdStartPolicyRef), sig)
                  .ok());
  // The signature is over this boot's policy, not another's.
  Bytes other = *tpm::PolicyPcrDigest(DigestAlg::kSha256, {0, 4, 7}, Quoted(2));
  EXPECT_EQ(tpm::VerifyPolicySignature(key, other, AsBytes(tpm::kColdStartPolicyRef), sig).code(),
            Code::kPermissionDenied);
}

// The node chose what to quote; berthd chose what to sign. A quote that leaves out one PCR
// berthd signs over (here PCR 4, the boot loader) gets no policy rather than one without it,
// which its TPM would satisfy whatever that PCR holds. So does a quote of another bank.
TEST(BootPolicySignerTest, AQuoteLeavingOutAPcrTheClusterSignsOverGetsNoPolicy) {
  auto signer = BootPolicySigner::Create(Master(), "prod-eu1");
  ASSERT_TRUE(signer.ok());
  tpm::PcrValues without4 = Quoted(1);
  without4[DigestAlg::kSha256].erase(4);
  auto signed_policy = signer->Sign(without4, DigestAlg::kSha256, kBoot, 0);
  EXPECT_EQ(signed_policy.status().ToString(),
            "PERMISSION_DENIED: the quote leaves out PCR 4 of sha256, which the policy's "
            "roles.cold_start requires of a control plane (its TPM would release the disk key "
            "whatever that PCR holds)");
  auto other_bank = signer->Sign(Quoted(1), DigestAlg::kSha384, kBoot, 0);
  EXPECT_EQ(other_bank.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(other_bank.status().message(),
              ::testing::StartsWith("the quote leaves out PCR 0 of sha384"));
  const std::array<uint32_t, 2> with15 = {7, 15};
  EXPECT_EQ(signer->Sign(Quoted(1), DigestAlg::kSha256, with15, 0).status().ToString(),
            "INVALID_ARGUMENT: PCR 15 cannot be in a cold-start policy (only PCRs 0-14)");
  EXPECT_EQ(signer->Sign(Quoted(1), DigestAlg::kSha256, {}, 0).status().ToString(),
            "INVALID_ARGUMENT: no PCR to sign a cold-start policy over");
}

// berthd's signature, the node's real TPM: what a control plane's cold start rests on.
TEST(BootPolicySignerTest, ANodesTpmReleasesItsColdStartKeyUnderBerthdsSignature) {
  berth::testing::TempDir dir;
  berth::testing::Swtpm swtpm(dir.path());
  ASSERT_TRUE(swtpm.ok()) << swtpm.error();
  ASSERT_TRUE(swtpm.ExtendPcrs({{4, std::string(64, 'a')}, {7, std::string(64, 'b')}}));
  auto tpm = agent::OpenEsysTpm(swtpm.Tcti());
  ASSERT_TRUE(tpm.ok()) << tpm.status().ToString();
  auto signer = BootPolicySigner::Create(Master(), "prod-eu1");
  ASSERT_TRUE(signer.ok());
  SecretBytes secret(RandomBytes(32).data(), 32);
  auto sealed = (*tpm)->SealAuthorized(secret, signer->public_area(),
                                       AsBytes(tpm::kColdStartPolicyRef));
  ASSERT_TRUE(sealed.ok()) << sealed.status().ToString();

  v1::PcrSelection sel;
  sel.set_bank(v1::HASH_ALGORITHM_SHA256);
  for (uint32_t p : {0u, 4u, 7u, 15u}) sel.add_pcrs(p);
  auto quoted = (*tpm)->ReadPcrs({sel});  // what a verified quote would carry
  ASSERT_TRUE(quoted.ok());
  auto cold = signer->ColdStartFor(*quoted, DigestAlg::kSha256, kBoot, 1);
  ASSERT_TRUE(cold.ok()) << cold.status().ToString();
  EXPECT_EQ(ToBytes(cold->boot_policy_key()), signer->public_area());
  agent::AuthorizedPolicy policy{.bank = DigestAlg::kSha256,
                                 .pcrs = {cold->policy().pcrs().begin(), cold->policy().pcrs().end()},
                                 .approved_policy = ToBytes(cold->policy().approved_policy()),
                                 .signature = ToBytes(cold->policy().signature())};
  auto opened = (*tpm)->UnsealAuthorized(*sealed, signer->public_area(),
                                         AsBytes(tpm::kColdStartPolicyRef), policy);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_TRUE(opened->Equals(secret));

  // PCR 15 is not in the policy: berth-agent's per-boot record does not lock the disk.
  ASSERT_TRUE(swtpm.ExtendPcrs({{15, std::string(64, 'c')}}));
  EXPECT_TRUE((*tpm)
                  ->UnsealAuthorized(*sealed, signer->public_area(),
                                     AsBytes(tpm::kColdStartPolicyRef), policy)
                  .ok());
  // Another cluster's key signs nothing this blob accepts.
  auto other = BootPolicySigner::Create(Master(), "prod-us1");
  auto foreign = other->ColdStartFor(*quoted, DigestAlg::kSha256, kBoot, 1);
  policy.signature = ToBytes(foreign->policy().signature());
  EXPECT_EQ((*tpm)
                ->UnsealAuthorized(*sealed, signer->public_area(),
                                   AsBytes(tpm::kColdStartPolicyRef), policy)
                .status()
                .message(),
            "the boot policy's signature is not the boot-policy key's");
}

}  // namespace
}  // namespace berth
