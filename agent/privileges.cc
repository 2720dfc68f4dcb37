#include "agent/privileges.h"

#include <dirent.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <thread>

#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/capability.h>

// Sanitizer builds (tests/sanitize): the runtime may run a thread of its own.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define BERTH_SANITIZER_RUNTIME 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define BERTH_SANITIZER_RUNTIME 1
#endif
#endif
#ifdef BERTH_SANITIZER_RUNTIME
#include <sanitizer/common_interface_defs.h>
#endif
#if defined(__SANITIZE_THREAD__)
#define BERTH_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define BERTH_TSAN 1
#endif
#endif

namespace berth::agent {
namespace {

// What every thread applies to itself. Written before any thread is signalled, read only
// after: the signal's delivery orders the two.
struct DropRequest {
  uint64_t drop_bounding = 0;  // bits to remove from the bounding set
  uint64_t keep = 0;           // the permitted and effective sets afterwards
};
DropRequest g_request;
std::atomic<int> g_answered{0};
std::atomic<int> g_failed_errno{0};

// Async-signal-safe (raw system calls only): runs in each thread's signal handler.
int ApplyToThisThread() {
  for (int cap = 0; cap < 64; ++cap) {
    if (((g_request.drop_bounding >> cap) & 1) == 0) continue;
    long in = syscall(SYS_prctl, PR_CAPBSET_READ, cap, 0, 0, 0);
    if (in == 1 && syscall(SYS_prctl, PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) return errno;
  }
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  data[0].permitted = data[0].effective = static_cast<uint32_t>(g_request.keep);
  data[1].permitted = data[1].effective = static_cast<uint32_t>(g_request.keep >> 32);
  if (syscall(SYS_capset, &header, data) != 0) return errno;
  // Kernels before 4.3 have no ambient set: nothing to clear there.
  if (syscall(SYS_prctl, PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 &&
      errno != EINVAL) {
    return errno;
  }
  return 0;
}

void OnDropSignal(int) {
  const int saved = errno;
  int err = ApplyToThisThread();
  if (err != 0) g_failed_errno.store(err);
  g_answered.fetch_add(1);
  errno = saved;
}

uint64_t ParseHex(const std::string& s) { return std::strtoull(s.c_str(), nullptr, 16); }

Result<ThreadCapabilities> ReadStatus(const std::string& path, pid_t tid) {
  std::ifstream in(path);
  if (!in) return NotFound(path + ": cannot be read");
  ThreadCapabilities caps{.tid = tid};
  int seen = 0;
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const std::string key = line.substr(0, colon);
    const std::string value = line.substr(colon + 1);
    uint64_t* field = key == "CapInh"   ? &caps.inheritable
                      : key == "CapPrm" ? &caps.permitted
                      : key == "CapEff" ? &caps.effective
                      : key == "CapBnd" ? &caps.bounding
                      : key == "CapAmb" ? &caps.ambient
                                        : nullptr;
    if (field != nullptr) {
      *field = ParseHex(value);
      ++seen;
    }
  }
  // CapAmb is missing before Linux 4.3 (and then empty).
  if (seen < 4) return Internal(path + " has no capability lines");
  return caps;
}

// One thread's capability sets (NOT_FOUND once the thread has exited).
Result<ThreadCapabilities> ReadThread(pid_t tid) {
  return ReadStatus(fmt::format("/proc/self/task/{}/status", tid), tid);
}

std::vector<pid_t> ThreadIds() {
  std::vector<pid_t> tids;
  DIR* dir = opendir("/proc/self/task");
  if (dir == nullptr) return tids;
  while (dirent* e = readdir(dir)) {
    if (e->d_name[0] >= '0' && e->d_name[0] <= '9') tids.push_back(std::atoi(e->d_name));
  }
  closedir(dir);
  return tids;
}

bool AtTarget(const ThreadCapabilities& t, uint64_t keep) {
  return (t.bounding & ~keep) == 0 && (t.permitted & ~keep) == 0 && (t.effective & ~keep) == 0 &&
         t.inheritable == 0 && t.ambient == 0;
}

std::string CapabilityNames(uint64_t mask) {
  std::string names;
  for (int cap = 0; cap < 64; ++cap) {
    if (((mask >> cap) & 1) == 0) continue;
    char* name = cap_to_name(cap);
    if (!names.empty()) names += ",";
    names += name != nullptr ? name : std::to_string(cap);
    cap_free(name);
  }
  return names;
}

}  // namespace

uint64_t CapabilityMask(std::span<const int> caps) {
  uint64_t mask = 0;
  for (int cap : caps) mask |= uint64_t{1} << cap;
  return mask;
}

Result<std::vector<ThreadCapabilities>> ReadThreadCapabilities() {
  std::vector<ThreadCapabilities> threads;
  for (pid_t tid : ThreadIds()) {
    auto caps = ReadThread(tid);
    if (!caps.ok()) {
      if (caps.status().code() == Code::kNotFound) continue;  // the thread has exited
      return caps.status();
    }
    threads.push_back(*caps);
  }
  if (threads.empty()) return Internal("/proc/self/task lists no threads (is /proc mounted?)");
  return threads;
}

Status DropCapabilitiesExcept(std::span<const int> keep) {
  const uint64_t keep_mask = CapabilityMask(keep);
  const pid_t self = static_cast<pid_t>(syscall(SYS_gettid));
  BERTH_ASSIGN_OR_RETURN(const ThreadCapabilities mine, ReadThread(self));
  // Without CAP_SETPCAP the bounding set cannot shrink. A process that holds nothing beyond
  // `keep` (not root) cannot give its children more than it has either (the agent's unit sets
  // NoNewPrivileges), so there is nothing to do.
  if ((mine.effective & (uint64_t{1} << CAP_SETPCAP)) == 0) {
    if ((mine.permitted & ~keep_mask) == 0) return OkStatus();
    return FailedPrecondition("cannot drop capabilities (" +
                              CapabilityNames(mine.permitted & ~keep_mask) +
                              "): CAP_SETPCAP is not in the effective set");
  }
#ifdef BERTH_SANITIZER_RUNTIME
  // TSan's background thread blocks every signal, so it could not drop its own; the runtime's
  // hook for processes that drop privileges stops it.
  __sanitizer_sandbox_arguments sandbox{};
  __sanitizer_sandbox_on_notify(&sandbox);
#endif
  g_request.drop_bounding = mine.bounding & ~keep_mask;
  g_request.keep = keep_mask & mine.permitted;
  g_failed_errno.store(0);

  // Each thread drops its own: a real-time signal no library here uses.
  const int signal = SIGRTMIN + 3;
  struct sigaction action = {};
  action.sa_handler = OnDropSignal;
#ifdef BERTH_SANITIZER_RUNTIME
  // TSan runs a handler when its thread next enters the runtime; a system call restarted
  // under SA_RESTART (a read on a quiet pipe) would keep it from doing so. Not restarting
  // is for the sanitizer builds only: the code they test retries on EINTR.
  action.sa_flags = 0;
#else
  action.sa_flags = SA_RESTART;
#endif
  sigemptyset(&action.sa_mask);
  if (sigaction(signal, &action, nullptr) != 0) return ErrnoStatus("sigaction");
  g_answered.store(0);
  int sent = 0;  // over all rounds: a thread slow to answer may be signalled twice

  // A thread may start another while this runs (the new one inherits its creator's sets at
  // that moment), so rounds repeat until a round finds every thread done.
  Status outcome = OkStatus();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  for (int round = 0;; ++round) {
    auto mine_now = ReadThread(self);
    if (!mine_now.ok()) {
      outcome = mine_now.status();
      break;
    }
    if (!AtTarget(*mine_now, keep_mask)) {
      if (int err = ApplyToThisThread(); err != 0) {
        outcome = ErrnoStatus("dropping capabilities", err);
        break;
      }
    }
    auto threads = ReadThreadCapabilities();
    if (!threads.ok()) {
      outcome = threads.status();
      break;
    }
    const ThreadCapabilities* first_pending = nullptr;
    std::vector<pid_t> pending;
    for (const auto& t : *threads) {
      if (AtTarget(t, keep_mask)) continue;
      if (first_pending == nullptr) first_pending = &t;
      pending.push_back(t.tid);
    }
    if (pending.empty()) break;
    if (std::chrono::steady_clock::now() > deadline || round == 20) {
#ifdef BERTH_TSAN
      // Under TSan a handler runs only when its thread next enters the runtime, and gRPC's
      // threads park in uninstrumented futex waits: this build cannot reach them. This thread
      // and so everything it starts have dropped; the normal and ASan builds check the rest.
      spdlog::warn("TSan build: {} thread(s) parked outside the TSan runtime keep their "
                   "capabilities",
                   pending.size());
      break;
#endif
      outcome = Internal(fmt::format(
          "{} thread(s) did not drop their capabilities; thread {} still has {}", pending.size(),
          first_pending->tid,
          CapabilityNames((first_pending->bounding | first_pending->permitted) & ~keep_mask)));
      break;
    }
    for (pid_t tid : pending) {
      if (tid == self) continue;
      if (syscall(SYS_tgkill, getpid(), tid, signal) == 0) ++sent;  // ESRCH: it has exited
    }
    // The handlers run as each thread is next scheduled; a thread that exits first never
    // answers, which the next round's reading from /proc settles.
    const auto wait_until = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    while (g_answered.load() < sent && std::chrono::steady_clock::now() < wait_until) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (int err = g_failed_errno.load(); err != 0) {
      outcome = ErrnoStatus("dropping capabilities in another thread", err);
      break;
    }
  }
  // Ignored from now on rather than back to its default (which ends the process): a signal
  // still queued for a thread that answered an earlier one must not kill the agent.
  action.sa_handler = SIG_IGN;
  sigaction(signal, &action, nullptr);
  return outcome;
}

Status MakeUndumpable() {
  if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return ErrnoStatus("prctl(PR_SET_DUMPABLE, 0)");
  return OkStatus();
}

}  // namespace berth::agent
