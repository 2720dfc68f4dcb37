// berthd's policy without restarts (docs/lifecycle.md "Live policy"): one thread-safe holder
// of the current Policy that every consumer (TPM verifier, SEV-SNP verifier, roles, admission)
// reads through, and the triggers that reload it from its file (SIGHUP, or the file changing:
// inotify on its directory, so an editor's rename-into-place is seen too).
//
// A reload parses the whole file first; only a policy that parses and validates replaces the
// current one, atomically. A verification that took a snapshot (Current()) keeps using it to
// the end, so in-flight verifications finish on the policy they started with. A policy that
// does not parse is rejected with a log line saying why, and the old one stays in force.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>

#include "verify/policy.h"

namespace berth::verify {

// Thread-safe.
class PolicyHolder {
 public:
  // `path` is where Reload() reads from (empty: a fixed policy, for tests and tools).
  explicit PolicyHolder(Policy initial, std::string path = "");

  // The policy in force now; the snapshot stays valid (and unchanged) while it is held.
  std::shared_ptr<const Policy> Current() const;

  // Re-reads the file. OK: the new policy is in force. Otherwise the old one stays and the
  // error names the problem; both outcomes are logged with `trigger` ("SIGHUP", "file
  // changed"). An unchanged file is reloaded all the same (cheap, and says so).
  Status Reload(const std::string& trigger);

  // Checks a parsed policy against what this berthd can honour (e.g. approval needs node
  // records in etcd); a policy it refuses is rejected like one that does not parse. Set before
  // reloads start.
  void SetValidator(std::function<Status(const Policy&)> validator) {
    validator_ = std::move(validator);
  }

  // Called after every reload attempt with its outcome (metrics). Set before reloads start.
  void SetObserver(std::function<void(bool ok)> observer) { observer_ = std::move(observer); }

  const std::string& path() const { return path_; }
  // Incremented by each successful reload.
  uint64_t generation() const { return generation_.load(); }
  // Hex SHA-256 of the text the current policy was read from ("" for a fixed policy).
  std::string current_sha256() const;
  // The text the current policy was read from ("" for a fixed policy): what berthd shares with
  // the control planes it admits (server/join/join_logic.h BerthdShare).
  std::string current_text() const;

 private:
  const std::string path_;
  mutable std::mutex mu_;
  std::shared_ptr<const Policy> current_;  // GUARDED_BY(mu_)
  std::string current_sha256_;             // GUARDED_BY(mu_)
  std::string current_text_;               // GUARDED_BY(mu_)
  std::mutex reload_mu_;                   // one reload at a time
  std::atomic<uint64_t> generation_{0};
  std::function<void(bool)> observer_;
  std::function<Status(const Policy&)> validator_;
};

}  // namespace berth::verify
