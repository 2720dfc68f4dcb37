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
  EXPECT_EQ(o.out, "path: " + img + "\nblank: yes\n");
  EXPECT_EQ(o.err, "");
}

TEST_F(DiskCliTest, FilesystemsPartitionTablesAndDataAreNamed) {
  struct Case {
    std::string name, command, signature;
  };
  const std::vector<Case> cases = {
      {"ext4", "/sbin/mkfs.ext4 -q -F IMG", "ext4"},
      {"vfat", "/sbin/mkfs.vfat IMG >/dev/null", "vfat"},
      {"gpt", "echo 'label: gpt' | /sbin/sfdisk -q IMG", "partition table gpt"},
      {"data", "printf x | dd of=IMG bs=1 seek=4096 conv=notrunc status=none",
       "non-zero data in the first MiB"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::string img = BlankImage(c.name + ".img");
    std::string command = c.command;
    command.replace(command.find("IMG"), 3, img);
    Run({"/bin/sh", "-c", command});
    Outcome o = Inspect(img);
    EXPECT_EQ(o.exit_code, 1);
    EXPECT_EQ(o.out, "path: " + img + "\nblank: no\nsignature: " + c.signature + "\n");
    EXPECT_EQ(o.err, "");
  }
}

TEST_F(DiskCliTest, ABerthStateDiskShowsItsUuidLabelAndFilesystemRecord) {
  std::string img = BlankImage();
  auto disk = agent::MakeLibDisk();
  SecretBytes key(32);
  std::memset(key.data(), 7, key.size());
  ASSERT_TRUE(disk->FormatIfBlank(img, kUuid, key).ok());
  Outcome fresh = Inspect(img);
  EXPECT_EQ(fresh.exit_code, 1);
  EXPECT_EQ(fresh.out, "path: " + img + "\nblank: no\nsignature: crypto_LUKS\nluks: LUKS2\nuuid: " +
                           kUuid + "\nlabel: berth-state\nberth: yes\n");

  ASSERT_TRUE(disk->WriteLuksSubsystem(img, "berth-fs:ext4").ok());
  std::string before = FileBytes(img);
  Outcome made = Inspect(img);
  EXPECT_EQ(made.exit_code, 1);
  EXPECT_EQ(made.out, "path: " + img + "\nblank: no\nsignature: crypto_LUKS\nluks: LUKS2\nuuid: " +
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
  EXPECT_EQ(o2.out, "path: " + luks2 + "\nblank: no\nsignature: crypto_LUKS\nluks: LUKS2\nuuid: " +
                        kUuid + "\nlabel: someone-else\nberth: no\n");

  std::string luks1 = BlankImage("luks1.img");
  Run({"/sbin/cryptsetup", "luksFormat", "-q", "--type", "luks1", "--pbkdf-force-iterations",
       "1000", "--uuid", kUuid, "--key-file", KeyFile(), luks1});
  Outcome o1 = Inspect(luks1);
  EXPECT_EQ(o1.exit_code, 1);
  EXPECT_EQ(o1.out, "path: " + luks1 + "\nblank: no\nsignature: crypto_LUKS\nluks: LUKS1\nuuid: " +
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
  EXPECT_EQ(b.output, "path: " + blank + "\nblank: yes\n");
  ProcessResult e = run({"disk", "inspect", ext4});
  EXPECT_EQ(e.exit_code, 1);
  EXPECT_THAT(e.output, HasSubstr("signature: ext4\n"));
  EXPECT_EQ(run({"disk", "inspect", dir_.Join("absent.img")}).exit_code, 2);
  EXPECT_EQ(run({"disk", "inspect"}).exit_code, 2);  // usage: PATH is required
}

}  // namespace
}  // namespace berth::cli
