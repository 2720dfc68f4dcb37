// The agent's capability drop, in a forked child (it is irreversible), as root: ./tests/run runs
// as root, like the agent.
#include "agent/privileges.h"

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>


namespace berth::agent {
namespace {

// Runs `body` in a forked child and returns what it wrote to the pipe, and its exit status.
struct ChildResult {
  std::string output;
  int status = -1;
};
template <typename Fn>
ChildResult InChild(Fn body) {
  int fds[2];
  if (pipe(fds) != 0) return {};
  pid_t pid = fork();
  if (pid == 0) {
    close(fds[0]);
    std::string out = body();
    ssize_t ignored = write(fds[1], out.data(), out.size());
    (void)ignored;
    _exit(0);
  }
  close(fds[1]);
  ChildResult result;
  char buf[4096];
  ssize_t n;
  while ((n = read(fds[0], buf, sizeof buf)) > 0) result.output.append(buf, n);
  close(fds[0]);
  waitpid(pid, &result.status, 0);
  return result;
}

std::string Hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

// The capability lines of a program's own /proc/self/status, as an exec'd child sees them.
std::string CapabilitiesOfAChild() {
  FILE* p = popen("grep ^Cap /proc/self/status", "r");
  if (p == nullptr) return "popen failed";
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, p) != nullptr) out += buf;
  pclose(p);
  return out;
}

class PrivilegesTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_EQ(geteuid(), 0u) << "the capability tests need root (./tests/run runs as root)";
    // The agent has threads (gRPC's) long before it drops, so the children here come from a
    // process that has had one. Under TSan that is also what registers the hook with which
    // DropCapabilitiesExcept stops the runtime's own thread (it blocks every signal).
    std::thread([] {}).join();
  }
};

TEST(CapabilityMaskTest, JoinCapabilitiesAreRootsFileAccess) {
  EXPECT_EQ(CapabilityMask(kJoinCapabilities), 0x1fu);  // CHOWN..FSETID
  EXPECT_EQ(CapabilityMask(std::vector<int>{CAP_SYS_ADMIN}), uint64_t{1} << 21);
}

TEST_F(PrivilegesTest, EveryThreadAndEveryChildKeepsOnlyTheJoinCapabilities) {
  ChildResult r = InChild([]() -> std::string {
    // Threads of the kinds a library starts: blocked on a condition, in a read, polling. (Not
    // a pure spin: TSan delivers a signal only when its thread next enters the runtime.)
    std::mutex m;
    std::condition_variable cv;
    bool stop = false;
    int fds[2];
    if (pipe(fds) != 0) return "pipe failed";
    std::vector<std::thread> threads;
    threads.emplace_back([&] {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return stop; });
    });
    threads.emplace_back([&] {
      char c;
      while (read(fds[0], &c, 1) < 0) {
      }
    });
    std::atomic<bool> spin{true};
    threads.emplace_back([&] {
      while (spin.load()) std::this_thread::sleep_for(std::chrono::microseconds(50));
    });
    std::string out;
    Status st = DropCapabilitiesExcept(kJoinCapabilities);
    out += "drop: " + st.ToString() + "\n";
    auto caps = ReadThreadCapabilities();
    if (!caps.ok()) return out + caps.status().ToString();
    out += "threads: " + std::to_string(caps->size()) + "\n";
    for (const auto& t : *caps) {
      out += "thread: inh=" + Hex(t.inheritable) + " prm=" + Hex(t.permitted) +
             " eff=" + Hex(t.effective) + " bnd=" + Hex(t.bounding) + " amb=" + Hex(t.ambient) +
             "\n";
    }
    // A dropped capability is gone: CAP_MKNOD (a device node) is refused.
    std::string node = "/tmp/berth-privileges-test-" + std::to_string(getpid());
    int made = mknod(node.c_str(), S_IFCHR | 0600, makedev(1, 3));
    out += std::string("mknod: ") + (made == 0 ? "allowed" : strerror(errno)) + "\n";
    if (made == 0) unlink(node.c_str());
    // A kept one works: CAP_DAC_OVERRIDE opens a file with no permissions at all.
    std::string closed = "/tmp/berth-privileges-closed-" + std::to_string(getpid());
    int fd = open(closed.c_str(), O_CREAT | O_WRONLY, 0000);
    if (fd >= 0) close(fd);
    fd = open(closed.c_str(), O_RDONLY);
    out += std::string("open mode 000: ") + (fd >= 0 ? "allowed" : strerror(errno)) + "\n";
    if (fd >= 0) close(fd);
    unlink(closed.c_str());
    out += CapabilitiesOfAChild();
    {
      std::lock_guard lock(m);
      stop = true;
    }
    cv.notify_all();
    spin.store(false);
    ssize_t ignored = write(fds[1], "x", 1);
    (void)ignored;
    for (auto& t : threads) t.join();
    return out;
  });
  ASSERT_TRUE(WIFEXITED(r.status)) << r.output;
  const std::string target = "thread: inh=0000000000000000 prm=000000000000001f eff=000000000000001f "
                             "bnd=000000000000001f amb=0000000000000000\n";
  EXPECT_EQ(r.output, "drop: OK\n"
                      "threads: 4\n" +
                          target + target + target + target +
                          "mknod: Operation not permitted\n"
                          "open mode 000: allowed\n"
                          "CapInh:\t0000000000000000\n"
                          "CapPrm:\t000000000000001f\n"
                          "CapEff:\t000000000000001f\n"
                          "CapBnd:\t000000000000001f\n"
                          "CapAmb:\t0000000000000000\n");
}

TEST_F(PrivilegesTest, DroppingTwiceChangesNothing) {
  ChildResult r = InChild([]() -> std::string {
    std::string out = DropCapabilitiesExcept(kJoinCapabilities).ToString() + "\n";
    // CAP_SETPCAP is gone now, and nothing beyond the kept set is left: nothing to do.
    out += DropCapabilitiesExcept(kJoinCapabilities).ToString() + "\n";
    auto caps = ReadThreadCapabilities();
    if (caps.ok()) out += Hex(caps->at(0).bounding) + " " + Hex(caps->at(0).effective);
    return out;
  });
  EXPECT_EQ(r.output, "OK\nOK\n000000000000001f 000000000000001f");
}

TEST_F(PrivilegesTest, KeepingMoreThanIsLeftNamesWhatCannotBeDropped) {
  ChildResult r = InChild([]() -> std::string {
    std::string out = DropCapabilitiesExcept(std::vector<int>{CAP_SYS_ADMIN}).ToString() + "\n";
    // SYS_ADMIN is all that is left, and without CAP_SETPCAP the bounding set is fixed: asking
    // to keep less than that is refused, naming what would stay.
    out += DropCapabilitiesExcept(std::vector<int>{CAP_CHOWN}).ToString();
    return out;
  });
  EXPECT_EQ(r.output,
            "OK\nFAILED_PRECONDITION: cannot drop capabilities (cap_sys_admin): CAP_SETPCAP is "
            "not in the effective set");
}

TEST(UndumpableTest, TheProcessIsNotDumpable) {
  ChildResult r = InChild([]() -> std::string {
    Status st = MakeUndumpable();
    return st.ToString() + " " + std::to_string(prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
  });
  EXPECT_EQ(r.output, "OK 0");
}

}  // namespace
}  // namespace berth::agent
