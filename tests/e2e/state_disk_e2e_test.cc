// The state disk on a real kernel: berth-agent in a QEMU guest (Debian's kernel, dm-crypt,
// ext4, a swtpm TPM) formats, unlocks and mounts its disk with keys from a real berthd on the
// host, survives reboots and power cuts, and never touches a disk it must not.
//
// Every test boots one guest per step (one at a time; RESOURCE_LOCK qemu), so they are slow:
// about 15-40 s per boot under TCG, depending on the machine's load.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "agent/hw/disk.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "common/subprocess.h"
#include "tests/e2e/guest.h"

namespace berth::testing {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::MatchesRegex;
using ::testing::Not;
using ::testing::SizeIs;
using ::testing::StartsWith;

constexpr char kProgressJoined[] = "{\"join_started\":true,\"joined\":true,\"version\":1}";

class StateDiskE2eTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(std::filesystem::exists(GuestKernel())) << GuestKernel() << ": build e2e_guest";
    ASSERT_TRUE(std::filesystem::exists(GuestInitramfs())) << GuestInitramfs();
    tpm_ = MakeGuestTpm(dir_.Join("tpm"));
    ASSERT_FALSE(tpm_.policy_yaml.empty());
    cluster_ = std::make_unique<GuestCluster>(tpm_);
    ASSERT_TRUE(cluster_->ok);
    ASSERT_TRUE(MakeDirs(dir_.Join("node")).ok());
    node_ = std::make_unique<GuestNode>(dir_.Join("node"), tpm_.state_dir);
  }

  GuestBoot Boot(const std::string& node_name, std::vector<std::string> env = {},
                 std::string kill_at = "") {
    GuestBootOptions o;
    o.enrolment = cluster_->Enrolment(node_name);
    o.env = std::move(env);
    o.kill_at_marker = std::move(kill_at);
    return node_->Boot(o);
  }

  // The LUKS header on the disk image, read on the host.
  agent::LuksHeader Header() {
    auto h = agent::MakeLibDisk()->ReadLuksHeader(node_->disk());
    EXPECT_TRUE(h.ok()) << h.status().ToString();
    return h.ok() ? *h : agent::LuksHeader{};
  }

  // What every successful boot shows: the disk is a dm-crypt LUKS2 volume (aes-xts-plain64,
  // 512-bit key) mounted at kGuestMount, kubeadm's directories bind-mounted from it, progress
  // recorded as joined.
  static void ExpectMountedAndJoined(const GuestBoot& boot) {
    EXPECT_EQ(boot.agent_exit(), 0) << boot.Describe();
    EXPECT_EQ(boot.Report("mount"), "/dev/mapper/berth-state ext4");
    EXPECT_EQ(boot.Report("bind-etc-kubernetes"), "/dev/mapper/berth-state");
    EXPECT_EQ(boot.Report("dm-type"), "LUKS2");
    EXPECT_EQ(boot.Report("dm-cipher"), "aes-xts-plain64");
    EXPECT_EQ(boot.Report("dm-keysize"), "512 bits");
    EXPECT_EQ(boot.Report("dm-device"), "/dev/vda");
    EXPECT_EQ(boot.Report("dm-sector-size"), "4096");
    EXPECT_EQ(boot.Report("progress"), kProgressJoined);
    EXPECT_THAT(boot.Report("kubelet-conf-sha256"), MatchesRegex("[0-9a-f]{64}"));
  }

  static bool Ran(const GuestBoot& boot, const std::string& step) {
    return boot.serial.find("step=" + step + " result=") != std::string::npos;
  }

  TempDir dir_;
  GuestTpm tpm_;
  std::unique_ptr<GuestCluster> cluster_;
  std::unique_ptr<GuestNode> node_;
};

