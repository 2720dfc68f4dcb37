#include "server/join/load_gate.h"

namespace berth::server {

std::string PeerSource(std::string_view peer) {
  if (peer.starts_with("ipv4:")) {
    std::string_view rest = peer.substr(5);
    size_t colon = rest.rfind(':');
    return std::string(colon == std::string_view::npos ? rest : rest.substr(0, colon));
  }
  if (peer.starts_with("ipv6:[")) {
    std::string_view rest = peer.substr(6);
    size_t close = rest.find(']');
    if (close != std::string_view::npos) return std::string(rest.substr(0, close));
  }
  return std::string(peer);
}

Result<LoadGate::Pass> LoadGate::Enter(std::string_view peer) {
  std::string source = PeerSource(peer);
  std::lock_guard lock(mu_);
  if (in_flight_ >= limits_.max_in_flight) {
    ++refused_busy_;
    return ResourceExhausted("berthd is at capacity (" + std::to_string(limits_.max_in_flight) +
                             " joins in progress); retry later");
  }
  int& from_source = per_source_[source];
  if (limits_.max_per_source > 0 && from_source >= limits_.max_per_source) {
    ++refused_per_source_;
    return ResourceExhausted("too many joins in progress from " + source + " (at most " +
                             std::to_string(limits_.max_per_source) + "); retry later");
  }
  ++from_source;
  ++in_flight_;
  ++admitted_;
  return Pass(this, std::move(source));
}

void LoadGate::Leave(const std::string& source) {
  std::lock_guard lock(mu_);
  --in_flight_;
  auto it = per_source_.find(source);
  if (it != per_source_.end() && --it->second <= 0) per_source_.erase(it);
}

LoadGate::Pass::~Pass() {
  if (gate_ != nullptr) gate_->Leave(source_);
}

LoadGate::Counts LoadGate::counts() const {
  std::lock_guard lock(mu_);
  return {in_flight_, admitted_, refused_busy_, refused_per_source_};
}

}  // namespace berth::server
