// berthd's live policy (docs/lifecycle.md "Live policy"): the trigger that reloads the
// PolicyHolder (verify/policy_holder.h) when its file changes.
#pragma once

#include <atomic>
#include <chrono>
#include <thread>

#include "verify/policy_holder.h"

namespace berth::server {

// Reloads `holder` whenever its file is written, renamed into place, created or replaced:
// inotify on the file's directory (a watch on the file itself would follow the old inode away
// after a rename). Changes within `debounce` are coalesced into one reload, so an editor's
// write-then-rename reloads once, after the file is complete.
class PolicyWatcher {
 public:
  PolicyWatcher(verify::PolicyHolder* holder,
                std::chrono::milliseconds debounce = std::chrono::milliseconds(200));
  ~PolicyWatcher();
  // Starts the watching thread. FAILED_PRECONDITION when the holder has no file; errno errors
  // from inotify.
  Status Start();
  void Stop();

 private:
  void Run(int fd);

  verify::PolicyHolder* holder_;
  std::chrono::milliseconds debounce_;
  std::atomic<bool> stop_{false};
  int fd_ = -1;
  std::thread thread_;
};

}  // namespace berth::server
