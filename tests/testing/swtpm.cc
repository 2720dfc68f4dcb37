#include "tests/testing/swtpm.h"

#include <signal.h>

#include <cstdlib>
#include <filesystem>

#include "common/bytes.h"
#include "tests/testing/testing.h"

namespace berth::testing {

Swtpm::Swtpm(const std::string& dir) : dir_(dir) {
  std::filesystem::create_directories(dir + "/state");
  socket_ = dir + "/sock";
  pid_file_ = dir + "/swtpm.pid";
  RealProcessRunner runner;
  // swtpm needs absolute paths; its control socket must be "<socket>.ctrl" for the swtpm TCTI.
  auto r = runner.Run({"/usr/bin/swtpm", "socket", "--tpm2", "--tpmstate", "dir=" + dir + "/state",
                       "--server", "type=unixio,path=" + socket_, "--ctrl",
                       "type=unixio,path=" + socket_ + ".ctrl", "--flags",
                       "not-need-init,startup-clear", "--pid", "file=" + pid_file_, "--log",
                       "file=" + dir + "/swtpm.log", "-d"});
  if (!r.ok()) {
    error_ = r.status().ToString();
  } else if (!r->success()) {
    error_ = "swtpm failed (" + r->Describe() + "): " + r->output;
  } else if (!WaitFor([&] { return std::filesystem::exists(socket_); },
                      std::chrono::seconds(10))) {
    error_ = "swtpm socket did not appear";
  }
}

Swtpm::~Swtpm() {
  auto pid = ReadFile(pid_file_);
  if (pid.ok()) {
    int p = std::atoi(TrimWhitespace(*pid).c_str());
    if (p > 0 && kill(p, SIGTERM) == 0) {
      // Wait for swtpm to finish writing its state before the directory is removed.
      WaitFor([p] { return kill(p, 0) != 0; }, std::chrono::seconds(5));
    }
  }
}

bool Swtpm::ExtendPcr(int index, const std::string& sha256_hex) {
  RealProcessRunner runner;
  auto r = runner.Run({"/usr/bin/tpm2_pcrextend", std::to_string(index) + ":sha256=" + sha256_hex},
                      {"TPM2TOOLS_TCTI=" + Tcti()});
  return r.ok() && r->success();
}

}  // namespace berth::testing
