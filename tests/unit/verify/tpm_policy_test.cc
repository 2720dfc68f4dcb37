// The tpm section's keys beyond trusted_aks and pcrs (verify/tpm_policy.h): what parses, and
// the error that names each mistake.
#include "verify/tpm_policy.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <set>

#include "verify/policy.h"
#include "tests/testing/testing.h"

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
  EXPECT_THAT(
      Error("tpm:\n  trusted_eks: [{sha256: " + kHex32 + "}]\n  event_log:\n    bank: sha256\n")
          .message(),
      ::testing::StartsWith("tpm.event_log.required_pcrs is missing: "));
  EXPECT_EQ(Error("tpm:\n  trusted_eks: [{sha256: " + kHex32 +
                  "}]\n  event_log:\n    bank: sha1\n    required_pcrs: [9]\n    kernels: "
                  "[{digest: " +
                  kHex32 + "}]\n")
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
                            "}]\n  event_log:\n    required_pcrs: [9]\n    kernels: [{name: k, "
                            "digest: " +
                            kHex32 + "}]\n");
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
      "}]\n  event_log:\n    required_pcrs: [7]\n    secure_boot_variables:\n      SecureBoot: "
      "[{digest: " + kHex32 +
      "}]\n      dbx:\n        - {name: dbx 2024-06, digest: " + std::string(64, 'd') + "}\n");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const auto& vars = p->tpm_trust.event_log->secure_boot_variables;
  ASSERT_EQ(vars.size(), 2u);
  EXPECT_EQ(vars.at("dbx")[0].name, "dbx 2024-06");
}

// The PCRs every quote must cover (issue 22): required whenever there are event rules, and
// consistent with them.
TEST(TpmTrustPolicyTest, EventRulesNeedTheirRequiredPcrs) {
  const std::string trust = "tpm:\n  trusted_eks: [{sha256: " + kHex32 + "}]\n";
  auto rules = [&](const std::string& body) { return Error(trust + "  event_log:\n" + body); };
  EXPECT_EQ(rules("    kernels: [{digest: " + kHex32 + "}]\n").message(),
            "tpm.event_log.required_pcrs is missing: list the PCRs every quote must cover "
            "(`berthctl policy from --eventlog` writes every PCR the reference boot extended); "
            "without it the node would choose which PCRs, and so which of its events, are "
            "checked");
  EXPECT_EQ(rules("    required_pcrs: []\n").message(),
            "tpm.event_log.required_pcrs: expected a non-empty list of PCR indices, e.g. [0, 1, "
            "2, 3, 4, 5, 6, 7, 8, 9]");
  EXPECT_EQ(rules("    required_pcrs: [4, x]\n").message(),
            "tpm.event_log.required_pcrs[1]: \"x\" is not a PCR index (0-23)");
  EXPECT_EQ(rules("    required_pcrs: [4, 10]\n").message(),
            "tpm.event_log.required_pcrs[1]: PCR 10 is IMA's: Linux extends it at runtime and "
            "the firmware's event log does not record it");
  EXPECT_EQ(rules("    required_pcrs: [15]\n").message(),
            "tpm.event_log.required_pcrs[0]: PCR 15 is berth-agent's: berthd checks it from the "
            "agent's own events (docs/attestation.md, \"Sealing the boot\")");
  EXPECT_EQ(rules("    required_pcrs: [17]\n").message(),
            "tpm.event_log.required_pcrs[0]: PCR 17 is not one that boot firmware or loaders "
            "extend (0-9, 11-14)");
  EXPECT_EQ(rules("    required_pcrs: [4, 4]\n").message(),
            "tpm.event_log.required_pcrs[1]: PCR 4 is listed twice");
  // A class whose PCRs no quote must cover could never match.
  EXPECT_EQ(rules("    required_pcrs: [4, 8]\n    kernels: [{digest: " + kHex32 + "}]\n")
                .message(),
            "tpm.event_log.kernels: these events are measured into PCR 9 or 11, which "
            "tpm.event_log.required_pcrs does not list");
  EXPECT_EQ(rules("    required_pcrs: [9]\n    boot_applications: [{digest: " + kHex32 + "}]\n")
                .message(),
            "tpm.event_log.boot_applications: these events are measured into PCR 4, which "
            "tpm.event_log.required_pcrs does not list");
  EXPECT_EQ(rules("    required_pcrs: [4]\n    kernel_cmdlines: [{digest: " + kHex32 + "}]\n")
                .message(),
            "tpm.event_log.kernel_cmdlines: these events are measured into PCR 8, 9, 11 or 12, "
            "which tpm.event_log.required_pcrs does not list");
  EXPECT_EQ(rules("    required_pcrs: [4]\n    secure_boot_variables:\n      SecureBoot: "
                  "[{digest: " +
                  kHex32 + "}]\n")
                .message(),
            "tpm.event_log.secure_boot_variables: these events are measured into PCR 7, which "
            "tpm.event_log.required_pcrs does not list");
  // Required PCRs alone are a policy: every event in them must be fixed or pinned.
  auto only = ParsePolicy(trust + "  event_log:\n    required_pcrs: [0, 7]\n");
  ASSERT_TRUE(only.ok()) << only.status().ToString();
  EXPECT_EQ(only->tpm_trust.event_log->required_pcrs, (std::set<uint32_t>{0, 7}));
}

