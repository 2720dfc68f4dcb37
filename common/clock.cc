#include "common/clock.h"

#include <thread>

namespace berth {

int64_t RealClock::NowUnix() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void RealClock::Sleep(std::chrono::milliseconds d) { std::this_thread::sleep_for(d); }

}  // namespace berth
