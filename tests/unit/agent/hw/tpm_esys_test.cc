// The ESYS Tpm against a real software TPM (swtpm), fresh for every test.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/hw/tpm.h"
#include "common/crypto.h"
#include "common/tpm/quote.h"
#include "tests/fakes/agent_fakes.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::agent {
namespace {

using ::testing::StartsWith;

class EsysTpmTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(swtpm_.ok()) << swtpm_.error(); }

  std::unique_ptr<Tpm> Open() {
    auto tpm = OpenEsysTpm(swtpm_.Tcti());
    EXPECT_TRUE(tpm.ok()) << tpm.status().ToString();
    return tpm.ok() ? std::move(*tpm) : nullptr;
  }

  berth::testing::TempDir dir_;
  berth::testing::Swtpm swtpm_{dir_.path()};
};

const Bytes kZeros32(32, 0x00);
const Bytes kOnes32(32, 0xff);

// What a freshly started PC-client TPM holds in a bank of `size`-byte PCRs: zeros, except the
// DRTM PCRs 17-22, which TPM2_Startup sets to all ones.
std::map<uint32_t, Bytes> FreshBank(size_t size) {
  std::map<uint32_t, Bytes> out;
  for (uint32_t i = 0; i < 24; ++i) out[i] = Bytes(size, (i >= 17 && i <= 22) ? 0xff : 0x00);
  return out;
}

Bytes Concat(const Bytes& a, const Bytes& b) {
  Bytes out = a;
  out.insert(out.end(), b.begin(), b.end());
  return out;
}

TEST_F(EsysTpmTest, OpensThroughTheSwtpmTcti) {
  auto tpm = OpenEsysTpm(swtpm_.Tcti());
  ASSERT_TRUE(tpm.ok()) << tpm.status().ToString();
  EXPECT_NE(tpm->get(), nullptr);
}

TEST_F(EsysTpmTest, OpeningATpmThatIsNotThereFailsNamingTheTcti) {
  const std::string tcti = "swtpm:path=" + dir_.path() + "/no-such-socket";
  auto tpm = OpenEsysTpm(tcti);
  ASSERT_FALSE(tpm.ok());
  EXPECT_THAT(tpm.status().message(), StartsWith("opening TPM via TCTI \"" + tcti + "\": "));
}

TEST_F(EsysTpmTest, AttestationKeyIsTheSameOnEveryOpenAndIsARestrictedSigningKey) {
  Bytes first, second;
  {
    auto tpm = Open();
    ASSERT_NE(tpm, nullptr);
    auto ak = tpm->AttestationKeyPublic();
    ASSERT_TRUE(ak.ok());
    first = *ak;
  }
  {
    auto tpm = Open();
    ASSERT_NE(tpm, nullptr);
    auto ak = tpm->AttestationKeyPublic();
    ASSERT_TRUE(ak.ok());
    second = *ak;
  }
  ASSERT_FALSE(first.empty());
  EXPECT_EQ(first, second);

  auto pub = tpm::ParsePublic(first);
  ASSERT_TRUE(pub.ok()) << pub.status().ToString();
  EXPECT_EQ(pub->type, TPM2_ALG_ECC);
  EXPECT_EQ(pub->nameAlg, TPM2_ALG_SHA256);
  EXPECT_EQ(pub->parameters.eccDetail.curveID, TPM2_ECC_NIST_P256);
  Status attrs = tpm::CheckAttestationKeyAttributes(*pub);
  EXPECT_TRUE(attrs.ok()) << attrs.ToString();
  auto key = tpm::PublicToEvp(*pub);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(EVP_PKEY_get_base_id(key->get()), EVP_PKEY_EC);
}

TEST_F(EsysTpmTest, ReadsAll24Sha256PcrsAcrossSeveralPcrReadCalls) {
  auto tpm = Open();
  ASSERT_NE(tpm, nullptr);
  auto pcrs = tpm->ReadPcrs({Sha256Range(0, 23)});
  ASSERT_TRUE(pcrs.ok()) << pcrs.status().ToString();
  ASSERT_EQ(pcrs->size(), 1u);
  ASSERT_EQ(pcrs->count(DigestAlg::kSha256), 1u);
  EXPECT_EQ(pcrs->at(DigestAlg::kSha256), FreshBank(32));
}