TEST(TpmTrustPolicyTest, OtherEventsAreListedByPcrTypeAndDigest) {
  const std::string head = "tpm:\n  trusted_eks: [{sha256: " + kHex32 +
                           "}]\n  event_log:\n    required_pcrs: [8, 9]\n    other_events:\n";
  auto p = ParsePolicy(head + "      - {name: 'grub_cmd: insmod part_gpt', pcr: 8, type: EV_IPL, "
                              "digest: " +
                       kHex32 + "}\n      - {pcr: 9, type: '0xd', digest: " + std::string(64, 'b') +
                       "}\n");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  const auto& listed = p->tpm_trust.event_log->other_events;
  ASSERT_EQ(listed.size(), 2u);
  EXPECT_EQ(listed[0].name, "grub_cmd: insmod part_gpt");
  EXPECT_EQ(listed[0].pcr, 8u);
  EXPECT_EQ(listed[0].type, eventlog::kEvIpl);
  EXPECT_EQ(listed[1].type, eventlog::kEvIpl);
  EXPECT_EQ(HexEncode(listed[1].digest), std::string(64, 'b'));

  EXPECT_EQ(Error(head + "      - {pcr: 8, digest: " + kHex32 + "}\n").message(),
            "tpm.event_log.other_events[0]: expected {name: ..., pcr: <index>, type: <EV_...>, "
            "digest: <hex>}");
  EXPECT_EQ(Error(head + "      - {pcr: 8, type: EV_FOO, digest: " + kHex32 + "}\n").message(),
            "tpm.event_log.other_events[0].type: unknown event type \"EV_FOO\"");
  EXPECT_EQ(Error(head + "      - {pcr: 8, type: EV_NO_ACTION, digest: " + kHex32 + "}\n")
                .message(),
            "tpm.event_log.other_events[0].type: EV_NO_ACTION events are never extended into a "
            "PCR");
  EXPECT_EQ(Error(head + "      - {pcr: 12, type: EV_IPL, digest: " + kHex32 + "}\n").message(),
            "tpm.event_log.other_events[0]: PCR 12 is not in tpm.event_log.required_pcrs");
  EXPECT_EQ(Error(head + "      - {pcr: 8, type: EV_IPL, digest: abcd}\n").message(),
            "tpm.event_log.other_events[0].digest: 2 bytes, expected 32");
  EXPECT_EQ(Error(head + "      - {pcr: 8, type: EV_IPL, digest: " + kHex32 +
                  "}\n      - {pcr: 8, type: EV_IPL, digest: " + kHex32 + "}\n")
                .message(),
            "tpm.event_log.other_events[1]: this event is listed twice");
  EXPECT_EQ(Error(head + "      - {pcr: 8, type: EV_IPL, digest: " + kHex32 + ", pcrs: 1}\n")
                .message(),
            "tpm.event_log.other_events[0]: unknown key \"pcrs\"");
}

}  // namespace
}  // namespace berth::verify
