// berthctl verify snp-report, run as the binary: exact exit codes and output for the real
// reports in testdata, their tampers, unreadable input, a policy, and a test chain given with
// --ask/--ark.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/binding.h"
#include "common/subprocess.h"
#include "tests/testing/snp_chain.h"
#include "tests/testing/testing.h"

namespace berth::testing {
namespace {

using ::testing::StartsWith;

struct CliRun {
  int exit_code;
  std::string output;
};

CliRun Berthctl(std::vector<std::string> args) {
  args.insert(args.begin(), {BuildDir() + "/cli/berthctl", "verify", "snp-report"});
  RealProcessRunner runner;
  auto r = runner.Run(args);
  EXPECT_TRUE(r.ok());
  return {r->exit_code, r->output};
}

class SnpReportCommandTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(Testdata("snp-virtee-milan"))) {
      GTEST_FAIL() << "the real attestation testdata is not at " << TestdataDir();
    }
  }
  std::string Virtee(const std::string& f) { return Testdata("snp-virtee-milan/" + f); }
  std::string Cmc(const std::string& f) { return Testdata("snp-cmc-milan/" + f); }
  // A copy of `path` with byte `index` XORed with `mask`, in the temp dir.
  std::string Tampered(const std::string& path, size_t index, uint8_t mask) {
    std::string data = MustRead(path);
    data[index] = static_cast<char>(data[index] ^ mask);
    std::string out = dir_.Join(std::filesystem::path(path).filename().string());
    MustWrite(out, data);
    return out;
  }
  TempDir dir_;
};

TEST_F(SnpReportCommandTest, RealMilanReportIsValid) {
  CliRun r = Berthctl({"--report", Virtee("report_milan.bin"), "--vcek", Virtee("vcek_milan.der"),
                       "--at", "2025-01-01T00:00:00Z"});
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.output,
            "valid\n"
            "product: Milan\n"
            "report version: 2\n"
            "signed by: VCEK (key sha256:dbe2632257a1107452599de674e7061eb4967d1859bb7c967813698eb7"
            "cec3e1)\n"
            "chain: ASK pinned, ARK pinned\n"
            "measurement: 7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39"
            "b2c60bd95b9c480cd81841f\n"
            "reported_tcb: bootloader=3 tee=0 snp=8 microcode=115 (0x7308000000000003)\n"
            "guest policy: 0x0000000000030000\n"
            "vmpl: 0\n"
            "firmware: 1.52 build 4\n"
            "report_data: d447b55d197491bfe15cf298f9de9986b7a7c4be2468b4f6e2d53b71d7c645810b0f2cdfc"
            "a0040433be063fc1a8293f0f3f8dae7b79fecb3d1cd82bd6a93ebfd (not checked)\n"
            "chip_id: d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757"
            "039029f0efacfd08e244324884738c72b082e2f87a44d541eb6\n"
            "policy: none given\n");
}

