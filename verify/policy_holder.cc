#include "verify/policy_holder.h"

#include <spdlog/spdlog.h>

#include <filesystem>

#include "common/bytes.h"
#include "common/crypto.h"

namespace berth::verify {

PolicyHolder::PolicyHolder(Policy initial, std::string path)
    : path_(std::move(path)), current_(std::make_shared<const Policy>(std::move(initial))) {
  if (!path_.empty()) {
    if (auto text = ReadFile(path_, 1 << 20); text.ok()) {
      current_sha256_ = HexEncode(Sha256(AsBytes(*text)));
      current_text_ = std::move(*text);
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

std::string PolicyHolder::current_text() const {
  std::lock_guard<std::mutex> lock(mu_);
  return current_text_;
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
      current_text_ = std::move(text);
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

}  // namespace berth::verify
