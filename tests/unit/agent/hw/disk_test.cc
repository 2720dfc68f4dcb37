// The real libblkid/libcryptsetup code on disk image files (the host has no device-mapper, so
// activation is exercised in the QEMU guest tests; everything else runs here).
#include "agent/hw/disk.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <cstring>
#include <filesystem>
#include <fstream>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/subprocess.h"
#include "tests/testing/testing.h"

namespace berth::agent {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

constexpr char kUuid[] = "0b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c";

SecretBytes Key(uint8_t fill) {
  SecretBytes k(32);
  std::memset(k.data(), fill, 32);
  return k;
}

class DiskTest : public ::testing::Test {
 protected:
  // A sparse, all-zero image (64 MiB unless asked; XFS needs 300 MiB).
  std::string BlankImage(const std::string& name, uintmax_t size = 64 << 20) {
    std::string path = dir_.Join(name);
    std::ofstream(path).close();
    std::filesystem::resize_file(path, size);
    return path;
  }
  void Run(const std::vector<std::string>& argv, const std::vector<std::string>& env = {}) {
    auto r = runner_.Run(argv, env);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(r->success()) << argv[0] << ": " << r->output;
  }
  // The whole image's SHA-256, streamed (images are up to 320 MiB).
  static std::string Sha256File(const std::string& path) {
    std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
    EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
    std::ifstream in(path, std::ios::binary);
    EXPECT_TRUE(in.good()) << path;
    std::vector<char> buf(1 << 20);
    while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
      EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
    }
    Bytes digest(32);
    EVP_DigestFinal_ex(ctx.get(), digest.data(), nullptr);
    return HexEncode(digest);
  }

  testing::TempDir dir_;
  RealProcessRunner runner_;
  std::unique_ptr<Disk> disk_ = MakeLibDisk();
};

TEST_F(DiskTest, ZeroImageIsBlank) {
  auto probe = disk_->Probe(BlankImage("blank.img"));
  ASSERT_TRUE(probe.ok()) << probe.status().ToString();
  EXPECT_TRUE(probe->blank());
  EXPECT_EQ(probe->signature, "");
}

TEST_F(DiskTest, FormatMakesABerthLuks2HeaderThatOpensOnlyWithItsKey) {
  std::string img = BlankImage("disk.img");
  ASSERT_TRUE(disk_->FormatIfBlank(img, kUuid, Key(1)).ok());

  auto probe = disk_->Probe(img);
  ASSERT_TRUE(probe.ok());
  EXPECT_EQ(probe->kind, ProbeResult::Kind::kLuks);
  EXPECT_EQ(probe->signature, "crypto_LUKS");
  auto header = disk_->ReadLuksHeader(img);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->uuid, kUuid);
  EXPECT_EQ(header->label, "berth-state");

  EXPECT_TRUE(disk_->CheckKey(img, Key(1)).ok());
  Status wrong = disk_->CheckKey(img, Key(2));
  EXPECT_EQ(wrong.code(), Code::kPermissionDenied);
  EXPECT_EQ(wrong.message(), "checking the key of " + img + ": no keyslot opens with this key");

  // What cryptsetup itself reads back: LUKS2, aes-xts-plain64, 512-bit key, PBKDF2-SHA512 at
  // the minimum iterations, the anti-forensic split and the key's digest on SHA-512 too.
  auto dump = runner_.Run({"/sbin/cryptsetup", "luksDump", img});
  ASSERT_TRUE(dump.ok() && dump->success());
  EXPECT_THAT(dump->output, HasSubstr("Version:       \t2"));
  EXPECT_THAT(dump->output, HasSubstr("cipher: aes-xts-plain64"));
  EXPECT_THAT(dump->output, HasSubstr("Key:        512 bits"));
  EXPECT_THAT(dump->output, HasSubstr("PBKDF:      pbkdf2"));
  EXPECT_THAT(dump->output, HasSubstr("Iterations: 1000"));
  EXPECT_THAT(dump->output, HasSubstr("\tHash:       sha512\n\tIterations: 1000"));
  EXPECT_THAT(dump->output, HasSubstr("AF hash:    sha512"));
  EXPECT_THAT(dump->output, Not(HasSubstr("sha256")));  // keyslot, split and digest alike
  EXPECT_THAT(dump->output, HasSubstr("Label:         \tberth-state"));
  EXPECT_THAT(dump->output, HasSubstr("Metadata area: \t16384 [bytes]"));
  EXPECT_THAT(dump->output, HasSubstr("Keyslots area: \t4194304 [bytes]"));
  EXPECT_THAT(dump->output, HasSubstr("offset: 5242880 [bytes]"));  // the data, from 5 MiB
}

