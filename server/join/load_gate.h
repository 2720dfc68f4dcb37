// Admission control for the join calls, so that berthd under more nodes than it can serve
// answers the excess at once instead of queueing everyone into their deadlines.
//
// A ticket call holds a pass while it runs: at most `max_in_flight` calls overall, and at
// most `max_per_source` from one source address (one misbehaving or looping host cannot take
// every slot). A call that finds no slot is refused with RESOURCE_EXHAUSTED before any work
// (no evidence parsed, no etcd or Kubernetes API call); berth-agent retries that code with
// backoff and jitter, so the refused nodes come back spread out and join as load passes.
// Why a bound and not a queue: a join waits on etcd and the Kubernetes API, and a queue in
// front of a slow dependency only turns its slowness into everyone's timeout.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <string_view>

#include "common/status.h"

namespace berth::server {

struct JoinGateLimits {
  int max_in_flight = 64;   // at least 1
  int max_per_source = 16;  // 0: no per-source limit
};

class LoadGate {
 public:
  explicit LoadGate(JoinGateLimits limits) : limits_(limits) {}
  LoadGate(const LoadGate&) = delete;
  LoadGate& operator=(const LoadGate&) = delete;

  // Held for the duration of one call; returns its slot when destroyed.
  class Pass {
   public:
    Pass(Pass&& other) noexcept : gate_(other.gate_), source_(std::move(other.source_)) {
      other.gate_ = nullptr;
    }
    Pass& operator=(Pass&&) = delete;
    ~Pass();

   private:
    friend class LoadGate;
    Pass(LoadGate* gate, std::string source) : gate_(gate), source_(std::move(source)) {}
    LoadGate* gate_;
    std::string source_;
  };

  // `peer` is gRPC's peer string ("ipv4:10.0.0.5:41234", "ipv6:[fd00::5]:41234"); the source
  // is its address without the port. RESOURCE_EXHAUSTED names the limit that was hit.
  Result<Pass> Enter(std::string_view peer);

  struct Counts {
    int in_flight = 0;
    int64_t admitted = 0;
    int64_t refused_busy = 0;        // max_in_flight reached
    int64_t refused_per_source = 0;  // max_per_source reached
  };
  Counts counts() const;

 private:
  void Leave(const std::string& source);

  const JoinGateLimits limits_;
  mutable std::mutex mu_;
  int in_flight_ = 0;
  std::map<std::string, int, std::less<>> per_source_;
  int64_t admitted_ = 0, refused_busy_ = 0, refused_per_source_ = 0;
};

// The address part of a gRPC peer string: "ipv4:10.0.0.5:41234" -> "10.0.0.5",
// "ipv6:[fd00::5]:41234" -> "fd00::5"; anything else (unix sockets, unknown forms) whole.
std::string PeerSource(std::string_view peer);

}  // namespace berth::server
