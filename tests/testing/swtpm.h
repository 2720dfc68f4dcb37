// A real software TPM (swtpm) for tests, on a unix socket in a temporary directory.
#pragma once

#include <memory>
#include <string>

#include "common/subprocess.h"

namespace berth::testing {

class Swtpm {
 public:
  // Starts swtpm with fresh state in `dir` (absolute). On failure, `ok()` is false and
  // `error()` says why.
  explicit Swtpm(const std::string& dir);
  ~Swtpm();
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  // The TCTI configuration string for tpm2-tss: "swtpm:path=<dir>/sock".
  std::string Tcti() const { return "swtpm:path=" + socket_; }
  // Extends PCR `index` in the sha256 bank with tpm2_pcrextend (changes the boot state).
  bool ExtendPcr(int index, const std::string& sha256_hex);

 private:
  std::string dir_, socket_, pid_file_, error_;
};

}  // namespace berth::testing
