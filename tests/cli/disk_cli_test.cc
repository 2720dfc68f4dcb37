// berthctl disk inspect on image files: blank, every kind of signature, berth's and other
// LUKS headers, unreadable paths; through the command library and through the binary.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/hw/disk.h"
#include "cli/commands.h"
#include "common/subprocess.h"
#include "tests/testing/testing.h"

namespace berth::cli {
namespace {

using ::testing::HasSubstr;

constexpr char kUuid[] = "0b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c";

struct Outcome {
  int exit_code = -1;
  std::string out, err;
};

class DiskCliTest : public ::testing::Test {
 protected:
  // `berthctl disk inspect <path>` through the command library.
  Outcome Inspect(const std::string& path) {
    std::ostringstream out, err;
    Context ctx;
    ctx.out = &out;
    ctx.err = &err;
    CLI::App app;
    app.require_subcommand(1);
    AddDiskCommands(app, ctx);
    std::vector<std::string> args = {path, "inspect", "disk"};  // CLI11 parses reversed vectors
    app.parse(args);
    return {ctx.exit_code, out.str(), err.str()};
  }

  std::string BlankImage(const std::string& name = "disk.img") {
    std::string path = dir_.Join(name);
    std::ofstream(path).close();
    std::filesystem::resize_file(path, 64 << 20);
    return path;
  }
  void Run(const std::vector<std::string>& argv) {
    auto r = runner_.Run(argv);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_TRUE(r->success()) << argv[0] << ": " << r->output;
  }
  static std::string FileBytes(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  std::string KeyFile() {
    std::string path = dir_.Join("other.key");
    testing::MustWrite(path, std::string(32, 'o'), 0600);
    return path;
  }

  testing::TempDir dir_;
  RealProcessRunner runner_;
};

TEST_F(DiskCliTest, ABlankImageIsBlank) {
  std::string img = BlankImage();
  Outcome o = Inspect(img);
  EXPECT_EQ(o.exit_code, 0);
  // 41 places read (the first and last MiB, 39 samples of 128 KiB): docs/state-disk.md.
  EXPECT_EQ(o.out, "path: " + img + "\nblank: yes\nzero-checked: 41 ranges, 7208960 bytes\n");
  EXPECT_EQ(o.err, "");
}

TEST_F(DiskCliTest, FilesystemsPartitionTablesAndDataAreNamedWithWhereTheyAre) {
  struct Case {
    std::string name, command, out;
  };
  const std::vector<Case> cases = {
      {"gpt", "echo 'label: gpt' | /sbin/sfdisk -q IMG",
       "signature: partition table gpt\n"
       "found: GPT header at offset 512\n"
       "found: backup GPT header at the last sector (offset 67108352)\n"
       "found: protective MBR at offset 510\n"
       "found: non-zero data in the first MiB (first non-zero byte at offset 448)\n"
       "found: non-zero data in the last MiB (first non-zero byte at offset 67108352)\n"},
      // Issue 23's disk: a partition with ext4 in it, the first 34 sectors zeroed.
      {"wiped gpt",
       "printf 'label: gpt\\n,\\n' | /sbin/sfdisk -q IMG && "
       "/sbin/mkfs.ext4 -q -F -E offset=1048576 IMG 32M && "
       "dd if=/dev/zero of=IMG bs=512 count=34 conv=notrunc status=none",
       "signature: partition table gpt\n"
       "found: backup GPT header at the last sector (offset 67108352)\n"
       "found: ext4 superblock at offset 1049656 (a filesystem from 1 MiB)\n"
       "found: non-zero data at 1 MiB (first non-zero byte at offset 1049601)\n"
       "found: non-zero data at 9 MiB (first non-zero byte at offset 9438209)\n"
       "found: non-zero data in the last MiB (first non-zero byte at offset 67091968)\n"},
      {"data", "printf x | dd of=IMG bs=1 seek=4096 conv=notrunc status=none",
       "signature: non-zero data\n"
       "found: non-zero data in the first MiB (first non-zero byte at offset 4096)\n"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string img = BlankImage("disk.img");
    std::string command = c.command;
    for (size_t at; (at = command.find("IMG")) != std::string::npos;) command.replace(at, 3, img);
    Run({"/bin/sh", "-c", command});
    std::string before = FileBytes(img);
    Outcome o = Inspect(img);
    EXPECT_EQ(o.exit_code, 1);
    EXPECT_EQ(o.out, "path: " + img + "\nblank: no\n" + c.out);
    EXPECT_EQ(o.err, "");
    EXPECT_TRUE(FileBytes(img) == before) << "inspect changed the image";
    std::filesystem::remove(img);
  }
}

TEST_F(DiskCliTest, AFilesystemNamesItsTypeFirst) {
  std::string img = BlankImage();
  Run({"/sbin/mkfs.vfat", img});
  Outcome o = Inspect(img);
  EXPECT_EQ(o.exit_code, 1);
  EXPECT_EQ(o.out, "path: " + img +
                       "\nblank: no\nsignature: vfat\nfound: vfat superblock at offset 54\n"
                       "found: non-zero data in the first MiB (first non-zero byte at offset 0)\n");
}

TEST_F(DiskCliTest, ABerthStateDiskShowsItsUuidLabelAndFilesystemRecord) {
  std::string img = BlankImage();
  auto disk = agent::MakeLibDisk();
  SecretBytes key(32);
  std::memset(key.data(), 7, key.size());
  ASSERT_TRUE(disk->FormatIfBlank(img, kUuid, key).ok());
  Outcome fresh = Inspect(img);
  EXPECT_EQ(fresh.exit_code, 1);
  EXPECT_EQ(fresh.out, "path: " + img + "\nblank: no\nsignature: crypto_LUKS\n"
                           "found: crypto_LUKS (version 2) header at offset 0\nluks: LUKS2\nuuid: " +
                           kUuid + "\nlabel: berth-state\nberth: yes\n");

  ASSERT_TRUE(disk->WriteLuksSubsystem(img, "berth-fs:ext4").ok());
  std::string before = FileBytes(img);
  Outcome made = Inspect(img);
  EXPECT_EQ(made.exit_code, 1);
  EXPECT_EQ(made.out, "path: " + img + "\nblank: no\nsignature: crypto_LUKS\n"
                          "found: crypto_LUKS (version 2) header at offset 0\nluks: LUKS2\nuuid: " +
                          kUuid + "\nlabel: berth-state\nsubsystem: berth-fs:ext4\nberth: yes\n");
  EXPECT_TRUE(FileBytes(img) == before) << "inspect changed the image";
}

TEST_F(DiskCliTest, OtherLuksDisksAreNotBerths) {
  std::string luks2 = BlankImage("luks2.img");
  Run({"/sbin/cryptsetup", "luksFormat", "-q", "--type", "luks2", "--pbkdf", "pbkdf2",
       "--pbkdf-force-iterations", "1000", "--label", "someone-else", "--uuid", kUuid, "--key-file",
       KeyFile(), luks2});
  Outcome o2 = Inspect(luks2);
  EXPECT_EQ(o2.exit_code, 1);
  EXPECT_EQ(o2.out, "path: " + luks2 + "\nblank: no\nsignature: crypto_LUKS\n"
                        "found: crypto_LUKS (version 2) header at offset 0\nluks: LUKS2\nuuid: " +
                        kUuid + "\nlabel: someone-else\nberth: no\n");

  std::string luks1 = BlankImage("luks1.img");
  Run({"/sbin/cryptsetup", "luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations",
       "1000", "--uuid", kUuid, "--key-file", KeyFile(), luks1});
  Outcome o1 = Inspect(luks1);
  EXPECT_EQ(o1.exit_code, 1);
  EXPECT_EQ(o1.out, "path: " + luks1 + "\nblank: no\nsignature: crypto_LUKS\n"
                        "found: crypto_LUKS (version 1) header at offset 0\nluks: LUKS1\nuuid: " +
                        kUuid + "\nberth: no\n");
}

TEST_F(DiskCliTest, UnreadablePathsExitTwo) {
  Outcome missing = Inspect(dir_.Join("absent.img"));
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_EQ(missing.out, "");
  EXPECT_EQ(missing.err, "berthctl disk inspect: cannot read " + dir_.Join("absent.img") +
                             ": stat: No such file or directory\n");

  Outcome directory = Inspect(dir_.path());
  EXPECT_EQ(directory.exit_code, 2);
  EXPECT_EQ(directory.err, "berthctl disk inspect: cannot read " + dir_.path() +
                               ": not a block device or an image file\n");
}

TEST_F(DiskCliTest, TheBinaryExitsWithTheSameCodes) {
  const std::string berthctl = testing::BuildDir() + "/cli/berthctl";
  std::string blank = BlankImage("blank.img");
  std::string ext4 = BlankImage("ext4.img");
  Run({"/sbin/mkfs.ext4", "-q", "-F", ext4});
  auto run = [&](std::vector<std::string> args) {
    args.insert(args.begin(), berthctl);
    auto r = runner_.Run(args);
    EXPECT_TRUE(r.ok());
    return r.ok() ? *r : ProcessResult{};
  };
  ProcessResult b = run({"disk", "inspect", blank});
  EXPECT_EQ(b.exit_code, 0);
  EXPECT_EQ(b.output, "path: " + blank + "\nblank: yes\nzero-checked: 41 ranges, 7208960 bytes\n");
  ProcessResult e = run({"disk", "inspect", ext4});
  EXPECT_EQ(e.exit_code, 1);
  EXPECT_THAT(e.output, HasSubstr("signature: ext4\nfound: ext4 superblock at offset 1080\n"));
  EXPECT_EQ(run({"disk", "inspect", dir_.Join("absent.img")}).exit_code, 2);
  EXPECT_EQ(run({"disk", "inspect"}).exit_code, 2);  // usage: PATH is required
}

}  // namespace
}  // namespace berth::cli
