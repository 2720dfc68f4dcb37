// The real libblkid/libcryptsetup code on disk image files (the host has no device-mapper, so
// activation is exercised in the QEMU guest tests; everything else runs here).
#include "agent/hw/disk.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
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

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::MatchesRegex;
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

uint64_t Bytes(const std::vector<ByteRange>& ranges) {
  uint64_t n = 0;
  for (const ByteRange& r : ranges) n += r.length;
  return n;
}

TEST_F(DiskTest, AllZeroImagesSparseOrWrittenAreBlank) {
  std::string written = dir_.Join("written.img");
  Run({"/bin/dd", "if=/dev/zero", "of=" + written, "bs=1M", "count=64", "status=none"});
  for (const std::string& img :
       {BlankImage("sparse.img"), written, BlankImage("huge.img", uintmax_t{1} << 40)}) {
    SCOPED_TRACE(img);
    const uint64_t size = std::filesystem::file_size(img);
    auto probe = disk_->Probe(img);
    ASSERT_TRUE(probe.ok()) << probe.status().ToString();
    EXPECT_TRUE(probe->blank());
    EXPECT_EQ(probe->signature, "");
    EXPECT_TRUE(probe->found.empty());
    EXPECT_EQ(probe->data_reads, static_cast<int>(DataCheckRanges(size).size()));
    EXPECT_EQ(probe->data_bytes, Bytes(DataCheckRanges(size)));
  }
}

TEST(DataCheckRangesTest, BothEndsWholeAndAFewDozenPlacesBetween) {
  constexpr uint64_t kMiB = 1 << 20;
  // 64 MiB: the ends, every MiB to 16, 32 MiB, and every 2 MiB (64 / 32) between.
  std::vector<ByteRange> small = DataCheckRanges(64 * kMiB);
  ASSERT_EQ(small.size(), 41u);
  EXPECT_EQ(small.front(), (ByteRange{0, kMiB}));
  EXPECT_EQ(small.back(), (ByteRange{63 * kMiB, kMiB}));
  EXPECT_EQ(Bytes(small), 2 * kMiB + 39 * kSampleBytes);
  std::vector<uint64_t> starts;
  for (const ByteRange& r : small) starts.push_back(r.offset / kMiB);
  EXPECT_THAT(starts, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 18, 20,
                                  22, 24, 26, 28, 30, 32, 34, 36, 38, 40, 42, 44, 46, 48, 50, 52,
                                  54, 56, 58, 60, 62, 63));

  // 1 TiB: 68 reads, every one where the list says, none overlapping.
  const uint64_t tib = uint64_t{1} << 40;
  std::vector<ByteRange> large = DataCheckRanges(tib);
  ASSERT_EQ(large.size(), 68u);
  EXPECT_EQ(large.front(), (ByteRange{0, kMiB}));
  EXPECT_EQ(large.back(), (ByteRange{tib - kMiB, kMiB}));
  for (size_t i = 1; i < large.size(); ++i) {
    EXPECT_LE(large[i - 1].offset + large[i - 1].length, large[i].offset);
    if (i + 1 < large.size()) {
      EXPECT_EQ(large[i].length, kSampleBytes);
    }
  }
  auto has = [&](uint64_t offset) {
    return std::any_of(large.begin(), large.end(),
                       [&](const ByteRange& r) { return r.offset == offset; });
  };
  for (uint64_t mib : {1, 2, 3, 16, 32, 101, 117, 129, 257, 513, 601, 1025, 1601, 1625}) {
    EXPECT_TRUE(has(mib * kMiB)) << mib << " MiB";
  }
  EXPECT_TRUE(has(tib / 2));       // 512 GiB: a power of two and the middle
  EXPECT_TRUE(has(tib / 32 * 31));  // the last of the spread

  // Tiny devices: the whole device, in one or two reads.
  EXPECT_THAT(DataCheckRanges(4096), ElementsAre(ByteRange{0, 4096}));
  EXPECT_THAT(DataCheckRanges(3 * kMiB / 2),
              ElementsAre(ByteRange{0, kMiB}, ByteRange{kMiB, kMiB / 2}));
  EXPECT_THAT(DataCheckRanges(2 * kMiB), ElementsAre(ByteRange{0, kMiB}, ByteRange{kMiB, kMiB}));
  EXPECT_TRUE(DataCheckRanges(0).empty());
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

