// The boot check berthd runs on every TPM join and berthctl runs offline (CheckQuotedBoot):
// the real GCE quote with its real event log, a log changed by one byte, policies written from
// a log, PCR sets side by side, and a fleet with two approved kernels booted on a real TPM.
#include "verify/policy_from_eventlog.h"
#include "verify/tpm_boot.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>
#include <sstream>

#include "agent/attestation.h"
#include "common/binding.h"
#include "common/tpm/eventlog.h"
#include "tests/testing/eventlog_builder.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"
#include "verify/evidence.h"

namespace berth::verify {
namespace {

using testing::EventLogBuilder;
using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::Testdata;

#define REQUIRE_TESTDATA()                                                                \
  if (!std::filesystem::exists(testing::TestdataDir())) {                                 \
    GTEST_FAIL() << "the real attestation testdata is not at " << testing::TestdataDir(); \
  }

const std::string kGce = "tpm-gce-cos85-nonce9009/";

// "index hex" lines.
std::map<uint32_t, Bytes> ReadPcrFile(const std::string& path) {
  std::map<uint32_t, Bytes> out;
  std::istringstream in(testing::MustRead(path));
  uint32_t index;
  std::string hex;
  while (in >> index >> hex) out[index] = *HexDecode(hex);
  return out;
}

// The GCE quote of `bank`'s PCRs, verified with its AK and nonce 0x9009.
tpm::VerifiedQuote GceQuote(DigestAlg bank) {
  const std::string name(DigestName(bank));
  auto ak = PublicKeyFromPem(testing::MustRead(Testdata(kGce + "ak_pub.pem")));
  EXPECT_TRUE(ak.ok());
  tpm::PcrValues pcrs{{bank, ReadPcrFile(Testdata(kGce + "pcrs_" + name + ".txt"))}};
  const Bytes nonce = {0x90, 0x09};
  auto q = tpm::VerifyQuote(
      ak->get(), AsBytes(testing::MustRead(Testdata(kGce + "quote_" + name + ".tpms_attest"))),
      AsBytes(testing::MustRead(Testdata(kGce + "quote_" + name + ".tpmt_signature"))), pcrs,
      std::span<const uint8_t>(nonce));
  EXPECT_TRUE(q.ok()) << q.status().ToString();
  return q.ok() ? *q : tpm::VerifiedQuote{};
}

Bytes GceLog() { return ToBytes(testing::MustRead(Testdata(kGce + "event_log.bin"))); }

Policy BootPolicy(const std::string& yaml) {
  auto p = ParsePolicy(yaml, /*require_ak_trust=*/false);
  EXPECT_TRUE(p.ok()) << p.status().ToString();
  return p.ok() ? *p : Policy{};
}

TEST(GceBootTest, EveryQuotedBankVouchesForTheLog) {
  REQUIRE_TESTDATA();
  const Bytes log = GceLog();
  for (DigestAlg bank : {DigestAlg::kSha1, DigestAlg::kSha256, DigestAlg::kSha384}) {
    SCOPED_TRACE(DigestName(bank));
    tpm::VerifiedQuote quote = GceQuote(bank);
    auto checked = CheckQuotedBoot(quote, std::span<const uint8_t>(log), nullptr);
    ASSERT_TRUE(checked.ok()) << checked.status().ToString();
    // PCR10 is quoted but not in the log; PCRs 0-9 are both.
    EXPECT_EQ(*checked, "event log replayed to quoted " + std::string(DigestName(bank)) +
                            ":0,1,2,3,4,5,6,7,8,9");
  }
}

TEST(GceBootTest, OneChangedEventByteIsRefusedNamingTheEvent) {
  REQUIRE_TESTDATA();
  const tpm::VerifiedQuote quote = GceQuote(DigestAlg::kSha256);
  Bytes log = GceLog();
  auto parsed = eventlog::ParseEventLog(log);
  ASSERT_TRUE(parsed.ok());
  // Event #3 is the SecureBoot variable: its last data byte is the value (1 = enabled).
  const eventlog::Event& sb = parsed->events[3];
  ASSERT_EQ(*eventlog::UefiVariableName(sb), "SecureBoot");
  const size_t last_data_byte =
      (sb.index + 1 < parsed->events.size() ? parsed->events[sb.index + 1].offset : log.size()) - 1;
  log[last_data_byte] ^= 0x01;
  auto refused = CheckQuotedBoot(quote, std::span<const uint8_t>(log), nullptr);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(refused.status().message(),
              StartsWith("event #3 (EV_EFI_VARIABLE_DRIVER_CONFIG, PCR 7, "));
  EXPECT_THAT(refused.status().message(),
              HasSubstr("its data does not hash to its digest (the log was altered)"));

  // A changed digest byte no longer replays to the quote: the PCR is named.
  Bytes digest_changed = GceLog();
  const eventlog::Event& kernel = parsed->events[39];  // GRUB's PCR 9 kernel event
  ASSERT_EQ(eventlog::ClassifyEvent(kernel), eventlog::EventClass::kKernel);
  // Its sha256 digest, where it sits in the raw log.
  const Bytes& kernel_sha256 = kernel.digests.at(DigestAlg::kSha256);
  auto at = std::search(digest_changed.begin() + static_cast<long>(kernel.offset),
                        digest_changed.end(), kernel_sha256.begin(), kernel_sha256.end());
  ASSERT_NE(at, digest_changed.end());
  *at ^= 0x80;
  auto mismatch = CheckQuotedBoot(quote, std::span<const uint8_t>(digest_changed), nullptr);
  EXPECT_EQ(mismatch.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(mismatch.status().message(),
              StartsWith("the event log does not match the quoted PCR sha256:9: the log "
                         "replays to "));

  // Garbage is malformed input, not a failed check.
  auto garbage = CheckQuotedBoot(quote, AsBytes("not a log"), nullptr);
  EXPECT_EQ(garbage.status().code(), Code::kInvalidArgument);
}

// The data of a Secure Boot variable event is checked in the banks the quote vouches for, and
// only there: a changed data byte breaks its hash in every bank, so any quoted bank catches it,
// while a changed digest of a bank no quote covers is one the node could write anyway and
// nothing reads (the verifier used to hash every recorded bank, two thirds of its work on a
// three-bank log; BENCHMARKS.md).
TEST(GceBootTest, EventDataIsCheckedInTheQuotedBanksAndOnlyThere) {
  REQUIRE_TESTDATA();
  const Bytes log = GceLog();
  auto parsed = eventlog::ParseEventLog(log);
  ASSERT_TRUE(parsed.ok());
  const eventlog::Event& sb = parsed->events[3];
  ASSERT_EQ(*eventlog::UefiVariableName(sb), "SecureBoot");
  const Bytes& sb_sha1 = sb.digests.at(DigestAlg::kSha1);
  Bytes sha1_changed = log;
  auto at = std::search(sha1_changed.begin() + static_cast<long>(sb.offset), sha1_changed.end(),
                        sb_sha1.begin(), sb_sha1.end());
  ASSERT_NE(at, sha1_changed.end());
  *at ^= 0x01;
  for (DigestAlg bank : {DigestAlg::kSha256, DigestAlg::kSha384}) {
    auto checked = CheckQuotedBoot(GceQuote(bank), std::span<const uint8_t>(sha1_changed), nullptr);
    ASSERT_TRUE(checked.ok()) << DigestName(bank) << ": " << checked.status().ToString();
    EXPECT_EQ(*checked, "event log replayed to quoted " + std::string(DigestName(bank)) +
                            ":0,1,2,3,4,5,6,7,8,9");
  }
  // Quoted in SHA-1, the same change no longer replays.
  auto refused =
      CheckQuotedBoot(GceQuote(DigestAlg::kSha1), std::span<const uint8_t>(sha1_changed), nullptr);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(refused.status().message(),
              StartsWith("the event log does not match the quoted PCR sha1:7: the log "
                         "replays to "));
  // The variable's data changed: refused in whichever bank is quoted, naming that bank.
  Bytes data_changed = log;
  const size_t last_data_byte = parsed->events[4].offset - 1;
  data_changed[last_data_byte] ^= 0x01;
  for (DigestAlg bank : {DigestAlg::kSha1, DigestAlg::kSha256, DigestAlg::kSha384}) {
    auto altered = CheckQuotedBoot(GceQuote(bank), std::span<const uint8_t>(data_changed), nullptr);
    EXPECT_EQ(altered.status().code(), Code::kPermissionDenied) << DigestName(bank);
    EXPECT_EQ(altered.status().message(),
              eventlog::EventReference(sb, bank) +
                  ": its data does not hash to its digest (the log was altered)");
  }
}

TEST(GceBootTest, PolicyWrittenFromTheLogAcceptsThatBootAndRefusesAnotherKernel) {
  REQUIRE_TESTDATA();
  const tpm::VerifiedQuote quote = GceQuote(DigestAlg::kSha256);
  const Bytes log = GceLog();
  auto parsed = eventlog::ParseEventLog(log);
  ASSERT_TRUE(parsed.ok());
  auto yaml = PolicyFromEventLog(*parsed, DigestAlg::kSha256, "gce.bin");
  ASSERT_TRUE(yaml.ok()) << yaml.status().ToString();
  Policy policy = BootPolicy(*yaml);
  ASSERT_TRUE(policy.tpm_trust.event_log.has_value());
  auto accepted = CheckQuotedBoot(quote, std::span<const uint8_t>(log), &policy);
  ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
  EXPECT_THAT(*accepted,
              StartsWith("pcrs sha256:0,1,2,3,5,6 + event log replayed to quoted sha256:"));
  EXPECT_THAT(*accepted, HasSubstr("kernels[event 39: /syslinux/vmlinuz.A]"));

  // The fleet's approved kernel is another one.
  const std::string kernel_digest = HexEncode(parsed->events[39].digests.at(DigestAlg::kSha256));
  std::string other = *yaml;
  other.replace(other.find(kernel_digest), 64, std::string(64, 'e'));
  Policy other_policy = BootPolicy(other);
  auto refused = CheckQuotedBoot(quote, std::span<const uint8_t>(log), &other_policy);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "kernels event #39 (EV_IPL, PCR 9, sha256 " + kernel_digest +
                ") \"/syslinux/vmlinuz.A\" is not in tpm.event_log.kernels");

  // A policy with event rules and no log: refused, not waved through.
  auto no_log = CheckQuotedBoot(quote, std::nullopt, &policy);
  EXPECT_EQ(no_log.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(no_log.status().message(),
            "the policy checks the boot's event log (tpm.event_log), "
            "but the evidence carries none");
}

TEST(GceBootTest, SecureBootVariablesAndPresenceAreChecked) {
  REQUIRE_TESTDATA();
  const tpm::VerifiedQuote quote = GceQuote(DigestAlg::kSha256);
  const Bytes log = GceLog();
  auto parsed = eventlog::ParseEventLog(log);
  auto yaml = PolicyFromEventLog(*parsed, DigestAlg::kSha256, "gce.bin");
  ASSERT_TRUE(yaml.ok()) << yaml.status().ToString();
  // PK's entry taken out: the PK event is the first one not allowed.
  const std::string pk = HexEncode(parsed->events[4].digests.at(DigestAlg::kSha256));
  std::string without_pk = *yaml;
  const std::string pk_entry = "      'PK':\n        - digest: " + pk + "\n";
  ASSERT_NE(without_pk.find(pk_entry), std::string::npos) << *yaml;
  without_pk.erase(without_pk.find(pk_entry), pk_entry.size());
  Policy no_pk = BootPolicy(without_pk);
  auto refused = CheckQuotedBoot(quote, std::span<const uint8_t>(log), &no_pk);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "Secure Boot variable event #4 (EV_EFI_VARIABLE_DRIVER_CONFIG, PCR 7, sha256 " + pk +
                ") \"PK\" is not in tpm.event_log.secure_boot_variables");

  // An initrd rule on a boot whose log measures no initrd: the class must be present.
  std::string with_initrd = *yaml;
  with_initrd.insert(with_initrd.find("    secure_boot_variables:\n"),
                     "    initrds:\n      - digest: " + std::string(64, '1') + "\n");
  Policy initrd = BootPolicy(with_initrd);
  auto missing = CheckQuotedBoot(quote, std::span<const uint8_t>(log), &initrd);
  EXPECT_EQ(missing.status().message(),
            "tpm.event_log.initrds: the event log has no such event in a quoted PCR");
}

TEST(PcrSetTest, OneOfSeveralSetsMustMatchEntirely) {
  tpm::PcrValues quoted{{DigestAlg::kSha256, {{0, Bytes(32, 1)}, {7, Bytes(32, 2)}}}};
  auto set = [](const std::string& name, uint8_t pcr0, uint8_t pcr7) {
    PcrSet s;
    s.name = name;
    s.pcrs[DigestAlg::kSha256] = {{0, Bytes(32, pcr0)}, {7, Bytes(32, pcr7)}};
    return s;
  };
  PcrSet old_firmware = set("fw-2024.1", 9, 2), new_firmware = set("fw-2024.2", 1, 2);
  auto matched = CheckPcrSets({old_firmware, new_firmware}, quoted);
  ASSERT_TRUE(matched.ok());
  EXPECT_EQ(*matched, "fw-2024.2");
  auto none = CheckPcrSets({old_firmware}, quoted);
  EXPECT_EQ(none.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(none.status().message(),
            "no tpm.pcr_sets entry matches the quoted PCRs (\"fw-2024.1\": PCR sha256:0 is " +
                HexEncode(Bytes(32, 1)) + ")");
  EXPECT_TRUE(CheckPcrSets({}, quoted).ok());
}

// ---- a fleet with two approved kernels, booted on a real TPM ----

class TwoKernelFleetTest : public ::testing::Test {
 protected:
  // Boots a fresh swtpm through a GRUB chain loading `kernel`, measured as firmware would,
  // and returns the agent's evidence for it plus the AK's SPKI hash.
  v1::Evidence Boot(const std::string& name, const std::string& kernel, std::string& ak_hash) {
    testing::Swtpm swtpm(dir_.Join(name));
    EXPECT_TRUE(swtpm.ok()) << swtpm.error();
    EventLogBuilder log;
    log.FirmwareBlob("ovmf 2024.02")
        .SecureBootVariable("SecureBoot", {1})
        .SecureBootVariable("PK", ToBytes("platform key"))
        .Separator(0)
        .Separator(7)
        .BootApplication("\\EFI\\BOOT\\BOOTX64.EFI", "shim 15.8")
        .BootApplication("\\EFI\\debian\\grubx64.efi", "grub 2.12")
        .GrubFile("(hd0,gpt2)/vmlinuz-" + name, kernel)
        .GrubCommandLine("/vmlinuz-" + name + " root=/dev/vda2 ro")
        .LinuxInitrd("initrd for " + kernel);
    EXPECT_TRUE(swtpm.ExtendPcrs(log.Sha256Extends()));
    const std::string log_path = dir_.Join(name + ".log");
    testing::MustWrite(log_path, ToString(log.Build()));
    auto tpm = agent::OpenEsysTpm(swtpm.Tcti());
    EXPECT_TRUE(tpm.ok());
    auto ak = tpm::ParsePublic(*(*tpm)->AttestationKeyPublic());
    auto key = tpm::PublicToEvp(*ak);
    ak_hash = HexEncode(Sha256(*PublicKeyToSpkiDer(key->get())));
    auto e = agent::CollectTpmEvidence(**tpm, DefaultSelection(), binding_, log_path);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return *e;
  }

  static std::vector<v1::PcrSelection> DefaultSelection() {
    v1::PcrSelection s;
    s.set_bank(v1::HASH_ALGORITHM_SHA256);
    for (uint32_t i : {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15}) s.add_pcrs(i);
    return {s};
  }

  // The fleet's policy: AK pinned, two approved kernels (and their command lines and initrds),
  // the same shim, GRUB and Secure Boot state for all.
  Policy FleetPolicy(const std::string& ak_hash) {
    auto d = [](const std::string& s) { return HexEncode(Sha256(ToBytes(s))); };
    auto sb = [&](const std::string& name, const Bytes& value) {
      EventLogBuilder one;
      one.SecureBootVariable(name, value);
      auto l = eventlog::ParseEventLog(one.Build());
      return HexEncode(l->events[1].digests.at(DigestAlg::kSha256));
    };
    std::string yaml = "tpm:\n  trusted_aks:\n    - {name: fleet-node, sha256: " + ak_hash +
                       "}\n"
                       "  event_log:\n    bank: sha256\n"
                       "    required_pcrs: [0, 4, 7, 8, 9]\n"
                       "    other_events:\n      - {name: ovmf 2024.02, pcr: 0, type: "
                       "EV_EFI_PLATFORM_FIRMWARE_BLOB, digest: " +
                       d("ovmf 2024.02") +
                       "}\n"
                       "    boot_applications:\n      - {name: shim 15.8, digest: " +
                       d("shim 15.8") +
                       "}\n"
                       "      - {name: grub 2.12, digest: " +
                       d("grub 2.12") +
                       "}\n"
                       "    kernels:\n      - {name: linux 6.1.0-18, digest: " +
                       d("kernel 6.1.0-18") +
                       "}\n"
                       "      - {name: linux 6.1.0-21, digest: " +
                       d("kernel 6.1.0-21") +
                       "}\n"
                       "    initrds:\n      - {digest: " +
                       d("initrd for kernel 6.1.0-18") +
                       "}\n"
                       "      - {digest: " +
                       d("initrd for kernel 6.1.0-21") +
                       "}\n"
                       "      - {digest: " +
                       d("initrd for kernel 6.6.0-evil") +
                       "}\n"
                       "    kernel_cmdlines:\n"
                       "      - {digest: " +
                       d("/vmlinuz-a root=/dev/vda2 ro") +
                       "}\n"
                       "      - {digest: " +
                       d("/vmlinuz-b root=/dev/vda2 ro") +
                       "}\n"
                       "      - {digest: " +
                       d("/vmlinuz-c root=/dev/vda2 ro") +
                       "}\n"
                       "    secure_boot_variables:\n"
                       "      SecureBoot: [{digest: " +
                       sb("SecureBoot", {1}) +
                       "}]\n"
                       "      PK: [{digest: " +
                       sb("PK", ToBytes("platform key")) + "}]\n";
    auto p = ParsePolicy(yaml);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return *p;
  }

  testing::TempDir dir_;
  Bytes binding_ = ComputeBinding(Bytes(56, 7), Bytes(32, 8));
};

TEST_F(TwoKernelFleetTest, EitherApprovedKernelBootsAndAThirdIsRefusedNamingItsEvent) {
  std::string ak_a, ak_b, ak_c;
  v1::Evidence a = Boot("a", "kernel 6.1.0-18", ak_a);
  v1::Evidence b = Boot("b", "kernel 6.1.0-21", ak_b);
  v1::Evidence c = Boot("c", "kernel 6.6.0-evil", ak_c);

  auto verified_a = TpmEvidenceVerifier(FleetPolicy(ak_a)).Verify(a, binding_);
  ASSERT_TRUE(verified_a.ok()) << verified_a.status().ToString();
  EXPECT_THAT(verified_a->rule, HasSubstr("kernels[linux 6.1.0-18]"));
  EXPECT_THAT(verified_a->rule,
              HasSubstr("boot_applications[shim 15.8] boot_applications[grub 2.12]"));
  auto verified_b = TpmEvidenceVerifier(FleetPolicy(ak_b)).Verify(b, binding_);
  ASSERT_TRUE(verified_b.ok()) << verified_b.status().ToString();
  EXPECT_THAT(verified_b->rule, HasSubstr("kernels[linux 6.1.0-21]"));

  auto refused = TpmEvidenceVerifier(FleetPolicy(ak_c)).Verify(c, binding_);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  // After the header (#0): blob, 2 variables, 2 separators, 2 applications, the kernel (#8).
  EXPECT_EQ(refused.status().message(),
            "kernels event #8 (EV_IPL, PCR 9, sha256 " +
                HexEncode(Sha256(ToBytes("kernel 6.6.0-evil"))) +
                ") \"(hd0,gpt2)/vmlinuz-c\" is not in tpm.event_log.kernels");

  // The log of one boot presented with another's quote does not replay to it.
  v1::Evidence mixed = a;
  mixed.mutable_tpm()->set_event_log(b.tpm().event_log());
  auto mismatch = TpmEvidenceVerifier(FleetPolicy(ak_a)).Verify(mixed, binding_);
  EXPECT_EQ(mismatch.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(mismatch.status().message(),
              StartsWith("the event log does not match the quoted PCR sha256:8: "));
}


// ---- issue 22 #1: the node chose which PCRs it quoted (a real swtpm quote) ----
//
// The attack as it was found: root on an unapproved OS (the same firmware, Secure Boot state,
// shim and GRUB, another kernel and command line) quotes a selection without PCRs 4, 8 and 9,
// which carry its real boot, after extending PCR 11 (which its boot never touched) with the
// approved digests and appending matching events to the log it sends. The policy is the one
// `berthctl policy from --eventlog` writes from the approved boot; the AK is trusted.
class ChosenQuoteAttackTest : public ::testing::Test {
 protected:
  static EventLogBuilder Boot(const std::string& kernel, const std::string& cmdline) {
    EventLogBuilder log;
    log.FirmwareBlob("ovmf 2024.02")
        .SecureBootVariable("SecureBoot", {1})
        .SecureBootVariable("PK", ToBytes("platform key"));
    for (uint32_t pcr = 0; pcr < 8; ++pcr) log.Separator(pcr);
    log.EfiAction(4, "Calling EFI Application from Boot Option")
        .BootApplication("\\EFI\\BOOT\\BOOTX64.EFI", "shim 15.8")
        .BootApplication("\\EFI\\debian\\grubx64.efi", "grub 2.12")
        .GrubCommand("insmod part_gpt")
        .GrubCommandLine(cmdline)
        .GrubFile("(hd0,gpt2)/vmlinuz", kernel)
        .LinuxInitrd("initrd for " + kernel)
        .EfiAction(5, "Exit Boot Services Invocation");
    return log;
  }
  static constexpr const char* kApprovedKernel = "kernel 6.1.0-18";
  static constexpr const char* kApprovedCmdline = "/vmlinuz root=/dev/vda2 ro";

  // The unapproved boot, then what the attacker adds after it: the approved components' digests
  // extended into PCR 11 with events that describe them as a UKI's sections, and the approved
  // shim and GRUB as boot applications there.
  static EventLogBuilder ForgedLog() {
    EventLogBuilder log = Boot("kernel 6.6.0-evil", "/vmlinuz root=/dev/vda2 ro init=/bin/sh");
    log.BootApplication("\\EFI\\BOOT\\BOOTX64.EFI", "shim 15.8", 11)
        .BootApplication("\\EFI\\debian\\grubx64.efi", "grub 2.12", 11)
        .GrubFile(".linux", kApprovedKernel, 11)
        .GrubFile(".initrd", std::string("initrd for ") + kApprovedKernel, 11)
        .GrubFile(".cmdline", kApprovedCmdline, 11);
    return log;
  }

  // A fresh swtpm extended with `log`'s events; the agent's evidence for `pcrs`.
  v1::Evidence Quote(const std::string& name, const EventLogBuilder& log,
                     const std::vector<uint32_t>& pcrs) {
    testing::Swtpm swtpm(dir_.Join(name));
    EXPECT_TRUE(swtpm.ok()) << swtpm.error();
    EXPECT_TRUE(swtpm.ExtendPcrs(log.Sha256Extends()));
    const std::string log_path = dir_.Join(name + ".log");
    testing::MustWrite(log_path, ToString(log.Build()));
    auto tpm = agent::OpenEsysTpm(swtpm.Tcti());
    EXPECT_TRUE(tpm.ok());
    auto ak = tpm::ParsePublic(*(*tpm)->AttestationKeyPublic());
    auto key = tpm::PublicToEvp(*ak);
    ak_hash_ = HexEncode(Sha256(*PublicKeyToSpkiDer(key->get())));
    v1::PcrSelection s;
    s.set_bank(v1::HASH_ALGORITHM_SHA256);
    for (uint32_t i : pcrs) s.add_pcrs(i);
    auto e = agent::CollectTpmEvidence(**tpm, {s}, binding_, log_path);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? *e : v1::Evidence{};
  }

  // PolicyFromEventLog of the approved boot, trusting the last quote's AK.
  Policy ApprovedPolicy() {
    auto log = eventlog::ParseEventLog(Boot(kApprovedKernel, kApprovedCmdline).Build());
    EXPECT_TRUE(log.ok());
    auto yaml = PolicyFromEventLog(*log, DigestAlg::kSha256, "approved.bin");
    EXPECT_TRUE(yaml.ok()) << yaml.status().ToString();
    auto p = ParsePolicy(*yaml + "  trusted_aks:\n    - {name: fleet-node, sha256: " + ak_hash_ +
                         "}\n");
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return p.ok() ? *p : Policy{};
  }

  Result<VerifiedEvidence> Verify(const v1::Evidence& e) {
    return TpmEvidenceVerifier(ApprovedPolicy()).Verify(e, binding_);
  }

  testing::TempDir dir_;
  std::string ak_hash_;
  Bytes binding_ = ComputeBinding(Bytes(56, 7), Bytes(32, 8));
};

TEST_F(ChosenQuoteAttackTest, TheApprovedBootIsAccepted) {
  v1::Evidence e = Quote("approved", Boot(kApprovedKernel, kApprovedCmdline),
                         {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15});
  auto verified = Verify(e);
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_THAT(verified->rule, HasSubstr("kernels[event 17: (hd0,gpt2)/vmlinuz]"));
}

TEST_F(ChosenQuoteAttackTest, ASelectionWithoutTheBootsPcrsIsRefusedNamingTheMissingPcr) {
  v1::Evidence e = Quote("attacker", ForgedLog(), {0, 1, 2, 3, 5, 6, 7, 11, 15});
  auto refused = Verify(e);
  ASSERT_FALSE(refused.ok()) << "accepted: " << refused->rule;
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "the quote does not cover PCR sha256:4, which tpm.event_log.required_pcrs requires in "
            "every quote");
}

TEST_F(ChosenQuoteAttackTest, QuotingEverythingShowsTheRejectedKernel) {
  v1::Evidence e = Quote("attacker-all", ForgedLog(), {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 14, 15});
  auto refused = Verify(e);
  ASSERT_FALSE(refused.ok()) << "accepted: " << refused->rule;
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  // The first event no rule accepts: GRUB's command line of the unapproved boot (PCR 8).
  EXPECT_EQ(refused.status().message(),
            "kernel_cmdlines event #16 (EV_IPL, PCR 8, sha256 " +
                HexEncode(Sha256(ToBytes("/vmlinuz root=/dev/vda2 ro init=/bin/sh"))) +
                ") \"kernel_cmdline: /vmlinuz root=/dev/vda2 ro init=/bin/sh\" is not in "
                "tpm.event_log.kernel_cmdlines");
}

// ---- default deny, on real firmware logs: each way out is refused, naming it ----
//
// A real machine's boot (the GCE quote's log; go-tpm-tools' six logs), the policy
// PolicyFromEventLog writes from it, and what software after the firmware can do: extend more
// events (the quote then holds the replay of the log with them), choose the quote's selection,
// and send any log it likes. The quoted values are the real GCE quote's, or a log's own replay
// (what that machine's TPM held); the quote's signature is tested above and in tpm_quote_test.

struct RealBoot {
  std::string name;
  Bytes log;  // raw, as sent
  std::vector<DigestAlg> banks;
  bool legacy = false;
  DigestAlg bank = DigestAlg::kSha256;  // the rules' bank
};

RealBoot LoadRealBoot(const std::string& rel, const std::string& name) {
  RealBoot b;
  b.name = name;
  b.log = ToBytes(testing::MustRead(Testdata(rel)));
  auto parsed = eventlog::ParseEventLog(b.log);
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  if (!parsed.ok()) return b;
  b.banks = parsed->banks;
  b.legacy = parsed->format == eventlog::EventLog::Format::kSha1Legacy;
  b.bank = std::find(b.banks.begin(), b.banks.end(), DigestAlg::kSha256) != b.banks.end()
               ? DigestAlg::kSha256
               : DigestAlg::kSha1;
  return b;
}

// `boot`'s log with `extra` raw events appended.
Bytes WithEvents(const RealBoot& boot, const std::vector<Bytes>& extra) {
  Bytes out = boot.log;
  for (const Bytes& e : extra) out.insert(out.end(), e.begin(), e.end());
  return out;
}

Bytes ExtraEvent(const RealBoot& boot, uint32_t pcr, uint32_t type, const Bytes& data,
                 const Bytes& measured) {
  return EventLogBuilder::Event(boot.banks, boot.legacy, pcr, type, data, measured);
}

// A quote of `pcrs` (every PCR the log extends, when empty) holding the replay of `log`.
tpm::VerifiedQuote QuoteOfReplay(const Bytes& log, const std::set<uint32_t>& pcrs = {}) {
  auto parsed = eventlog::ParseEventLog(log);
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  tpm::VerifiedQuote q;
  if (!parsed.ok()) return q;
  for (const auto& [bank, values] : eventlog::Replay(*parsed)) {
    for (const auto& [index, value] : values) {
      if (pcrs.empty() || pcrs.contains(index)) q.pcrs[bank][index] = value;
    }
  }
  return q;
}

Policy PolicyFor(const RealBoot& boot) {
  auto parsed = eventlog::ParseEventLog(boot.log);
  EXPECT_TRUE(parsed.ok());
  auto yaml = PolicyFromEventLog(*parsed, boot.bank, boot.name);
  EXPECT_TRUE(yaml.ok()) << boot.name << ": " << yaml.status().ToString();
  return yaml.ok() ? BootPolicy(*yaml) : Policy{};
}

// The GRUB command an attacker's grub.cfg adds, measured and logged truthfully.
Bytes InsmodEvil(const RealBoot& boot) {
  return ExtraEvent(boot, 8, eventlog::kEvIpl,
                    ToBytes(std::string("grub_cmd: insmod /boot/evil.mod", 32)),
                    ToBytes("insmod /boot/evil.mod"));
}

class RealBootTest : public ::testing::TestWithParam<std::string> {};

// Every real log: the policy written from it accepts that boot, and an unlisted event inside
// a covered PCR (an unapproved UEFI application, as a second boot loader would be) is refused.
TEST_P(RealBootTest, ItsOwnPolicyAcceptsItAndAnUnlistedApplicationIsRefused) {
  REQUIRE_TESTDATA();
  const RealBoot boot = LoadRealBoot("eventlogs-gotpmtools/" + GetParam() + ".bin", GetParam());
  const Policy policy = PolicyFor(boot);
  ASSERT_TRUE(policy.tpm_trust.event_log.has_value());
  auto accepted = CheckQuotedBoot(QuoteOfReplay(boot.log), boot.log, &policy);
  ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
  EXPECT_THAT(*accepted, HasSubstr("boot_applications["));

  auto parsed = eventlog::ParseEventLog(boot.log);
  const uint32_t next = static_cast<uint32_t>(parsed->events.size());
  const Bytes forged = WithEvents(
      boot, {ExtraEvent(boot, 4, eventlog::kEvEfiBootServicesApplication, Bytes(41, 0),
                        ToBytes("unapproved loader"))});
  auto refused = CheckQuotedBoot(QuoteOfReplay(forged), forged, &policy);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "boot_applications event #" + std::to_string(next) +
                " (EV_EFI_BOOT_SERVICES_APPLICATION, PCR 4, " + std::string(DigestName(boot.bank)) +
                " " + HexEncode(Digest(boot.bank, ToBytes("unapproved loader"))) +
                ") is not in tpm.event_log.boot_applications");
}

INSTANTIATE_TEST_SUITE_P(GoTpmTools, RealBootTest,
                         ::testing::Values("arch-linux-workstation", "debian-10", "gdc-host",
                                           "glinux-alex", "rhel8-uefi", "ubuntu-2404-amd-sevsnp"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

class GceAttackTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(testing::TestdataDir())) {
      GTEST_FAIL() << "the real attestation testdata is not at " << testing::TestdataDir();
    }
    boot_ = LoadRealBoot(kGce + "event_log.bin", "gce.bin");
    policy_ = PolicyFor(boot_);
    quote_ = GceQuote(DigestAlg::kSha256);
    auto parsed = eventlog::ParseEventLog(boot_.log);
    next_ = static_cast<uint32_t>(parsed->events.size());
    kernel_ = parsed->events[39].digests.at(DigestAlg::kSha256);  // /syslinux/vmlinuz.A
  }
  std::string Sha256Of(const std::string& s) { return HexEncode(Sha256(ToBytes(s))); }