TEST_F(EsysTpmTest, ReadsSeveralBanksInOneCall) {
  auto tpm = Open();
  ASSERT_NE(tpm, nullptr);
  v1::PcrSelection sha1, sha384;
  sha1.set_bank(v1::HASH_ALGORITHM_SHA1);
  sha384.set_bank(v1::HASH_ALGORITHM_SHA384);
  for (uint32_t i = 0; i < 24; ++i) {
    sha1.add_pcrs(i);
    sha384.add_pcrs(i);
  }
  auto pcrs = tpm->ReadPcrs({sha1, Sha256Range(0, 23), sha384});
  ASSERT_TRUE(pcrs.ok()) << pcrs.status().ToString();
  ASSERT_EQ(pcrs->size(), 3u);
  EXPECT_EQ(pcrs->at(DigestAlg::kSha1), FreshBank(20));
  EXPECT_EQ(pcrs->at(DigestAlg::kSha256), FreshBank(32));
  EXPECT_EQ(pcrs->at(DigestAlg::kSha384), FreshBank(48));
}

TEST_F(EsysTpmTest, ReadsASparseSelection) {
  auto tpm = Open();
  ASSERT_NE(tpm, nullptr);
  v1::PcrSelection sel;
  sel.set_bank(v1::HASH_ALGORITHM_SHA256);
  for (uint32_t i : {23u, 0u, 17u, 7u}) sel.add_pcrs(i);
  auto pcrs = tpm->ReadPcrs({sel});
  ASSERT_TRUE(pcrs.ok()) << pcrs.status().ToString();
  EXPECT_EQ(
      pcrs->at(DigestAlg::kSha256),
      (std::map<uint32_t, Bytes>{{0, kZeros32}, {7, kZeros32}, {17, kOnes32}, {23, kZeros32}}));
}

