// The cold-start keyslot's TPM half against a real software TPM (swtpm): a secret sealed under
// PolicyAuthorize(boot-policy key) opens only in a boot whose PCRs a signature by that key
// approved (docs/cluster-lifecycle.md), on this TPM and no other.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/hw/tpm.h"
#include "common/crypto.h"
#include "common/tpm/policy.h"
#include "common/tpm/quote.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::agent {
namespace {

using ::testing::HasSubstr;

const std::vector<uint32_t> kPcrs = {0, 4, 7};
const std::string kBootA = "a1000000000000000000000000000000000000000000000000000000000000a1";
const std::string kBootB = "b2000000000000000000000000000000000000000000000000000000000000b2";

Bytes Ref() { return ToBytes(tpm::kColdStartPolicyRef); }

// The boot-policy key as the TPM loads it, and its private half for signing.
struct PolicyKey {
  EvpPkeyPtr key;
  Bytes public_area;  // marshalled TPMT_PUBLIC

  static PolicyKey Make() {
    PolicyKey k;
    auto key = GenerateP256Key();
    EXPECT_TRUE(key.ok());
    k.key = std::move(*key);
    auto pub = tpm::EcSigningKeyPublic(k.key.get());
    EXPECT_TRUE(pub.ok()) << pub.status().ToString();
    k.public_area = *tpm::MarshalPublic(*pub);
    return k;
  }

  // A signed policy over the PCRs `tpm` holds now, as berthd makes it for a verified boot.
  AuthorizedPolicy Approve(Tpm& tpm, const Bytes& ref = Ref()) const {
    v1::PcrSelection sel;
    sel.set_bank(v1::HASH_ALGORITHM_SHA256);
    for (uint32_t p : kPcrs) sel.add_pcrs(p);
    auto values = tpm.ReadPcrs({sel});
    EXPECT_TRUE(values.ok()) << values.status().ToString();
    AuthorizedPolicy policy{.bank = DigestAlg::kSha256, .pcrs = kPcrs};
    policy.approved_policy = *tpm::PolicyPcrDigest(DigestAlg::kSha256, kPcrs, *values);
    auto sig = tpm::SignPolicy(key.get(), policy.approved_policy, ref);
    EXPECT_TRUE(sig.ok()) << sig.status().ToString();
    policy.signature = *tpm::MarshalSignature(*sig);
    return policy;
  }
};

class TpmSealTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(swtpm_.ok()) << swtpm_.error();
    Boot(kBootA);
  }

  // Power-cycles the machine and measures a boot into PCR 4 (the boot application).
  void Boot(const std::string& application) {
    tpm_.reset();  // the old boot's context goes before the TPM resets
    ASSERT_TRUE(swtpm_.Reboot());
    ASSERT_TRUE(swtpm_.ExtendPcrs({{0, std::string(64, '0')}, {4, application}}));
    auto opened = OpenEsysTpm(swtpm_.Tcti());
    ASSERT_TRUE(opened.ok()) << opened.status().ToString();
    tpm_ = std::move(*opened);
  }

  SealedSecret Seal(const PolicyKey& k) {
    auto sealed = tpm_->SealAuthorized(secret_, k.public_area, Ref());
    EXPECT_TRUE(sealed.ok()) << sealed.status().ToString();
    return sealed.ok() ? *sealed : SealedSecret{};
  }

  berth::testing::TempDir dir_;
  berth::testing::Swtpm swtpm_{dir_.path()};
  std::unique_ptr<Tpm> tpm_;
  SecretBytes secret_{RandomBytes(32).data(), 32};
};

TEST_F(TpmSealTest, TheApprovedBootOpensItAgainAfterAReboot) {
  PolicyKey k = PolicyKey::Make();
  AuthorizedPolicy approved = k.Approve(*tpm_);
  SealedSecret sealed = Seal(k);
  Boot(kBootA);  // power off and on, the same boot
  auto opened = tpm_->UnsealAuthorized(sealed, k.public_area, Ref(), approved);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->view(), secret_.view());
}

TEST_F(TpmSealTest, AnotherBootIsRefusedNamingThePcrs) {
  PolicyKey k = PolicyKey::Make();
  AuthorizedPolicy approved = k.Approve(*tpm_);
  SealedSecret sealed = Seal(k);
  Boot(kBootB);
  auto opened = tpm_->UnsealAuthorized(sealed, k.public_area, Ref(), approved);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(opened.status().message(), "this boot's sha256 PCRs 0,4,7 are not the approved ones");
}

