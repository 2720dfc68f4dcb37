#include "tests/e2e/image_node.h"

#include <gtest/gtest.h>
#include <signal.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/bytes.h"
#include "common/subprocess.h"
#include "tests/testing/testing.h"

namespace berth::testing {

namespace {

constexpr char kTestPrefix[] = "berth-test: ";

std::string LastLines(const std::string& text, int n) {
  size_t at = text.size();
  for (int i = 0; i <= n && at != std::string::npos && at > 0; ++i) at = text.rfind('\n', at - 1);
  return at == std::string::npos ? text : text.substr(at + 1);
}

std::string ReadOr(const std::string& path) {
  auto text = ReadFile(path, 64 << 20);
  return text.ok() ? *text : "";
}

// The console's "berth-test:" lines and blocks into `boot`.
void ParseReports(ImageBoot& boot) {
  std::istringstream lines(boot.serial);
  std::string l, block_name, block;
  while (std::getline(lines, l)) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    size_t at = l.find(kTestPrefix);
    if (at == std::string::npos) {
      if (!block_name.empty()) block += l + "\n";
      continue;
    }
    std::string kv = l.substr(at + sizeof kTestPrefix - 1);
    if (kv.rfind("begin ", 0) == 0) {
      block_name = kv.substr(6);
      block.clear();
    } else if (kv.rfind("end ", 0) == 0) {
      boot.blocks[block_name] = block;
      block_name.clear();
    } else if (size_t eq = kv.find('='); eq != std::string::npos) {
      boot.reports[kv.substr(0, eq)] = kv.substr(eq + 1);
    }
  }
}

}  // namespace

std::string ImageDir() {
  const char* dir = std::getenv("BERTH_IMAGE_DIR");
  return dir != nullptr && *dir != '\0' ? dir : BuildDir() + "/image";
}

std::string ImageBoot::Report(const std::string& key) const {
  auto it = reports.find(key);
  return it == reports.end() ? "" : it->second;
}

int ImageBoot::Count(const std::string& text) const {
  int n = 0;
  std::istringstream lines(serial);
  std::string l;
  while (std::getline(lines, l)) n += l.find(text) != std::string::npos;
  return n;
}

std::string ImageBoot::Describe() const {
  std::ostringstream out;
  out << "outcome=" << outcome << " after " << seconds << " s; console (last lines):\n"
      << LastLines(serial, 60);
  return out.str();
}

bool RunningBoot::running() { return vm_.running(); }

std::string RunningBoot::Serial() const { return ReadOr(serial_); }

