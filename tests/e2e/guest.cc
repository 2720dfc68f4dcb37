#include "tests/e2e/guest.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>

#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/subprocess.h"
#include "server/join/join_logic.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::testing {

namespace {

constexpr char kTestPrefix[] = "berth-test: ";
constexpr char kKubeadmPrefix[] = "berth-kubeadm: ";

std::string LastLines(const std::string& text, int n) {
  size_t at = text.size();
  for (int i = 0; i <= n && at != std::string::npos && at > 0; ++i) at = text.rfind('\n', at - 1);
  return at == std::string::npos ? text : text.substr(at + 1);
}

}  // namespace

std::string GuestKernel() { return std::string(BERTH_GUEST_DIR) + "/vmlinux"; }
std::string GuestInitramfs() { return std::string(BERTH_GUEST_DIR) + "/initramfs.cpio"; }
std::string GuestToolsInitramfs() {
  return std::string(BERTH_GUEST_DIR) + "/tools-initramfs.cpio";
}

std::string GuestBoot::Report(const std::string& key) const {
  auto it = reports.find(key);
  return it == reports.end() ? "" : it->second;
}

int GuestBoot::agent_exit() const {
  std::string v = Report("agent-exit");
  return v.empty() ? -1 : std::atoi(v.c_str());
}

std::string GuestBoot::Describe() const {
  std::ostringstream out;
  out << "outcome=" << outcome << " after " << seconds << " s; console (last lines):\n"
      << LastLines(serial, 40);
  return out.str();
}

GuestNode::GuestNode(std::string dir, std::string tpm_state, int disk_mib)
    : dir_(std::move(dir)), tpm_state_(std::move(tpm_state)), disk_(dir_ + "/state.img") {
  std::ofstream(disk_).close();
  std::filesystem::resize_file(disk_, static_cast<uintmax_t>(disk_mib) << 20);
}

GuestBoot GuestNode::Boot(const GuestBootOptions& options) {
  const int n = ++boots_;
  const std::string config = dir_ + "/config-" + std::to_string(n);
  const std::string serial = dir_ + "/serial-" + std::to_string(n) + ".log";
  EXPECT_TRUE(MakeDirs(config + "/efi/berth").ok());
  MustWrite(config + "/efi/berth/enrolment.binpb", options.enrolment.SerializeAsString());
  std::string env;
  for (const auto& line : options.env) env += line + "\n";
  MustWrite(config + "/test.env", env);
  MustWrite(config + "/run",
            MustRead(options.run_script.empty() ? SourceDir() + "/tests/e2e/guest/run-agent"
                                                : options.run_script));

  std::vector<std::string> argv = {"/usr/bin/python3",
                                   SourceDir() + "/qemu/berth_vm.py",
                                   "run",
                                   "--kernel",
                                   GuestKernel(),
                                   "--initrd",
                                   options.initramfs.empty() ? GuestInitramfs()
                                                             : options.initramfs,
                                   "--append",
                                   "console=ttyS0 panic=-1 quiet cryptomgr.notests",
                                   "--disk",
                                   disk_,
                                   "--config-dir",
                                   config,
                                   "--swtpm-state",
                                   tpm_state_,
                                   "--memory",
                                   std::to_string(options.memory_mib),
                                   "--cpus",
                                   std::to_string(options.cpus),
                                   "--serial-log",
                                   serial,
                                   "--timeout",
                                   std::to_string(options.timeout.count())};
  for (const std::string& d : options.extra_disks) {
    argv.push_back("--disk");
    argv.push_back(d);
  }
  if (!options.kill_at_marker.empty()) {
    argv.push_back("--kill-at-marker");
    argv.push_back(options.kill_at_marker);
  }
  GuestBoot boot;
  RealProcessRunner runner;
  auto r = runner.Run(argv);
  if (!r.ok()) {
    ADD_FAILURE() << "berth_vm.py did not start: " << r.status().ToString();
    return boot;
  }
  // The last line of the output is berth_vm.py's JSON summary; anything before is its stderr.
  std::string out = TrimWhitespace(r->output);
  size_t line = out.rfind('\n');
  auto summary =
      nlohmann::json::parse(line == std::string::npos ? out : out.substr(line + 1), nullptr, false);
  if (summary.is_discarded() || !summary.is_object()) {
    ADD_FAILURE() << "berth_vm.py printed no summary (" << r->Describe() << "):\n" << r->output;
  } else {
    boot.outcome = summary.value("outcome", "");
    boot.seconds = summary.value("seconds", 0.0);
    boot.qemu_cpu_seconds = summary.value("qemu_cpu_seconds", 0.0);
    boot.machine = summary.value("machine", "");
  }
  if (auto text = ReadFile(serial, 16 << 20); text.ok()) boot.serial = *text;
  std::istringstream lines(boot.serial);
  std::string l;
  while (std::getline(lines, l)) {
    if (!l.empty() && l.back() == '\r') l.pop_back();
    if (size_t at = l.find(kTestPrefix); at != std::string::npos) {
      std::string kv = l.substr(at + sizeof kTestPrefix - 1);
      size_t eq = kv.find('=');
      if (eq != std::string::npos) boot.reports[kv.substr(0, eq)] = kv.substr(eq + 1);
    } else if (size_t at = l.find(kKubeadmPrefix); at != std::string::npos) {
      boot.kubeadm.push_back(l.substr(at + sizeof kKubeadmPrefix - 1));
    }
  }
  return boot;
}