TEST_F(TpmSealTest, AnApprovedUpdateOpensWithItsOwnSignatureAndARollbackStillOpens) {
  PolicyKey k = PolicyKey::Make();
  AuthorizedPolicy old_boot = k.Approve(*tpm_);
  SealedSecret sealed = Seal(k);
  Boot(kBootB);
  AuthorizedPolicy update = k.Approve(*tpm_);  // berthd verified the update and signed it
  auto opened = tpm_->UnsealAuthorized(sealed, k.public_area, Ref(), update);
  ASSERT_TRUE(opened.ok()) << opened.status().ToString();
  EXPECT_EQ(opened->view(), secret_.view());
  Boot(kBootA);  // rolled back: the old signature still serves, nothing was re-sealed
  auto rolled_back = tpm_->UnsealAuthorized(sealed, k.public_area, Ref(), old_boot);
  ASSERT_TRUE(rolled_back.ok()) << rolled_back.status().ToString();
  EXPECT_EQ(rolled_back->view(), secret_.view());
}

TEST_F(TpmSealTest, ASignatureByAnotherKeyIsRefused) {
  PolicyKey k = PolicyKey::Make();
  PolicyKey other = PolicyKey::Make();
  SealedSecret sealed = Seal(k);
  // The attacker signs the current PCRs with their own key and presents the cluster's key.
  AuthorizedPolicy forged = other.Approve(*tpm_);
  auto opened = tpm_->UnsealAuthorized(sealed, k.public_area, Ref(), forged);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(opened.status().message(), "the boot policy's signature is not the boot-policy key's");
  // Or presents their own key, which the blob was not sealed to.
  auto own_key = tpm_->UnsealAuthorized(sealed, other.public_area, Ref(), forged);
  ASSERT_FALSE(own_key.ok());
  EXPECT_EQ(own_key.status().message(), "the sealed secret was not sealed to this boot-policy key");
}

TEST_F(TpmSealTest, ASignatureForAnotherPurposeOfTheSameKeyIsRefused) {
  PolicyKey k = PolicyKey::Make();
  SealedSecret sealed = Seal(k);
  AuthorizedPolicy other_ref = k.Approve(*tpm_, ToBytes("berth-something-else"));
  auto opened = tpm_->UnsealAuthorized(sealed, k.public_area, Ref(), other_ref);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().message(), "the boot policy's signature is not the boot-policy key's");
}

TEST_F(TpmSealTest, AnotherTpmCannotOpenTheBlob) {
  PolicyKey k = PolicyKey::Make();
  SealedSecret sealed = Seal(k);
  // The stolen disk in another machine in the same boot, with a valid signature for its PCRs.
  berth::testing::TempDir other_dir;
  berth::testing::Swtpm other(other_dir.path());
  ASSERT_TRUE(other.ok()) << other.error();
  ASSERT_TRUE(other.ExtendPcrs({{0, std::string(64, '0')}, {4, kBootA}}));
  auto other_tpm = OpenEsysTpm(other.Tcti());
  ASSERT_TRUE(other_tpm.ok());
  AuthorizedPolicy approved = k.Approve(**other_tpm);
  auto opened = (*other_tpm)->UnsealAuthorized(sealed, k.public_area, Ref(), approved);
  ASSERT_FALSE(opened.ok());
  EXPECT_EQ(opened.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(opened.status().message(),
              HasSubstr("the sealed secret does not belong to this TPM"));
}

TEST_F(TpmSealTest, MalformedBlobsAndPoliciesAreInvalidArguments) {
  PolicyKey k = PolicyKey::Make();
  AuthorizedPolicy approved = k.Approve(*tpm_);
  SealedSecret sealed = Seal(k);
  SealedSecret cut = sealed;
  cut.private_area.resize(cut.private_area.size() - 1);
  auto opened = tpm_->UnsealAuthorized(cut, k.public_area, Ref(), approved);
  EXPECT_EQ(opened.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(opened.status().message(), "the sealed secret's private area is not a TPM2B_PRIVATE");
  AuthorizedPolicy short_policy = approved;
  short_policy.approved_policy.resize(20);
  EXPECT_EQ(tpm_->UnsealAuthorized(sealed, k.public_area, Ref(), short_policy).status().message(),
            "an approved policy must be a SHA-256 digest");
  EXPECT_EQ(tpm_->SealAuthorized(SecretBytes(), k.public_area, Ref()).status().message(),
            "a sealed secret must be 1 to 128 bytes");
}

TEST(PolicyDigestTest, EveryPcrNeedsAValueOfItsBanksSize) {
  tpm::PcrValues values;
  values[DigestAlg::kSha256][0] = Bytes(32, 0);
  values[DigestAlg::kSha256][4] = Bytes(20, 0);
  EXPECT_EQ(tpm::PolicyPcrDigest(DigestAlg::kSha256, {0, 4}, values).status().message(),
            "no sha256:4 value for the PCR policy");
  EXPECT_EQ(tpm::PolicyPcrDigest(DigestAlg::kSha256, {0, 0}, values).status().message(),
            "a PCR policy names a PCR twice");
  EXPECT_EQ(tpm::PolicyPcrDigest(DigestAlg::kSha256, {}, values).status().message(),
            "a PCR policy needs at least one PCR");
  auto one = tpm::PolicyPcrDigest(DigestAlg::kSha256, {0}, values);
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->size(), 32u);
}

}  // namespace
}  // namespace berth::agent
