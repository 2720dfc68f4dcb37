// Running other programs: a ProcessRunner interface (the agent runs kubeadm through it; tests
// substitute a fake), and Subprocess for long-running children (tests, the demo).
#pragma once

#include <sys/types.h>

#include <chrono>
#include <string>
#include <vector>

#include "common/status.h"

namespace berth {

struct ProcessResult {
  int exit_code = -1;    // valid when signal == 0
  int signal = 0;        // the signal that ended it, or 0
  std::string output;    // stdout and stderr, interleaved, at most 1 MiB kept
  bool success() const { return signal == 0 && exit_code == 0; }
  std::string Describe() const;  // "exit code 1" / "killed by signal 9"
};

class ProcessRunner {
 public:
  virtual ~ProcessRunner() = default;
  // Runs argv[0] (a path; no PATH search) to completion with `env` added to the current
  // environment ("K=V" entries). Fails only if it could not be started.
  virtual Result<ProcessResult> Run(const std::vector<std::string>& argv,
                                    const std::vector<std::string>& env = {}) = 0;
};

class RealProcessRunner : public ProcessRunner {
 public:
  Result<ProcessResult> Run(const std::vector<std::string>& argv,
                            const std::vector<std::string>& env = {}) override;
};

// A child process that runs in the background, its output appended to a log file.
// Destroying a running Subprocess sends SIGTERM, then SIGKILL after 5 s.
class Subprocess {
 public:
  Subprocess() = default;
  ~Subprocess();
  Subprocess(Subprocess&& other) noexcept;
  Subprocess& operator=(Subprocess&& other) noexcept;

  static Result<Subprocess> Start(const std::vector<std::string>& argv, const std::string& log_path,
                                  const std::vector<std::string>& env = {});
  pid_t pid() const { return pid_; }
  bool running();
  // Sends `sig` and waits up to `grace` for the child to exit, then SIGKILLs it.
  ProcessResult Stop(int sig = 15, std::chrono::milliseconds grace = std::chrono::seconds(5));
  // Waits for the child to exit on its own, up to `timeout`; kills it after that.
  ProcessResult Wait(std::chrono::milliseconds timeout);

 private:
  pid_t pid_ = -1;
  ProcessResult result_;
};

// The fields of /proc/<pid>/stat ("self" for this process), numbered as proc(5) numbers
// them: [1] the pid, [2] the command name (without its parentheses, which it may contain),
// [14] utime, [22] starttime; [0] is empty.
Result<std::vector<std::string>> ReadProcStat(const std::string& pid);

}  // namespace berth