TEST_F(DiskTest, AnExtraKeyslotWithItsTokenOpensBesideTheClustersAndReplacesItsPredecessor) {
  std::string img = BlankImage("disk.img");
  ASSERT_TRUE(disk_->FormatIfBlank(img, kUuid, Key(1)).ok());
  auto keyslots = MakeLibLuksKeyslots();
  auto slot = keyslots->AddKeyslotWithToken(img, Key(1), Key(2), "berth-cold-start",
                                            R"({"tpm2-blob": "00ff"})");
  ASSERT_TRUE(slot.ok()) << slot.status().ToString();
  EXPECT_EQ(*slot, 1);
  EXPECT_TRUE(disk_->CheckKey(img, Key(1)).ok());
  EXPECT_TRUE(disk_->CheckKey(img, Key(2)).ok());
  auto tokens = keyslots->Tokens(img, "berth-cold-start");
  ASSERT_TRUE(tokens.ok());
  ASSERT_EQ(tokens->size(), 1u);
  EXPECT_EQ(nlohmann::json::parse((*tokens)[0].json),
            nlohmann::json::parse(
                R"({"type": "berth-cold-start", "keyslots": ["1"], "tpm2-blob": "00ff"})"));
  // Again (a re-seal): the old keyslot goes with its token.
  ASSERT_TRUE(keyslots->AddKeyslotWithToken(img, Key(1), Key(3), "berth-cold-start", "{}").ok());
  EXPECT_EQ(disk_->CheckKey(img, Key(2)).code(), Code::kPermissionDenied);
  EXPECT_TRUE(disk_->CheckKey(img, Key(3)).ok());
  EXPECT_TRUE(disk_->CheckKey(img, Key(1)).ok());
  tokens = keyslots->Tokens(img, "berth-cold-start");
  ASSERT_EQ(tokens->size(), 1u);
  // An update keeps the type and the keyslot, whatever the fields say.
  ASSERT_TRUE(keyslots
                  ->UpdateToken(img, (*tokens)[0].id,
                                R"({"policies": [1], "type": "other", "keyslots": ["0"]})")
                  .ok());
  tokens = keyslots->Tokens(img, "berth-cold-start");
  ASSERT_EQ(tokens->size(), 1u);
  auto j = nlohmann::json::parse((*tokens)[0].json);
  EXPECT_EQ(j["policies"], nlohmann::json::array({1}));
  EXPECT_EQ(j["type"], "berth-cold-start");
  EXPECT_EQ(j["keyslots"], nlohmann::json::array({"1"}));
  EXPECT_TRUE(keyslots->Tokens(img, "berth-recovery")->empty());
}