TEST_F(StateDiskE2eTest, FirstBootFormatsAndMountsAndARebootRejoinsTheSameDisk) {
  const std::string data = HexEncode(RandomBytes(16));
  GuestBoot first = Boot("node-first", {"BERTH_TEST_WRITE=" + data});
  ASSERT_EQ(first.outcome, "poweroff") << first.Describe();
  ExpectMountedAndJoined(first);
  EXPECT_EQ(first.Report("wrote"), data);
  EXPECT_EQ(first.Report("data"), "");  // nothing there before

  // The disk carries berth's LUKS2 header, with the UUID the agent asked berthd's key for.
  agent::LuksHeader header = Header();
  EXPECT_EQ(header.type, "LUKS2");
  EXPECT_EQ(header.label, "berth-state");
  EXPECT_THAT(header.uuid,
              MatchesRegex("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"));
  EXPECT_THAT(cluster_->BerthdLog(),
              HasSubstr("audit call=IssueJoinTicket decision=granted node=node-first"));
  EXPECT_THAT(cluster_->BerthdLog(), HasSubstr("disk_uuid=" + header.uuid));
  EXPECT_THAT(first.serial, HasSubstr("state disk " + header.uuid + " formatted and mounted"));
  // Every first-boot step ran once, in order, each on one timed line.
  std::vector<std::string> steps;
  for (const auto& [step, ms] : StepDurations(first.serial)) steps.push_back(step);
  EXPECT_THAT(steps, ElementsAre("read-enrolment", "open-tpm", "measure-enrolment", "make-identity",
                                 "probe-disk", "request-ticket", "format", "unlock", "mkfs",
                                 "mount", "drop-privileges", "kubeadm-join", "release-keys"));

  // kubeadm joined once, with the bootstrap token berthd created for this node.
  ASSERT_THAT(first.kubeadm, SizeIs(1)) << first.Describe();
  const std::vector<std::string> tokens = cluster_->TokenHashes("node-first");
  ASSERT_THAT(tokens, SizeIs(1));
  EXPECT_EQ(first.kubeadm[0],
            "join ok node=node-first endpoint=127.0.0.1:6443 token-sha256=" + tokens[0] +
                " ca-cert-hashes=1 kubelet-conf-sha256=" + first.Report("kubelet-conf-sha256") +
                // The agent ran it with root's file access only, and nothing it starts can
                // regain more (agent/privileges.h).
                " cap-bnd=000000000000001f cap-eff=000000000000001f");

  // A reboot: rejoin with the header's UUID, unlock and mount the same disk; no format, no
  // mkfs, no kubeadm; the data is there.
  GuestBoot second = Boot("node-first");
  ASSERT_EQ(second.outcome, "poweroff") << second.Describe();
  ExpectMountedAndJoined(second);
  EXPECT_EQ(second.Report("data"), data);
  EXPECT_EQ(second.Report("fs-uuid"), first.Report("fs-uuid"));
  EXPECT_EQ(second.Report("kubelet-conf-sha256"), first.Report("kubelet-conf-sha256"));
  steps.clear();
  for (const auto& [step, ms] : StepDurations(second.serial)) steps.push_back(step);
  EXPECT_THAT(steps, ElementsAre("read-enrolment", "open-tpm", "measure-enrolment", "make-identity",
                                 "probe-disk", "request-rejoin-ticket", "unlock", "mkfs", "mount",
                                 "drop-privileges", "release-keys"));
  EXPECT_THAT(second.serial,
              HasSubstr("holds the ext4 filesystem made on an earlier boot; not making one"));
  EXPECT_THAT(second.serial,
              HasSubstr("rejoined; state disk " + header.uuid + " unlocked and mounted"));
  EXPECT_TRUE(second.kubeadm.empty()) << second.Describe();
  EXPECT_THAT(cluster_->TokenHashes("node-first"), SizeIs(1));  // no second bootstrap token
  EXPECT_THAT(cluster_->BerthdLog(),
              HasSubstr("audit call=IssueRejoinTicket decision=granted node=node-first"));
  EXPECT_EQ(Header().uuid, header.uuid);

  // The disk key never reached a log.
  const std::string key = cluster_->DiskKeyHex(header.uuid);
  ASSERT_EQ(key.size(), 64u);
  auto raw = HexDecode(key);
  ASSERT_TRUE(raw.ok());
  const std::string raw_key = ToString(*raw);
  for (const std::string& log : {first.serial, second.serial, cluster_->BerthdLog()}) {
    EXPECT_THAT(log, Not(HasSubstr(key)));
    EXPECT_THAT(log, Not(HasSubstr(key.substr(0, 16))));
    EXPECT_THAT(log, Not(HasSubstr(raw_key.substr(0, 8))));
  }
}