  RealBoot boot_;
  Policy policy_;
  tpm::VerifiedQuote quote_;
  uint32_t next_ = 0;
  Bytes kernel_;
};

TEST_F(GceAttackTest, TheRealQuoteOfTheApprovedBootIsAccepted) {
  auto accepted = CheckQuotedBoot(quote_, boot_.log, &policy_);
  ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
  EXPECT_THAT(*accepted, StartsWith("pcrs sha256:0,1,2,3,5,6 + event log replayed to quoted "
                                    "sha256:0,1,2,3,4,5,6,7,8,9 boot_applications["));
  EXPECT_THAT(*accepted, HasSubstr("kernels[event 39: /syslinux/vmlinuz.A]"));
  EXPECT_THAT(*accepted, HasSubstr("other_events("));
}

// A PCR left out of the quote: the same signed values without PCR 9.
TEST_F(GceAttackTest, APcrLeftOutOfTheQuoteIsRefusedNamingIt) {
  for (uint32_t left_out : {4u, 8u, 9u, 7u}) {
    tpm::VerifiedQuote partial = quote_;
    partial.pcrs[DigestAlg::kSha256].erase(left_out);
    auto refused = CheckQuotedBoot(partial, boot_.log, &policy_);
    EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
    EXPECT_EQ(refused.status().message(),
              "the quote does not cover PCR sha256:" + std::to_string(left_out) +
                  ", which tpm.event_log.required_pcrs requires in every quote");
  }
}

// A covered PCR whose events the log leaves out: its quoted value is not its reset value.
TEST_F(GceAttackTest, ACoveredPcrWithoutEventsInTheLogIsRefused) {
  auto parsed = eventlog::ParseEventLog(boot_.log);
  Bytes without_pcr9;  // the log up to the PCR 9 kernel event, then the rest without it
  const auto& kernel = parsed->events[39];
  const size_t end = parsed->events[40].offset;
  without_pcr9.assign(boot_.log.begin(), boot_.log.begin() + static_cast<long>(kernel.offset));
  without_pcr9.insert(without_pcr9.end(), boot_.log.begin() + static_cast<long>(end),
                      boot_.log.end());
  auto refused = CheckQuotedBoot(quote_, without_pcr9, &policy_);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "the event log does not match the quoted PCR sha256:9: the log replays to " +
                std::string(64, '0') + ", the quote holds " +
                HexEncode(quote_.pcrs[DigestAlg::kSha256][9]));
}

