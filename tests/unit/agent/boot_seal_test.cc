// Sealing the boot against a real TPM (swtpm): the EnrolmentConfig measured once per boot
// however often the agent restarts, "keys released" recognised, and PCR 15 states berth did
// not make refused.
#include "agent/boot_seal.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "common/tpm/sealed_boot.h"
#include "tests/fakes/agent_fakes.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

class BootSealTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(swtpm_.ok()) << swtpm_.error(); }
  // A fresh connection, as a restarted agent makes.
  std::unique_ptr<Tpm> Open() {
    auto tpm = OpenEsysTpm(swtpm_.Tcti());
    EXPECT_TRUE(tpm.ok()) << tpm.status().ToString();
    return std::move(*tpm);
  }
  Bytes Pcr15() {
    auto tpm = Open();
    auto v = tpm->ReadPcrs({Sha256Range(15, 15)});
    EXPECT_TRUE(v.ok());
    return (*v)[DigestAlg::kSha256][15];
  }
  static std::vector<std::string> Data(const BootSeal& seal) {
    std::vector<std::string> out;
    for (const auto& e : seal.Events()) {
      EXPECT_EQ(e.pcr(), 15u);
      out.push_back(e.data());
    }
    return out;
  }
  testing::TempDir dir_;
  testing::Swtpm swtpm_{dir_.path()};
  const std::string config_ = "enrolment config bytes";
};

TEST_F(BootSealTest, TheConfigIsMeasuredOncePerBootHoweverOftenTheAgentStarts) {
  const Bytes config_event = seal::EnrolmentConfigEvent(AsBytes(config_));
  {
    auto tpm = Open();
    auto seal = BootSeal::Measure(*tpm, AsBytes(config_));
    ASSERT_TRUE(seal.ok()) << seal.status().ToString();
    EXPECT_TRUE(seal->measured_now());
    EXPECT_FALSE(seal->keys_released());
    EXPECT_THAT(Data(*seal), ::testing::ElementsAre(ToString(config_event)));
  }
  const Bytes after_first = Pcr15();
  EXPECT_EQ(after_first, seal::Replay(DigestAlg::kSha256, {config_event}));
  // Every bank was extended (TPM2_PCR_Event), not only sha256.
  {
    auto tpm = Open();
    v1::PcrSelection sha384;
    sha384.set_bank(v1::HASH_ALGORITHM_SHA384);
    sha384.add_pcrs(15);
    auto values = tpm->ReadPcrs({sha384});
    ASSERT_TRUE(values.ok());
    EXPECT_EQ(values->at(DigestAlg::kSha384).at(15),
              seal::Replay(DigestAlg::kSha384, {config_event}));
  }
  // A restart (Restart=on-failure) before the keys were released: nothing measured again.
  for (int restart = 0; restart < 2; ++restart) {
    auto tpm = Open();
    auto seal = BootSeal::Measure(*tpm, AsBytes(config_));
    ASSERT_TRUE(seal.ok()) << seal.status().ToString();
    EXPECT_FALSE(seal->measured_now());
    EXPECT_THAT(Data(*seal), ::testing::ElementsAre(ToString(config_event)));
  }
  EXPECT_EQ(Pcr15(), after_first);
}

TEST_F(BootSealTest, ReleasedKeysAreRecognisedAfterARestartAndReleasedOnlyOnce) {
  {
    auto tpm = Open();
    auto seal = BootSeal::Measure(*tpm, AsBytes(config_));
    ASSERT_TRUE(seal.ok());
    ASSERT_TRUE(seal->ReleaseKeys(*tpm).ok());
    EXPECT_TRUE(seal->keys_released());
    ASSERT_TRUE(seal->ReleaseKeys(*tpm).ok());  // a no-op the second time
  }
  const Bytes released = Pcr15();
  EXPECT_EQ(released,
            seal::Replay(DigestAlg::kSha256, seal::PossibleHistories(AsBytes(config_))[2]));
  auto tpm = Open();
  auto seal = BootSeal::Measure(*tpm, AsBytes(config_));
  ASSERT_TRUE(seal.ok());
  EXPECT_TRUE(seal->keys_released());
  EXPECT_FALSE(seal->measured_now());
  EXPECT_EQ(seal->Events().size(), 2u);
  EXPECT_EQ(seal->Events()[1].data(), ToString(seal::KeysReleasedEvent()));
  tpm.reset();
  EXPECT_EQ(Pcr15(), released);
}

TEST_F(BootSealTest, AnEditedConfigOrAForeignMeasurementIsRefused) {
  {
    auto tpm = Open();
    ASSERT_TRUE(BootSeal::Measure(*tpm, AsBytes(config_)).ok());
  }
  // The ESP was edited after this boot measured its config.
  {
    auto tpm = Open();
    auto edited = BootSeal::Measure(*tpm, AsBytes(config_ + " (edited)"));
    EXPECT_EQ(edited.status().code(), Code::kFailedPrecondition);
    EXPECT_THAT(edited.status().message(), StartsWith("PCR 15 holds "));
    EXPECT_THAT(edited.status().message(),
                HasSubstr("another component measured into it, or the EnrolmentConfig changed "
                          "since this boot read it; reboot the node"));
  }
  // Something else measured into PCR 15 first.
  testing::Swtpm fresh(dir_.Join("fresh"));
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE(fresh.ExtendPcr(15, std::string(64, '7')));
  auto tpm = OpenEsysTpm(fresh.Tcti());
  ASSERT_TRUE(tpm.ok());
  EXPECT_EQ(BootSeal::Measure(**tpm, AsBytes(config_)).status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace berth::agent
