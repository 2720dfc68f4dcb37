#include "tests/e2e/image_node.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

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

}  // namespace

std::string ImageDir() {
  const char* dir = std::getenv("BERTH_IMAGE_DIR");
  return dir != nullptr && *dir != '\0' ? dir : BuildDir() + "/image";
}

std::string ImageBoot::Report(const std::string& key) const {
  auto it = reports.find(key);
  return it == reports.end() ? "" : it->second;
}

std::string ImageBoot::Describe() const {
  std::ostringstream out;
  out << "outcome=" << outcome << " after " << seconds << " s; console (last lines):\n"
      << LastLines(serial, 60);
  return out.str();
}

ImageNode::ImageNode(std::string dir, std::string tpm_state, int disk_mib)
    : dir_(std::move(dir)), tpm_state_(std::move(tpm_state)), disk_(dir_ + "/state.img") {
  std::ofstream(disk_).close();
  std::filesystem::resize_file(disk_, static_cast<uintmax_t>(disk_mib) << 20);
}

ImageBoot ImageNode::Boot(const ImageBootOptions& options) {
  const std::string n = std::to_string(++boots_);
  const std::string esp = dir_ + "/esp-" + n + ".img";
  const std::string serial = dir_ + "/serial-" + n + ".log";
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
  ImageBoot boot;
  auto made = runner.Run(mkesp);
  if (!made.ok() || !made->success()) {
    ADD_FAILURE() << "image/mkesp failed: " << (made.ok() ? made->output : made.status().ToString());
    return boot;
  }

  std::vector<std::string> argv = {"/usr/bin/python3", SourceDir() + "/qemu/berth_vm.py", "run",
                                   "--ovmf", "--disk", esp, "--disk",
                                   ImageDir() + "/root.img,readonly,serial=berth-root", "--disk",
                                   disk_ + ",serial=berth-state", "--swtpm-state", tpm_state_,
                                   "--memory", std::to_string(options.memory_mib), "--serial-log",
                                   serial, "--timeout", std::to_string(options.timeout.count())};
  if (!options.netdev_opts.empty()) argv.insert(argv.end(), {"--netdev-opts", options.netdev_opts});
  for (const auto& f : options.hostfwds) argv.insert(argv.end(), {"--hostfwd", f});
  auto r = runner.Run(argv);
  if (!r.ok()) {
    ADD_FAILURE() << "berth_vm.py did not start: " << r.status().ToString();
    return boot;
  }
  std::string out = TrimWhitespace(r->output);
  size_t line = out.rfind('\n');
  auto summary =
      nlohmann::json::parse(line == std::string::npos ? out : out.substr(line + 1), nullptr, false);
  if (summary.is_discarded() || !summary.is_object()) {
    ADD_FAILURE() << "berth_vm.py printed no summary (" << r->Describe() << "):\n" << r->output;
  } else {
    boot.outcome = summary.value("outcome", "");
    boot.seconds = summary.value("seconds", 0.0);
  }
  if (auto text = ReadFile(serial, 64 << 20); text.ok()) boot.serial = *text;
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
      std::string key = kv.substr(0, eq), value = kv.substr(eq + 1);
      if (key == "kubeadm-join") boot.kubeadm_joins.push_back(value);
      boot.reports[key] = value;
    }
  }
  return boot;
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

}  // namespace berth::testing
