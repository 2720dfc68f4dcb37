// A control plane's cold-start and recovery keyslots (agent/control_plane_keys.h), with a real
// TPM (swtpm), berthd's real boot-policy signer and real LUKS2 headers on image files: what a
// whole-cluster power loss and an operator's recovery rest on (docs/cluster-lifecycle.md).
#include "agent/control_plane_keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <array>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/boot_policy.h"
#include "common/crypto.h"
#include "common/recovery.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::agent {
namespace {

using ::testing::HasSubstr;

constexpr char kUuid[] = "0b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c";
const std::string kBootA(64, 'a');
const std::string kBootB(64, 'b');

SecretBytes Key(uint8_t fill) { return SecretBytes(Bytes(32, fill).data(), 32); }

class ControlPlaneKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(swtpm_.ok()) << swtpm_.error();
    img_ = dir_.Join("state.img");
    std::ofstream(img_).close();
    std::filesystem::resize_file(img_, 64 << 20);
    ASSERT_TRUE(disk_->FormatIfBlank(img_, kUuid, cluster_key_).ok());
    Boot(kBootA);
    auto signer = BootPolicySigner::Create(Key(0x42), "prod-eu1");
    ASSERT_TRUE(signer.ok());
    signer_ = std::make_unique<BootPolicySigner>(std::move(*signer));
  }

  void Boot(const std::string& application) {
    keys_.reset();
    tpm_.reset();
    ASSERT_TRUE(swtpm_.Reboot());
    ASSERT_TRUE(swtpm_.ExtendPcrs({{4, application}}));
    auto tpm = OpenEsysTpm(swtpm_.Tcti());
    ASSERT_TRUE(tpm.ok()) << tpm.status().ToString();
    tpm_ = std::move(*tpm);
    keys_ = std::make_unique<ControlPlaneKeys>(tpm_.get(), keyslots_.get(), img_, kUuid);
  }

  // What berthd puts in a control plane's ticket for the boot it has just verified.
  static constexpr std::array<uint32_t, 3> kBootPcrs = {0, 4, 7};
  v1::ColdStart TicketColdStart() {
    v1::PcrSelection sel;
    sel.set_bank(v1::HASH_ALGORITHM_SHA256);
    for (uint32_t p : {0u, 4u, 7u, 15u}) sel.add_pcrs(p);
    auto quoted = tpm_->ReadPcrs({sel});
    EXPECT_TRUE(quoted.ok());
    auto cold = signer_->ColdStartFor(*quoted, DigestAlg::kSha256, kBootPcrs, ++now_);
    EXPECT_TRUE(cold.ok()) << cold.status().ToString();
    return *cold;
  }

  berth::testing::TempDir dir_;
  berth::testing::Swtpm swtpm_{dir_.path()};
  std::string img_;
  std::unique_ptr<Disk> disk_ = MakeLibDisk();
  std::unique_ptr<LuksKeyslots> keyslots_ = MakeLibLuksKeyslots();
  std::unique_ptr<Tpm> tpm_;
  std::unique_ptr<ControlPlaneKeys> keys_;
  std::unique_ptr<BootPolicySigner> signer_;
  SecretBytes cluster_key_ = Key(1);
  SecretBytes recovery_secret_{RandomBytes(32).data(), 32};
  int64_t now_ = 1'800'000'000;
};

TEST_F(ControlPlaneKeysTest, AfterAnOnlineBootTheSameBootOpensTheDiskWithoutBerthd) {
  Bytes recovery_public = *recovery::PublicKeyOf(recovery_secret_);
  ASSERT_TRUE(keys_->Refresh(cluster_key_, TicketColdStart(), recovery_public).ok());
  Boot(kBootA);  // every control plane lost power; this one comes back in the same boot
  auto key = keys_->ColdStartKey();
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_TRUE(disk_->CheckKey(img_, *key).ok());
  EXPECT_FALSE(key->Equals(cluster_key_));  // its own keyslot, not the cluster's key
}

