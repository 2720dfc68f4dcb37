// The TCG event log parser and replay, on the six real logs in the testdata (every expected
// PCR reproduced, StartupLocality honoured, the SHA-1 legacy format) and on synthetic logs
// for the edge cases real ones do not show.
#include "common/tpm/eventlog.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <set>
#include <sstream>

#include "tests/testing/eventlog_builder.h"
#include "tests/testing/testing.h"

namespace berth::eventlog {
namespace {

using testing::EventLogBuilder;
using ::testing::HasSubstr;
using testing::Testdata;

#define REQUIRE_TESTDATA()                                                                \
  if (!std::filesystem::exists(testing::TestdataDir())) {                                 \
    GTEST_FAIL() << "the real attestation testdata is not at " << testing::TestdataDir(); \
  }

struct RealLog {
  std::string name;
  EventLog::Format format;
  std::vector<DigestAlg> banks;
  std::optional<uint8_t> startup_locality;
};

const RealLog kRealLogs[] = {
    {"arch-linux-workstation",
     EventLog::Format::kCryptoAgile,
     {DigestAlg::kSha1, DigestAlg::kSha256},
     std::nullopt},
    {"debian-10", EventLog::Format::kSha1Legacy, {DigestAlg::kSha1}, std::nullopt},
    {"gdc-host", EventLog::Format::kCryptoAgile, {DigestAlg::kSha256}, 3},
    {"glinux-alex", EventLog::Format::kCryptoAgile, {DigestAlg::kSha1, DigestAlg::kSha256}, 3},
    {"rhel8-uefi",
     EventLog::Format::kCryptoAgile,
     {DigestAlg::kSha1, DigestAlg::kSha256, DigestAlg::kSha384},
     std::nullopt},
    {"ubuntu-2404-amd-sevsnp",
     EventLog::Format::kCryptoAgile,
     {DigestAlg::kSha1, DigestAlg::kSha256, DigestAlg::kSha384},
     std::nullopt},
};

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

// "sha256 7" of "sha256 7 <hex>".
std::string BankAndIndex(const std::string& line) { return line.substr(0, line.rfind(' ')); }

class RealLogTest : public ::testing::TestWithParam<RealLog> {};

TEST_P(RealLogTest, ReplaysToEveryExpectedPcr) {
  REQUIRE_TESTDATA();
  const RealLog& want = GetParam();
  std::string raw = testing::MustRead(Testdata("eventlogs-gotpmtools/" + want.name + ".bin"));
  auto log = ParseEventLog(AsBytes(raw));
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->format, want.format);
  EXPECT_EQ(log->banks, want.banks);
  EXPECT_EQ(log->startup_locality, want.startup_locality);

