// The node image end to end (docs/image.md): OVMF measures the UKI into a swtpm, systemd
// starts berth-agent, which attests with the real measured-boot PCRs and event log to a real
// berthd on the host, formats and unlocks the state disk and runs the kubeadm stand-in. The
// policy is derived from a reference boot of the same image (`berthctl policy from
// --eventlog`), and the node's TPM is trusted through its EK certificate (swtpm manufactured
// by a test CA, with credential activation). The image is built by the image_build test.
//
// One test, in phases, because each phase is a boot of the same node (its TPM, ESP and
// state disk), and boots are what costs time here (under TCG, 40-140 s each).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cctype>
#include <filesystem>
#include <sstream>
#include <nlohmann/json.hpp>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/subprocess.h"
#include "tests/e2e/guest.h"
#include "tests/e2e/image_node.h"
#include "tests/integration/cluster.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Indented(const std::string& text, int spaces) {
  std::string out, pad(static_cast<size_t>(spaces), ' ');
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out += pad + text.substr(start, end - start) + "\n";
    start = end + 1;
  }
  return out;
}

// A TPM as a manufacturer ships it: swtpm_setup with EK certificates from the CA in
// `ca_dir`, its state in dir/state (what the VM's swtpm then runs on).
std::string ManufactureTpm(const std::string& dir, const std::string& ca_dir) {
  // stopped, state saved, when it goes out of scope
  Swtpm tpm(dir, {.ek_ca_dir = ca_dir, .pcr_banks = "sha256"});
  EXPECT_TRUE(tpm.ok()) << tpm.error();
  return dir + "/state";
}

// systemd's record of berth-agent.service on a boot, in seconds from the kernel's start: when
// the agent was started and when it sent READY=1. The report prints them as CLOCK_MONOTONIC
// microseconds; -1 where one is missing or not a number.
struct AgentTimes {
  double started = -1, ready = -1;
};
AgentTimes AgentTimesOf(const ImageBoot& boot) {
  auto seconds = [&](const std::string& key) {
    const std::string v = boot.Report(key);
    if (v.empty() || v.find_first_not_of("0123456789") != std::string::npos) return -1.0;
    return std::stod(v) / 1e6;
  };
  return {.started = seconds("agent-ExecMainStartTimestampMonotonic"),
          .ready = seconds("agent-ActiveEnterTimestampMonotonic")};
}

// SHA-256 (hex) of every bootstrap token the API server stored for `node`, in order.
std::vector<std::string> TokenHashes(const HostCluster& host, const std::string& node) {
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

std::string DiskUuid(const std::string& disk) {
  RealProcessRunner runner;
  auto r = runner.Run({BuildDir() + "/cli/berthctl", "disk", "inspect", disk});
  if (!r.ok()) return "";
  std::istringstream lines(r->output);
  std::string line, uuid;
  while (std::getline(lines, line)) {
    if (line.rfind("uuid: ", 0) == 0) uuid = line.substr(6);
  }
  return uuid;
}

class ImageE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(ImageDir() + "/berth.efi"))
        << "no node image in " << ImageDir() << " (the image_build test makes it)";
    ASSERT_TRUE(std::filesystem::exists("/usr/share/OVMF/OVMF_CODE_4M.fd"));
  }

  // The reference boot: the image on a node with no EnrolmentConfig (berth-agent does not
  // start), which prints its firmware event log; berthd's policy accepts exactly that boot,
  // and TPMs with an EK certificate from the manufacturer CA.
  std::string ReferencePolicy() {
    EXPECT_TRUE(MakeDirs(dir_.Join("reference")).ok());
    ImageNode reference(dir_.Join("reference"),
                        ManufactureTpm(dir_.Join("reference-tpm"), dir_.Join("manufacturer")));
    ImageBoot boot = reference.Boot({.options = {"IDENTITY=1"}});
    EXPECT_EQ(boot.outcome, "poweroff") << boot.Describe();
    // Skipped, not failed: the ESP holds no EnrolmentConfig.
    EXPECT_EQ(boot.Report("agent-ActiveState"), "inactive") << boot.Describe();
    EXPECT_EQ(boot.Report("agent-Result"), "success");
    EXPECT_EQ(boot.Report("mount /"), "/dev/mapper/root squashfs");
    EXPECT_EQ(boot.Report("dm root"), "verity 1");
    std::string hex;
    for (char c : boot.blocks["eventlog"]) {
      if (!std::isspace(static_cast<unsigned char>(c))) hex += c;
    }
    std::string log;
    auto decoded = HexDecode(hex);
    EXPECT_TRUE(decoded.ok() && !decoded->empty()) << "no event log in hex: " << boot.Describe();
    if (decoded.ok()) log = ToString(*decoded);
    const std::string log_path = dir_.Join("reference-eventlog.bin");
    MustWrite(log_path, log);
    RealProcessRunner runner;
    auto policy =
        runner.Run({BuildDir() + "/cli/berthctl", "policy", "from", "--eventlog", log_path});
    EXPECT_TRUE(policy.ok() && policy->success())
        << (policy.ok() ? policy->output : policy.status().ToString());
    if (!policy.ok()) return "";
    reference_seconds_ = boot.seconds;
    return policy->output + "  ek_ca_pem: |\n" +
           Indented(Swtpm::EkCaBundlePem(dir_.Join("manufacturer")), 4);
  }

  TempDir dir_;
  double reference_seconds_ = 0;
};