TEST_F(StateDiskE2eTest, ABerthdWithAnotherKeyStopsTheAgentAndTheDiskIsUntouched) {
  GuestBoot first = Boot("node-key");
  ASSERT_EQ(first.outcome, "poweroff") << first.Describe();
  ExpectMountedAndJoined(first);
  const std::string before = Sha256File(node_->disk());

  // berthd restarted with another master secret (a replica misconfigured, a secret replaced
  // by mistake), with the node's record and disk claim still in its etcd: it grants the
  // rejoin, with a key that cannot open this disk.
  cluster_->host.StopBerthd();
  MustWrite(cluster_->host.dir().Join("master.secret"), ToString(RandomBytes(32)), 0600);
  ASSERT_TRUE(cluster_->host.StartBerthd(cluster_->host.berthd_port()));
  GuestBoot second = Boot("node-key");
  ASSERT_EQ(second.outcome, "poweroff") << second.Describe();
  EXPECT_EQ(second.agent_exit(), 1) << second.Describe();
  const std::string log = cluster_->BerthdLog();
  EXPECT_THAT(log.substr(log.rfind("berthd listening")),
              HasSubstr("audit call=IssueRejoinTicket decision=granted node=node-key"));
  EXPECT_THAT(second.serial,
              HasSubstr("PERMISSION_DENIED: unlocking the state disk: the disk key from berthd "
                        "does not open /dev/vda; the disk was not touched"));
  EXPECT_THAT(second.serial, HasSubstr("step=unlock result=failed"));
  EXPECT_FALSE(Ran(second, "mkfs"));
  EXPECT_FALSE(Ran(second, "mount"));
  EXPECT_EQ(second.Report("mount"), "");
  EXPECT_TRUE(second.kubeadm.empty());
  EXPECT_EQ(Sha256File(node_->disk()), before);
}

TEST_F(StateDiskE2eTest, ANonBlankDiskIsRefusedAndLeftByteForByte) {
  // An ext4 filesystem holding a file: someone's data.
  ASSERT_TRUE(MakeDirs(dir_.Join("precious")).ok());
  MustWrite(dir_.Join("precious/data"), "precious\n");
  RealProcessRunner runner;
  auto mkfs =
      runner.Run({"/sbin/mkfs.ext4", "-q", "-F", "-d", dir_.Join("precious"), node_->disk()});
  ASSERT_TRUE(mkfs.ok() && mkfs->success()) << (mkfs.ok() ? mkfs->output : "");
  const std::string before = Sha256File(node_->disk());

  GuestBoot boot = Boot("node-ext4");
  ASSERT_EQ(boot.outcome, "poweroff") << boot.Describe();
  EXPECT_EQ(boot.agent_exit(), 1) << boot.Describe();
  EXPECT_THAT(boot.serial, HasSubstr("FAILED_PRECONDITION: state disk /dev/vda is not blank and is "
                                     "not a berth LUKS2 disk, refusing to format it: found ext4 "
                                     "superblock at offset 1080; non-zero data in the first MiB"));
  EXPECT_FALSE(Ran(boot, "request-ticket"));  // berthd was not even asked
  EXPECT_FALSE(Ran(boot, "format"));
  EXPECT_THAT(cluster_->BerthdLog(), Not(HasSubstr("node=node-ext4")));
  EXPECT_TRUE(boot.kubeadm.empty());
  EXPECT_EQ(Sha256File(node_->disk()), before);
}

