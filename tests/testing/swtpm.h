// A real software TPM (swtpm) for tests, on a unix socket in a temporary directory.
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/subprocess.h"

namespace berth::testing {

struct SwtpmOptions {
  // When set: before starting, manufacture the TPM with swtpm_setup so that it holds an RSA
  // 2048 and an ECC EK and their certificates in NV (0x01c00002, 0x01c00016), issued by the
  // local CA (swtpm_localca) whose state is in this directory (absolute). The CA is made on
  // first use; TPMs manufactured with the same directory share it, as a manufacturer's do.
  std::string ek_ca_dir;
  // With ek_ca_dir: the PCR banks to leave active (swtpm_setup --pcr-banks), "-" for all. The
  // node image tests use "sha256": firmware hashes what it boots once per active bank, and
  // under TCG every bank costs seconds.
  std::string pcr_banks = "-";
};

class Swtpm {
 public:
  // Starts swtpm with fresh state in `dir` (absolute). On failure, `ok()` is false and
  // `error()` says why.
  explicit Swtpm(const std::string& dir, const SwtpmOptions& options = {});
  ~Swtpm();
  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }
  // The TCTI configuration string for tpm2-tss: "swtpm:path=<dir>/sock".
  std::string Tcti() const { return "swtpm:path=" + socket_; }
  // Extends PCR `index` in the sha256 bank with tpm2_pcrextend (changes the boot state).
  bool ExtendPcr(int index, const std::string& sha256_hex);
  // Extends several (PCR, sha256 hex digest) pairs in order, with one tpm2_pcrextend call.
  bool ExtendPcrs(const std::vector<std::pair<int, std::string>>& extends);
  // A reboot of the machine this TPM sits in: _TPM_Init and TPM2_Startup(CLEAR), so every PCR
  // is back at its reset value (the caller measures the new boot). Keys and NV stay.
  bool Reboot();

  // The local CA of an EK-manufactured TPM: its root and intermediate certificates (PEM),
  // the manufacturer CA bundle berthd is configured with.
  static std::string EkCaBundlePem(const std::string& ek_ca_dir);

 private:
  std::string dir_, socket_, pid_file_, error_;
};

}  // namespace berth::testing
