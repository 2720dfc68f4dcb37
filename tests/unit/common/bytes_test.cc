// Hex, bounded reads, durable atomic writes, directories and the injectable root.
#include "common/bytes.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <thread>

#include "tests/testing/testing.h"

namespace berth {
namespace {

using berth::testing::MustRead;
using berth::testing::TempDir;

std::vector<std::string> DirEntries(const std::string& dir) {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    out.push_back(e.path().filename().string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

mode_t ModeOf(const std::string& path) {
  struct stat st;
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

TEST(HexTest, EncodesLowercase) {
  EXPECT_EQ(HexEncode(Bytes{}), "");
  EXPECT_EQ(HexEncode(Bytes{0x00, 0x90, 0x09, 0xab, 0xff}), "009009abff");
}

TEST(HexTest, DecodesEitherCase) {
  EXPECT_EQ(*HexDecode(""), Bytes{});
  EXPECT_EQ(*HexDecode("9009"), (Bytes{0x90, 0x09}));
  EXPECT_EQ(*HexDecode("aBcDeF"), (Bytes{0xab, 0xcd, 0xef}));
  Bytes all(256);
  for (int i = 0; i < 256; ++i) all[i] = static_cast<uint8_t>(i);
  EXPECT_EQ(*HexDecode(HexEncode(all)), all);
}

TEST(HexTest, RefusesOddLengthBadCharactersAndWhitespace) {
  EXPECT_EQ(HexDecode("900").status().ToString(), "INVALID_ARGUMENT: hex string has odd length");
  EXPECT_EQ(HexDecode("90g9").status().ToString(),
            "INVALID_ARGUMENT: invalid hex character at offset 2");
  EXPECT_EQ(HexDecode("90 9").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(HexDecode("9009\n").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(HexDecode("0x90").status().ToString(),
            "INVALID_ARGUMENT: invalid hex character at offset 0");
}

TEST(ReadFileTest, ReadsWholeFilesUpToTheLimit) {
  TempDir dir;
  std::string big(100000, 'x');
  big[99999] = 'y';
  testing::MustWrite(dir.Join("f"), big);
  EXPECT_EQ(*ReadFile(dir.Join("f")), big);
  EXPECT_EQ(*ReadFile(dir.Join("f"), 100000), big);  // exactly the limit is fine
  auto over = ReadFile(dir.Join("f"), 99999);
  EXPECT_EQ(over.status().ToString(),
            "INVALID_ARGUMENT: " + dir.Join("f") + " is larger than 99999 bytes");
  testing::MustWrite(dir.Join("empty"), "");
  EXPECT_EQ(*ReadFile(dir.Join("empty")), "");
}

TEST(ReadFileTest, MissingFileIsNotFoundNamingThePath) {
  TempDir dir;
  auto r = ReadFile(dir.Join("nope"));
  EXPECT_EQ(r.status().ToString(),
            "NOT_FOUND: open(" + dir.Join("nope") + "): No such file or directory");
  auto nested = ReadFile(dir.Join("nope/inner"));
  EXPECT_EQ(nested.status().code(), Code::kNotFound);
}

TEST(ReadFileTest, ADirectoryIsAnError) {
  TempDir dir;
  auto r = ReadFile(dir.path());
  EXPECT_EQ(r.status().ToString(), "INTERNAL: read(" + dir.path() + "): Is a directory");
}

TEST(ReadSecretFileTest, ReadsIntoSecretBytesAndRefusesSymlinks) {
  TempDir dir;
  testing::MustWrite(dir.Join("key"), "s3cret", 0600);
  auto s = ReadSecretFile(dir.Join("key"));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->view(), "s3cret");
  ASSERT_EQ(symlink(dir.Join("key").c_str(), dir.Join("link").c_str()), 0);
  auto via_link = ReadSecretFile(dir.Join("link"));
  EXPECT_FALSE(via_link.ok());
  EXPECT_EQ(via_link.status().message(),
            "open(" + dir.Join("link") + "): Too many levels of symbolic links");
  EXPECT_EQ(ReadSecretFile(dir.Join("key"), 5).status().code(), Code::kInvalidArgument);
}

TEST(WriteFileAtomicTest, WritesExactModeDespiteUmaskAndLeavesNoTempFile) {
  TempDir dir;
  mode_t old_umask = umask(0077);
  ASSERT_TRUE(WriteFileAtomic(dir.Join("public"), "hello", 0644).ok());
  umask(old_umask);
  EXPECT_EQ(MustRead(dir.Join("public")), "hello");
  EXPECT_EQ(ModeOf(dir.Join("public")), 0644u);
  ASSERT_TRUE(WriteFileAtomic(dir.Join("key"), Bytes{1, 2, 3}, 0600).ok());
  EXPECT_EQ(ModeOf(dir.Join("key")), 0600u);
  EXPECT_EQ(DirEntries(dir.path()), (std::vector<std::string>{"key", "public"}));
}

TEST(WriteFileAtomicTest, ReplacesAnExistingFileAndItsMode) {
  TempDir dir;
  testing::MustWrite(dir.Join("f"), "old content that is longer", 0600);
  ASSERT_TRUE(WriteFileAtomic(dir.Join("f"), "new", 0640).ok());
  EXPECT_EQ(MustRead(dir.Join("f")), "new");
  EXPECT_EQ(ModeOf(dir.Join("f")), 0640u);
  EXPECT_EQ(DirEntries(dir.path()), std::vector<std::string>{"f"});
}

TEST(WriteFileAtomicTest, MissingDirectoryFailsAndCreatesNothing) {
  TempDir dir;
  Status st = WriteFileAtomic(dir.Join("no/such/f"), "x", 0644);
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_EQ(st.message(), "open(" + dir.Join("no/such/f") + ".tmp." + std::to_string(getpid()) +
                              "): No such file or directory");
  EXPECT_TRUE(DirEntries(dir.path()).empty());
}

// A write that fails half way (here: the file size limit, as a full disk would) leaves the
// old file byte for byte and no temporary file.
TEST(WriteFileAtomicTest, AFailedWriteLeavesTheOldFileIntact) {
  TempDir dir;
  const std::string old_content(1000, 'o');
  testing::MustWrite(dir.Join("f"), old_content, 0644);

  struct sigaction ignore {
  }, previous{};
  ignore.sa_handler = SIG_IGN;
  ASSERT_EQ(sigaction(SIGXFSZ, &ignore, &previous), 0);
  rlimit old_limit{};
  ASSERT_EQ(getrlimit(RLIMIT_FSIZE, &old_limit), 0);
  rlimit small = old_limit;
  small.rlim_cur = 4096;
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &small), 0);
  Status st = WriteFileAtomic(dir.Join("f"), std::string(100000, 'n'), 0644);
  ASSERT_EQ(setrlimit(RLIMIT_FSIZE, &old_limit), 0);
  ASSERT_EQ(sigaction(SIGXFSZ, &previous, nullptr), 0);

  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("write("), std::string::npos) << st.message();
  EXPECT_NE(st.message().find("File too large"), std::string::npos) << st.message();
  EXPECT_EQ(MustRead(dir.Join("f")), old_content);
  EXPECT_EQ(DirEntries(dir.path()), std::vector<std::string>{"f"});
}

// A reader racing the writer sees the old or the new file, never a mixture or a short file.
TEST(WriteFileAtomicTest, ConcurrentReadersNeverSeeATornFile) {
  TempDir dir;
  const std::string a(256 << 10, 'a'), b(128 << 10, 'b');
  testing::MustWrite(dir.Join("f"), a);
  std::atomic<bool> done{false};
  std::atomic<int> reads{0}, torn{0};
  std::thread reader([&] {
    while (!done) {
      auto r = ReadFile(dir.Join("f"));
      if (!r.ok() || (*r != a && *r != b)) ++torn;
      ++reads;
    }
  });
  for (int i = 0; i < 40; ++i) {
    ASSERT_TRUE(WriteFileAtomic(dir.Join("f"), i % 2 ? a : b, 0644).ok());
  }
  done = true;
  reader.join();
  EXPECT_EQ(torn.load(), 0);
  EXPECT_GT(reads.load(), 0);
}

TEST(WriteFileAtomicTest, DoesNotFollowASymlinkPlantedAtTheTempName) {
  TempDir dir;
  testing::MustWrite(dir.Join("victim"), "untouched");
  std::string tmp = dir.Join("f") + ".tmp." + std::to_string(getpid());
  ASSERT_EQ(symlink(dir.Join("victim").c_str(), tmp.c_str()), 0);
  Status st = WriteFileAtomic(dir.Join("f"), "x", 0644);
  EXPECT_FALSE(st.ok());
  EXPECT_EQ(MustRead(dir.Join("victim")), "untouched");
}

TEST(MakeDirsTest, CreatesNestedDirectoriesWithTheirMode) {
  TempDir dir;
  mode_t old_umask = umask(0);
  ASSERT_TRUE(MakeDirs(dir.Join("a/b/c"), 0700).ok());
  umask(old_umask);
  EXPECT_EQ(ModeOf(dir.Join("a")), 0700u);
  EXPECT_EQ(ModeOf(dir.Join("a/b/c")), 0700u);
  EXPECT_TRUE(MakeDirs(dir.Join("a/b/c")).ok());  // existing: fine
  EXPECT_TRUE(MakeDirs("").ok());
}

TEST(MakeDirsTest, AFileInTheWayIsAnError) {
  TempDir dir;
  testing::MustWrite(dir.Join("file"), "x");
  Status st = MakeDirs(dir.Join("file"));
  EXPECT_EQ(st.ToString(),
            "FAILED_PRECONDITION: " + dir.Join("file") + " exists and is not a directory");
  EXPECT_EQ(MakeDirs(dir.Join("file/sub")).code(), Code::kNotFound);  // ENOTDIR
}

// A second hard link to each file sees what WipeAndRemove did to the file's bytes.
TEST(WipeAndRemoveTest, ZeroesEveryFileInATreeBeforeRemovingIt) {
  TempDir dir;
  ASSERT_TRUE(MakeDirs(dir.Join("stage/pki/etcd"), 0700).ok());
  const std::string key(5000, 'k');  // more than one 4096-byte block of zeros
  testing::MustWrite(dir.Join("stage/pki/ca.key"), key);
  testing::MustWrite(dir.Join("stage/pki/etcd/ca.key"), "etcd-key");
  testing::MustWrite(dir.Join("stage/empty"), "");
  // A symlink out of the tree: removed, what it points to untouched.
  testing::MustWrite(dir.Join("outside"), "not a secret");
  ASSERT_EQ(symlink(dir.Join("outside").c_str(), dir.Join("stage/pki/link").c_str()), 0);
  ASSERT_EQ(link(dir.Join("stage/pki/ca.key").c_str(), dir.Join("ca-link").c_str()), 0);
  ASSERT_EQ(link(dir.Join("stage/pki/etcd/ca.key").c_str(), dir.Join("etcd-link").c_str()), 0);

  ASSERT_TRUE(WipeAndRemove(dir.Join("stage")).ok());
  EXPECT_FALSE(std::filesystem::exists(dir.Join("stage")));
  EXPECT_EQ(MustRead(dir.Join("ca-link")), std::string(5000, '\0'));
  EXPECT_EQ(MustRead(dir.Join("etcd-link")), std::string(8, '\0'));
  EXPECT_EQ(MustRead(dir.Join("outside")), "not a secret");
  EXPECT_EQ(DirEntries(dir.path()), (std::vector<std::string>{"ca-link", "etcd-link", "outside"}));
}

TEST(WipeAndRemoveTest, ASingleFileAndAMissingPath) {
  TempDir dir;
  testing::MustWrite(dir.Join("token"), "abcdef.0123456789abcdef");
  ASSERT_EQ(link(dir.Join("token").c_str(), dir.Join("token-link").c_str()), 0);
  ASSERT_TRUE(WipeAndRemove(dir.Join("token")).ok());
  EXPECT_EQ(MustRead(dir.Join("token-link")), std::string(23, '\0'));
  EXPECT_FALSE(std::filesystem::exists(dir.Join("token")));
  EXPECT_TRUE(WipeAndRemove(dir.Join("token")).ok());  // gone already: nothing to do
  // A symlink given itself is removed, not followed.
  testing::MustWrite(dir.Join("target"), "kept");
  ASSERT_EQ(symlink(dir.Join("target").c_str(), dir.Join("sym").c_str()), 0);
  ASSERT_TRUE(WipeAndRemove(dir.Join("sym")).ok());
  EXPECT_EQ(MustRead(dir.Join("target")), "kept");
  EXPECT_FALSE(std::filesystem::exists(dir.Join("sym")));
}

TEST(JoinRootTest, PrefixesAbsolutePathsWithTheRoot) {
  EXPECT_EQ(JoinRoot("/tmp/r", "/etc/x"), "/tmp/r/etc/x");
  EXPECT_EQ(JoinRoot("/tmp/r/", "/etc/x"), "/tmp/r/etc/x");
  EXPECT_EQ(JoinRoot("/tmp/r//", "/etc/x"), "/tmp/r/etc/x");
  EXPECT_EQ(JoinRoot("/tmp/r", "etc/x"), "/tmp/r/etc/x");
  EXPECT_EQ(JoinRoot("/", "/etc/x"), "/etc/x");
  EXPECT_EQ(JoinRoot("", "/etc/x"), "/etc/x");
}

TEST(TrimWhitespaceTest, TrimsBothEnds) {
  EXPECT_EQ(TrimWhitespace("  a b \n\t"), "a b");
  EXPECT_EQ(TrimWhitespace("\n"), "");
  EXPECT_EQ(TrimWhitespace(""), "");
  EXPECT_EQ(TrimWhitespace("x"), "x");
}

TEST(BytesTest, StringConversionsKeepEveryByte) {
  std::string s("a\0b\xff", 4);
  EXPECT_EQ(ToBytes(s), (Bytes{'a', 0, 'b', 0xff}));
  EXPECT_EQ(ToString(ToBytes(s)), s);
  EXPECT_EQ(AsBytes(s).size(), 4u);
}

}  // namespace
}  // namespace berth
