// Runs the built berthctl binary as an operator would, capturing its exit code, stdout and
// stderr separately.
#pragma once

#include <string>
#include <vector>

namespace berth::testing {

struct BerthctlRun {
  int exit_code = -1;  // -1 when it did not exit normally
  std::string out, err;
};

// argv after "berthctl". Output files go to a private temporary directory.
BerthctlRun RunBerthctl(const std::vector<std::string>& args);

}  // namespace berth::testing
