// The test binaries' main (test_main.cc): a test process that dies of a signal takes the
// processes it started with it.

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>

#include "common/bytes.h"
#include "tests/testing/testing.h"

extern char** environ;

namespace berth {
namespace {

// Whether `pid` is gone or a zombie (killed, not yet reaped by whoever inherited it).
bool Dead(pid_t pid) {
  auto stat = ReadFile("/proc/" + std::to_string(pid) + "/stat");
  if (!stat.ok()) return true;
  size_t paren = stat->rfind(')');
  return paren != std::string::npos && paren + 2 < stat->size() && (*stat)[paren + 2] == 'Z';
}

TEST(TestMainTest, AnAbortingTestProcessKillsTheProcessesItStarted) {
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  pid_t test_process = fork();
  ASSERT_GE(test_process, 0);
  if (test_process == 0) {
    // As a test whose fixture started a daemon and then died: it never stops the daemon.
    close(fds[0]);
    char sleep_path[] = "/bin/sleep";
    char seconds[] = "300";
    char* argv[] = {sleep_path, seconds, nullptr};
    pid_t daemon = -1;
    if (posix_spawn(&daemon, argv[0], nullptr, nullptr, argv, environ) != 0) _exit(2);
    if (write(fds[1], &daemon, sizeof(daemon)) != sizeof(daemon)) _exit(3);
    abort();
  }
  close(fds[1]);
  pid_t daemon = -1;
  ASSERT_EQ(read(fds[0], &daemon, sizeof(daemon)), static_cast<ssize_t>(sizeof(daemon)));
  close(fds[0]);
  ASSERT_GT(daemon, 0);

  int status = 0;
  ASSERT_EQ(waitpid(test_process, &status, 0), test_process);
  // It still dies of the abort, as it would without the handler.
  ASSERT_TRUE(WIFSIGNALED(status)) << status;
  EXPECT_EQ(WTERMSIG(status), SIGABRT);
  bool dead = testing::WaitFor([&] { return Dead(daemon); }, std::chrono::seconds(10));
  EXPECT_TRUE(dead) << "sleep (pid " << daemon << ") outlived the test process that started it";
  if (!dead) kill(daemon, SIGKILL);
}

}  // namespace
}  // namespace berth