// Agents before 2026-11-24 formatted with SHA-256 (cryptsetup's default hash); the keyslot
// records its own hash, so those disks open as before, with their key and no other.
TEST_F(DiskTest, ADiskFormattedWithSha256StillOpensWithItsKey) {
  std::string img = BlankImage("disk.img");
  SecretBytes key = Key(1);
  testing::MustWrite(dir_.Join("berth.key"), std::string(key.view()), 0600);
  Run({"/sbin/cryptsetup", "luksFormat", "-q", "--type", "luks2", "--cipher", "aes-xts-plain64",
       "--key-size", "512", "--sector-size", "4096", "--pbkdf", "pbkdf2", "--hash", "sha256",
       "--pbkdf-force-iterations", "1000", "--label", "berth-state", "--uuid", kUuid,
       "--key-file", dir_.Join("berth.key"), img});
  auto dump = runner_.Run({"/sbin/cryptsetup", "luksDump", img});
  ASSERT_TRUE(dump.ok() && dump->success());
  ASSERT_THAT(dump->output, HasSubstr("AF hash:    sha256"));

  auto header = disk_->ReadLuksHeader(img);
  ASSERT_TRUE(header.ok()) << header.status().ToString();
  EXPECT_TRUE(header->is_berth());
  EXPECT_TRUE(disk_->CheckKey(img, key).ok());
  EXPECT_EQ(disk_->CheckKey(img, Key(2)).code(), Code::kPermissionDenied);
}

TEST_F(DiskTest, TheSubsystemLabelIsWrittenBesideTheLabelAndTheKeyStillOpens) {
  std::string img = BlankImage("disk.img");
  ASSERT_TRUE(disk_->FormatIfBlank(img, kUuid, Key(1)).ok());
  EXPECT_EQ(disk_->ReadLuksHeader(img)->subsystem, "");
  ASSERT_TRUE(disk_->WriteLuksSubsystem(img, "berth-fs:ext4").ok());
  auto header = disk_->ReadLuksHeader(img);
  ASSERT_TRUE(header.ok());
  EXPECT_EQ(header->label, "berth-state");
  EXPECT_EQ(header->subsystem, "berth-fs:ext4");
  EXPECT_EQ(header->uuid, kUuid);
  EXPECT_TRUE(header->is_berth());
  EXPECT_TRUE(disk_->CheckKey(img, Key(1)).ok());
  auto dump = runner_.Run({"/sbin/cryptsetup", "luksDump", img});
  ASSERT_TRUE(dump.ok() && dump->success());
  EXPECT_THAT(dump->output, HasSubstr("Subsystem:     \tberth-fs:ext4"));
}

TEST_F(DiskTest, Luks1HeadersAreReadButAreNotBerths) {
  std::string img = BlankImage("disk.img");
  SecretBytes other = Key(9);
  testing::MustWrite(dir_.Join("other.key"), std::string(other.view()), 0600);
  Run({"/sbin/cryptsetup", "luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations",
       "1000", "--key-file", dir_.Join("other.key"), img});
  auto header = disk_->ReadLuksHeader(img);
  ASSERT_TRUE(header.ok()) << header.status().ToString();
  EXPECT_EQ(header->type, "LUKS1");
  EXPECT_FALSE(header->is_berth());
  EXPECT_EQ(disk_->WriteLuksSubsystem(img, "berth-fs:ext4").code(), Code::kInvalidArgument);
}

TEST_F(DiskTest, FormattingTwiceIsRefusedAndLeavesTheHeader) {
  std::string img = BlankImage("disk.img");
  ASSERT_TRUE(disk_->FormatIfBlank(img, kUuid, Key(1)).ok());
  std::string before = Sha256File(img);
  Status again = disk_->FormatIfBlank(img, "1b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c", Key(2));
  EXPECT_EQ(again.code(), Code::kFailedPrecondition);
  EXPECT_EQ(again.message(), img + " is not blank (crypto_LUKS): refusing to format it");
  EXPECT_EQ(Sha256File(img), before);
  EXPECT_TRUE(disk_->CheckKey(img, Key(1)).ok());
}

struct NonBlank {
  std::string name;
  std::vector<std::vector<std::string>> make;  // commands; IMG is replaced by the image path
  std::string signature;
  ProbeResult::Kind kind = ProbeResult::Kind::kOther;
  uintmax_t size = 64 << 20;
};

