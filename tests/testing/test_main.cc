// main() of every berth test binary: GoogleTest's, plus one thing. A test binary that dies
// without running destructors (a sanitizer's report, an abort, a crash) would leave the
// daemons its fixtures started (etcd, swtpm, berthd, the API stand-in) running, holding
// ports and CPU for the tests after it. Before it dies, it kills its own children.

#include <fcntl.h>
#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>

#include <gtest/gtest.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
    __has_feature(undefined_behavior_sanitizer)
#define BERTH_SANITIZED 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BERTH_SANITIZED 1
#endif

#ifdef BERTH_SANITIZED
#include <sanitizer/common_interface_defs.h>
#endif

namespace {

// Everything below runs in a signal handler or a dying sanitizer: system calls and stack
// buffers only (no malloc, no stdio).

// Sends SIGKILL to every pid listed in /proc/self/task/<tid>/children ("1 2 3 ").
void KillListed(int dir_fd, const char* tid) {
  char path[64] = {};
  size_t n = 0;
  for (const char* p = tid; *p != '\0' && n + 10 < sizeof(path); ++p) path[n++] = *p;
  for (const char* p = "/children"; *p != '\0'; ++p) path[n++] = *p;
  int fd = openat(dir_fd, path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return;
  char buf[4096];
  ssize_t got = read(fd, buf, sizeof(buf) - 1);
  close(fd);
  if (got <= 0) return;
  pid_t pid = 0;
  for (ssize_t i = 0; i <= got; ++i) {
    const char c = i < got ? buf[i] : ' ';
    if (c >= '0' && c <= '9') {
      pid = pid * 10 + (c - '0');
    } else {
      if (pid > 0) kill(pid, SIGKILL);
      pid = 0;
    }
  }
}

void KillChildren() {
  int dir = open("/proc/self/task", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dir < 0) return;
  alignas(8) char buf[4096];
  for (;;) {
    long got = syscall(SYS_getdents64, dir, buf, sizeof(buf));
    if (got <= 0) break;
    for (long off = 0; off < got;) {
      // struct linux_dirent64: ino (8), off (8), reclen (2), type (1), name.
      const unsigned short reclen = *reinterpret_cast<const unsigned short*>(buf + off + 16);
      const char* name = buf + off + 19;
      if (name[0] >= '0' && name[0] <= '9') KillListed(dir, name);
      off += reclen;
    }
  }
  close(dir);
}

void OnFatalSignal(int sig) {
  KillChildren();
  // SA_RESETHAND restored the default action: die of the signal, as without this handler.
  raise(sig);
}

void InstallChildKiller() {
  struct sigaction sa {};
  sa.sa_handler = OnFatalSignal;
  sa.sa_flags = SA_RESETHAND | SA_NODEFER;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGABRT, &sa, nullptr);  // a sanitizer's report (abort_on_error), std::terminate
#ifdef BERTH_SANITIZED
  // The sanitizers handle SIGSEGV and friends themselves, and report first; they then run
  // this before the process ends.
  __sanitizer_set_death_callback(KillChildren);
#else
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL}) sigaction(sig, &sa, nullptr);
#endif
}

}  // namespace

int main(int argc, char** argv) {
  InstallChildKiller();
  testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
