// The agent's boot flow with a state disk, on the host: the disk and mounts are fakes (the
// host has no device-mapper; the QEMU guest tests run the real ones), the TPM is a real swtpm,
// and progress is written to a real directory, so it survives between "boots" as on a disk.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "agent/agent.h"
#include "tests/fakes/agent_fakes.h"
#include "tests/fakes/fake_clock.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A disk that remembers what was done to it, like a real one across boots.
struct FakeDiskState {
  ProbeResult::Kind kind = ProbeResult::Kind::kBlank;
  std::string signature;
  std::string uuid, label;
  std::string key;          // the keyslot's key (test-only copy)
  bool has_filesystem = false;
  bool open = false;
  std::vector<std::string> ops;
  std::vector<std::string> reads;  // "probe DEVICE", "header": what was looked at
  std::string subsystem;  // the LUKS2 subsystem label
  std::vector<std::string> mkfs_argv;
  std::vector<std::string> found;  // what the probe reports
};

class FakeDisk : public Disk {
 public:
  explicit FakeDisk(FakeDiskState* s) : s_(s) {}
  Result<ProbeResult> Probe(const std::string& device) override {
    s_->reads.push_back("probe " + device.substr(device.find("/dev/")));
    ProbeResult r;
    if (device.ends_with("/dev/mapper/berth-state")) {
      if (s_->has_filesystem) r = {ProbeResult::Kind::kOther, "ext4"};
      return r;
    }
    r.kind = s_->kind;
    r.signature = s_->signature;
    r.found = s_->found;
    return r;
  }
  Result<LuksHeader> ReadLuksHeader(const std::string&) override {
    s_->reads.push_back("header");
    return LuksHeader{"LUKS2", s_->uuid, s_->label, s_->subsystem};
  }
  Status WriteLuksSubsystem(const std::string&, const std::string& subsystem) override {
    s_->ops.push_back("subsystem=" + subsystem);
    s_->subsystem = subsystem;
    return OkStatus();
  }
  Status FormatIfBlank(const std::string& device, const std::string& uuid,
                       const SecretBytes& key) override {
    s_->ops.push_back("format");
    if (s_->kind != ProbeResult::Kind::kBlank) return FailedPrecondition("not blank");
    *s_ = FakeDiskState{ProbeResult::Kind::kLuks, "crypto_LUKS", uuid, kLuksLabel,
                        std::string(key.view()), false, false, s_->ops, s_->reads};
    return OkStatus();
  }
  Status CheckKey(const std::string&, const SecretBytes& key) override {
    s_->ops.push_back("check-key");
    return key.view() == s_->key ? OkStatus() : PermissionDenied("no keyslot opens with this key");
  }
  Status Open(const std::string&, const std::string&, const SecretBytes& key) override {
    s_->ops.push_back("open");
    if (key.view() != s_->key) return PermissionDenied("wrong key");
    s_->open = true;
    return OkStatus();
  }

 private:
  FakeDiskState* s_;
};

class FakeMounter : public Mounter {
 public:
  Result<bool> IsMountPoint(const std::string& path) override {
    return std::find(mounted.begin(), mounted.end(), path) != mounted.end();
  }
  Status Mount(const std::string& source, const std::string& target, const std::string&) override {
    mounted.push_back(target);
    return OkStatus();
  }
  Status BindMount(const std::string& source, const std::string& target) override {
    mounted.push_back(target);
    binds.push_back(source + " -> " + target);
    return OkStatus();
  }
  std::vector<std::string> mounted, binds;
};

// mkfs marks the fake disk; kubeadm join leaves kubelet.conf and the client certificate it
// names behind, like the real one after the kubelet's TLS bootstrap.
class NodeRunner : public FakeProcessRunner {
 public:
  NodeRunner(FakeDiskState* disk, std::string root) : disk_(disk), root_(std::move(root)) {}
  Result<ProcessResult> Run(const std::vector<std::string>& argv,
                            const std::vector<std::string>& env = {}) override {
    if (argv[0].ends_with("/sbin/mkfs.ext4")) {
      disk_->ops.push_back("mkfs");
      disk_->mkfs_argv = argv;
      disk_->has_filesystem = true;
      return ProcessResult{.exit_code = 0};
    }
    auto r = FakeProcessRunner::Run(argv, env);
    if (r.ok() && r->success() && argv[1] == "join") {
      EXPECT_TRUE(MakeDirs(root_ + "/etc/kubernetes").ok());
      EXPECT_TRUE(MakeDirs(root_ + "/var/lib/kubelet/pki").ok());
      EXPECT_TRUE(std::filesystem::exists(root_ + "/etc/kubernetes/kubelet.conf") == false);
      berth::testing::MustWrite(root_ + "/etc/kubernetes/kubelet.conf", "kubeconfig");
      berth::testing::MustWrite(root_ + "/var/lib/kubelet/pki/kubelet-client-current.pem",
                                "certificate and key");
    }
    return r;
  }