TEST_F(DiskTest, EveryKindOfNonBlankDiskIsRefusedAndLeftByteForByte) {
  SecretBytes other = Key(9);
  testing::MustWrite(dir_.Join("other.key"), std::string(other.view()), 0600);
  const std::vector<NonBlank> cases = {
      {"ext4", {{"/sbin/mkfs.ext4", "-q", "-F", "IMG"}}, "ext4"},
      {"xfs", {{"/sbin/mkfs.xfs", "-q", "-f", "IMG"}}, "xfs", ProbeResult::Kind::kOther, 320 << 20},
      {"vfat", {{"/sbin/mkfs.vfat", "IMG"}}, "vfat"},
      {"gpt",
       {{"/bin/sh", "-c", "echo 'label: gpt' | /sbin/sfdisk -q IMG"}},
       "partition table gpt"},
      {"dos",
       {{"/bin/sh", "-c", "echo 'label: dos' | /sbin/sfdisk -q IMG"}},
       "partition table dos"},
      {"foreign LUKS2",
       {{"/sbin/cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2",
         "--pbkdf-force-iterations", "1000", "--key-file", dir_.Join("other.key"), "IMG"}},
       "crypto_LUKS",
       ProbeResult::Kind::kLuks},
      {"LUKS1",
       {{"/sbin/cryptsetup", "luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations",
         "1000", "--key-file", dir_.Join("other.key"), "IMG"}},
       "crypto_LUKS",
       ProbeResult::Kind::kLuks},
      {"unrecognised data",
       {{"/bin/sh", "-c",
         "printf 'precious' | dd of=IMG bs=1 seek=700000 conv=notrunc status=none"}},
       "non-zero data in the first MiB"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string img = BlankImage("nonblank.img", c.size);
    for (auto argv : c.make) {
      for (auto& a : argv) {
        size_t at = a.find("IMG");
        if (at != std::string::npos) a.replace(at, 3, img);
      }
      Run(argv);
    }
    auto probe = disk_->Probe(img);
    ASSERT_TRUE(probe.ok()) << probe.status().ToString();
    EXPECT_EQ(probe->kind, c.kind);
    EXPECT_EQ(probe->signature, c.signature);
    std::string before = Sha256File(img);
    Status st = disk_->FormatIfBlank(img, kUuid, Key(1));
    EXPECT_EQ(st.code(), Code::kFailedPrecondition);
    EXPECT_EQ(st.message(), img + " is not blank (" + c.signature + "): refusing to format it");
    EXPECT_EQ(Sha256File(img), before);
    std::filesystem::remove(img);
  }
}

TEST_F(DiskTest, LuksHeaderWithAnotherKeyIsNotOpenedByOurs) {
  std::string img = BlankImage("disk.img");
  ASSERT_TRUE(disk_->FormatIfBlank(img, kUuid, Key(7)).ok());
  std::string before = Sha256File(img);
  EXPECT_EQ(disk_->CheckKey(img, Key(1)).code(), Code::kPermissionDenied);
  EXPECT_EQ(Sha256File(img), before);
}

TEST(DiskErrorsTest, CryptsetupCodesMapToOneStatusEach) {
  Status wrong = CryptsetupError("checking the key of /dev/vda", -EPERM, CryptOp::kTryKey);
  EXPECT_EQ(wrong.code(), Code::kPermissionDenied);
  EXPECT_EQ(wrong.message(), "checking the key of /dev/vda: no keyslot opens with this key");
  // -EPERM from anything but a key attempt is an access problem, not a refusal.
  Status access = CryptsetupError("formatting /dev/vda as LUKS2", -EPERM);
  EXPECT_EQ(access.code(), Code::kFailedPrecondition);
  EXPECT_EQ(access.message(), "formatting /dev/vda as LUKS2: Operation not permitted");
  EXPECT_EQ(CryptsetupError("x", -EACCES).code(), Code::kFailedPrecondition);
  EXPECT_EQ(CryptsetupError("x", -EROFS).code(), Code::kFailedPrecondition);
  EXPECT_EQ(CryptsetupError("x", -ENOENT).code(), Code::kNotFound);
  EXPECT_EQ(CryptsetupError("x", -ENXIO).code(), Code::kNotFound);
  EXPECT_EQ(CryptsetupError("x", -EINVAL).code(), Code::kInvalidArgument);
  EXPECT_EQ(CryptsetupError("x", -ENOMEM).code(), Code::kResourceExhausted);
  EXPECT_EQ(CryptsetupError("x", -EIO).code(), Code::kInternal);
  Status busy = CryptsetupError("opening /dev/vda as berth-state", -EBUSY, CryptOp::kTryKey);
  EXPECT_EQ(busy.code(), Code::kFailedPrecondition);
  EXPECT_EQ(busy.message(),
            "opening /dev/vda as berth-state: Device or resource busy (device in use)");
  Status missing = CryptsetupError("opening /dev/vda as berth-state", -ENOTSUP);
  EXPECT_EQ(missing.code(), Code::kFailedPrecondition);
  EXPECT_THAT(missing.message(),
              HasSubstr("is dm-crypt, or the cipher, missing from the kernel?"));
}

TEST(DiskErrorsTest, BlkidErrorsUseTheCallsErrnoWhenItSetOne) {
  Status io = BlkidError("probing /dev/vda", -1, EIO);
  EXPECT_EQ(io.code(), Code::kInternal);
  EXPECT_EQ(io.message(), "probing /dev/vda (libblkid): Input/output error");
  EXPECT_EQ(BlkidError("probing /dev/vda", -1, ENOENT).code(), Code::kNotFound);
  Status bare = BlkidError("probing /dev/vda", -22, 0);
  EXPECT_EQ(bare.code(), Code::kInternal);
  EXPECT_EQ(bare.message(), "probing /dev/vda: libblkid error -22");
}

TEST_F(DiskTest, MissingDeviceIsNamed) {
  auto probe = disk_->Probe(dir_.Join("absent.img"));
  ASSERT_FALSE(probe.ok());
  EXPECT_THAT(probe.status().message(), HasSubstr(dir_.Join("absent.img")));
  EXPECT_EQ(disk_->ReadLuksHeader(BlankImage("blank.img")).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace berth::agent
