// The boot check berthd runs on every TPM join and berthctl runs offline (CheckQuotedBoot):
// the real GCE quote with its real event log, a log changed by one byte, policies written from
// a log, PCR sets side by side, and a fleet with two approved kernels booted on a real TPM.
#include "verify/tpm_boot.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
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
    GTEST_SKIP() << "the real attestation testdata is not at " << testing::TestdataDir(); \
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
  const std::string secure_boot = HexEncode(parsed->events[3].digests.at(DigestAlg::kSha256));
  // Only SecureBoot is listed: the PK event is the first one not allowed.
  Policy only_sb = BootPolicy(
      "tpm:\n  event_log:\n    secure_boot_variables:\n      SecureBoot:\n"
      "        - digest: " +
      secure_boot + "\n");
  auto pk = CheckQuotedBoot(quote, std::span<const uint8_t>(log), &only_sb);
  EXPECT_EQ(pk.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(pk.status().message(),
              StartsWith("Secure Boot variable event #4 (EV_EFI_VARIABLE_DRIVER_CONFIG, PCR 7"));
  EXPECT_THAT(pk.status().message(),
              HasSubstr("\"PK\" is not in tpm.event_log.secure_boot_variables"));

  // An initrd rule on a boot whose log measures no initrd: the class must be present.
  Policy initrd = BootPolicy(
      "tpm:\n  event_log:\n    initrds:\n      - digest: " + std::string(64, '1') + "\n");
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

}  // namespace
}  // namespace berth::verify