TEST_F(DiskTest, AKeyThatOpensNothingAddsNoKeyslotAndChangesNothing) {
  std::string img = BlankImage("disk.img");
  ASSERT_TRUE(disk_->FormatIfBlank(img, kUuid, Key(1)).ok());
  const std::string before = Sha256File(img);
  auto keyslots = MakeLibLuksKeyslots();
  auto slot = keyslots->AddKeyslotWithToken(img, Key(9), Key(2), "berth-recovery", "{}");
  EXPECT_EQ(slot.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(Sha256File(img), before);
  EXPECT_EQ(keyslots->AddKeyslotWithToken(img, Key(1), Key(2), "berth-recovery", "[1]")
                .status()
                .message(),
            "the berth-recovery token's fields are not a JSON object");
  EXPECT_EQ(Sha256File(img), before);
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
  EXPECT_EQ(again.message(), img + " is not blank, refusing to format it: found crypto_LUKS "
                                  "(version 2) header at offset 0");
  EXPECT_EQ(Sha256File(img), before);
  EXPECT_TRUE(disk_->CheckKey(img, Key(1)).ok());
}

struct NonBlank {
  std::string name;
  std::string make;  // a shell command; IMG is the image's path
  ProbeResult::Kind kind;
  std::string signature;
  // What the probe names, in order, before any "non-zero data" lines (which must follow, and
  // of which there must be at least one unless the disk is LUKS).
  std::vector<std::string> signatures;
  uintmax_t size = 64 << 20;
};

// Every kind of disk that holds data that can be made on the host: metadata at the start, at
// the end, or only past the first MiB. (mdraid members need the kernel's md driver, LVM
// members a block device: tests/e2e/state_disk_e2e_test.cc makes them in a QEMU guest.)
std::vector<NonBlank> NonBlankDisks(const std::string& key_file) {
  constexpr uint64_t kMiB = 1 << 20;
  const std::string last_mib = std::to_string(63 * kMiB);
  const std::string gpt_part =
      "printf 'label: gpt\\n,\\n' | /sbin/sfdisk -q IMG && "
      "/sbin/mkfs.ext4 -q -F -E offset=1048576 IMG 32M";
  const std::string dos_part =
      "printf 'label: dos\\n,\\n' | /sbin/sfdisk -q IMG && "
      "/sbin/mkfs.ext4 -q -F -E offset=1048576 IMG 32M";
  using K = ProbeResult::Kind;
  return {
      {"ext2", "/sbin/mkfs.ext2 -q -F IMG", K::kOther, "ext2", {"ext2 superblock at offset 1080"}},
      {"ext3", "/sbin/mkfs.ext3 -q -F IMG", K::kOther, "ext3", {"ext3 superblock at offset 1080"}},
      {"ext4", "/sbin/mkfs.ext4 -q -F IMG", K::kOther, "ext4", {"ext4 superblock at offset 1080"}},
      {"xfs", "/sbin/mkfs.xfs -q -f IMG", K::kOther, "xfs", {"xfs superblock at offset 0"},
       320 << 20},
      {"vfat", "/sbin/mkfs.vfat IMG >/dev/null", K::kOther, "vfat",
       {"vfat superblock at offset 54"}},
      {"exfat", "/sbin/mkfs.exfat IMG >/dev/null", K::kOther, "exfat",
       {"exfat superblock at offset 3"}},
      {"ntfs", "/sbin/mkfs.ntfs -q -F -f IMG >/dev/null 2>&1", K::kOther, "ntfs",
       {"ntfs superblock at offset 3"}},
      {"btrfs", "/sbin/mkfs.btrfs -q -f IMG >/dev/null", K::kOther, "btrfs",
       {"btrfs superblock at offset 65600"}, 128 << 20},
      {"f2fs", "/sbin/mkfs.f2fs -q -f IMG >/dev/null", K::kOther, "f2fs",
       {"f2fs superblock at offset 1024"}},
      {"jfs", "/sbin/mkfs.jfs -q IMG >/dev/null", K::kOther, "jfs",
       {"jfs superblock at offset 32768"}},
      {"nilfs2", "/sbin/mkfs.nilfs2 -q -f IMG >/dev/null", K::kOther, "nilfs2",
       {"nilfs2 superblock at offset 1030"}, 160 << 20},
      {"reiserfs", "/sbin/mkfs.reiserfs -q -f IMG >/dev/null 2>&1", K::kOther, "reiserfs",
       {"reiserfs superblock at offset 65588"}},
      {"udf", "/usr/sbin/mkudffs IMG >/dev/null", K::kOther, "udf",
       {"udf superblock at offset 32769"}},
      {"minix", "/sbin/mkfs.minix IMG >/dev/null", K::kOther, "minix",
       {"minix superblock at offset 1040"}},
      {"swap", "/sbin/mkswap IMG >/dev/null", K::kOther, "swap", {"swap signature at offset 4086"}},
      {"bcache", "/usr/sbin/make-bcache -B IMG >/dev/null", K::kOther, "bcache",
       {"bcache signature at offset 4120"}},
      {"squashfs",
       "mkdir -p IMG.d && echo data > IMG.d/f && /usr/bin/mksquashfs IMG.d IMG -quiet -noappend "
       ">/dev/null && truncate -s 64M IMG",
       K::kOther, "squashfs", {"squashfs superblock at offset 0"}},
      {"erofs",
       "mkdir -p IMG.d && echo data > IMG.d/f && rm IMG && /usr/bin/mkfs.erofs IMG IMG.d "
       ">/dev/null && truncate -s 64M IMG",
       K::kOther, "erofs", {"erofs superblock at offset 1024"}},
      {"LUKS2",
       "/sbin/cryptsetup luksFormat -q --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 "
       "--key-file " + key_file + " IMG",
       K::kLuks, "crypto_LUKS", {"crypto_LUKS (version 2) header at offset 0"}},
      {"LUKS1",
       "/sbin/cryptsetup luksFormat -q --type luks1 --pbkdf-force-iterations 1000 --key-file " +
           key_file + " IMG",
       K::kLuks, "crypto_LUKS", {"crypto_LUKS (version 1) header at offset 0"}},
      {"empty GPT", "echo 'label: gpt' | /sbin/sfdisk -q IMG", K::kOther, "partition table gpt",
       {"GPT header at offset 512", "backup GPT header at the last sector (offset 67108352)",
        "protective MBR at offset 510"}},
      {"GPT and ext4", gpt_part, K::kOther, "partition table gpt",
       {"GPT header at offset 512", "backup GPT header at the last sector (offset 67108352)",
        "protective MBR at offset 510",
        "ext4 superblock at offset 1049656 (a filesystem from 1 MiB)"}},
      // Issue 23: the first 34 sectors zeroed (the protective MBR and the primary GPT).
      {"GPT and ext4, primary GPT wiped",
       gpt_part + " && dd if=/dev/zero of=IMG bs=512 count=34 conv=notrunc status=none",
       K::kOther, "partition table gpt",
       {"backup GPT header at the last sector (offset 67108352)",
        "ext4 superblock at offset 1049656 (a filesystem from 1 MiB)"}},
      {"GPT and ext4, backup GPT wiped",
       gpt_part + " && dd if=/dev/zero of=IMG bs=512 seek=131039 count=33 conv=notrunc "
                  "status=none",
       K::kOther, "partition table gpt",
       {"GPT header at offset 512", "protective MBR at offset 510",
        "ext4 superblock at offset 1049656 (a filesystem from 1 MiB)"}},
      {"empty MBR", "echo 'label: dos' | /sbin/sfdisk -q IMG", K::kOther, "partition table dos",
       {"MBR partition table at offset 510"}},
      {"MBR and ext4", dos_part, K::kOther, "partition table dos",
       {"MBR partition table at offset 510",
        "ext4 superblock at offset 1049656 (a filesystem from 1 MiB)"}},
      {"MBR and ext4, MBR wiped",
       dos_part + " && dd if=/dev/zero of=IMG bs=512 count=1 conv=notrunc status=none",
       K::kOther, "ext4", {"ext4 superblock at offset 1049656 (a filesystem from 1 MiB)"}},
      // No partition table at all: a filesystem at a MiB the probe samples.
      {"ext4 at 3 MiB", "/sbin/mkfs.ext4 -q -F -E offset=3145728 IMG 32M", K::kOther, "ext4",
       {"ext4 superblock at offset 3146808 (a filesystem from 3 MiB)"}},
      {"ext4 at 40 MiB", "/sbin/mkfs.ext4 -q -F -E offset=41943040 IMG 16M", K::kOther, "ext4",
       {"ext4 superblock at offset 41944120 (a filesystem from 40 MiB)"}},
      {"vfat at sector 63", "/sbin/mkfs.vfat --offset 63 IMG >/dev/null", K::kOther, "vfat",
       {"vfat superblock at offset 32310 (a filesystem from offset 32256)"}},
      // Data no prober knows, in the first MiB, the last MiB, and at a sampled place between.
      {"data in the first MiB",
       "printf precious | dd of=IMG bs=1 seek=700000 conv=notrunc status=none", K::kOther,
       "non-zero data", {}},
      {"data in the last sector",
       "printf precious | dd of=IMG bs=1 seek=67108856 conv=notrunc status=none", K::kOther,
       "non-zero data", {}},
      {"data at 40 MiB",
       "printf precious | dd of=IMG bs=1 seek=41943045 conv=notrunc status=none", K::kOther,
       "non-zero data", {}},
  };
}

TEST_F(DiskTest, EveryKindOfNonBlankDiskIsRefusedAndLeftByteForByte) {
  SecretBytes other = Key(9);
  testing::MustWrite(dir_.Join("other.key"), std::string(other.view()), 0600);
  const std::string data_line =
      "non-zero data (in the first MiB|in the last MiB|at [0-9]+ MiB) \\(first non-zero byte "
      "at offset [0-9]+\\)";
  for (const auto& c : NonBlankDisks(dir_.Join("other.key"))) {
    SCOPED_TRACE(c.name);
    std::string img = BlankImage("nonblank.img", c.size);
    std::string make = c.make;
    for (size_t at; (at = make.find("IMG")) != std::string::npos;) make.replace(at, 3, img);
    Run({"/bin/sh", "-c", make});
    const std::string before = Sha256File(img);
    auto probe = disk_->Probe(img);
    ASSERT_TRUE(probe.ok()) << probe.status().ToString();
    EXPECT_EQ(Sha256File(img), before) << "the probe changed the image";
    EXPECT_EQ(probe->kind, c.kind);
    EXPECT_EQ(probe->signature, c.signature);
    ASSERT_GE(probe->found.size(), c.signatures.size());
    std::vector<std::string> named(probe->found.begin(),
                                   probe->found.begin() + static_cast<long>(c.signatures.size()));
    EXPECT_EQ(named, c.signatures);
    if (c.kind == ProbeResult::Kind::kLuks) {
      EXPECT_EQ(probe->found.size(), c.signatures.size());  // LUKS data is ciphertext: no check
      EXPECT_EQ(probe->data_reads, 0);
    } else {
      EXPECT_GT(probe->found.size(), c.signatures.size()) << "no non-zero data found";
      for (size_t i = c.signatures.size(); i < probe->found.size(); ++i) {
        EXPECT_THAT(probe->found[i], MatchesRegex(data_line));
      }
    }
    Status st = disk_->FormatIfBlank(img, kUuid, Key(1));
    EXPECT_EQ(st.code(), Code::kFailedPrecondition);
    EXPECT_EQ(st.message(), img + " is not blank, refusing to format it: found " +
                                probe->Describe());
    EXPECT_EQ(Sha256File(img), before);
    std::filesystem::remove_all(img + ".d");
    std::filesystem::remove(img);
  }
}

TEST_F(DiskTest, DataNoProberKnowsIsNamedWithWhereItIs) {
  struct Case {
    uint64_t offset;
    std::string found;
  };
  for (const Case& c : std::vector<Case>{
           {700000, "non-zero data in the first MiB (first non-zero byte at offset 700000)"},
           {67108863, "non-zero data in the last MiB (first non-zero byte at offset 67108863)"},
           {41943045, "non-zero data at 40 MiB (first non-zero byte at offset 41943045)"},
           {(3 << 20) + 100, "non-zero data at 3 MiB (first non-zero byte at offset 3145828)"}}) {
    std::string img = BlankImage("data.img");
    Run({"/bin/sh", "-c",
         "printf x | dd of=" + img + " bs=1 seek=" + std::to_string(c.offset) +
             " conv=notrunc status=none"});
    auto probe = disk_->Probe(img);
    ASSERT_TRUE(probe.ok()) << probe.status().ToString();
    EXPECT_EQ(probe->kind, ProbeResult::Kind::kOther);
    EXPECT_EQ(probe->signature, "non-zero data");
    EXPECT_THAT(probe->found, ElementsAre(c.found));
    EXPECT_EQ(probe->Describe(), c.found);
    std::filesystem::remove(img);
  }
}

// The probe's reach: one byte anywhere else past the first MiB and before the last is not seen
// (a sampled check), and the description shows four findings at most.
TEST_F(DiskTest, AByteBetweenTheSampledPlacesIsNotSeenAndDescribeShowsFour) {
  std::string img = BlankImage("between.img");
  Run({"/bin/sh", "-c",
       "printf x | dd of=" + img + " bs=1 seek=" + std::to_string((17 << 20) + 200000) +
           " conv=notrunc status=none"});
  auto probe = disk_->Probe(img);
  ASSERT_TRUE(probe.ok());
  EXPECT_TRUE(probe->blank());

  ProbeResult many;
  many.found = {"a", "b", "c", "d", "e", "f"};
  EXPECT_EQ(many.Describe(), "a; b; c; d; and 2 more");
  many.found.resize(4);
  EXPECT_EQ(many.Describe(), "a; b; c; d");
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

TEST_F(DiskTest, MissingEmptyAndOddDevicesAreNamed) {
  auto probe = disk_->Probe(dir_.Join("absent.img"));
  ASSERT_FALSE(probe.ok());
  EXPECT_EQ(probe.status().code(), Code::kNotFound);
  EXPECT_EQ(probe.status().message(),
            "open(" + dir_.Join("absent.img") + "): No such file or directory");
  const std::string empty = BlankImage("empty.img", 0);
  EXPECT_EQ(disk_->Probe(empty).status().ToString(),
            "FAILED_PRECONDITION: " + empty + " is empty (0 bytes)");
  EXPECT_EQ(disk_->Probe(dir_.path()).status().ToString(),
            "FAILED_PRECONDITION: " + dir_.path() + " is not a block device or an image file");
  EXPECT_EQ(disk_->ReadLuksHeader(BlankImage("blank.img")).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace berth::agent
