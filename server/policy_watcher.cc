#include "server/policy_watcher.h"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/inotify.h>
#include <unistd.h>

#include <filesystem>

namespace berth::server {

PolicyWatcher::PolicyWatcher(verify::PolicyHolder* holder, std::chrono::milliseconds debounce)
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