// Extra events that replay into a PCR the quote does not cover (and the policy does not
// either): the approved kernel's event, digests and all, in PCR 11, where a UKI's kernel is
// measured. Counted, it would satisfy the kernels rule whatever PCR 9 held.
TEST_F(GceAttackTest, ExtraEventsInAnUnquotedPcrAreRefused) {
  auto parsed = eventlog::ParseEventLog(boot_.log);
  Bytes raw(boot_.log.begin() + static_cast<long>(parsed->events[39].offset),
            boot_.log.begin() + static_cast<long>(parsed->events[40].offset));
  raw[0] = 11;
  const Bytes forged = WithEvents(boot_, {raw});
  tpm::VerifiedQuote without_11 = quote_;
  for (auto& [bank, values] : without_11.pcrs) values.erase(11);
  auto refused = CheckQuotedBoot(without_11, forged, &policy_);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "event #" + std::to_string(next_) + " (EV_IPL, PCR 11, sha256 " + HexEncode(kernel_) +
                ") \"/syslinux/vmlinuz.A\" is in PCR 11, which the policy does not cover: the log "
                "may extend only the PCRs of tpm.event_log.required_pcrs (and tpm.pcrs)");
  // Without a policy, the verdict says which PCRs nothing vouches for.
  auto unchecked = CheckQuotedBoot(without_11, forged, nullptr);
  ASSERT_TRUE(unchecked.ok()) << unchecked.status().ToString();
  EXPECT_EQ(*unchecked,
            "event log replayed to quoted sha256:0,1,2,3,4,5,6,7,8,9; not quoted, so nothing "
            "vouches for its events there: sha256:11");
}