 private:
  FakeDiskState* disk_;
  std::string root_;
};

class StateDiskFlowTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(swtpm_.ok()) << swtpm_.error();
    options_.root = root_.path();
    options_.tcti = swtpm_.Tcti();
    options_.kubeadm = "/usr/bin/kubeadm";
    options_.retry.max_attempts = 3;
    berthd_.ticket.set_disk_key(std::string(32, 'k'));
    auto* k = berthd_.ticket.mutable_kubeadm();
    k->set_api_server_endpoint("10.0.0.1:6443");
    k->set_token("abcdef.0123456789abcdef");
    k->add_ca_cert_hashes("sha256:" + std::string(64, 'a'));
    v1::RejoinTicket rejoin;
    rejoin.set_disk_key(std::string(32, 'k'));
    berthd_.rejoin = rejoin;

    deps_.clock = &clock_;
    deps_.runner = &runner_;
    deps_.notifier = &notifier_;
    deps_.open_tpm = OpenEsysTpm;
    deps_.make_transport = [this](const ClientIdentity&, const v1::EnrolmentConfig&) {
      return std::unique_ptr<JoinTransport>(new FakeJoinTransport(&berthd_));
    };
    deps_.disk = &disk_;
    deps_.mounter = &mounter_;

    v1::EnrolmentConfig c;
    c.set_version(1);
    c.set_cluster_id("test");
    c.add_endpoints("127.0.0.1:1");
    c.set_cluster_ca_pem(berth::testing::MakeTestPki(pki_.path()).ca_pem_text);
    c.set_role(v1::NODE_ROLE_WORKER);
    c.set_attestation(v1::ATTESTATION_KIND_TPM);
    c.set_node_name("node-1");
    c.mutable_state_disk()->set_device("/dev/vdb");
    c.mutable_state_disk()->set_mount_point("/var/lib/berth/state");
    ASSERT_TRUE(MakeDirs(root_.Join("efi/berth")).ok());
    berth::testing::MustWrite(root_.Join("efi/berth/enrolment.binpb"), c.SerializeAsString());
  }

  // A reboot: the disk and the state directory persist, the mounts and the calls do not.
  // A boot: the TPM restarts (PCRs reset, PCR 15 unsealed), nothing is mounted or open.
  Status Boot() {
    EXPECT_TRUE(swtpm_.Reboot());
    mounter_ = FakeMounter();
    disk_state_.open = false;
    berthd_.calls.clear();
    runner_.argvs.clear();
    notifier_.events.clear();
    return RunAgent(options_, deps_);
  }

  Result<std::string> ProgressFile() {
    return ReadFile(root_.Join("var/lib/berth/state/.berth/progress.json"));
  }

  berth::testing::TempDir root_, pki_, tpm_dir_;
  berth::testing::Swtpm swtpm_{tpm_dir_.path()};
  AgentOptions options_;
  FakeClock clock_{1'800'000'000};
  FakeDiskState disk_state_;
  FakeDisk disk_{&disk_state_};
  FakeMounter mounter_;
  NodeRunner runner_{&disk_state_, root_.path()};
  RecordingNotifier notifier_;
  FakeBerthd berthd_;
  AgentDeps deps_;
};