TEST_F(EsysTpmTest, OutOfRangePcrAndUnknownBankAreInvalidArgument) {
  auto tpm = Open();
  ASSERT_NE(tpm, nullptr);
  auto out_of_range = tpm->ReadPcrs({Sha256Range(23, 24)});
  EXPECT_EQ(out_of_range.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(out_of_range.status().message(), "PCR index 24 is out of range");

  v1::PcrSelection unknown;
  unknown.set_bank(v1::HASH_ALGORITHM_UNSPECIFIED);
  unknown.add_pcrs(0);
  EXPECT_EQ(tpm->ReadPcrs({unknown}).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(tpm->Quote({unknown}, kZeros32).status().code(), Code::kInvalidArgument);
}

TEST_F(EsysTpmTest, ExtendedPcrReadsBackAsTheHashChain) {
  const Bytes measurement = Sha256(AsBytes("berth test measurement"));
  {
    auto tpm = Open();
    ASSERT_NE(tpm, nullptr);
    auto before = tpm->ReadPcrs({Sha256Range(16, 16)});
    ASSERT_TRUE(before.ok());
    EXPECT_EQ(before->at(DigestAlg::kSha256).at(16), kZeros32);
  }  // swtpm serves one client at a time: close before tpm2_pcrextend connects
  ASSERT_TRUE(swtpm_.ExtendPcr(16, HexEncode(measurement)));

  auto tpm = Open();
  ASSERT_NE(tpm, nullptr);
  auto after = tpm->ReadPcrs({Sha256Range(0, 23)});
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  std::map<uint32_t, Bytes> expected = FreshBank(32);
  expected[16] = Sha256(Concat(kZeros32, measurement));
  EXPECT_EQ(after->at(DigestAlg::kSha256), expected);
}

TEST_F(EsysTpmTest, QuoteVerifiesWithTheAkAndThePcrValuesAndBindsTheExtraData) {
  auto tpm = Open();
  ASSERT_NE(tpm, nullptr);
  const std::vector<v1::PcrSelection> selection = {Sha256Range(0, 23)};
  const Bytes extra = Sha256(AsBytes("nonce and client key"));
  auto ak = tpm->AttestationKeyPublic();
  ASSERT_TRUE(ak.ok());
  auto pub = tpm::ParsePublic(*ak);
  ASSERT_TRUE(pub.ok());
  auto key = tpm::PublicToEvp(*pub);
  ASSERT_TRUE(key.ok());
  auto pcrs = tpm->ReadPcrs(selection);
  ASSERT_TRUE(pcrs.ok());
  auto quote = tpm->Quote(selection, extra);
  ASSERT_TRUE(quote.ok()) << quote.status().ToString();

  auto verified = tpm::VerifyQuote(key->get(), quote->attest, quote->signature, *pcrs,
                                   std::span<const uint8_t>(extra));
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_EQ(verified->extra_data, extra);
  EXPECT_EQ(verified->signature_hash, DigestAlg::kSha256);
  EXPECT_EQ(verified->pcrs, *pcrs);
  ASSERT_EQ(verified->selection.size(), 24u);
  for (uint32_t i = 0; i < 24; ++i) {
    EXPECT_EQ(verified->selection[i], (tpm::QuotedPcr{DigestAlg::kSha256, i}));
  }

  // Another nonce: refused as a failed check, not as malformed input.
  Bytes other = extra;
  other[0] ^= 0x01;
  auto wrong_extra = tpm::VerifyQuote(key->get(), quote->attest, quote->signature, *pcrs,
                                      std::span<const uint8_t>(other));
  EXPECT_EQ(wrong_extra.status().code(), Code::kPermissionDenied);

  // PCR values other than the quoted ones: refused too.
  tpm::PcrValues lied = *pcrs;
  lied[DigestAlg::kSha256][7][0] ^= 0x01;
  auto wrong_pcrs = tpm::VerifyQuote(key->get(), quote->attest, quote->signature, lied,
                                     std::span<const uint8_t>(extra));
  EXPECT_EQ(wrong_pcrs.status().code(), Code::kPermissionDenied);
}

TEST_F(EsysTpmTest, QuoteTakesUpTo64BytesOfExtraData) {
  auto tpm = Open();
  ASSERT_NE(tpm, nullptr);
  const std::vector<v1::PcrSelection> selection = {Sha256Range(0, 7)};
  auto pub = tpm::ParsePublic(*tpm->AttestationKeyPublic());
  ASSERT_TRUE(pub.ok());
  auto key = tpm::PublicToEvp(*pub);
  ASSERT_TRUE(key.ok());
  auto pcrs = tpm->ReadPcrs(selection);
  ASSERT_TRUE(pcrs.ok());

  const Bytes max(64, 0xab);
  auto quote = tpm->Quote(selection, max);
  ASSERT_TRUE(quote.ok()) << quote.status().ToString();
  auto verified = tpm::VerifyQuote(key->get(), quote->attest, quote->signature, *pcrs,
                                   std::span<const uint8_t>(max));
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_EQ(verified->extra_data, max);

  auto too_long = tpm->Quote(selection, Bytes(65, 0xab));
  EXPECT_EQ(too_long.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(too_long.status().message(), "extraData too long");
}

TEST_F(EsysTpmTest, QuoteAfterAnExtendCarriesTheNewValue) {
  const Bytes measurement = Sha256(AsBytes("kernel command line"));
  ASSERT_TRUE(swtpm_.ExtendPcr(16, HexEncode(measurement)));
  auto tpm = Open();
  ASSERT_NE(tpm, nullptr);
  const std::vector<v1::PcrSelection> selection = {Sha256Range(16, 16)};
  auto pub = tpm::ParsePublic(*tpm->AttestationKeyPublic());
  ASSERT_TRUE(pub.ok());
  auto key = tpm::PublicToEvp(*pub);
  ASSERT_TRUE(key.ok());
  auto quote = tpm->Quote(selection, kZeros32);
  ASSERT_TRUE(quote.ok());

  tpm::PcrValues extended{{DigestAlg::kSha256, {{16, Sha256(Concat(kZeros32, measurement))}}}};
  EXPECT_TRUE(tpm::VerifyQuote(key->get(), quote->attest, quote->signature, extended,
                               std::span<const uint8_t>(kZeros32))
                  .ok());
  tpm::PcrValues fresh{{DigestAlg::kSha256, {{16, kZeros32}}}};
  EXPECT_EQ(tpm::VerifyQuote(key->get(), quote->attest, quote->signature, fresh,
                             std::span<const uint8_t>(kZeros32))
                .status()
                .code(),
            Code::kPermissionDenied);
}

}  // namespace
}  // namespace berth::agent