// The approved kernel's digest, extended into a PCR the policy covers but where no kernel is
// measured (PCR 8: GRUB's strings), and into PCR 4 as a UEFI application.
TEST_F(GceAttackTest, AnApprovedDigestInAForeignPcrIsRefused) {
  // The kernel's event, digests and all, moved to PCR 8 (the PCR index is its first field).
  auto parsed = eventlog::ParseEventLog(boot_.log);
  const auto& kernel_event = parsed->events[39];
  Bytes raw(boot_.log.begin() + static_cast<long>(kernel_event.offset),
            boot_.log.begin() + static_cast<long>(parsed->events[40].offset));
  raw[0] = 8;
  const Bytes forged = WithEvents(boot_, {raw});
  auto refused = CheckQuotedBoot(QuoteOfReplay(forged), forged, &policy_);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "event #" + std::to_string(next_) + " (EV_IPL, PCR 8, sha256 " + HexEncode(kernel_) +
                ") \"/syslinux/vmlinuz.A\" is not allowed: it is no fixed event, its PCR is not "
                "pinned, and its digest is in none of tpm.event_log.kernel_cmdlines, "
                "tpm.event_log.other_events");
}

// An event class in the wrong PCR: the approved shim, as a UEFI application in PCR 9.
TEST_F(GceAttackTest, AnApplicationOutsidePcr4IsRefused) {
  auto parsed = eventlog::ParseEventLog(boot_.log);
  const auto& shim = parsed->events[22];
  ASSERT_EQ(shim.type, eventlog::kEvEfiBootServicesApplication);
  Bytes raw(boot_.log.begin() + static_cast<long>(shim.offset),
            boot_.log.begin() + static_cast<long>(parsed->events[23].offset));
  raw[0] = 9;
  const Bytes forged = WithEvents(boot_, {raw});
  auto refused = CheckQuotedBoot(QuoteOfReplay(forged), forged, &policy_);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "event #" + std::to_string(next_) +
                " (EV_EFI_BOOT_SERVICES_APPLICATION, PCR 9, sha256 " +
                HexEncode(shim.digests.at(DigestAlg::kSha256)) +
                ") \"\\EFI\\BOOT\\BOOTX64.EFI\" is in PCR 9, but firmware measures the UEFI "
                "applications it loads into PCR 4 only");
}