TEST_F(StateDiskFlowTest, FirstBootFormatsWithTheTicketsKeyThenJoins) {
  Status st = Boot();
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(berthd_.join_requests.size(), 1u);
  const std::string uuid = berthd_.join_requests[0].disk_uuid();
  EXPECT_EQ(disk_state_.uuid, uuid);
  EXPECT_EQ(disk_state_.key, std::string(32, 'k'));
  EXPECT_EQ(disk_state_.label, "berth-state");
  EXPECT_THAT(disk_state_.ops, ElementsAre("format", "open", "mkfs", "subsystem=berth-fs:ext4"));
  // Formatted by this run: its header records nothing and its volume holds nothing, so mkfs
  // looks at neither first.
  EXPECT_THAT(disk_state_.reads, ElementsAre("probe /dev/vdb"));
  EXPECT_THAT(disk_state_.mkfs_argv,
              ElementsAre(root_.Join("sbin/mkfs.ext4"), "-q", "-E", "lazy_journal_init=1", "-L",
                          "berth-state", root_.Join("dev/mapper/berth-state")));
  EXPECT_THAT(mounter_.mounted,
              ElementsAre(root_.Join("var/lib/berth/state"), root_.Join("etc/kubernetes"),
                          root_.Join("var/lib/kubelet")));
  EXPECT_THAT(mounter_.binds,
              ElementsAre(root_.Join("var/lib/berth/state/etc-kubernetes") + " -> " +
                              root_.Join("etc/kubernetes"),
                          root_.Join("var/lib/berth/state/var-lib-kubelet") + " -> " +
                              root_.Join("var/lib/kubelet")));
  EXPECT_EQ(runner_.argvs.size(), 1u);
  EXPECT_EQ(*ProgressFile(), "{\"join_started\":true,\"joined\":true,\"version\":1}\n");
  EXPECT_EQ(notifier_.ready_count(), 1);
}

// The agent restarted in the same boot after it sealed the boot (killed after release-keys):
// the node is joined and mounted, so it asks berthd nothing (berthd must refuse a second
// attestation in a sealed boot) and reports ready.
TEST_F(StateDiskFlowTest, ARestartAfterTheBootWasSealedKeepsTheJoinedNode) {
  ASSERT_TRUE(Boot().ok());
  berthd_.calls.clear();
  runner_.argvs.clear();
  notifier_.events.clear();
  disk_state_.ops.clear();
  Status st = RunAgent(options_, deps_);  // no reboot: TPM, mounts and volume as they were
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(berthd_.calls.empty());
  EXPECT_TRUE(runner_.argvs.empty());  // no kubeadm
  EXPECT_EQ(notifier_.ready_count(), 1);

  // Not mounted (say, unmounted by hand) in a sealed boot: a clear stop, nothing touched.
  mounter_ = FakeMounter();
  st = RunAgent(options_, deps_);
  EXPECT_EQ(st.ToString(),
            "FAILED_PRECONDITION: this boot already released its keys (PCR 15) but the state disk "
            "is not mounted as joined: reboot the node");
  EXPECT_TRUE(berthd_.calls.empty());
  EXPECT_TRUE(disk_state_.ops.empty());
}

TEST_F(StateDiskFlowTest, LaterBootRejoinsUnlocksAndDoesNotJoinAgain) {
  ASSERT_TRUE(Boot().ok());
  const std::string uuid = disk_state_.uuid;
  disk_state_.ops.clear();
  Status st = Boot();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_THAT(berthd_.calls, ElementsAre("Challenge@127.0.0.1:1", "IssueRejoinTicket@127.0.0.1:1"));
  ASSERT_EQ(berthd_.rejoin_requests.size(), 1u);
  EXPECT_EQ(berthd_.rejoin_requests[0].disk_uuid(), uuid);
  EXPECT_EQ(berthd_.rejoin_requests[0].node_name(), "node-1");
  EXPECT_THAT(disk_state_.ops, ElementsAre("open"));                 // no format, no mkfs
  EXPECT_TRUE(runner_.argvs.empty());                                // no kubeadm
  EXPECT_EQ(notifier_.ready_count(), 1);
}

TEST_F(StateDiskFlowTest, WrongKeyStopsBeforeTheDiskIsOpened) {
  ASSERT_TRUE(Boot().ok());
  disk_state_.ops.clear();
  v1::RejoinTicket other;
  other.set_disk_key(std::string(32, 'x'));
  berthd_.rejoin = other;
  Status st = Boot();
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_THAT(st.message(), HasSubstr("the disk key from berthd does not open " +
                                      root_.Join("dev/vdb") + "; the disk was not touched"));
  EXPECT_THAT(disk_state_.ops, ElementsAre("open"));  // refused: nothing activated
  EXPECT_FALSE(disk_state_.open);
  EXPECT_TRUE(mounter_.mounted.empty());
  EXPECT_EQ(notifier_.ready_count(), 0);
}

