// berthctl eventlog and berthctl policy from, as operators run them (the real binary).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>
#include <set>
#include <sstream>

#include "common/subprocess.h"
#include "common/tpm/eventlog.h"
#include "tests/testing/testing.h"
#include "verify/policy.h"
#include "verify/tpm_boot.h"

namespace berth::cli {
namespace {

using ::testing::HasSubstr;
using testing::Testdata;

#define REQUIRE_TESTDATA()                                                                \
  if (!std::filesystem::exists(testing::TestdataDir())) {                                 \
    GTEST_FAIL() << "the real attestation testdata is not at " << testing::TestdataDir(); \
  }

ProcessResult Berthctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {testing::BuildDir() + "/cli/berthctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  RealProcessRunner runner;
  auto r = runner.Run(argv);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : ProcessResult{};
}

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

std::string BankAndIndex(const std::string& line) { return line.substr(0, line.rfind(' ')); }

class ReplayCommandTest : public ::testing::TestWithParam<std::string> {};

TEST_P(ReplayCommandTest, PrintsExactlyTheExpectedPcrLines) {
  REQUIRE_TESTDATA();
  const std::string base = Testdata("eventlogs-gotpmtools/" + GetParam());
  ProcessResult r = Berthctl({"eventlog", "replay", base + ".bin"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::vector<std::string> out = Lines(r.output);
  const std::regex shape("(sha1|sha256|sha384) ([0-9]|1[0-9]|2[0-3]) [0-9a-f]+");
  for (const auto& line : out) EXPECT_TRUE(std::regex_match(line, shape)) << line;

  const std::vector<std::string> expected = Lines(testing::MustRead(base + ".expected_pcrs.txt"));
  std::set<std::string> covered;
  for (const auto& line : expected) covered.insert(BankAndIndex(line));
  std::vector<std::string> got;
  for (const auto& line : out) {
    if (covered.contains(BankAndIndex(line))) got.push_back(line);
  }
  EXPECT_EQ(got, expected);
}

INSTANTIATE_TEST_SUITE_P(GoTpmTools, ReplayCommandTest,
                         ::testing::Values("arch-linux-workstation", "debian-10", "gdc-host",
                                           "glinux-alex", "rhel8-uefi", "ubuntu-2404-amd-sevsnp"),
                         [](const auto& info) {
                           std::string n = info.param;
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

TEST(ReplayCommandTest, GceLogReplaysToTheQuotedPcrsInEveryBank) {
  REQUIRE_TESTDATA();
  const std::string dir = Testdata("tpm-gce-cos85-nonce9009/");
  ProcessResult r = Berthctl({"eventlog", "replay", dir + "event_log.bin"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<std::string> expected;
  for (std::string bank : {"sha1", "sha256", "sha384"}) {
    for (const auto& line : Lines(testing::MustRead(dir + "pcrs_" + bank + ".txt"))) {
      if (std::stoi(line.substr(0, line.find(' '))) <= 9) expected.push_back(bank + " " + line);
    }
  }
  EXPECT_EQ(Lines(r.output), expected);  // PCRs 0-9 of the three banks, nothing else
}

TEST(ReplayCommandTest, UnreadableOrMalformedLogsAreBadInput) {
  testing::TempDir dir;
  ProcessResult missing = Berthctl({"eventlog", "replay", dir.Join("none.bin")});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(missing.output, "open(" + dir.Join("none.bin") + "): No such file or directory\n");
  testing::MustWrite(dir.Join("junk.bin"), std::string(40, '\x01'));
  ProcessResult junk = Berthctl({"eventlog", "replay", dir.Join("junk.bin")});
  EXPECT_EQ(junk.exit_code, 2);
  EXPECT_THAT(junk.output,
              HasSubstr(dir.Join("junk.bin") + ": malformed event log: event #0 at byte 0"));
  EXPECT_EQ(Berthctl({"eventlog", "replay"}).exit_code, 2);  // usage
}

TEST(ShowCommandTest, ListsEventsWithTheirClass) {
  REQUIRE_TESTDATA();
  ProcessResult r = Berthctl({"eventlog", "show", Testdata("eventlogs-gotpmtools/gdc-host.bin")});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("\n151 pcr=9 EV_IPL class=kernels sha256="));
  EXPECT_THAT(r.output, HasSubstr(" \"/vmlinuz-6.9.0-rc7+\"\n"));
  EXPECT_THAT(r.output, HasSubstr("\n1 pcr=0 EV_NO_ACTION class=other sha256="));
}

TEST(PolicyFromCommandTest, WritesAPolicyThatAcceptsExactlyThatBoot) {
  REQUIRE_TESTDATA();
  testing::TempDir dir;
  const std::string gce = Testdata("tpm-gce-cos85-nonce9009/");
  ProcessResult r = Berthctl(
      {"policy", "from", "--eventlog", gce + "event_log.bin", "--out", dir.Join("policy.yaml")});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "");
  const std::string yaml = testing::MustRead(dir.Join("policy.yaml"));
  EXPECT_EQ(Berthctl({"policy", "from", "--eventlog", gce + "event_log.bin"}).output, yaml);

  // The written policy accepts the GCE boot, checked against its signed quote.
  auto policy = verify::LoadPolicy(dir.Join("policy.yaml"), /*require_ak_trust=*/false);
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  auto ak = PublicKeyFromPem(testing::MustRead(gce + "ak_pub.pem"));
  tpm::PcrValues pcrs;
  std::istringstream in(testing::MustRead(gce + "pcrs_sha256.txt"));
  uint32_t index;
  std::string hex;
  while (in >> index >> hex) pcrs[DigestAlg::kSha256][index] = *HexDecode(hex);
  const Bytes nonce = {0x90, 0x09};
  auto quote =
      tpm::VerifyQuote(ak->get(), AsBytes(testing::MustRead(gce + "quote_sha256.tpms_attest")),
                       AsBytes(testing::MustRead(gce + "quote_sha256.tpmt_signature")), pcrs,
                       std::span<const uint8_t>(nonce));
  ASSERT_TRUE(quote.ok());
  const std::string log = testing::MustRead(gce + "event_log.bin");
  auto accepted = verify::CheckQuotedBoot(*quote, AsBytes(log), &*policy);
  EXPECT_TRUE(accepted.ok()) << accepted.status().ToString();

  // ... and another boot's log does not replay to the GCE quote.
  auto other = verify::CheckQuotedBoot(
      *quote,
      AsBytes(testing::MustRead(Testdata("eventlogs-gotpmtools/ubuntu-2404-amd-sevsnp.bin"))),
      &*policy);
  EXPECT_EQ(other.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(other.status().message(),
              ::testing::StartsWith("the event log does not match the quoted PCR sha256:0: "));
}

TEST(PolicyFromCommandTest, BadArgumentsAreBadInput) {
  REQUIRE_TESTDATA();
  const std::string log = Testdata("eventlogs-gotpmtools/debian-10.bin");
  ProcessResult no_sha256 = Berthctl({"policy", "from", "--eventlog", log});
  EXPECT_EQ(no_sha256.exit_code, 2);
  EXPECT_EQ(no_sha256.output, "the event log has no sha256 digests\n");
  ProcessResult sha1 = Berthctl({"policy", "from", "--eventlog", log, "--bank", "sha1"});
  EXPECT_EQ(sha1.exit_code, 0) << sha1.output;
  EXPECT_THAT(sha1.output, HasSubstr("  event_log:\n    bank: sha1\n"));
  ProcessResult bad_bank = Berthctl({"policy", "from", "--eventlog", log, "--bank", "md5"});
  EXPECT_EQ(bad_bank.exit_code, 2);
  EXPECT_EQ(bad_bank.output, "--bank: unknown hash algorithm \"md5\"\n");
  EXPECT_EQ(Berthctl({"policy", "from"}).exit_code, 2);  // --eventlog is required
}

}  // namespace
}  // namespace berth::cli