// An unlisted event inside a covered PCR: one more GRUB command, measured and logged truthfully.
TEST_F(GceAttackTest, AnExtraGrubCommandIsRefused) {
  const Bytes forged = WithEvents(boot_, {InsmodEvil(boot_)});
  auto refused = CheckQuotedBoot(QuoteOfReplay(forged), forged, &policy_);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "event #" + std::to_string(next_) + " (EV_IPL, PCR 8, sha256 " +
                Sha256Of("insmod /boot/evil.mod") +
                ") \"grub_cmd: insmod /boot/evil.mod\" is not allowed: it is no fixed event, its "
                "PCR is not pinned, and its digest is in none of tpm.event_log.kernel_cmdlines, "
                "tpm.event_log.other_events");
}

// Relabelled events: a rejected kernel whose event calls itself a GRUB module, with the approved
// kernel's event after it; and a command whose text is the approved command line's but whose
// digest is another's.
TEST_F(GceAttackTest, RelabelledEventsAreRefused) {
  auto parsed = eventlog::ParseEventLog(boot_.log);
  const auto& kernel_event = parsed->events[39];
  const Bytes approved(boot_.log.begin() + static_cast<long>(kernel_event.offset),
                       boot_.log.begin() + static_cast<long>(parsed->events[40].offset));
  const Bytes forged = WithEvents(
      boot_, {ExtraEvent(boot_, 9, eventlog::kEvIpl,
                         ToBytes(std::string("(hd0,gpt1)/grub/x86_64-efi/evil.mod", 36)),
                         ToBytes("kernel 6.6.0-evil")),
              approved});
  auto refused = CheckQuotedBoot(QuoteOfReplay(forged), forged, &policy_);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "event #" + std::to_string(next_) + " (EV_IPL, PCR 9, sha256 " +
                Sha256Of("kernel 6.6.0-evil") +
                ") \"(hd0,gpt1)/grub/x86_64-efi/evil.mod\" is not allowed: it is no fixed event, "
                "its PCR is not pinned, and its digest is in none of tpm.event_log.kernels, "
                "tpm.event_log.initrds, tpm.event_log.other_events");

  const std::string approved_cmdline = eventlog::DescribeEvent(parsed->events[42]);
  ASSERT_THAT(approved_cmdline, StartsWith("kernel_cmdline: /syslinux/vmlinuz.A "));
  const Bytes lying = WithEvents(
      boot_, {ExtraEvent(boot_, 8, eventlog::kEvIpl, ToBytes(approved_cmdline),
                         ToBytes("/syslinux/vmlinuz.A init=/bin/sh"))});
  auto lie = CheckQuotedBoot(QuoteOfReplay(lying), lying, &policy_);
  EXPECT_EQ(lie.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(lie.status().message(),
              StartsWith("event #" + std::to_string(next_) + " (EV_IPL, PCR 8, sha1 "));
  EXPECT_THAT(lie.status().message(),
              HasSubstr(": its data does not hash to its digest (the log was altered)"));
}

