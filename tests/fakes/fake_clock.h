// A clock that tests move by hand: Sleep() returns at once and advances it.
#pragma once

#include <chrono>
#include <cstdint>

#include "common/clock.h"

namespace berth {

// Thread-compatible fake: time moves only when told (Sleep advances it).
class FakeClock : public Clock {
 public:
  explicit FakeClock(int64_t now_unix) : now_ms_(now_unix * 1000) {}
  int64_t NowUnix() override { return now_ms_ / 1000; }
  void Sleep(std::chrono::milliseconds d) override { now_ms_ += d.count(); }
  void Advance(std::chrono::seconds d) { now_ms_ += d.count() * 1000; }
  int64_t slept_ms() const { return now_ms_; }

 private:
  int64_t now_ms_;
};

}  // namespace berth