TEST_F(ImageE2eTest, FirstBootRebootAndTamperedBoot) {
  const std::string policy = ReferencePolicy();
  ASSERT_FALSE(policy.empty());
  // The boot is constrained by the log's events, the UKI's among them (PCR 4, PCR 11).
  ASSERT_THAT(policy, HasSubstr("\\EFI\\BOOT\\BOOTX64.EFI"));
  ASSERT_THAT(policy, HasSubstr(".cmdline"));
  ASSERT_THAT(policy, HasSubstr(".linux"));

  HostCluster host;
  MustWrite(host.dir().Join("policy.yaml"), policy);
  ASSERT_TRUE(host.StartApiServer());
  ASSERT_TRUE(host.StartBerthd()) << MustRead(host.berthd_log());
  v1::EnrolmentConfig config = ImageEnrolment(host.BaseEnrolment());
  config.clear_endpoints();
  config.add_endpoints("10.0.2.2:" + std::to_string(host.berthd_port()));
  config.set_tls_server_name("localhost");
  config.set_node_name("image-node-1");

  ASSERT_TRUE(MakeDirs(dir_.Join("node")).ok());
  ImageNode node(dir_.Join("node"),
                 ManufactureTpm(dir_.Join("node-tpm"), dir_.Join("manufacturer")));

  // ---- first boot: blank disk ----
  ImageBoot first = node.Boot({.enrolment = &config, .options = {"WRITE=written-on-first-boot"}});
  ASSERT_EQ(first.outcome, "poweroff") << first.Describe();
  EXPECT_EQ(first.Report("agent-ActiveState"), "active") << first.Describe();
  EXPECT_EQ(first.Report("agent-StatusText"), "node joined") << first.Describe();
  const AgentTimes first_times = AgentTimesOf(first);
  EXPECT_GT(first_times.started, 0) << first.Describe();
  EXPECT_GT(first_times.ready, first_times.started) << first.Describe();
  // Started by systemd (berth-agent.service), its progress on the console.
  EXPECT_THAT(first.serial, HasSubstr("step=format result=ok"));
  EXPECT_THAT(first.serial, HasSubstr("step=kubeadm-join result=ok"));
  EXPECT_EQ(first.Report("mount /var/lib/berth/state"), "/dev/mapper/berth-state ext4");
  EXPECT_EQ(first.Report("mount /etc/kubernetes"), "/dev/mapper/berth-state ext4");
  EXPECT_EQ(first.Report("dm berth-state"), "crypt aes-xts-plain64");
  EXPECT_EQ(first.Report("progress"), R"({"join_started":true,"joined":true,"version":1})");
  EXPECT_EQ(first.Report("wrote"), "written-on-first-boot");
  // The kubeadm stand-in got a JoinConfiguration it accepts (kubeadm v1beta4's rules), with
  // the bootstrap token berthd minted through the API server.
  ASSERT_EQ(first.kubeadm_joins.size(), 1u) << first.Describe();
  auto join = nlohmann::json::parse(first.kubeadm_joins[0]);
  EXPECT_EQ(join["ok"], true) << join.dump();
  EXPECT_EQ(join["apiVersion"], "kubeadm.k8s.io/v1beta4");
  EXPECT_EQ(join["node"], "image-node-1");
  EXPECT_EQ(join["config_mode"], "0600");
  EXPECT_EQ(join["ca_cert_hashes"], 1);
  // Run by the agent with root's file access only (agent/privileges.h), from a systemd service.
  EXPECT_EQ(join["cap_bnd"], "000000000000001f");
  EXPECT_EQ(join["cap_eff"], "000000000000001f");
  EXPECT_EQ(TokenHashes(host, "image-node-1"),
            std::vector<std::string>{join["token_sha256"].get<std::string>()});
  const std::string kubelet_conf = first.Report("kubelet-conf-sha256");
  EXPECT_EQ(kubelet_conf.size(), 64u) << first.Describe();
  EXPECT_THAT(MustRead(host.berthd_log()),
              HasSubstr("audit call=IssueJoinTicket decision=granted node=image-node-1"));
  const std::string uuid = DiskUuid(node.disk());
  EXPECT_EQ(uuid.size(), 36u);

  // ---- reboot: the same node rejoins, unlocks the same disk, does not join again ----
  ImageBoot second = node.Boot({.enrolment = &config});
  ASSERT_EQ(second.outcome, "poweroff") << second.Describe();
  EXPECT_EQ(second.Report("agent-ActiveState"), "active") << second.Describe();
  EXPECT_EQ(second.Report("agent-StatusText"), "node joined");
  const AgentTimes second_times = AgentTimesOf(second);
  EXPECT_GT(second_times.started, 0) << second.Describe();
  EXPECT_GT(second_times.ready, second_times.started) << second.Describe();
  EXPECT_THAT(second.serial, HasSubstr("step=request-rejoin-ticket result=ok"));
  EXPECT_THAT(second.serial, Not(HasSubstr("step=format")));
  EXPECT_THAT(second.serial, Not(HasSubstr("step=kubeadm-join")));
  EXPECT_EQ(second.Report("data"), "written-on-first-boot");
  EXPECT_EQ(second.Report("kubeadm-joins"), "0");
  EXPECT_EQ(second.Report("kubelet-conf-sha256"), kubelet_conf);
  EXPECT_EQ(DiskUuid(node.disk()), uuid);
  EXPECT_THAT(MustRead(host.berthd_log()),
              HasSubstr("audit call=IssueRejoinTicket decision=granted node=image-node-1"));

  // ---- tampered boot: the same image with another kernel command line ----
  const std::string image = ImageDir();
  const std::string tampered_uki = dir_.Join("tampered.efi");
  RealProcessRunner runner;
  auto made = runner.Run({SourceDir() + "/image/mkuki", "--linux", image + "/vmlinuz", "--initrd",
                          image + "/initrd.cpio", "--osrel", image + "/os-release", "--cmdline",
                          TrimWhitespace(MustRead(image + "/cmdline")) + " berth.tampered=1",
                          "--out", tampered_uki});
  ASSERT_TRUE(made.ok() && made->success()) << (made.ok() ? made->output : "");
  const std::string disk_before = Sha256File(node.disk());
  ImageBoot third = node.Boot({.enrolment = &config, .uki = tampered_uki});
  ASSERT_EQ(third.outcome, "poweroff") << third.Describe();
  EXPECT_THAT(third.Report("cmdline"), HasSubstr("berth.tampered=1"));
  EXPECT_EQ(third.Report("agent-ActiveState"), "failed") << third.Describe();
  // The agent's status says why: berthd refused the boot, naming the event.
  const std::string status = third.Report("agent-StatusText");
  EXPECT_THAT(status, HasSubstr("PERMISSION_DENIED")) << third.Describe();
  EXPECT_THAT(status, HasSubstr("event")) << status;
  EXPECT_THAT(third.serial, Not(HasSubstr("step=unlock")));
  EXPECT_EQ(third.Report("mount /var/lib/berth/state"), "");
  EXPECT_EQ(Sha256File(node.disk()), disk_before);
  EXPECT_THAT(MustRead(host.berthd_log()),
              HasSubstr("audit call=IssueRejoinTicket decision=refused node=image-node-1"));

  std::printf("image e2e: boots (VM start to power-off): reference %.1f s, first %.1f s, "
              "reboot %.1f s, tampered %.1f s\n",
              reference_seconds_, first.seconds, second.seconds, third.seconds);
  // Boot to READY, firmware not included: from the kernel's start (systemd's monotonic clock)
  // to the agent's start, and to its READY=1. The first boot formats and joins; the reboot
  // unlocks and rejoins. Under TCG: an emulated CPU's figures.
  std::printf("image e2e: kernel start to berth-agent started / READY: first %.2f / %.2f s, "
              "reboot %.2f / %.2f s\n",
              first_times.started, first_times.ready, second_times.started, second_times.ready);
}

}  // namespace
}  // namespace berth::testing
