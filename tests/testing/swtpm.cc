#include "tests/testing/swtpm.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <cstdlib>
#include <filesystem>

#include "common/bytes.h"
#include "tests/testing/testing.h"

namespace berth::testing {

namespace {

// swtpm_setup with its certificate tool (swtpm_localca) pointed at a CA in `ca_dir`: the
// configuration files live there too, so nothing outside the test's directories is used.
std::string Manufacture(const std::string& state_dir, const std::string& ca_dir,
                        const std::string& pcr_banks) {
  std::filesystem::create_directories(ca_dir);
  MustWrite(ca_dir + "/swtpm-localca.conf", "statedir = " + ca_dir + "\nsigningkey = " + ca_dir +
                                                "/signkey.pem\n" + "issuercert = " + ca_dir +
                                                "/issuercert.pem\ncertserial = " + ca_dir +
                                                "/certserial\n");
  MustWrite(ca_dir + "/swtpm-localca.options",
            "--platform-manufacturer berth-test\n--platform-version 2.1\n"
            "--platform-model swtpm\n");
  MustWrite(ca_dir + "/swtpm_setup.conf",
            "create_certs_tool = /usr/bin/swtpm_localca\ncreate_certs_tool_config = " + ca_dir +
                "/swtpm-localca.conf\ncreate_certs_tool_options = " + ca_dir +
                "/swtpm-localca.options\n");
  RealProcessRunner runner;
  // "--pcr-banks -" leaves every bank active, like a fresh swtpm.
  auto r =
      runner.Run({"/usr/bin/swtpm_setup", "--tpm2", "--create-ek-cert", "--create-platform-cert",
                  "--tpmstate", state_dir, "--config", ca_dir + "/swtpm_setup.conf", "--pcr-banks",
                  pcr_banks, "--logfile", state_dir + "/../swtpm_setup.log"});
  if (!r.ok()) return r.status().ToString();
  if (!r->success()) {
    auto log = ReadFile(state_dir + "/../swtpm_setup.log");
    return "swtpm_setup failed (" + r->Describe() + "): " + (log.ok() ? *log : r->output);
  }
  return "";
}

}  // namespace

std::string Swtpm::EkCaBundlePem(const std::string& ek_ca_dir) {
  return MustRead(ek_ca_dir + "/swtpm-localca-rootca-cert.pem") +
         MustRead(ek_ca_dir + "/issuercert.pem");
}

Swtpm::Swtpm(const std::string& dir, const SwtpmOptions& options) : dir_(dir) {
  std::filesystem::create_directories(dir + "/state");
  socket_ = dir + "/sock";
  pid_file_ = dir + "/swtpm.pid";
  if (!options.ek_ca_dir.empty()) {
    error_ = Manufacture(dir + "/state", options.ek_ca_dir, options.pcr_banks);
    if (!error_.empty()) return;
  }
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
      // Wait for swtpm to finish writing its state before the directory is removed. The
      // daemonised swtpm is not our child: once it has exited it may linger as a zombie until
      // PID 1 reaps it, which counts as gone.
      auto exited = [p] {
        auto stat = ReadFile("/proc/" + std::to_string(p) + "/stat");
        if (!stat.ok()) return true;
        size_t paren = stat->rfind(')');
        return paren == std::string::npos || stat->substr(paren + 2, 1) == "Z";
      };
      WaitFor(exited, std::chrono::seconds(5));
    }
  }
}

bool Swtpm::ExtendPcrs(const std::vector<std::pair<int, std::string>>& extends) {
  std::vector<std::string> argv = {"/usr/bin/tpm2_pcrextend"};
  for (const auto& [index, hex] : extends) argv.push_back(std::to_string(index) + ":sha256=" + hex);
  RealProcessRunner runner;
  auto r = runner.Run(argv, {"TPM2TOOLS_TCTI=" + Tcti()});
  if (r.ok() && !r->success()) ADD_FAILURE() << "tpm2_pcrextend: " << r->output;
  return r.ok() && r->success();
}

bool Swtpm::Reboot() {
  RealProcessRunner runner;
  auto init = runner.Run({"/usr/bin/swtpm_ioctl", "--unix", socket_ + ".ctrl", "-i"});
  if (!init.ok() || !init->success()) {
    ADD_FAILURE() << "swtpm_ioctl -i: " << (init.ok() ? init->output : init.status().ToString());
    return false;
  }
  auto startup = runner.Run({"/usr/bin/tpm2_startup", "-c"}, {"TPM2TOOLS_TCTI=" + Tcti()});
  if (!startup.ok() || !startup->success()) {
    ADD_FAILURE() << "tpm2_startup -c: "
                  << (startup.ok() ? startup->output : startup.status().ToString());
    return false;
  }
  return true;
}

bool Swtpm::ExtendPcr(int index, const std::string& sha256_hex) {
  RealProcessRunner runner;
  auto r = runner.Run({"/usr/bin/tpm2_pcrextend", std::to_string(index) + ":sha256=" + sha256_hex},
                      {"TPM2TOOLS_TCTI=" + Tcti()});
  return r.ok() && r->success();
}

}  // namespace berth::testing