  const std::vector<std::string> expected = Lines(
      testing::MustRead(Testdata("eventlogs-gotpmtools/" + want.name + ".expected_pcrs.txt")));
  ASSERT_FALSE(expected.empty());
  std::set<std::string> covered;
  for (const auto& line : expected) covered.insert(BankAndIndex(line));
  const tpm::PcrValues replayed = Replay(*log);
  std::vector<std::string> got;
  for (const auto& line : Lines(FormatPcrLines(replayed))) {
    if (covered.contains(BankAndIndex(line))) got.push_back(line);
  }
  EXPECT_EQ(got, expected);
  // Every bank of the log is replayed.
  for (DigestAlg bank : want.banks) EXPECT_TRUE(replayed.contains(bank)) << DigestName(bank);
}

INSTANTIATE_TEST_SUITE_P(GoTpmTools, RealLogTest, ::testing::ValuesIn(kRealLogs),
                         [](const auto& info) {
                           std::string n = info.param.name;
                           for (char& c : n) c = c == '-' ? '_' : c;
                           return n;
                         });

TEST(StartupLocalityTest, Pcr0StartsAtTheLocalityAndIsWrongWithoutIt) {
  REQUIRE_TESTDATA();
  auto log =
      ParseEventLog(AsBytes(testing::MustRead(Testdata("eventlogs-gotpmtools/glinux-alex.bin"))));
  ASSERT_TRUE(log.ok());
  ASSERT_EQ(log->startup_locality, 3);
  Bytes initial(32, 0);
  initial.back() = 3;
  EXPECT_EQ(InitialPcrValue(*log, DigestAlg::kSha256, 0), initial);
  EXPECT_EQ(InitialPcrValue(*log, DigestAlg::kSha256, 1), Bytes(32, 0));
  const Bytes with = Replay(*log)[DigestAlg::kSha256][0];
  EXPECT_EQ(HexEncode(with), "0e5ea849d7647a1ac1becc096fee4df98f00f8015f934afadaab0b8aa20b38a5");
  log->startup_locality.reset();
  EXPECT_NE(Replay(*log)[DigestAlg::kSha256][0], with);
}

TEST(ClassifyTest, RealBootChainsYieldTheirComponents) {
  REQUIRE_TESTDATA();
  auto log =
      ParseEventLog(AsBytes(testing::MustRead(Testdata("eventlogs-gotpmtools/gdc-host.bin"))));
  ASSERT_TRUE(log.ok());
  std::vector<std::string> seen;
  for (const auto& e : log->events) {
    EventClass c = ClassifyEvent(e);
    if (c == EventClass::kOther || c == EventClass::kSecureBootVariable) continue;
    seen.push_back(std::to_string(e.index) + " " + std::string(EventClassName(c)) + " " +
                   DescribeEvent(e).substr(0, 40));
  }
  // Dell firmware app, shim, GRUB; GRUB's kernel, command line and initrd files; the Linux
  // EFI stub's initrd and LoadOptions tagged events.
  EXPECT_THAT(seen, ::testing::ElementsAre(
                        "54 boot_applications \\efi\\Dell\\System_Services\\System_Service",
                        "71 boot_applications \\EFI\\ubuntu\\shimx64.efi",
                        "76 boot_applications \\EFI\\ubuntu\\grubx64.efi",
                        "151 kernels /vmlinuz-6.9.0-rc7+",
                        "152 kernel_cmdlines kernel_cmdline: /vmlinuz-6.9.0-rc7+ root",
                        "154 initrds /initrd.img-6.9.0-rc7+",
                        "155 kernel_cmdlines Linux EFI stub: LoadOptions (command lin",
                        "156 initrds Linux EFI stub: initrd"));

  // Red Hat's GRUB names what it loads instead of giving paths.
  auto rhel =
      ParseEventLog(AsBytes(testing::MustRead(Testdata("eventlogs-gotpmtools/rhel8-uefi.bin"))));
  ASSERT_TRUE(rhel.ok());
  std::map<uint32_t, EventClass> classes;
  for (const auto& e : rhel->events) classes[e.index] = ClassifyEvent(e);
  EXPECT_EQ(classes[76], EventClass::kKernel);         // "grub_linuxefi Kernel"
  EXPECT_EQ(classes[78], EventClass::kKernelCmdline);  // "grub_kernel_cmdline ..."
  EXPECT_EQ(classes[80], EventClass::kInitrd);         // "grub_linuxefi Initrd"
  EXPECT_EQ(classes[3], EventClass::kSecureBootVariable);
  EXPECT_EQ(*UefiVariableName(rhel->events[3]), "SecureBoot");
  EXPECT_EQ(*UefiVariableName(rhel->events[7]), "dbx");
}

TEST(DataDigestTest, RealLogsAreConsistentAndAChangedVariableByteIsNamed) {
  REQUIRE_TESTDATA();
  for (const RealLog& real : kRealLogs) {
    auto log = ParseEventLog(
        AsBytes(testing::MustRead(Testdata("eventlogs-gotpmtools/" + real.name + ".bin"))));
    ASSERT_TRUE(log.ok());
    for (const auto& e : log->events) {
      Status st = CheckEventDataDigests(e);
      EXPECT_TRUE(st.ok()) << real.name << ": " << st.ToString();
    }
  }
  auto log = ParseEventLog(
      AsBytes(testing::MustRead(Testdata("eventlogs-gotpmtools/ubuntu-2404-amd-sevsnp.bin"))));
  ASSERT_TRUE(log.ok());
  Event secure_boot = log->events[3];  // SecureBoot = 1
  secure_boot.data.back() ^= 0x01;
  Status st = CheckEventDataDigests(secure_boot);
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_EQ(st.message(), EventReference(secure_boot, DigestAlg::kSha1) +
                              ": its data does not hash to its digest (the log was altered)");
  EXPECT_THAT(st.message(),
              ::testing::StartsWith("event #3 (EV_EFI_VARIABLE_DRIVER_CONFIG, PCR 7, sha1 "));
}

// ---- synthetic logs ----

TEST(SyntheticLogTest, NoActionEventsAreSkippedAndEveryBankIsReplayed) {
  EventLogBuilder b({DigestAlg::kSha1, DigestAlg::kSha256, DigestAlg::kSha384});
  b.FirmwareBlob("firmware").NoAction(4, ToBytes("an event that is never extended")).Separator(4);
  auto log = ParseEventLog(b.Build());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->events.size(), 4u);  // header, blob, no-action, separator
  tpm::PcrValues pcrs = Replay(*log);
  for (DigestAlg bank : {DigestAlg::kSha1, DigestAlg::kSha256, DigestAlg::kSha384}) {
    SCOPED_TRACE(DigestName(bank));
    auto extend = [&](const Bytes& pcr, const Bytes& measured) {
      Bytes in = pcr;
      Bytes d = Digest(bank, measured);
      in.insert(in.end(), d.begin(), d.end());
      return Digest(bank, in);
    };
    const Bytes zero(DigestSize(bank), 0);
    EXPECT_EQ(pcrs[bank][0], extend(zero, ToBytes("firmware")));
    EXPECT_EQ(pcrs[bank][4], extend(zero, Bytes(4, 0)));
    EXPECT_EQ(pcrs[bank].size(), 2u);
  }
  EXPECT_EQ(FormatPcrLines(pcrs).substr(0, 7), "sha1 0 ");
}