TEST_F(StateDiskFlowTest, NonBlankForeignDiskIsRefusedBeforeAskingBerthdNamingWhatIsOnIt) {
  disk_state_.kind = ProbeResult::Kind::kOther;
  disk_state_.signature = "partition table gpt";
  disk_state_.found = {"backup GPT header at the last sector (offset 67108352)",
                       "ext4 superblock at offset 1049656 (a filesystem from 1 MiB)",
                       "non-zero data at 1 MiB (first non-zero byte at offset 1049601)",
                       "non-zero data at 9 MiB (first non-zero byte at offset 9438209)",
                       "non-zero data in the last MiB (first non-zero byte at offset 67091968)"};
  Status st = Boot();
  const std::string first_four =
      "backup GPT header at the last sector (offset 67108352); ext4 superblock at offset 1049656 "
      "(a filesystem from 1 MiB); non-zero data at 1 MiB (first non-zero byte at offset "
      "1049601); non-zero data at 9 MiB (first non-zero byte at offset 9438209); and 1 more";
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_EQ(st.message(), "state disk " + root_.Join("dev/vdb") +
                              " is not blank and is not a berth LUKS2 disk, refusing to format "
                              "it: found " + first_four);
  // systemctl status shows what was found.
  ASSERT_FALSE(notifier_.events.empty());
  EXPECT_EQ(notifier_.events.back(),
            "STATUS=refusing state disk " + root_.Join("dev/vdb") + ": found " + first_four);
  EXPECT_TRUE(berthd_.calls.empty());
  EXPECT_TRUE(disk_state_.ops.empty());
}

TEST_F(StateDiskFlowTest, LuksDiskBerthDidNotMakeIsLeftAlone) {
  disk_state_ =
      FakeDiskState{ProbeResult::Kind::kLuks, "crypto_LUKS", "1b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c",
                    "someone-else", std::string(32, 'k')};
  Status st = Boot();
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_THAT(st.message(),
              HasSubstr("is a LUKS2 disk that berth did not make (label \"someone-else\")"));
  EXPECT_TRUE(berthd_.calls.empty());
  EXPECT_TRUE(disk_state_.ops.empty());
}

TEST_F(StateDiskFlowTest, CrashAfterFormatResumesWithoutReformattingAndJoinsOnce) {
  // The previous boot formatted the disk with its ticket's key, then lost power.
  disk_state_ = FakeDiskState{ProbeResult::Kind::kLuks, "crypto_LUKS",
                              "1b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c", "berth-state",
                              std::string(32, 'k')};
  Status st = Boot();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_THAT(disk_state_.ops, ElementsAre("open", "mkfs", "subsystem=berth-fs:ext4"));
  // Formatted on the earlier boot: mkfs reads the header's record and probes the volume first.
  EXPECT_THAT(disk_state_.reads,
              ElementsAre("probe /dev/vdb", "header", "header", "probe /dev/mapper/berth-state"));
  EXPECT_THAT(berthd_.calls, ElementsAre("Challenge@127.0.0.1:1", "IssueRejoinTicket@127.0.0.1:1",
                                         "Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1"));
  EXPECT_EQ(berthd_.join_requests[0].disk_uuid(), "1b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c");
  EXPECT_EQ(runner_.argvs.size(), 1u);
  EXPECT_EQ(*ProgressFile(), "{\"join_started\":true,\"joined\":true,\"version\":1}\n");
}

TEST_F(StateDiskFlowTest, CrashAfterMkfsBeforeItWasRecordedKeepsTheFilesystem) {
  disk_state_ = FakeDiskState{ProbeResult::Kind::kLuks, "crypto_LUKS",
                              "1b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c", "berth-state",
                              std::string(32, 'k'), /*has_filesystem=*/true};
  Status st = Boot();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_THAT(disk_state_.ops, ElementsAre("open", "subsystem=berth-fs:ext4"));
}

TEST_F(StateDiskFlowTest, ARecordedFilesystemIsNeverMadeAgainEvenIfItsSuperblockIsGone) {
  // The header says the filesystem was made; the volume shows no signature (damage). Making
  // a new one would lose the node's data: the agent leaves it to mount, which fails.
  disk_state_ = FakeDiskState{ProbeResult::Kind::kLuks, "crypto_LUKS",
                              "1b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c", "berth-state",
                              std::string(32, 'k'), /*has_filesystem=*/false};
  disk_state_.subsystem = "berth-fs:ext4";
  Status st = Boot();
  ASSERT_TRUE(st.ok()) << st.ToString();  // the fake mounter mounts even a damaged volume
  EXPECT_THAT(disk_state_.ops, ElementsAre("open"));
  EXPECT_FALSE(disk_state_.has_filesystem);
}