GuestTpm MakeGuestTpm(const std::string& dir) {
  GuestTpm tpm;
  Swtpm swtpm(dir);  // state in dir/state; stopped (and its state saved) when this returns
  EXPECT_TRUE(swtpm.ok()) << swtpm.error();
  tpm.state_dir = dir + "/state";
  RealProcessRunner runner;
  auto r = runner.Run({BuildDir() + "/agent/berth-agent", "--root", dir, "--tcti", swtpm.Tcti(),
                       "--print-identity"});
  if (!r.ok() || !r->success()) {
    ADD_FAILURE() << "berth-agent --print-identity failed: "
                  << (r.ok() ? r->output : r.status().ToString());
    return tpm;
  }
  size_t at = r->output.find("# berthd policy");
  EXPECT_NE(at, std::string::npos) << r->output;
  if (at != std::string::npos) tpm.policy_yaml = r->output.substr(at);
  return tpm;
}

GuestCluster::GuestCluster(const GuestTpm& tpm) {
  MustWrite(host.dir().Join("policy.yaml"), tpm.policy_yaml);
  ok = host.StartApiServer() && host.StartBerthd();
}

v1::EnrolmentConfig GuestCluster::Enrolment(const std::string& node) const {
  v1::EnrolmentConfig c = host.BaseEnrolment();
  c.clear_endpoints();
  c.add_endpoints("10.0.2.2:" + std::to_string(host.berthd_port()));
  c.set_tls_server_name("localhost");
  c.set_node_name(node);
  c.mutable_state_disk()->set_device("/dev/vda");
  c.mutable_state_disk()->set_mount_point(kGuestMount);
  return c;
}

std::string GuestCluster::BerthdLog() const { return MustRead(host.berthd_log()); }

std::string GuestCluster::DiskKeyHex(const std::string& uuid) const {
  std::string secret = MustRead(host.dir().Join("master.secret"));
  auto key = DeriveDiskKey(SecretBytes(secret.data(), secret.size()), "berth-test", uuid);
  WipeString(secret);
  EXPECT_TRUE(key.ok());
  return key.ok() ? HexEncode(key->span()) : "";
}

std::vector<std::string> GuestCluster::TokenHashes(const std::string& node) const {
  std::vector<std::string> out;
  for (const auto& r : host.ApiServerRecords()) {
    if (r.value("code", 0) != 201 || !r.contains("object")) continue;
    const auto& o = r["object"];
    if (o["metadata"]["labels"].value("berth.dev/node", "") != node) continue;
    std::string token =
        std::string(o["data"]["token-id"]) + "." + std::string(o["data"]["token-secret"]);
    out.push_back(HexEncode(Sha256(AsBytes(token))));
  }
  return out;
}

std::string Sha256File(const std::string& path) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::ifstream in(path, std::ios::binary);
  EXPECT_TRUE(in.good()) << path;
  std::vector<char> buf(1 << 20);
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  Bytes digest(32);
  EVP_DigestFinal_ex(ctx.get(), digest.data(), nullptr);
  return HexEncode(digest);
}

std::vector<std::pair<std::string, long>> StepDurations(const std::string& serial) {
  static const std::regex kStep("step=([a-z-]+) result=ok duration_ms=([0-9]+)");
  std::vector<std::pair<std::string, long>> out;
  for (auto it = std::sregex_iterator(serial.begin(), serial.end(), kStep);
       it != std::sregex_iterator(); ++it) {
    out.emplace_back((*it)[1].str(), std::stol((*it)[2].str()));
  }
  return out;
}

long MillisSinceExec(const std::string& serial, const std::string& event) {
  std::smatch m;
  if (!std::regex_search(serial, m, std::regex(" " + event + " ms_since_exec=([0-9]+)"))) {
    return -1;
  }
  return std::stol(m[1].str());
}

}  // namespace berth::testing