TEST_F(SnpReportCommandTest, TampersFailNamingTheCheck) {
  CliRun r = Berthctl({"--report", Tampered(Virtee("report_milan.bin"), 21, 0x80), "--vcek",
                       Virtee("vcek_milan.der"), "--at", "2025-01-01T00:00:00Z"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "signature: the report's signature does not verify with the VCEK's key\n");
  r = Berthctl({"--report", Virtee("report_milan.bin"), "--vcek",
                Tampered(Virtee("vcek_milan.der"), 40, 0xff), "--at", "2025-01-01T00:00:00Z"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "chain: the VCEK's signature does not verify with the ASK's key\n");
  r = Berthctl({"--report", Virtee("report_milan.bin"), "--vcek", Virtee("vcek_milan.der"), "--at",
                "2031-01-01T00:00:00Z"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output,
            "chain: the VCEK expired at 2030-04-03T19:23:43Z (verification time "
            "2031-01-01T00:00:00Z)\n");
}

TEST_F(SnpReportCommandTest, CmcReportWithPemChainAndReportData) {
  const std::vector<std::string> chain = {
      "--ask", Cmc("ask_milan.pem"), "--ark", Cmc("ark_milan.pem"), "--at", "2025-01-01T00:00:00Z"};
  auto with = [&](std::vector<std::string> args) {
    args.insert(args.end(), chain.begin(), chain.end());
    return Berthctl(args);
  };
  CliRun r = with({"--report", Cmc("report.bin"), "--vcek", Cmc("vcek.pem"), "--report-data",
                   std::string(128, '2').replace(1, 1, "3")});
  EXPECT_EQ(r.exit_code, 1);  // 0x23 0x22 ... is not the report's 0x23 0x23 ...
  EXPECT_THAT(r.output, StartsWith("report_data: is 2323"));
  std::string hex23;
  for (int i = 0; i < 64; ++i) hex23 += "23";
  r = with({"--report", Cmc("report.bin"), "--vcek", Cmc("vcek.pem"), "--report-data", hex23});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, StartsWith("valid\nproduct: Milan\nreport version: 2\n"));
  EXPECT_NE(r.output.find("chain: ASK from --ask, ARK from --ark\n"), std::string::npos);
  EXPECT_NE(r.output.find("firmware: 1.51 build 3\n"), std::string::npos);
  EXPECT_NE(r.output.find("report_data: " + hex23 + " (as given)\n"), std::string::npos);

  r = with({"--report", Cmc("report_INVALID_SIGNATURE.bin"), "--vcek", Cmc("vcek.pem")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "signature: the report's signature does not verify with the VCEK's key\n");
  r = with({"--report", Cmc("report.bin"), "--vcek", Cmc("vcek_INVALID.pem")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output,
            "chain: the VCEK is not signed with RSASSA-PSS SHA-384, MGF1-SHA-384, "
            "salt 48 (signature algorithm ecdsa-with-SHA384)\n");
  r = Berthctl({"--report", Cmc("report.bin"), "--vcek", Cmc("vcek_INVALID.pem"), "--at",
                "2022-05-01T00:00:00Z"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output,
            "chain: neither the report nor the VCEK names an AMD product, and the VCEK "
            "is not issued by any pinned ASK\n");
}

TEST_F(SnpReportCommandTest, PolicyFromABerthdPolicyFile) {
  const std::string measurement =
      "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd"
      "81841f";
  MustWrite(dir_.Join("ok.yaml"), "sev_snp:\n  measurements: [" + measurement +
                                      "]\n  min_tcb: {bootloader: 3, snp: 8, microcode: 115}\n");
  MustWrite(dir_.Join("newer.yaml"),
            "sev_snp:\n  measurements: [" + measurement + "]\n  min_tcb: {snp: 9}\n");
  MustWrite(dir_.Join("tpm.yaml"),
            "tpm:\n  trusted_aks: [{name: a, sha256: " + std::string(64, 'a') +
                "}]\n  pcrs: {sha256: {0: " + std::string(64, 'b') + "}}\n");
  auto run = [&](const std::string& policy) {
    return Berthctl({"--report", Virtee("report_milan.bin"), "--vcek", Virtee("vcek_milan.der"),
                     "--at", "2025-01-01T00:00:00Z", "--policy", dir_.Join(policy)});
  };
  CliRun r = run("ok.yaml");
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("policy: " + dir_.Join("ok.yaml") + " satisfied\n"), std::string::npos);
  r = run("newer.yaml");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "policy: reported_tcb snp SPL 8 is below the minimum 9\n");
  r = run("tpm.yaml");
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "--policy " + dir_.Join("tpm.yaml") + ": no sev_snp section\n");
}

TEST_F(SnpReportCommandTest, UnreadableInputExitsTwo) {
  CliRun r = Berthctl({"--report", "/nonexistent/report.bin", "--vcek", Virtee("vcek_milan.der")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output,
            "--report /nonexistent/report.bin: open(/nonexistent/report.bin): No such "
            "file or directory\n");
  MustWrite(dir_.Join("short.bin"), std::string(100, '\0'));
  r = Berthctl({"--report", dir_.Join("short.bin"), "--vcek", Virtee("vcek_milan.der")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "report: SEV-SNP report is 100 bytes, expected 1184\n");
  r = Berthctl({"--report", Virtee("report_milan.bin"), "--vcek", Virtee("report_milan.hex")});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_THAT(r.output, StartsWith("--vcek " + Virtee("report_milan.hex") +
                                   ": not a PEM or DER certificate"));
  r = Berthctl({"--report", Virtee("report_milan.bin"), "--vcek", Virtee("vcek_milan.der"), "--at",
                "yesterday"});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_EQ(r.output, "--at: \"yesterday\" is not an RFC 3339 time (2024-05-01T12:00:00Z)\n");
  r = Berthctl({"--report", Virtee("report_milan.bin")});  // no --vcek: a usage error
  EXPECT_EQ(r.exit_code, 2);
}

// A chain made here, given with --ask and --ark (DER and PEM): the command trusts what it is
// given, and a VCEK whose TCB is not the report's fails.
TEST(SnpReportCommandChainTest, TestChainGivenExplicitly) {
  TempDir dir;
  SnpTestChain chain(snp::Product::kGenoa);
  snp::Tcb tcb{.bootloader = 9, .tee = 0, .snp = 21, .microcode = 72};
  SnpReportSpec spec;
  spec.reported_tcb = snp::EncodeTcb(tcb, snp::Product::kGenoa);
  SnpIssued vcek = chain.IssueVcek({.hwid = spec.chip_id, .tcb = tcb});
  MustWrite(dir.Join("report.bin"), ToString(MakeSnpReport(spec, vcek.key.get())));
  MustWrite(dir.Join("vcek.pem"), *CertToPem(vcek.cert.get()));
  MustWrite(dir.Join("ask.der"), ToString(chain.AskDer()));
  MustWrite(dir.Join("ark.pem"), chain.ArkPem());
  const std::vector<std::string> args = {"--report", dir.Join("report.bin"),
                                         "--ask",    dir.Join("ask.der"),
                                         "--ark",    dir.Join("ark.pem")};
  auto run = [&](const std::string& vcek_file) {
    std::vector<std::string> a = args;
    a.insert(a.end(), {"--vcek", vcek_file});
    return Berthctl(a);
  };
  CliRun r = run(dir.Join("vcek.pem"));
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, StartsWith("valid\nproduct: Genoa\n"));
  // Without --ark, AMD's pinned Genoa ARK is the root: the test ASK does not chain to it.
  r = Berthctl({"--report", dir.Join("report.bin"), "--ask", dir.Join("ask.der"), "--vcek",
                dir.Join("vcek.pem")});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.output, "chain: the ASK is not issued by the ARK (subject issuer mismatch)\n");
  tcb.snp = 20;
  SnpIssued stale = chain.IssueVcek({.hwid = spec.chip_id, .tcb = tcb});
  MustWrite(dir.Join("stale.pem"), *CertToPem(stale.cert.get()));
  r = run(dir.Join("stale.pem"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_THAT(r.output, StartsWith("signature: the report's signature does not verify"));
}

// Issue 22, section 4: --snp-verify-at (certificates checked at any time the caller names)
// exists in test builds only, as golden tickets do.
TEST(BerthdFlagsTest, SnpVerifyAtExistsOnlyInTestBuilds) {
  const std::vector<std::string> flags = {
      "--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem", "--policy",
      "/nonexistent/policy.yaml", "--master-secret-file", "/nonexistent/master", "--cluster-id",
      "c", "--api-server-endpoint", "127.0.0.1:6443", "--no-etcd",
      "--snp-verify-at=2025-01-01T00:00:00Z"};
  RealProcessRunner runner;
  auto run = [&](const std::string& binary) {
    std::vector<std::string> argv = {BuildDir() + "/server/" + binary};
    argv.insert(argv.end(), flags.begin(), flags.end());
    auto r = runner.Run(argv);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : ProcessResult{};
  };
  // The debug build parses it, and stops later, at the first file it cannot read.
  ProcessResult debug = run("berthd-debug");
  EXPECT_EQ(debug.exit_code, 1) << debug.output;
  EXPECT_THAT(debug.output, ::testing::HasSubstr("/nonexistent/"));
  EXPECT_THAT(debug.output, ::testing::Not(::testing::HasSubstr("--snp-verify-at")));
#if BERTH_RELEASE_BERTHD
  ProcessResult release = run("berthd");
  EXPECT_NE(release.exit_code, 0);
  EXPECT_THAT(release.output, ::testing::HasSubstr("not expected: --snp-verify-at"))
      << release.output;
#endif
}

}  // namespace
}  // namespace berth::testing