// Issue 23: a disk whose protective MBR and primary GPT were zeroed (what a `dd` to the wrong
// device or a tool that "clears" a disk does) still holds a partition with a filesystem and the
// backup GPT at its end. The agent refuses it before asking berthd for anything, naming what it
// found and where, exactly as the host's probe of the same image does, and leaves it byte for
// byte.
TEST_F(StateDiskE2eTest, ADiskWithItsPrimaryGptWipedIsRefusedNamingWhatIsOnIt) {
  ASSERT_TRUE(MakeDirs(dir_.Join("precious")).ok());
  MustWrite(dir_.Join("precious/data"), "precious\n");
  const std::string img = node_->disk();
  RealProcessRunner runner;
  for (const std::string& command :
       {"printf 'label: gpt\\n,\\n' | /sbin/sfdisk -q " + img,
        "/sbin/mkfs.ext4 -q -F -E offset=1048576 -d " + dir_.Join("precious") + " " + img + " 32M",
        "dd if=/dev/zero of=" + img + " bs=512 count=34 conv=notrunc status=none"}) {
    auto r = runner.Run({"/bin/sh", "-c", command});
    ASSERT_TRUE(r.ok() && r->success()) << command << ": " << (r.ok() ? r->output : "");
  }
  auto host = agent::MakeLibDisk()->Probe(img);
  ASSERT_TRUE(host.ok()) << host.status().ToString();
  ASSERT_GE(host->found.size(), 3u);
  EXPECT_EQ(host->found[0], "backup GPT header at the last sector (offset 67108352)");
  EXPECT_EQ(host->found[1], "ext4 superblock at offset 1049656 (a filesystem from 1 MiB)");
  std::string all;
  for (const std::string& f : host->found) all += (all.empty() ? "" : "; ") + f;
  const std::string before = Sha256File(img);

  GuestBoot boot = Boot("node-wiped-gpt");
  ASSERT_EQ(boot.outcome, "poweroff") << boot.Describe();
  EXPECT_EQ(boot.agent_exit(), 1) << boot.Describe();
  EXPECT_THAT(boot.serial, HasSubstr("state disk /dev/vda is not blank: " + all));
  EXPECT_THAT(boot.serial,
              HasSubstr("FAILED_PRECONDITION: state disk /dev/vda is not blank and is not a berth "
                        "LUKS2 disk, refusing to format it: found " +
                        host->Describe()));
  EXPECT_FALSE(Ran(boot, "request-ticket"));
  EXPECT_FALSE(Ran(boot, "format"));
  EXPECT_THAT(cluster_->BerthdLog(), Not(HasSubstr("node=node-wiped-gpt")));
  EXPECT_EQ(Sha256File(img), before);
}

