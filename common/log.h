// Logging: spdlog to stderr, journald-friendly (a "<N>" priority prefix when stderr is the
// journal, no timestamps there since journald adds its own), and timed steps.
#pragma once

#include <spdlog/spdlog.h>

#include <chrono>
#include <functional>
#include <string>

namespace berth {

// Sets up the default logger for a daemon or tool named `name`. `verbose` enables debug.
void InitLogging(const std::string& name, bool verbose = false);

// A monotonic clock reading in milliseconds, for step durations.
int64_t MonotonicMillis();

}  // namespace berth
