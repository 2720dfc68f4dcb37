#include "verify/policy.h"

#include <gtest/gtest.h>

namespace berth::verify {
namespace {

const std::string kAk = "101303cf54ec24097bc75c1d859cdeab3a54bdc923c31830f2901da3098d01c9";
const std::string kZero = std::string(64, '0');
const std::string kOnes = std::string(64, '1');

std::string PolicyText(const std::string& pcrs_block) {
  return "tpm:\n  trusted_aks:\n    - name: node-a\n      sha256: " + kAk + "\n" + pcrs_block;
}

TEST(PolicyTest, ParsesAksAndPcrs) {
  auto p =
      ParsePolicy(PolicyText("  pcrs:\n    sha256:\n      0: " + kZero + "\n      7: " + kOnes +
                             "\n    sha1:\n      4: " + std::string(40, 'a') + "\n"));
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->trusted_aks.size(), 1u);
  EXPECT_EQ(p->trusted_aks[0].name, "node-a");
  EXPECT_EQ(HexEncode(p->trusted_aks[0].spki_sha256), kAk);
  EXPECT_EQ(HexEncode(p->pcrs.at(DigestAlg::kSha256).at(7)), kOnes);
  EXPECT_EQ(p->DescribePcrs(), "sha1:4 sha256:0,7");
  EXPECT_NE(p->FindAk(*HexDecode(kAk)), nullptr);
  EXPECT_EQ(p->FindAk(Bytes(32, 0)), nullptr);
}

TEST(PolicyTest, CheckPcrsNamesTheFirstMismatchAndMissingPcrs) {
  auto p = ParsePolicy(
      PolicyText("  pcrs:\n    sha256:\n      0: " + kZero + "\n      7: " + kOnes + "\n"));
  ASSERT_TRUE(p.ok());
  tpm::PcrValues quoted;
  quoted[DigestAlg::kSha256][0] = Bytes(32, 0);
  quoted[DigestAlg::kSha256][7] = *HexDecode(kOnes);
  EXPECT_TRUE(p->CheckPcrs(quoted).ok());

  quoted[DigestAlg::kSha256][7] = Bytes(32, 0x22);
  Status st = p->CheckPcrs(quoted);
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_EQ(st.message(), "PCR sha256:7 is " + std::string(64, '2') + ", policy expects " + kOnes);

  quoted[DigestAlg::kSha256].erase(7);
  st = p->CheckPcrs(quoted);
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_EQ(st.message(), "policy pins PCR sha256:7 but the quote does not cover it");
}

struct BadPolicy {
  std::string text;
  std::string message;
};

TEST(PolicyTest, BadPoliciesNameTheProblem) {
  const std::vector<BadPolicy> cases = {
      {"[1, 2]", "policy: expected a YAML map with a \"tpm\" key"},
      {"tpm: {}\nextra: 1\n", "policy: unknown key \"extra\""},
      {"tpm:\n  pcr: {}\n", "policy: unknown key \"tpm.pcr\""},
      {PolicyText(""), "policy: tpm.pcrs pins no PCR, so any booted software would pass"},
      {"tpm:\n  pcrs:\n    sha256:\n      0: " + kZero + "\n",
       "policy: tpm.trusted_aks is empty, so no node could join"},
      {PolicyText("  pcrs:\n    sha256:\n      24: " + kZero + "\n"),
       "tpm.pcrs.sha256.24: PCR index must be 0-23"},
      {PolicyText("  pcrs:\n    md5:\n      0: " + kZero + "\n"), "tpm.pcrs: unknown bank \"md5\""},
      {PolicyText("  pcrs:\n    sha256:\n      0: abcd\n"),
       "tpm.pcrs.sha256.0: 2 bytes, expected 32"},
      {PolicyText("  pcrs:\n    sha256:\n      0: " + std::string(64, 'x') + "\n"),
       "tpm.pcrs.sha256.0: "},
      {"tpm:\n  trusted_aks:\n    - " + kAk + "\n",
       "tpm.trusted_aks[0]: expected {name: ..., sha256: <hex>}"},
      {"tpm: [\n", "policy: YAML error: "},
  };
  for (const auto& c : cases) {
    auto p = ParsePolicy(c.text);
    ASSERT_FALSE(p.ok()) << c.text;
    EXPECT_EQ(p.status().code(), Code::kInvalidArgument) << c.text;
    EXPECT_EQ(p.status().message().rfind(c.message, 0), 0u)
        << "got: " << p.status().message() << "\nwant prefix: " << c.message;
  }
}

TEST(PolicyTest, DuplicateAkIsRefused) {
  auto p = ParsePolicy("tpm:\n  trusted_aks:\n    - {name: a, sha256: " + kAk +
                       "}\n    - {name: b, sha256: " + kAk + "}\n  pcrs: {sha256: {0: " + kZero +
                       "}}\n");
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(), "tpm.trusted_aks[1]: this key is listed twice");
}

}  // namespace
}  // namespace berth::verify