TEST(SyntheticLogTest, StartupLocalityFourIsHonoured) {
  EventLogBuilder b;
  b.StartupLocality(4).FirmwareBlob("x");
  auto log = ParseEventLog(b.Build());
  ASSERT_TRUE(log.ok());
  EXPECT_EQ(log->startup_locality, 4);
  Bytes initial(32, 0);
  initial.back() = 4;
  Bytes in = initial;
  Bytes d = Sha256(ToBytes("x"));
  in.insert(in.end(), d.begin(), d.end());
  EXPECT_EQ(Replay(*log)[DigestAlg::kSha256][0], Sha256(in));
}

TEST(SyntheticLogTest, Sha1LegacyFormat) {
  EventLogBuilder b({}, EventLogBuilder::Format::kSha1Legacy);
  b.FirmwareBlob("bios").Separator(0);
  auto log = ParseEventLog(b.Build());
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->format, EventLog::Format::kSha1Legacy);
  EXPECT_EQ(log->banks, std::vector<DigestAlg>{DigestAlg::kSha1});
  EXPECT_EQ(log->events.size(), 2u);
  EXPECT_EQ(Replay(*log)[DigestAlg::kSha1].size(), 1u);
}

TEST(SyntheticLogTest, TrailingZeroPaddingIsAccepted) {
  EventLogBuilder b;
  b.FirmwareBlob("x");
  Bytes raw = b.Build();
  const size_t events = ParseEventLog(raw)->events.size();
  raw.resize(raw.size() + 4096, 0);
  auto log = ParseEventLog(raw);
  ASSERT_TRUE(log.ok()) << log.status().ToString();
  EXPECT_EQ(log->events.size(), events);
}

