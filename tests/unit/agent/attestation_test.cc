#include "agent/attestation.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <random>

#include "common/binding.h"
#include "common/crypto.h"
#include "tests/fakes/agent_fakes.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::agent {
namespace {

using ::testing::StartsWith;

class CollectTpmEvidenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(swtpm_.ok()) << swtpm_.error();
    auto tpm = OpenEsysTpm(swtpm_.Tcti());
    ASSERT_TRUE(tpm.ok()) << tpm.status().ToString();
    tpm_ = std::move(*tpm);
  }

  // Checks the quote in `ev` against its own AK and PCR values, with extraData = `binding`.
  static void ExpectQuoteVerifies(const v1::TpmEvidence& ev, const Bytes& binding) {
    auto pub = tpm::ParsePublic(AsBytes(ev.ak_public()));
    ASSERT_TRUE(pub.ok()) << pub.status().ToString();
    auto key = tpm::PublicToEvp(*pub);
    ASSERT_TRUE(key.ok());
    auto pcrs = PcrValuesOf(ev);
    ASSERT_TRUE(pcrs.ok());
    auto verified = tpm::VerifyQuote(key->get(), AsBytes(ev.quote()), AsBytes(ev.signature()),
                                     *pcrs, std::span<const uint8_t>(binding));
    ASSERT_TRUE(verified.ok()) << verified.status().ToString();
    EXPECT_EQ(verified->extra_data, binding);
  }

  berth::testing::TempDir tpm_dir_, sys_dir_;
  berth::testing::Swtpm swtpm_{tpm_dir_.path()};
  std::unique_ptr<Tpm> tpm_;
  const std::vector<v1::PcrSelection> selection_ = {Sha256Range(0, 9), Sha256Range(14, 14)};
  const Bytes binding_ = ComputeBinding(Sha256(AsBytes("nonce")), Sha256(AsBytes("client spki")));
};

TEST_F(CollectTpmEvidenceTest, CarriesTheEventLogBytesExactly) {
  // Binary, with NULs and high bytes, larger than one read buffer.
  std::mt19937_64 rng(5);
  std::string log(70000, '\0');
  for (char& c : log) c = static_cast<char>(rng() & 0xff);
  const std::string path = sys_dir_.Join("binary_bios_measurements");
  berth::testing::MustWrite(path, log, 0440);

  auto evidence = CollectTpmEvidence(*tpm_, selection_, binding_, path);
  ASSERT_TRUE(evidence.ok()) << evidence.status().ToString();
  ASSERT_TRUE(evidence->has_tpm());
  EXPECT_EQ(evidence->tpm().event_log(), log);
  ExpectQuoteVerifies(evidence->tpm(), binding_);
}

TEST_F(CollectTpmEvidenceTest, MissingEventLogIsNormalAndLeavesItEmpty) {
  auto evidence = CollectTpmEvidence(*tpm_, selection_, binding_,
                                     sys_dir_.Join("no/such/binary_bios_measurements"));
  ASSERT_TRUE(evidence.ok()) << evidence.status().ToString();
  EXPECT_TRUE(evidence->tpm().event_log().empty());
  ExpectQuoteVerifies(evidence->tpm(), binding_);
}

TEST_F(CollectTpmEvidenceTest, UnreadableEventLogIsAnError) {
  // A directory where the log should be: present, but not a readable file.
  auto evidence = CollectTpmEvidence(*tpm_, selection_, binding_, sys_dir_.path());
  ASSERT_FALSE(evidence.ok());
  EXPECT_NE(evidence.status().code(), Code::kNotFound);
  EXPECT_THAT(evidence.status().message(), StartsWith("reading the TPM event log: "));
}

TEST_F(CollectTpmEvidenceTest, CarriesTheAkAndExactlyTheSelectedPcrs) {
  auto evidence = CollectTpmEvidence(*tpm_, selection_, binding_, sys_dir_.Join("absent"));
  ASSERT_TRUE(evidence.ok()) << evidence.status().ToString();
  const v1::TpmEvidence& ev = evidence->tpm();

  auto ak = tpm_->AttestationKeyPublic();
  ASSERT_TRUE(ak.ok());
  EXPECT_EQ(ev.ak_public(), ToString(*ak));

  ASSERT_EQ(ev.pcrs_size(), 1);
  EXPECT_EQ(ev.pcrs(0).bank(), v1::HASH_ALGORITHM_SHA256);
  std::vector<uint32_t> indices;
  for (const auto& v : ev.pcrs(0).values()) indices.push_back(v.index());
  EXPECT_EQ(indices, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14}));

  auto read = tpm_->ReadPcrs(selection_);
  ASSERT_TRUE(read.ok());
  auto carried = PcrValuesOf(ev);
  ASSERT_TRUE(carried.ok());
  EXPECT_EQ(*carried, *read);

  EXPECT_TRUE(ev.ek_certificate().empty());
  EXPECT_TRUE(ev.ek_public().empty());
  EXPECT_EQ(ev.ak_certificate_chain_size(), 0);
  ExpectQuoteVerifies(ev, binding_);
}

TEST_F(CollectTpmEvidenceTest, SeveralBanksAreAllCarried) {
  v1::PcrSelection sha1;
  sha1.set_bank(v1::HASH_ALGORITHM_SHA1);
  sha1.add_pcrs(0);
  sha1.add_pcrs(7);
  const std::vector<v1::PcrSelection> selection = {sha1, Sha256Range(0, 23)};
  auto evidence = CollectTpmEvidence(*tpm_, selection, binding_, sys_dir_.Join("absent"));
  ASSERT_TRUE(evidence.ok()) << evidence.status().ToString();
  auto read = tpm_->ReadPcrs(selection);
  ASSERT_TRUE(read.ok());
  auto carried = PcrValuesOf(evidence->tpm());
  ASSERT_TRUE(carried.ok());
  EXPECT_EQ(*carried, *read);
  EXPECT_EQ(carried->at(DigestAlg::kSha1).size(), 2u);
  EXPECT_EQ(carried->at(DigestAlg::kSha256).size(), 24u);
  ExpectQuoteVerifies(evidence->tpm(), binding_);
}

TEST_F(CollectTpmEvidenceTest, TheQuoteIsBoundToTheGivenBindingOnly) {
  auto evidence = CollectTpmEvidence(*tpm_, selection_, binding_, sys_dir_.Join("absent"));
  ASSERT_TRUE(evidence.ok());
  const v1::TpmEvidence& ev = evidence->tpm();
  auto pub = tpm::ParsePublic(AsBytes(ev.ak_public()));
  ASSERT_TRUE(pub.ok());
  auto key = tpm::PublicToEvp(*pub);
  ASSERT_TRUE(key.ok());
  auto pcrs = PcrValuesOf(ev);
  ASSERT_TRUE(pcrs.ok());
  // The same nonce presented by another TLS client: a different binding.
  Bytes other = ComputeBinding(Sha256(AsBytes("nonce")), Sha256(AsBytes("another client spki")));
  auto verified = tpm::VerifyQuote(key->get(), AsBytes(ev.quote()), AsBytes(ev.signature()), *pcrs,
                                   std::span<const uint8_t>(other));
  EXPECT_EQ(verified.status().code(), Code::kPermissionDenied);
}

}  // namespace
}  // namespace berth::agent
