// The tpm section's keys beyond trusted_aks and pcrs (verify/tpm_policy.h): what parses, and
// the error that names each mistake.
#include "verify/tpm_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/testing.h"
#include "verify/policy.h"

namespace berth::verify {
namespace {

using ::testing::HasSubstr;

const std::string kHex32(64, 'a');
const std::string kPin = "  pcrs:\n    sha256:\n      0: " + std::string(64, '0') + "\n";

std::string CaPem(const std::string& dir) { return testing::MakeTestPki(dir).ca_pem_text; }

std::string Indented(const std::string& text) {
  std::string out = "    ";
  for (char c : text) {
    out += c;
    if (c == '\n') out += "    ";
  }
  return out.substr(0, out.size() - 4);
}

Status Error(const std::string& yaml) { return ParsePolicy(yaml).status(); }

TEST(TpmTrustPolicyTest, EkCasFromBundlesAndInlinePinnedEksAndTime) {
  testing::TempDir dir;
  ASSERT_TRUE(MakeDirs(dir.Join("a")).ok() && MakeDirs(dir.Join("b")).ok());
  const std::string a = CaPem(dir.Join("a")), b = CaPem(dir.Join("b"));
  testing::MustWrite(dir.Join("vendor.pem"), a + b);
  auto p = ParsePolicy("tpm:\n  ek_ca_bundles: [" + dir.Join("vendor.pem") + "]\n  ek_ca_pem: |\n" +
                       Indented(b) + "  trusted_eks:\n    - {name: rack1, sha256: " + kHex32 +
                       "}\n  certificate_time: 2026-02-04T00:00:00Z\n" + kPin);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->tpm_trust.ek_ca_certs.size(), 3u);
  ASSERT_EQ(p->tpm_trust.trusted_eks.size(), 1u);
  EXPECT_EQ(p->tpm_trust.trusted_eks[0].name, "rack1");
  EXPECT_EQ(p->tpm_trust.certificate_time, 1770163200);
  EXPECT_EQ(p->tpm_trust.CertificateTime(5), 1770163200);
  // No trusted_aks needed: EKs can vouch for AKs.
  EXPECT_TRUE(p->trusted_aks.empty());
  EXPECT_TRUE(p->tpm_trust.TrustsKeysByCertificateOrEk());
}

TEST(TpmTrustPolicyTest, MistakesAreNamed) {
  EXPECT_EQ(Error("tpm:\n  ek_ca_bundles: [relative.pem]\n" + kPin).message(),
            "tpm.ek_ca_bundles[0]: \"relative.pem\" is not an absolute path");
  EXPECT_THAT(Error("tpm:\n  ek_ca_bundles: [/nonexistent/ca.pem]\n" + kPin).message(),
              HasSubstr("tpm.ek_ca_bundles[0]: open(/nonexistent/ca.pem): No such file"));
  EXPECT_EQ(Error("tpm:\n  ak_ca_pem: not a certificate\n" + kPin).message(),
            "tpm.ak_ca_pem: no PEM certificate found");
  EXPECT_EQ(Error("tpm:\n  trusted_eks:\n    - {sha256: abcd}\n" + kPin).message(),
            "tpm.trusted_eks[0].sha256: 2 bytes, expected 32");
  EXPECT_EQ(Error("tpm:\n  trusted_eks:\n    - {sha265: " + kHex32 + "}\n" + kPin).message(),
            "tpm.trusted_eks[0]: unknown key \"sha265\"");
  EXPECT_EQ(Error("tpm:\n  certificate_time: yesterday\n  trusted_eks: [{sha256: " + kHex32 +
                  "}]\n" + kPin)
                .message(),
            "tpm.certificate_time: \"yesterday\" is not a UTC time like 2026-02-04T00:00:00Z");
  EXPECT_EQ(Error("tpm:\n  enrolment_configs:\n    - {sha256: " + kHex32 + "}\n    - {sha256: " +
                  kHex32 + "}\n  trusted_eks: [{sha256: " + kHex32 + "}]\n" + kPin)
                .message(),
            "tpm.enrolment_configs[1]: this digest is listed twice");
  EXPECT_EQ(Error("tpm:\n  trusted_eks: [{sha256: " + kHex32 +
                  "}]\n  pcr_sets:\n    - name: fw\n      sha256: {24: " + kHex32 + "}\n")
                .message(),
            "tpm.pcr_sets[0].sha256.24: PCR index must be 0-23");
  EXPECT_EQ(Error("tpm:\n  trusted_eks: [{sha256: " + kHex32 + "}]\n  pcr_sets:\n    - name: fw\n")
                .message(),
            "tpm.pcr_sets[0]: pins no PCR");
  EXPECT_EQ(Error("tpm:\n  trusted_eks: [{sha256: " + kHex32 +
                  "}]\n  event_log:\n    bank: sha256\n    kernel: []\n")
                .message(),
            "tpm.event_log: unknown key \"kernel\"");
  EXPECT_EQ(
      Error("tpm:\n  trusted_eks: [{sha256: " + kHex32 + "}]\n  event_log:\n    bank: sha256\n")
          .message(),
      "tpm.event_log: no allow-list, so it would check nothing");
  EXPECT_EQ(Error("tpm:\n  trusted_eks: [{sha256: " + kHex32 +
                  "}]\n  event_log:\n    bank: sha1\n    kernels: [{digest: " + kHex32 + "}]\n")
                .message(),
            "tpm.event_log.kernels[0].digest: 32 bytes, expected 20");
  EXPECT_EQ(
      Error("tpm:\n  trusted_eks: [{sha256: " + kHex32 + "}]\n  ek_ca_pems: x\n" + kPin).message(),
      "policy: unknown key \"tpm.ek_ca_pems\"");
}

TEST(TpmTrustPolicyTest, WhatMakesAPolicyComplete) {
  // Neither an AK nor a way to trust one: nobody could join.
  EXPECT_EQ(Error("tpm:\n" + kPin).message(),
            "policy: tpm.trusted_aks is empty, so no node could join");
  // ... unless the policy is only for checking boots offline.
  EXPECT_TRUE(ParsePolicy("tpm:\n" + kPin, /*require_ak_trust=*/false).ok());
  // An event log policy or PCR sets constrain the boot as well as pinned PCRs do.
  auto by_log = ParsePolicy("tpm:\n  trusted_eks: [{sha256: " + kHex32 +
                            "}]\n  event_log:\n    kernels: [{name: k, digest: " + kHex32 + "}]\n");
  ASSERT_TRUE(by_log.ok()) << by_log.status().ToString();
  EXPECT_TRUE(by_log->pcrs.empty());
  EXPECT_EQ(by_log->tpm_trust.event_log->bank, DigestAlg::kSha256);
  EXPECT_EQ(by_log->tpm_trust.event_log->allowed.at(eventlog::EventClass::kKernel)[0].name, "k");
  auto by_sets =
      ParsePolicy("tpm:\n  trusted_eks: [{sha256: " + kHex32 +
                  "}]\n  pcr_sets:\n    - name: fw-a\n      sha256: {0: " + kHex32 +
                  "}\n    - name: fw-b\n      sha256: {0: " + std::string(64, 'b') + "}\n");
  ASSERT_TRUE(by_sets.ok()) << by_sets.status().ToString();
  ASSERT_EQ(by_sets->tpm_trust.pcr_sets.size(), 2u);
  EXPECT_EQ(by_sets->tpm_trust.pcr_sets[1].name, "fw-b");
  // Nothing about the boot at all: refused.
  EXPECT_EQ(Error("tpm:\n  trusted_eks: [{sha256: " + kHex32 + "}]\n").message(),
            "policy: tpm.pcrs pins no PCR, so any booted software would pass");
}

TEST(TpmTrustPolicyTest, SecureBootVariablesAreKeyedByName) {
  auto p = ParsePolicy(
      "tpm:\n  trusted_eks: [{sha256: " + kHex32 +
      "}]\n  event_log:\n    secure_boot_variables:\n      SecureBoot: [{digest: " + kHex32 +
      "}]\n      dbx:\n        - {name: dbx 2024-06, digest: " + std::string(64, 'd') + "}\n");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const auto& vars = p->tpm_trust.event_log->secure_boot_variables;
  ASSERT_EQ(vars.size(), 2u);
  EXPECT_EQ(vars.at("dbx")[0].name, "dbx 2024-06");
}

}  // namespace
}  // namespace berth::verify