// ---- the project's own boot chain: OVMF, a systemd-stub UKI (docs/image.md) ----
//
// What the image's reference boot measures (systemd 252's stub): PCR 4 the UKI and the kernel
// the stub starts; PCR 11 each section as a name event and a contents event; PCR 9 the Linux
// EFI stub's initrd and LoadOptions.
EventLogBuilder UkiBoot(const std::string& cmdline) {
  EventLogBuilder log;
  log.FirmwareBlob("ovmf 2023.02").SecureBootVariable("SecureBoot", {0});
  for (uint32_t pcr = 0; pcr < 8; ++pcr) log.Separator(pcr);
  log.EfiAction(4, "Calling EFI Application from Boot Option")
      .BootApplication("\\EFI\\BOOT\\BOOTX64.EFI", "uki with " + cmdline)
      .UkiSection(".linux", "vmlinuz 6.1.0-28")
      .UkiSection(".osrel", "ID=debian")
      .UkiSection(".cmdline", cmdline)
      .UkiSection(".initrd", "busybox initrd")
      .BootApplication("", "vmlinuz 6.1.0-28 authenticode")
      .LinuxInitrd("busybox initrd")
      .LinuxLoadOptions(cmdline)
      .EfiAction(5, "Exit Boot Services Invocation")
      .EfiAction(5, "Exit Boot Services Returned with Success");
  return log;
}