TEST(MalformedLogTest, TruncationsAndBadHeadersNameTheEventAndOffset) {
  EventLogBuilder b;
  b.FirmwareBlob("x").Separator(0);
  const Bytes raw = b.Build();
  auto whole = ParseEventLog(raw);
  ASSERT_TRUE(whole.ok());
  const size_t last = whole->events.back().offset;

  Bytes truncated(raw.begin(), raw.end() - 2);  // the separator's data is cut short
  auto cut = ParseEventLog(truncated);
  EXPECT_EQ(cut.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(cut.status().message(), "malformed event log: event #2 at byte " +
                                        std::to_string(last) +
                                        ": event data of 4 bytes runs past the end of the log");

  // A digest of an algorithm the header did not announce (SHA-384 in a SHA-256 log).
  Bytes wrong_alg = raw;
  const size_t alg_at = last + 12;  // pcr, type, count, then the algorithm
  ASSERT_EQ(wrong_alg[alg_at], 0x0b);
  wrong_alg[alg_at] = 0x0c;
  auto bad = ParseEventLog(wrong_alg);
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(bad.status().message(),
              HasSubstr("digest of algorithm 12, which the header does not list"));

  EXPECT_EQ(ParseEventLog(Bytes{}).status().message(), "the event log is empty");
  EXPECT_EQ(ParseEventLog(Bytes(10, 0xff)).status().code(), Code::kInvalidArgument);
  // Garbage after the last event that is not zero padding.
  Bytes garbage = raw;
  garbage.push_back(0x01);
  EXPECT_EQ(ParseEventLog(garbage).status().code(), Code::kInvalidArgument);
}

TEST(EventTypeTest, NamesAndNumbers) {
  EXPECT_EQ(EventTypeName(0x80000003), "EV_EFI_BOOT_SERVICES_APPLICATION");
  EXPECT_EQ(EventTypeName(0x8000abcd), "0x8000abcd");
  EXPECT_EQ(*EventTypeFromName("EV_IPL"), 0xdu);
  EXPECT_EQ(*EventTypeFromName("0x800000e0"), 0x800000e0u);
  EXPECT_EQ(EventTypeFromName("EV_NOPE").status().code(), Code::kInvalidArgument);
}

// ---- where events belong (issue 22: what the measured software writes decides nothing) ----

// The events of a synthetic log, header left out.
std::vector<Event> Events(const EventLogBuilder& b) {
  auto log = ParseEventLog(b.Build());
  EXPECT_TRUE(log.ok()) << log.status().ToString();
  return log.ok() ? std::vector<Event>(log->events.begin() + 1, log->events.end())
                  : std::vector<Event>{};
}

TEST(PlacementTest, EachClassIsMeasuredOnlyWhereItsMeasurerPutsIt) {
  using C = EventClass;
  EXPECT_EQ(ClassesMeasuredAt(4, kEvEfiBootServicesApplication),
            std::vector<C>{C::kBootApplication});
  EXPECT_TRUE(ClassesMeasuredAt(2, kEvEfiBootServicesApplication).empty());
  EXPECT_TRUE(ClassesMeasuredAt(11, kEvEfiBootServicesApplication).empty());
  EXPECT_EQ(ClassesMeasuredAt(7, kEvEfiVariableDriverConfig),
            std::vector<C>{C::kSecureBootVariable});
  EXPECT_TRUE(ClassesMeasuredAt(1, kEvEfiVariableDriverConfig).empty());
  EXPECT_EQ(ClassesMeasuredAt(8, kEvIpl), std::vector<C>{C::kKernelCmdline});
  EXPECT_EQ(ClassesMeasuredAt(9, kEvIpl), (std::vector<C>{C::kKernel, C::kInitrd}));
  EXPECT_EQ(ClassesMeasuredAt(9, kEvEventTag), (std::vector<C>{C::kInitrd, C::kKernelCmdline}));
  EXPECT_EQ(ClassesMeasuredAt(11, kEvIpl),
            (std::vector<C>{C::kKernel, C::kInitrd, C::kKernelCmdline}));
  EXPECT_EQ(ClassesMeasuredAt(12, kEvIpl), std::vector<C>{C::kKernelCmdline});
  for (uint32_t pcr : {0u, 4u, 5u, 7u, 10u, 13u, 14u, 15u}) {
    EXPECT_TRUE(ClassesMeasuredAt(pcr, kEvIpl).empty()) << pcr;
  }
  // Described as a kernel, in a place where no kernel is measured: no class.
  EventLogBuilder b;
  b.GrubFile("(hd0,gpt2)/vmlinuz", "k", 8).GrubFile("(hd0,gpt2)/vmlinuz", "k", 12);
  for (const Event& e : Events(b)) {
    EXPECT_NE(ClassifyEvent(e), EventClass::kKernel) << e.pcr;
  }
}

TEST(PlacementTest, TypesTiedToOnePcrAreRefusedElsewhere) {
  EventLogBuilder db;
  db.SecureBootVariable("db", ToBytes("keys"));
  const Bytes db_data = Events(db)[0].data;  // the variable "db", logged into PCR 1 below
  EventLogBuilder b;
  b.BootApplication("\\EFI\\BOOT\\BOOTX64.EFI", "shim", 4)
      .BootApplication("\\EFI\\BOOT\\BOOTX64.EFI", "shim", 11)
      .SecureBootVariable("db", ToBytes("keys"))
      .Add(1, kEvEfiVariableDriverConfig, db_data, {})
      .Add(4, kEvEfiBootServicesDriver, Bytes(32, 0), ToBytes("driver"))
      .LinuxInitrd("initrd");
  const std::vector<Event> events = Events(b);
  ASSERT_EQ(events.size(), 6u);
  EXPECT_TRUE(CheckEventPcr(events[0], DigestAlg::kSha256).ok());
  EXPECT_EQ(CheckEventPcr(events[1], DigestAlg::kSha256).message(),
            "event #2 (EV_EFI_BOOT_SERVICES_APPLICATION, PCR 11, sha256 " +
                HexEncode(Sha256(ToBytes("shim"))) +
                ") \"\\EFI\\BOOT\\BOOTX64.EFI\" is in PCR 11, but firmware measures the UEFI "
                "applications it loads into PCR 4 only");
  EXPECT_TRUE(CheckEventPcr(events[2], DigestAlg::kSha256).ok());
  Status db_in_pcr1 = CheckEventPcr(events[3], DigestAlg::kSha256);
  EXPECT_EQ(db_in_pcr1.code(), Code::kPermissionDenied);
  EXPECT_THAT(db_in_pcr1.message(),
              HasSubstr("\"db\" is in PCR 1, but firmware measures the Secure Boot variables "
                        "into PCR 7 only"));
  EXPECT_THAT(CheckEventPcr(events[4], DigestAlg::kSha256).message(),
              HasSubstr("is in PCR 4, but firmware measures UEFI drivers into PCR 2 only"));
  EXPECT_TRUE(CheckEventPcr(events[5], DigestAlg::kSha256).ok());
}

TEST(PlacementTest, FixedEventsAreThoseTheSpecificationsFixEntirely) {
  EventLogBuilder b;
  b.Separator(4)
      .AddHashedData(4, kEvSeparator, Bytes(4, 0xff))  // an error separator
      .Add(4, kEvSeparator, Bytes(4, 0), ToBytes("not the separator's digest"))
      .EfiAction(4, "Calling EFI Application from Boot Option")
      .EfiAction(5, "Calling EFI Application from Boot Option")  // not in its PCR
      .EfiAction(7, "DMA Protection Disabled")                   // has a meaning
      .UkiSection(".linux", "kernel");
  const std::vector<Event> e = Events(b);
  ASSERT_EQ(e.size(), 8u);
  EXPECT_EQ(FixedEventKind(e[0]), "separator");
  EXPECT_EQ(FixedEventKind(e[1]), "");
  EXPECT_EQ(FixedEventKind(e[2]), "");
  EXPECT_EQ(FixedEventKind(e[3]), "firmware action");
  EXPECT_EQ(FixedEventKind(e[4]), "");
  EXPECT_EQ(FixedEventKind(e[5]), "");
  // systemd-stub's two events per section: the name (fixed), then the contents (a kernel).
  EXPECT_EQ(FixedEventKind(e[6]), "UKI section name");
  EXPECT_EQ(ClassifyEvent(e[6]), EventClass::kOther);
  EXPECT_EQ(FixedEventKind(e[7]), "");
  EXPECT_EQ(ClassifyEvent(e[7]), EventClass::kKernel);
}

TEST(DataDigestTest, GrubStringsMustHashToTheirDigests) {
  EventLogBuilder b;
  b.GrubCommand("insmod part_gpt")
      .GrubCommandLine("/vmlinuz root=/dev/vda2 ro")
      // What a forged log shows: the approved command line over another command's digest.
      .Add(8, kEvIpl, ToBytes(std::string("kernel_cmdline: /vmlinuz root=/dev/vda2 ro", 43)),
           ToBytes("/vmlinuz root=/dev/vda2 ro init=/bin/sh"))
      .Add(8, kEvIpl, ToBytes(std::string("grub_cmd: set x=1", 18)), ToBytes("insmod evil"))
      // Red Hat's older GRUB hashes the string with its NUL.
      .Add(8, kEvIpl, ToBytes(std::string("grub_cmd insmod gzio", 21)),
           ToBytes(std::string("insmod gzio", 12)));
  const std::vector<Event> e = Events(b);
  ASSERT_EQ(e.size(), 5u);
  EXPECT_TRUE(CheckEventDataDigests(e[0]).ok());
  EXPECT_TRUE(CheckEventDataDigests(e[1]).ok());
  EXPECT_EQ(CheckEventDataDigests(e[2]).message(),
            "event #3 (EV_IPL, PCR 8, sha256 " +
                HexEncode(Sha256(ToBytes("/vmlinuz root=/dev/vda2 ro init=/bin/sh"))) +
                "): its data does not hash to its digest (the log was altered)");
  EXPECT_EQ(CheckEventDataDigests(e[3]).code(), Code::kPermissionDenied);
  EXPECT_TRUE(CheckEventDataDigests(e[4]).ok());
}

}  // namespace
}  // namespace berth::eventlog