TEST_F(StateDiskFlowTest, AnUnknownSubsystemRecordStopsBeforeMkfs) {
  disk_state_ = FakeDiskState{ProbeResult::Kind::kLuks, "crypto_LUKS",
                              "1b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c", "berth-state",
                              std::string(32, 'k')};
  disk_state_.subsystem = "berth-fs:xfs";
  Status st = Boot();
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_THAT(
      st.message(),
      HasSubstr("records \"berth-fs:xfs\", not \"berth-fs:ext4\"; leaving the volume alone"));
  EXPECT_THAT(disk_state_.ops, ElementsAre("open"));
  EXPECT_TRUE(mounter_.mounted.empty());
}

TEST_F(StateDiskFlowTest, CrashAfterKubeadmSucceededIsNotJoinedTwice) {
  ASSERT_TRUE(Boot().ok());
  // Power was lost after kubeadm finished but before "joined" was recorded.
  berth::testing::MustWrite(root_.Join("var/lib/berth/state/.berth/progress.json"),
                            "{\"join_started\":true,\"joined\":false,\"version\":1}\n", 0600);
  Status st = Boot();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(runner_.argvs.empty());
  EXPECT_EQ(*ProgressFile(), "{\"join_started\":true,\"joined\":true,\"version\":1}\n");
}

TEST_F(StateDiskFlowTest, CrashDuringKubeadmRunsItAgain) {
  ASSERT_TRUE(Boot().ok());
  // kubeadm had started but not finished: no kubelet.conf.
  berth::testing::MustWrite(root_.Join("var/lib/berth/state/.berth/progress.json"),
                            "{\"join_started\":true,\"joined\":false,\"version\":1}\n", 0600);
  std::filesystem::remove(root_.Join("etc/kubernetes/kubelet.conf"));
  Status st = Boot();
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(runner_.argvs.size(), 1u);
}

// The kubelet writes kubelet.conf before it has the certificate it names: power lost in
// between leaves a node that has not joined. What kubeadm and the kubelet left is cleared
// (kubeadm's preflight would refuse it) and the node joins again.
TEST_F(StateDiskFlowTest, CrashDuringTheTlsBootstrapClearsWhatItLeftAndJoinsAgain) {
  ASSERT_TRUE(Boot().ok());
  berth::testing::MustWrite(root_.Join("var/lib/berth/state/.berth/progress.json"),
                            "{\"join_started\":true,\"joined\":false,\"version\":1}\n", 0600);
  std::filesystem::remove(root_.Join("var/lib/kubelet/pki/kubelet-client-current.pem"));
  berth::testing::MustWrite(root_.Join("etc/kubernetes/bootstrap-kubelet.conf"), "token");
  Status st = Boot();
  ASSERT_TRUE(st.ok()) << st.ToString();
  // The fake kubeadm checks that kubelet.conf was gone when it ran.
  EXPECT_EQ(runner_.argvs.size(), 1u);
  EXPECT_FALSE(std::filesystem::exists(root_.Join("etc/kubernetes/bootstrap-kubelet.conf")));
  EXPECT_TRUE(std::filesystem::exists(root_.Join("var/lib/kubelet/pki/kubelet-client-current.pem")));
  EXPECT_EQ(*ProgressFile(), "{\"join_started\":true,\"joined\":true,\"version\":1}\n");
}

TEST_F(StateDiskFlowTest, CorruptProgressIsAHardStop) {
  ASSERT_TRUE(Boot().ok());
  berth::testing::MustWrite(root_.Join("var/lib/berth/state/.berth/progress.json"), "{trunc", 0600);
  Status st = Boot();
  EXPECT_EQ(st.code(), Code::kDataLoss);
  EXPECT_TRUE(runner_.argvs.empty());
}

TEST_F(StateDiskFlowTest, TicketWithoutDiskKeyIsMalformedAndNothingIsFormatted) {
  berthd_.ticket.clear_disk_key();
  Status st = Boot();
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_EQ(st.message(), "malformed join ticket: disk key has 0 bytes, expected 32");
  EXPECT_TRUE(disk_state_.ops.empty());
  EXPECT_EQ(disk_state_.kind, ProbeResult::Kind::kBlank);
}

}  // namespace
}  // namespace berth::agent