// mdraid members of every metadata version (0.90 and 1.0 keep their superblock at the end of
// the device, 1.2 at 4 KiB) and an LVM physical volume, made by mdadm and LVM in a guest (the
// host has no md driver, and LVM wants block devices): not blank, named, and unchanged by the
// probe and by a refused format.
TEST_F(StateDiskE2eTest, RaidAndLvmMembersAreNotBlankAndAreLeftByteForByte) {
  std::vector<std::string> extra;
  for (const char* name : {"md10.img", "md12.img", "lvm.img"}) {
    extra.push_back(dir_.Join(name));
    std::ofstream(extra.back()).close();
    std::filesystem::resize_file(extra.back(), 64 << 20);
  }
  GuestBootOptions o;
  o.enrolment = cluster_->Enrolment("node-tools");
  o.initramfs = GuestToolsInitramfs();
  o.run_script = SourceDir() + "/tests/e2e/guest/make-raid-lvm";
  o.extra_disks = extra;
  GuestBoot boot = node_->Boot(o);
  ASSERT_EQ(boot.outcome, "poweroff") << boot.Describe();
  ASSERT_EQ(boot.Report("md-0.90"), "0") << boot.Describe();
  ASSERT_EQ(boot.Report("md-1.0"), "0") << boot.Describe();
  ASSERT_EQ(boot.Report("md-1.2"), "0") << boot.Describe();
  ASSERT_EQ(boot.Report("lvm"), "0") << boot.Describe();

  struct Case {
    std::string image, signature, found;
  };
  const std::vector<Case> cases = {
      {node_->disk(), "linux_raid_member",
       "linux_raid_member (version 0.90.0) superblock at offset 67043328"},
      {extra[0], "linux_raid_member", "linux_raid_member (version 1.0) superblock at offset 67100672"},
      {extra[1], "linux_raid_member", "linux_raid_member (version 1.2) superblock at offset 4096"},
      {extra[2], "LVM2_member", "LVM2_member (version LVM2 001) superblock at offset 536"},
  };
  auto disk = agent::MakeLibDisk();
  for (const Case& c : cases) {
    SCOPED_TRACE(c.found);
    const std::string before = Sha256File(c.image);
    auto probe = disk->Probe(c.image);
    ASSERT_TRUE(probe.ok()) << probe.status().ToString();
    EXPECT_EQ(probe->kind, agent::ProbeResult::Kind::kOther);
    EXPECT_EQ(probe->signature, c.signature);
    ASSERT_FALSE(probe->found.empty());
    EXPECT_EQ(probe->found[0], c.found);
    EXPECT_EQ(Sha256File(c.image), before);
    SecretBytes key(32);
    Status st = disk->FormatIfBlank(c.image, "0b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c", key);
    EXPECT_EQ(st.code(), Code::kFailedPrecondition);
    EXPECT_EQ(st.message(), c.image + " is not blank, refusing to format it: found " +
                                probe->Describe());
    EXPECT_EQ(Sha256File(c.image), before);
  }
}

// Power is cut (the VM SIGKILLed) right after one step of the first boot; the next boot
// resumes into a joined node: same LUKS header, the filesystem kept once made, exactly one
// kubeadm join over both boots, and what that join wrote still there.
class PowerCutTest : public StateDiskE2eTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(PowerCutTest, TheNextBootResumesIntoAJoinedNode) {
  const std::string step = GetParam();
  const std::string node = "node-cut-" + step;
  const std::string marker = "berth-fault: stopped after " + step;
  GuestBoot cut = Boot(node, {"BERTH_FAULT_AFTER=" + step}, marker);
  ASSERT_EQ(cut.outcome, "killed-at-marker") << cut.Describe();
  ASSERT_THAT(cut.serial, HasSubstr("step=" + step + " result=ok"));
  EXPECT_EQ(cut.agent_exit(), -1);
  agent::LuksHeader header = Header();
  ASSERT_TRUE(header.is_berth()) << header.type << " " << header.label;

  const std::string data = HexEncode(RandomBytes(16));
  GuestBoot resumed = Boot(node, {"BERTH_TEST_WRITE=" + data});
  ASSERT_EQ(resumed.outcome, "poweroff") << resumed.Describe();
  ExpectMountedAndJoined(resumed);
  EXPECT_EQ(resumed.Report("wrote"), data);
  EXPECT_EQ(Header().uuid, header.uuid);  // never reformatted
  EXPECT_TRUE(Ran(resumed, "request-rejoin-ticket"));
  EXPECT_FALSE(Ran(resumed, "format"));
  // The filesystem made before the cut is kept (it held nothing yet, but it is not remade).
  EXPECT_EQ(
      resumed.serial.find("holds the ext4 filesystem made on an earlier boot; not making one") !=
          std::string::npos,
      step != "format");

