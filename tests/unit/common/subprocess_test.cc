#include "common/subprocess.h"

#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <filesystem>
#include <string>

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

}  // namespace
}  // namespace berth
