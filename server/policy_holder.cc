#include "server/policy_holder.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <filesystem>

#include "common/bytes.h"
#include "common/crypto.h"

namespace berth::server {

PolicyHolder::PolicyHolder(Policy initial, std::string path)
    : path_(std::move(path)), current_(std::make_shared<const Policy>(std::move(initial))) {
  if (!path_.empty()) {
    if (auto text = ReadFile(path_, 1 << 20); text.ok()) {
      current_sha256_ = HexEncode(Sha256(AsBytes(*text)));
    }
  }
}

std::shared_ptr<const Policy> PolicyHolder::Current() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_;
}

std::string PolicyHolder::current_sha256() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_sha256_;
}

Status PolicyHolder::Reload(const std::string& trigger) {
  std::lock_guard<std::mutex> reload_lock(reload_mu_);
  if (path_.empty()) return FailedPrecondition("this policy was not read from a file");
  const std::string old_sha = current_sha256();
  Status outcome = [&]() -> Status {
    BERTH_ASSIGN_OR_RETURN(std::string text, ReadFile(path_, 1 << 20));
    auto parsed = ParsePolicy(text);
    if (!parsed.ok()) return parsed.status();
    if (validator_) BERTH_RETURN_IF_ERROR(validator_(*parsed));
    auto next = std::make_shared<const Policy>(std::move(*parsed));
    const std::string sha = HexEncode(Sha256(AsBytes(text)));
    {
      std::lock_guard<std::mutex> lock(mu_);
      current_ = std::move(next);
      current_sha256_ = sha;
    }
    generation_++;
    spdlog::info("policy reloaded from {} ({}): sha256 {}{}", path_, trigger, sha.substr(0, 16),
                 sha == old_sha ? " (unchanged)" : ", was " + old_sha.substr(0, 16));
    return OkStatus();
  }();
  if (!outcome.ok()) {
    spdlog::error("policy reload from {} ({}) rejected, the policy in force stays (sha256 {}): {}",
                  path_, trigger, old_sha.empty() ? "-" : old_sha.substr(0, 16),
                  outcome.ToString());
  }
  if (observer_) observer_(outcome.ok());
  return outcome;
}

PolicyWatcher::PolicyWatcher(PolicyHolder* holder, std::chrono::milliseconds debounce)
    : holder_(holder), debounce_(debounce) {}

PolicyWatcher::~PolicyWatcher() { Stop(); }

Status PolicyWatcher::Start() {
  if (holder_->path().empty()) return FailedPrecondition("the policy has no file to watch");
  std::filesystem::path file = std::filesystem::absolute(holder_->path());
  std::string dir = file.parent_path().string();
  int fd = inotify_init1(IN_CLOEXEC | IN_NONBLOCK);
  if (fd < 0) return ErrnoStatus("inotify_init1");
  if (inotify_add_watch(fd, dir.c_str(),
                        IN_CLOSE_WRITE | IN_MOVED_TO | IN_CREATE | IN_DELETE_SELF) < 0) {
    Status st = ErrnoStatus("inotify_add_watch(" + dir + ")");
    close(fd);
    return st;
  }
  fd_ = fd;
  thread_ = std::thread([this, fd] { Run(fd); });
  spdlog::info("watching {} for policy changes (and reloading on SIGHUP)", file.string());
  return OkStatus();
}

void PolicyWatcher::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  if (fd_ >= 0) close(fd_);
  fd_ = -1;
}

void PolicyWatcher::Run(int fd) {
  const std::string name = std::filesystem::path(holder_->path()).filename().string();
  alignas(inotify_event) char buf[16 * 1024];
  bool pending = false;
  auto due = std::chrono::steady_clock::now();
  while (!stop_) {
    pollfd p{fd, POLLIN, 0};
    int timeout = 100;
    if (pending) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                      due - std::chrono::steady_clock::now())
                      .count();
      timeout = static_cast<int>(std::clamp<int64_t>(left, 0, 100));
    }
    int n = poll(&p, 1, timeout);
    if (n > 0 && (p.revents & POLLIN)) {
      ssize_t len;
      while ((len = read(fd, buf, sizeof buf)) > 0) {
        for (char* at = buf; at < buf + len;) {
          auto* e = reinterpret_cast<inotify_event*>(at);
          if (e->len > 0 && name == e->name) {
            pending = true;
            due = std::chrono::steady_clock::now() + debounce_;
          }
          at += sizeof(inotify_event) + e->len;
        }
      }
    }
    if (pending && std::chrono::steady_clock::now() >= due) {
      pending = false;
      (void)holder_->Reload("file changed");
    }
  }
}

}  // namespace berth::server