bool RunningBoot::WaitForSerial(const std::string& text, std::chrono::seconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const bool alive = running();  // before reading: output precedes the exit
    if (Serial().find(text) != std::string::npos) return true;
    if (!alive || std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
}

void RunningBoot::PressPowerButton() {
  if (vm_.running()) kill(vm_.pid(), SIGUSR1);
}

ImageBoot RunningBoot::PullThePlug() {
  if (vm_.running()) kill(vm_.pid(), SIGTERM);
  return Finish(std::chrono::seconds(60));
}

ImageBoot RunningBoot::Finish(std::chrono::seconds timeout) {
  ImageBoot boot;
  ProcessResult r = vm_.Wait(timeout);
  // berth_vm.py's last line is its JSON summary.
  std::string out = TrimWhitespace(ReadOr(log_));
  size_t line = out.rfind('\n');
  auto summary =
      nlohmann::json::parse(line == std::string::npos ? out : out.substr(line + 1), nullptr, false);
  if (summary.is_discarded() || !summary.is_object()) {
    ADD_FAILURE() << "berth_vm.py printed no summary (" << r.Describe() << "):\n" << out;
  } else {
    boot.outcome = summary.value("outcome", "");
    boot.seconds = summary.value("seconds", 0.0);
    boot.power_button = summary.value("power_button", -1.0);
    boot.started_monotonic = summary.value("started_monotonic", 0.0);
    boot.started_realtime = summary.value("started_realtime", 0.0);
  }
  boot.serial = ReadOr(serial_);
  boot.serial_times = ReadOr(times_);
  ParseReports(boot);
  return boot;
}

ImageNode::ImageNode(std::string dir, std::string tpm_state, int disk_mib)
    : dir_(std::move(dir)), tpm_state_(std::move(tpm_state)), disk_(dir_ + "/state.img") {
  std::ofstream(disk_).close();
  std::filesystem::resize_file(disk_, static_cast<uintmax_t>(disk_mib) << 20);
}

ImageBoot ImageNode::Boot(const ImageBootOptions& options) {
  auto running = Start(options);
  if (running == nullptr) return ImageBoot{};
  return running->Finish(options.timeout + std::chrono::seconds(30));
}

std::unique_ptr<RunningBoot> ImageNode::Start(const ImageBootOptions& options) {
  const std::string n = std::to_string(++boots_);
  const std::string esp = dir_ + "/esp-" + n + ".img";
  RealProcessRunner runner;
  std::vector<std::string> mkesp = {SourceDir() + "/image/mkesp", "--uki",
                                    options.uki.empty() ? ImageDir() + "/berth.efi" : options.uki,
                                    "--out", esp};
  if (options.enrolment != nullptr) {
    const std::string file = dir_ + "/enrolment-" + n + ".binpb";
    MustWrite(file, options.enrolment->SerializeAsString());
    mkesp.insert(mkesp.end(), {"--enrolment", file});
  }
  if (!options.options.empty()) {
    std::string text;
    for (const auto& line : options.options) text += line + "\n";
    MustWrite(dir_ + "/options-" + n, text);
    mkesp.insert(mkesp.end(), {"--file", dir_ + "/options-" + n + ":/berth-test/options"});
  }
  auto made = runner.Run(mkesp);
  if (!made.ok() || !made->success()) {
    ADD_FAILURE() << "image/mkesp failed: "
                  << (made.ok() ? made->output : made.status().ToString());
    return nullptr;
  }

  auto boot = std::make_unique<RunningBoot>();
  boot->serial_ = dir_ + "/serial-" + n + ".log";
  boot->times_ = dir_ + "/serial-" + n + ".times";
  boot->log_ = dir_ + "/vm-" + n + ".log";
  std::vector<std::string> argv = {"/usr/bin/python3",
                                   SourceDir() + "/qemu/berth_vm.py",
                                   "run",
                                   options.other_firmware ? "--ovmf-2m" : "--ovmf",
                                   "--disk",
                                   esp,
                                   "--disk",
                                   ImageDir() + "/root.img,readonly,serial=berth-root",
                                   "--disk",
                                   disk_ + ",serial=berth-state",
                                   "--swtpm-state",
                                   tpm_state_,
                                   "--memory",
                                   std::to_string(options.memory_mib),
                                   "--serial-log",
                                   boot->serial_,
                                   "--serial-times",
                                   boot->times_,
                                   "--timeout",
                                   std::to_string(options.timeout.count())};
  if (!options.netdev_opts.empty()) argv.insert(argv.end(), {"--netdev-opts", options.netdev_opts});
  for (const auto& f : options.hostfwds) argv.insert(argv.end(), {"--hostfwd", f});
  if (options.bridge_slot > 0) {
    char mac[32];
    std::snprintf(mac, sizeof mac, "52:54:00:77:00:%02x", options.bridge_slot);
    argv.insert(argv.end(),
                {"--tap", "berth-tap" + std::to_string(options.bridge_slot), "--mac", mac});
  }
  auto vm = Subprocess::Start(argv, boot->log_);
  if (!vm.ok()) {
    ADD_FAILURE() << "berth_vm.py did not start: " << vm.status().ToString();
    return nullptr;
  }
  boot->vm_ = std::move(*vm);
  return boot;
}

std::string BridgeAddress(int slot) { return "192.168.77." + std::to_string(10 + slot); }

bool OnBridge() {
  const char* bridge = std::getenv("BERTH_BRIDGE");
  return bridge != nullptr && std::string(bridge) == "192.168.77.1";
}

v1::EnrolmentConfig ImageEnrolment(v1::EnrolmentConfig base) {
  base.mutable_state_disk()->set_device("/dev/disk/by-id/virtio-berth-state");
  base.mutable_state_disk()->set_mount_point("/var/lib/berth/state");
  base.clear_pcr_selection();
  v1::PcrSelection* s = base.add_pcr_selection();
  s->set_bank(v1::HASH_ALGORITHM_SHA256);
  for (uint32_t i : {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 11, 12, 14, 15}) s->add_pcrs(i);
  return base;
}

v1::EnrolmentConfig ImageWorkerEnrolment(const std::string& cluster_id,
                                         const std::vector<std::string>& berthds,
                                         const std::string& join_ca_pem, const std::string& node) {
  v1::EnrolmentConfig c;
  c.set_version(1);
  c.set_cluster_id(cluster_id);
  for (const auto& b : berthds) c.add_endpoints(b);
  c.set_cluster_ca_pem(join_ca_pem);
  c.set_role(v1::NODE_ROLE_WORKER);
  c.set_attestation(v1::ATTESTATION_KIND_TPM);
  c.set_node_name(node);
  return ImageEnrolment(c);
}

}  // namespace berth::testing