  // Exactly one kubeadm join over both boots.
  std::vector<std::string> joins = cut.kubeadm;
  joins.insert(joins.end(), resumed.kubeadm.begin(), resumed.kubeadm.end());
  ASSERT_THAT(joins, SizeIs(1)) << cut.Describe() << "\n" << resumed.Describe();
  EXPECT_THAT(joins[0], StartsWith("join ok node=" + node + " "));
  EXPECT_THAT(resumed.serial, HasSubstr("(resumed); state disk " + header.uuid + " mounted"));
  if (step == "kubeadm-join") {
    // Joined before the cut: what kubeadm wrote survived it, and was not redone.
    ASSERT_THAT(cut.kubeadm, SizeIs(1));
    EXPECT_THAT(cut.kubeadm[0],
                HasSubstr("kubelet-conf-sha256=" + resumed.Report("kubelet-conf-sha256")));
    EXPECT_THAT(resumed.serial, HasSubstr("kubeadm join completed before a restart"));
  } else {
    EXPECT_THAT(resumed.kubeadm, SizeIs(1));
  }
}

INSTANTIATE_TEST_SUITE_P(AfterEachFirstBootStep, PowerCutTest,
                         ::testing::Values("format", "mkfs", "mount", "kubeadm-join"),
                         [](const auto& info) {
                           std::string name = info.param;
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

// The agent is SIGKILLed right after one step of the first boot and started again in the same
// boot (systemd's Restart=on-abnormal): the volume may be open, mounted, PCR 15 extended. The
// restarted agent ends with a joined node, one kubeadm join, and the data written then
// survives a reboot.
class AgentKillTest : public StateDiskE2eTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(AgentKillTest, TheRestartedAgentFinishesTheJoinInTheSameBoot) {
  const std::string step = GetParam();
  const std::string node = "node-kill-" + step;
  const std::string data = HexEncode(RandomBytes(16));
  GuestBoot boot = Boot(node, {"BERTH_KILL_AFTER=" + step, "BERTH_TEST_WRITE=" + data});
  ASSERT_EQ(boot.outcome, "poweroff") << boot.Describe();
  EXPECT_EQ(boot.Report("agent-killed"), "137") << boot.Describe();
  ASSERT_THAT(boot.serial, HasSubstr("berth-fault: stopped after " + step));
  ExpectMountedAndJoined(boot);
  EXPECT_EQ(boot.Report("wrote"), data);
  ASSERT_THAT(boot.kubeadm, SizeIs(1)) << boot.Describe();
  EXPECT_THAT(boot.kubeadm[0], StartsWith("join ok node=" + node + " "));
  // Whichever run of the agent started kubeadm had dropped to root's file access first.
  EXPECT_THAT(boot.kubeadm[0], EndsWith(" cap-bnd=000000000000001f cap-eff=000000000000001f"));
  agent::LuksHeader header = Header();
  ASSERT_TRUE(header.is_berth()) << header.type << " " << header.label;

  GuestBoot reboot = Boot(node);
  ASSERT_EQ(reboot.outcome, "poweroff") << reboot.Describe();
  ExpectMountedAndJoined(reboot);
  EXPECT_EQ(reboot.Report("data"), data);
  EXPECT_EQ(Header().uuid, header.uuid);
  EXPECT_TRUE(Ran(reboot, "request-rejoin-ticket"));
  EXPECT_THAT(reboot.kubeadm, IsEmpty());
}

INSTANTIATE_TEST_SUITE_P(AfterEachFirstBootStep, AgentKillTest,
                         ::testing::Values("measure-enrolment", "request-ticket", "format",
                                           "unlock", "mkfs", "mount", "kubeadm-join",
                                           "release-keys"),
                         [](const auto& info) {
                           std::string name = info.param;
                           name.erase(std::remove(name.begin(), name.end(), '-'), name.end());
                           return name;
                         });

}  // namespace
}  // namespace berth::testing
