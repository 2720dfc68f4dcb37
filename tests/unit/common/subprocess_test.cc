#include "common/subprocess.h"

#include <gtest/gtest.h>
#include <fcntl.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <filesystem>
#include <string>

#include "tests/testing/testing.h"

namespace berth {
namespace {

// The command name may hold spaces and parentheses: the fields after it still line up.
TEST(ReadProcStatTest, NumbersFieldsAsProcDoesWhateverTheCommandNameHolds) {
  char saved[16] = {};
  ASSERT_EQ(prctl(PR_GET_NAME, saved), 0);
  ASSERT_EQ(prctl(PR_SET_NAME, "x) (y z"), 0);
  auto stat = ReadProcStat("self");
  prctl(PR_SET_NAME, saved);
  ASSERT_TRUE(stat.ok()) << stat.status().ToString();
  ASSERT_GE(stat->size(), 53u);  // 52 fields since Linux 3.5, and the empty [0]
  EXPECT_EQ((*stat)[0], "");
  EXPECT_EQ((*stat)[1], std::to_string(getpid()));
  EXPECT_EQ((*stat)[2], "x) (y z");
  EXPECT_EQ((*stat)[3], "R");                            // this thread is running
  EXPECT_EQ((*stat)[4], std::to_string(getppid()));
  size_t threads = 0;
  for ([[maybe_unused]] const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    ++threads;
  }
  EXPECT_EQ((*stat)[20], std::to_string(threads));  // num_threads
}

TEST(ReadProcStatTest, NoSuchProcessIsNotFound) {
  auto stat = ReadProcStat("999999999");
  EXPECT_EQ(stat.status().code(), Code::kNotFound) << stat.status().ToString();
}

// A child gets stdin, stdout and stderr and nothing else the parent holds: a descriptor opened
// without O_CLOEXEC (as libtss2's TPM connections are) stays the parent's. A child that kept
// one would hold the agent's TPM connection (its resource-manager context, its loaded keys),
// and a TPM simulator serving one connection at a time would never answer the agent again.
class InheritedFdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    fd_ = open("/dev/null", O_RDONLY);  // no O_CLOEXEC
    ASSERT_GE(fd_, 3);
  }
  void TearDown() override { close(fd_); }
  // What a shell in the child says of the descriptor.
  std::string Probe() const {
    return "if [ -e /proc/self/fd/" + std::to_string(fd_) + " ]; then echo held; else echo closed; fi";
  }
  int fd_ = -1;
};

TEST_F(InheritedFdTest, RunClosesThemInTheChild) {
  auto r = RealProcessRunner().Run({"/bin/sh", "-c", Probe()});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->output, "closed\n");
  EXPECT_EQ(fcntl(fd_, F_GETFD), 0);  // still open here
}

TEST_F(InheritedFdTest, StartClosesThemInTheChild) {
  testing::TempDir dir;
  const std::string log = dir.Join("child.log");
  auto p = Subprocess::Start({"/bin/sh", "-c", Probe()}, log);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->Wait(std::chrono::seconds(10)).exit_code, 0);
  EXPECT_EQ(testing::MustRead(log), "closed\n");
}

}  // namespace
}  // namespace berth
