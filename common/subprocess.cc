#include "common/subprocess.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <sstream>
#include <thread>

#include "common/bytes.h"

extern char** environ;

namespace berth {

std::string ProcessResult::Describe() const {
  if (signal != 0) return "killed by signal " + std::to_string(signal);
  return "exit code " + std::to_string(exit_code);
}

namespace {

std::vector<char*> CArgs(const std::vector<std::string>& v) {
  std::vector<char*> out;
  for (const auto& s : v) out.push_back(const_cast<char*>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

std::vector<std::string> MergedEnv(const std::vector<std::string>& extra) {
  std::vector<std::string> out;
  for (char** e = environ; *e != nullptr; ++e) {
    std::string entry = *e;
    std::string key = entry.substr(0, entry.find('='));
    bool overridden = false;
    for (const auto& x : extra) overridden |= x.compare(0, key.size() + 1, key + "=") == 0;
    if (!overridden) out.push_back(std::move(entry));
  }
  out.insert(out.end(), extra.begin(), extra.end());
  return out;
}

void FillResult(int status, ProcessResult& r) {
  if (WIFEXITED(status)) {
    r.exit_code = WEXITSTATUS(status);
    r.signal = 0;
  } else if (WIFSIGNALED(status)) {
    r.signal = WTERMSIG(status);
  }
}

}  // namespace

Result<ProcessResult> RealProcessRunner::Run(const std::vector<std::string>& argv,
                                             const std::vector<std::string>& env) {
  if (argv.empty()) return InvalidArgument("empty command");
  int pipefd[2];
  if (pipe2(pipefd, O_CLOEXEC) != 0) return ErrnoStatus("pipe");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 1);
  posix_spawn_file_actions_adddup2(&actions, pipefd[1], 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  auto args = CArgs(argv);
  auto envs = MergedEnv(env);
  auto cenv = CArgs(envs);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, argv[0].c_str(), &actions, nullptr, args.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  close(pipefd[1]);
  if (rc != 0) {
    close(pipefd[0]);
    return ErrnoStatus("starting " + argv[0], rc);
  }
  ProcessResult result;
  char buf[4096];
  for (;;) {
    ssize_t n = read(pipefd[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    if (result.output.size() < (1 << 20)) result.output.append(buf, static_cast<size_t>(n));
  }
  close(pipefd[0]);
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  FillResult(status, result);
  return result;
}

Subprocess::~Subprocess() {
  if (pid_ > 0) Stop();
}

Subprocess::Subprocess(Subprocess&& other) noexcept : pid_(other.pid_), result_(other.result_) {
  other.pid_ = -1;
}

Subprocess& Subprocess::operator=(Subprocess&& other) noexcept {
  if (this != &other) {
    if (pid_ > 0) Stop();
    pid_ = other.pid_;
    result_ = other.result_;
    other.pid_ = -1;
  }
  return *this;
}

Result<Subprocess> Subprocess::Start(const std::vector<std::string>& argv,
                                     const std::string& log_path,
                                     const std::vector<std::string>& env) {
  if (argv.empty()) return InvalidArgument("empty command");
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
  posix_spawn_file_actions_adddup2(&actions, 1, 2);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addclosefrom_np(&actions, 3);
  auto args = CArgs(argv);
  auto envs = MergedEnv(env);
  auto cenv = CArgs(envs);
  pid_t pid = -1;
  int rc = posix_spawnp(&pid, argv[0].c_str(), &actions, nullptr, args.data(), cenv.data());
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return ErrnoStatus("starting " + argv[0], rc);
  Subprocess p;
  p.pid_ = pid;
  return p;
}

bool Subprocess::running() {
  if (pid_ <= 0) return false;
  int status = 0;
  pid_t r = waitpid(pid_, &status, WNOHANG);
  if (r == pid_) {
    FillResult(status, result_);
    pid_ = -1;
    return false;
  }
  return true;
}

ProcessResult Subprocess::Wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return Stop(SIGKILL);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return result_;
}

ProcessResult Subprocess::Stop(int sig, std::chrono::milliseconds grace) {
  if (!running()) return result_;
  kill(pid_, sig);
  auto deadline = std::chrono::steady_clock::now() + grace;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      int status = 0;
      waitpid(pid_, &status, 0);
      FillResult(status, result_);
      pid_ = -1;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return result_;
}

Result<std::vector<std::string>> ReadProcStat(const std::string& pid) {
  const std::string path = "/proc/" + pid + "/stat";
  BERTH_ASSIGN_OR_RETURN(std::string stat, ReadFile(path, 4096));
  // The command name is in parentheses and may hold spaces and parentheses: it ends at the
  // last ')'.
  size_t open = stat.find('(');
  size_t close = stat.rfind(')');
  if (open == std::string::npos || close == std::string::npos || close < open) {
    return InvalidArgument(path + " is not in proc(5)'s format");
  }
  std::vector<std::string> fields = {"", TrimWhitespace(stat.substr(0, open)),
                                     stat.substr(open + 1, close - open - 1)};
  std::istringstream rest(stat.substr(close + 1));
  for (std::string f; rest >> f;) fields.push_back(std::move(f));
  return fields;
}

}  // namespace berth