TEST(UkiBootTest, ThePolicyListsSectionsNotTheirNamesAndATamperedCommandLineIsRefused) {
  const Bytes approved = UkiBoot("root=/dev/vda2 ro verity=abc").Build();
  auto parsed = eventlog::ParseEventLog(approved);
  ASSERT_TRUE(parsed.ok());
  auto yaml = PolicyFromEventLog(*parsed, DigestAlg::kSha256, "reference.bin");
  ASSERT_TRUE(yaml.ok()) << yaml.status().ToString();
  EXPECT_THAT(*yaml, HasSubstr("    required_pcrs: [0, 1, 2, 3, 4, 5, 6, 7, 9, 11]\n"));
  EXPECT_THAT(*yaml, HasSubstr("    kernels:\n      - name: 'event 14: .linux'\n        digest: " +
                               HexEncode(Sha256(ToBytes("vmlinuz 6.1.0-28"))) + "\n"));
  // The section-name events are fixed (their digest is of the name): not listed. .osrel is.
  EXPECT_EQ(yaml->find(HexEncode(Sha256(ToBytes(std::string(".linux", 7))))), std::string::npos);
  EXPECT_THAT(*yaml, HasSubstr("      - name: 'event 16: .osrel'\n        pcr: 11\n        type: "
                               "EV_IPL\n        digest: " +
                               HexEncode(Sha256(ToBytes("ID=debian"))) + "\n"));
  const Policy policy = BootPolicy(*yaml);
  auto accepted = CheckQuotedBoot(QuoteOfReplay(approved), approved, &policy);
  ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
  EXPECT_EQ(*accepted,
            "pcrs sha256:0,1,2,3,5,6 + event log replayed to quoted sha256:0,1,2,3,4,5,6,7,9,11 "
            "boot_applications[event 12: \\EFI\\BOOT\\BOOTX64.EFI] kernels[event 14: .linux] "
            "kernel_cmdlines[event 18: .cmdline] initrds[event 20: .initrd] "
            "boot_applications[event 21] initrds[event 20: .initrd] "
            "kernel_cmdlines[event 23: Linux EFI stub: LoadOptions (command line)] "
            "secure_boot_variables other_events(1)");

  // The same image with another command line: another UKI (PCR 4) and another .cmdline.
  const Bytes tampered = UkiBoot("root=/dev/vda2 ro verity=abc berth.tampered=1").Build();
  auto refused = CheckQuotedBoot(QuoteOfReplay(tampered), tampered, &policy);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "boot_applications event #12 (EV_EFI_BOOT_SERVICES_APPLICATION, PCR 4, sha256 " +
                HexEncode(
                    Sha256(ToBytes("uki with root=/dev/vda2 ro verity=abc berth.tampered=1"))) +
                ") \"\\EFI\\BOOT\\BOOTX64.EFI\" is not in tpm.event_log.boot_applications");
}

}  // namespace
}  // namespace berth::verify
