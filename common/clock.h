// Time, behind an interface so tests use fake time.
#pragma once

#include <chrono>
#include <cstdint>

namespace berth {

class Clock {
 public:
  virtual ~Clock() = default;
  // Wall-clock time, unix seconds.
  virtual int64_t NowUnix() = 0;
  virtual void Sleep(std::chrono::milliseconds d) = 0;
};

class RealClock : public Clock {
 public:
  int64_t NowUnix() override;
  void Sleep(std::chrono::milliseconds d) override;
};

}  // namespace berth
