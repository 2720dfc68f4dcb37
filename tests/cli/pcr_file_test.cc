// berthctl's parsers and the verify command called in-process through its Context.
#include <gtest/gtest.h>

#include <sstream>

#include "cli/verify_cmd.h"
#include "common/bytes.h"
#include "tests/testing/testing.h"
#include "tests/unit/common/tpm/synthetic_quote.h"

namespace berth::cli {
namespace {

const std::vector<DigestAlg> kSha256 = {DigestAlg::kSha256};

TEST(ParsePcrValuesTest, UnqualifiedLinesBelongToTheQuotedBank) {
  auto v = ParsePcrValues("# comment\n\n 0 " + std::string(64, 'a') + "  # trailing\n" + "23 0x" +
                              std::string(64, 'B') + "\r\n",
                          kSha256);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_EQ(v->size(), 1u);
  const auto& bank = v->at(DigestAlg::kSha256);
  ASSERT_EQ(bank.size(), 2u);
  EXPECT_EQ(bank.at(0), Bytes(32, 0xaa));
  EXPECT_EQ(bank.at(23), Bytes(32, 0xbb));
}

TEST(ParsePcrValuesTest, QualifiedLinesNameTheirBank) {
  const std::vector<DigestAlg> two = {DigestAlg::kSha1, DigestAlg::kSha384};
  auto v = ParsePcrValues("sha1 7 " + std::string(40, '1') + "\nsha384:7 " + std::string(96, '2') +
                              "\nsha512 0 " + std::string(128, '3') + "\n",
                          two);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->at(DigestAlg::kSha1).at(7), Bytes(20, 0x11));
  EXPECT_EQ(v->at(DigestAlg::kSha384).at(7), Bytes(48, 0x22));
  EXPECT_EQ(v->at(DigestAlg::kSha512).at(0), Bytes(64, 0x33));  // kept; the quote ignores it
  EXPECT_EQ(ParsePcrValues("7 " + std::string(40, '1') + "\n", two).status().message(),
            "line 1: PCR 7 has no bank, and the quote selects PCRs in sha1 and sha384: write "
            "\"BANK INDEX HEX\" lines (e.g. \"sha256 7 ...\")");
  EXPECT_EQ(ParsePcrValues("7 " + std::string(40, '1') + "\n", {}).status().message(),
            "line 1: PCR 7 has no bank, and the quote selects PCRs in no bank: write "
            "\"BANK INDEX HEX\" lines (e.g. \"sha256 7 ...\")");
  EXPECT_TRUE(ParsePcrValues("", two)->empty());
}

TEST(ParsePcrValuesTest, CrLfLinesParse) {
  // A file written on Windows: the \r is whitespace, not part of the value.
  auto v = ParsePcrValues("1 " + std::string(64, 'c') + "\r\n", kSha256);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->at(DigestAlg::kSha256).at(1), Bytes(32, 0xcc));
}

TEST(ExpectedNonceTest, HexTextOrAny) {
  VerifyTpmQuoteOptions o;
  EXPECT_EQ(*ExpectedNonce(o), std::nullopt);
  o.nonce_hex = "9009";
  EXPECT_EQ(*ExpectedNonce(o), (Bytes{0x90, 0x09}));
  o.nonce_hex = "0X9009";
  EXPECT_EQ(*ExpectedNonce(o), (Bytes{0x90, 0x09}));
  o.nonce_hex = "";
  EXPECT_EQ(*ExpectedNonce(o), Bytes{});
  o.nonce_hex = "900";
  EXPECT_EQ(ExpectedNonce(o).status().message(),
            "--nonce \"900\" is not hex (hex string has odd length); give the extraData in hex, "
            "or a text nonce with --nonce-text");
  o.nonce_hex.reset();
  o.nonce_text = "Ai5M";
  EXPECT_EQ(*ExpectedNonce(o), ToBytes("Ai5M"));
  o.nonce_hex = "00";
  EXPECT_EQ(ExpectedNonce(o).status().message(), "--nonce and --nonce-text are exclusive");
}

TEST(VerifyTpmQuoteInProcessTest, WritesToTheContextStreams) {
  testing::TempDir dir;
  auto key = GenerateP256Key();
  ASSERT_TRUE(key.ok());
  auto q = testdata::MakeSyntheticQuote({.extra_data = {7}, .sig_alg = TPM2_ALG_ECDSA}, key->get());
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  VerifyTpmQuoteOptions o{.ak = dir.Join("ak.pem"),
                          .quote = dir.Join("quote"),
                          .signature = dir.Join("sig"),
                          .pcrs = dir.Join("pcrs")};
  testing::MustWrite(o.ak, *PublicKeyToPem(key->get()));
  testing::MustWrite(o.quote, ToString(q->attest));
  testing::MustWrite(o.signature, ToString(q->signature));
  std::string pcrs;
  for (const auto& [index, value] : q->pcrs.at(DigestAlg::kSha256)) {
    pcrs += std::to_string(index) + " " + HexEncode(value) + "\n";
  }
  testing::MustWrite(o.pcrs, pcrs);

  std::ostringstream out, err;
  Context ctx{.out = &out, .err = &err};
  o.nonce_hex = "07";
  EXPECT_EQ(VerifyTpmQuote(o, ctx), kExitOk);
  EXPECT_EQ(out.str(), "valid\n");
  EXPECT_EQ(err.str(), "");

  out.str("");
  o.nonce_hex = "08";
  EXPECT_EQ(VerifyTpmQuote(o, ctx), kExitCheckFailed);
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(err.str(), "invalid: the quote's extraData (07) is not the expected nonce (08)\n");
}

}  // namespace
}  // namespace berth::cli