TEST_F(ControlPlaneKeysTest, AnotherBootGetsNothingUntilBerthdApprovesItAndARollbackStillOpens) {
  ASSERT_TRUE(keys_->Refresh(cluster_key_, TicketColdStart(), {}).ok());
  Boot(kBootB);
  auto refused = keys_->ColdStartKey();
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("none of the 1 signed boot policies matches this boot"));
  // The update's first boot that reaches a berthd: its PCRs are signed too.
  ASSERT_TRUE(keys_->Refresh(cluster_key_, TicketColdStart(), {}).ok());
  Boot(kBootB);
  ASSERT_TRUE(keys_->ColdStartKey().ok());
  Boot(kBootA);
  ASSERT_TRUE(keys_->ColdStartKey().ok());
}

TEST_F(ControlPlaneKeysTest, TheRecoveryBoxOpensOnlyWithTheRecoverySecretForThisDisk) {
  Bytes recovery_public = *recovery::PublicKeyOf(recovery_secret_);
  ASSERT_TRUE(keys_->Refresh(cluster_key_, v1::ColdStart(), recovery_public).ok());
  EXPECT_EQ(keys_->ColdStartKey().status().code(), Code::kPermissionDenied);  // no such keyslot
  auto box = keys_->Recovery();
  ASSERT_TRUE(box.ok()) << box.status().ToString();
  EXPECT_EQ(box->recovery_key_sha256, recovery::Fingerprint(recovery_public));
  auto key = recovery::Open(recovery_secret_, box->box, AsBytes(std::string(kUuid)));
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_TRUE(disk_->CheckKey(img_, *key).ok());
  EXPECT_EQ(recovery::Open(recovery_secret_, box->box, AsBytes("another-disk")).status().code(),
            Code::kPermissionDenied);
}

TEST_F(ControlPlaneKeysTest, PoliciesAreKeptOnceEachAndOnlyTheNewestEight) {
  ASSERT_TRUE(keys_->Refresh(cluster_key_, TicketColdStart(), {}).ok());
  ASSERT_TRUE(keys_->Refresh(cluster_key_, TicketColdStart(), {}).ok());  // the same boot again
  auto tokens = keyslots_->Tokens(img_, kColdStartToken);
  ASSERT_EQ(tokens->size(), 1u);
  EXPECT_EQ(nlohmann::json::parse((*tokens)[0].json)["policies"].size(), 1u);
  for (int i = 0; i < 10; ++i) {
    Boot(std::string(63, 'c') + static_cast<char>('0' + i));
    ASSERT_TRUE(keys_->Refresh(cluster_key_, TicketColdStart(), {}).ok());
  }
  tokens = keyslots_->Tokens(img_, kColdStartToken);
  EXPECT_EQ(nlohmann::json::parse((*tokens)[0].json)["policies"].size(), kKeptBootPolicies);
  ASSERT_TRUE(keys_->ColdStartKey().ok());  // the newest, this boot
}

TEST_F(ControlPlaneKeysTest, AnotherClustersKeyReSealsAndTheOldKeyslotGoes) {
  ASSERT_TRUE(keys_->Refresh(cluster_key_, TicketColdStart(), {}).ok());
  Boot(kBootA);
  auto old_key = keys_->ColdStartKey();
  ASSERT_TRUE(old_key.ok());
  signer_ = std::make_unique<BootPolicySigner>(
      std::move(BootPolicySigner::Create(Key(0x43), "prod-eu1").value()));
  ASSERT_TRUE(keys_->Refresh(cluster_key_, TicketColdStart(), {}).ok());
  EXPECT_EQ(disk_->CheckKey(img_, *old_key).code(), Code::kPermissionDenied);
  auto new_key = keys_->ColdStartKey();
  ASSERT_TRUE(new_key.ok()) << new_key.status().ToString();
  EXPECT_TRUE(disk_->CheckKey(img_, *new_key).ok());
}

TEST_F(ControlPlaneKeysTest, AStolenDiskInAnotherMachineDoesNotOpen) {
  ASSERT_TRUE(keys_->Refresh(cluster_key_, TicketColdStart(), {}).ok());
  berth::testing::TempDir other_dir;
  berth::testing::Swtpm other(other_dir.path());
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(other.ExtendPcrs({{4, kBootA}}));  // even in the same boot
  auto other_tpm = OpenEsysTpm(other.Tcti());
  ASSERT_TRUE(other_tpm.ok());
  ControlPlaneKeys thief(other_tpm->get(), keyslots_.get(), img_, kUuid);
  auto key = thief.ColdStartKey();
  EXPECT_EQ(key.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(key.status().message(), HasSubstr("does not belong to this TPM"));
}

}  // namespace
}  // namespace berth::agent
