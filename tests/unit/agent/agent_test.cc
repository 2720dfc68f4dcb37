// The whole agent flow, with a real software TPM and fakes for everything else: berthd (the
// transport), kubeadm (the process runner), systemd (the notifier) and time. The filesystem
// root is a temporary directory.
#include "agent/agent.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <random>
#include <thread>

#include "agent/attestation.h"
#include "agent/identity.h"
#include "agent/kubeadm.h"
#include "common/binding.h"
#include "common/crypto.h"
#include "common/tpm/sealed_boot.h"
#include "tests/fakes/agent_fakes.h"
#include "tests/fakes/fake_clock.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::agent {
namespace {

using std::chrono::milliseconds;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;

const char kBadToken[] = "ABCDEF.0123456789ABCDEF";

// Hands the agent a metadata service the test keeps (the agent owns what make_imds returns).
class FakeImdsRef : public InstanceMetadata {
 public:
  explicit FakeImdsRef(InstanceMetadata* real) : real_(real) {}
  Result<std::string> Request(const std::string& method, const std::string& path,
                              const std::map<std::string, std::string>& headers) override {
    return real_->Request(method, path, headers);
  }

 private:
  InstanceMetadata* real_;
};

class RunAgentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(swtpm_.ok()) << swtpm_.error();
    pki_ = berth::testing::MakeTestPki(pki_dir_.path());
    options_.root = root_.path();
    options_.tcti = swtpm_.Tcti();
    options_.kubeadm = "/usr/bin/kubeadm";
    options_.retry = RetryPolicy{.initial_backoff = milliseconds(1000),
                                 .max_backoff = milliseconds(30000),
                                 .max_attempts = 0};
    *berthd_.ticket.mutable_kubeadm() = GoodKubeadmJoin();

    deps_.clock = &clock_;
    deps_.runner = &runner_;
    deps_.notifier = &notifier_;
    deps_.open_tpm = [this](const std::string& tcti) -> Result<std::unique_ptr<Tpm>> {
      tctis_opened_.push_back(tcti);
      return OpenEsysTpm(tcti);
    };
    deps_.make_transport =
        [this](const ClientIdentity& id,
               const v1::EnrolmentConfig& config) -> std::unique_ptr<JoinTransport> {
      berthd_.client_cert_pems.push_back(id.cert_pem);
      berthd_.client_spki_sha256s.push_back(id.spki_sha256);
      transport_configs_.push_back(config);
      return std::make_unique<FakeJoinTransport>(&berthd_);
    };
  }

  v1::EnrolmentConfig ValidConfig() const {
    v1::EnrolmentConfig c;
    c.set_version(1);
    c.set_cluster_id("test-cluster");
    c.add_endpoints("127.0.0.1:1");
    c.set_cluster_ca_pem(pki_.ca_pem_text);
    c.set_role(v1::NODE_ROLE_WORKER);
    c.set_attestation(v1::ATTESTATION_KIND_TPM);
    c.set_node_name("node-1");
    return c;
  }

  std::string EnrolmentPath() const { return root_.path() + "/efi/berth/enrolment.binpb"; }
  std::string JoinConfigPath() const { return root_.path() + "/run/berth/kubeadm-join.yaml"; }

  void WriteEnrolmentBytes(const std::string& bytes) {
    ASSERT_TRUE(MakeDirs(root_.path() + "/efi/berth").ok());
    berth::testing::MustWrite(EnrolmentPath(), bytes);
  }
  void WriteEnrolment(const v1::EnrolmentConfig& config) {
    WriteEnrolmentBytes(config.SerializeAsString());
  }

  // Verifies the quote in `request` against its own AK and PCRs, bound to `nonce` and the TLS
  // key the agent made its transport with.
  void ExpectEvidenceBoundTo(const v1::JoinRequest& request, const std::string& nonce) {
    ASSERT_TRUE(request.evidence().has_tpm());
    const v1::TpmEvidence& ev = request.evidence().tpm();
    ASSERT_EQ(berthd_.client_spki_sha256s.size(), 1u);
    const Bytes binding = ComputeBinding(AsBytes(nonce), berthd_.client_spki_sha256s[0]);
    auto pub = tpm::ParsePublic(AsBytes(ev.ak_public()));
    ASSERT_TRUE(pub.ok()) << pub.status().ToString();
    auto key = tpm::PublicToEvp(*pub);
    ASSERT_TRUE(key.ok());
    auto pcrs = PcrValuesOf(ev);
    ASSERT_TRUE(pcrs.ok());
    auto verified = tpm::VerifyQuote(key->get(), AsBytes(ev.quote()), AsBytes(ev.signature()),
                                     *pcrs, std::span<const uint8_t>(binding));
    ASSERT_TRUE(verified.ok()) << verified.status().ToString();
    EXPECT_EQ(verified->extra_data, binding);
  }

  // Nothing of the join may exist when no ticket was granted.
  void ExpectNothingJoined() {
    EXPECT_TRUE(runner_.argvs.empty());
    EXPECT_EQ(notifier_.ready_count(), 0);
    EXPECT_FALSE(std::filesystem::exists(root_.path() + "/run"));
  }

  berth::testing::TempDir tpm_dir_, root_, pki_dir_;
  berth::testing::Swtpm swtpm_{tpm_dir_.path()};
  berth::testing::TestPki pki_;
  FakeClock clock_{0};  // slept_ms() is the total time the agent slept
  FakeProcessRunner runner_;
  RecordingNotifier notifier_;
  FakeBerthd berthd_;
  std::vector<std::string> tctis_opened_;
  std::vector<v1::EnrolmentConfig> transport_configs_;
  AgentOptions options_;
  AgentDeps deps_{};
};

TEST_F(RunAgentTest, JoinsWithEvidenceBoundToTheNonceAndTheTlsKey) {
  const v1::EnrolmentConfig config = ValidConfig();
  WriteEnrolment(config);
  std::string event_log("\x03\x00\x00\x00 spec id event\xff", 19);
  ASSERT_TRUE(MakeDirs(root_.path() + "/sys/kernel/security/tpm0").ok());
  berth::testing::MustWrite(root_.path() + kEventLogPath, event_log, 0440);

  Status st = RunAgent(options_, deps_);
  ASSERT_TRUE(st.ok()) << st.ToString();

  // The TPM and the transport, each made once, from the options and the EnrolmentConfig.
  EXPECT_THAT(tctis_opened_, ElementsAre(swtpm_.Tcti()));
  ASSERT_EQ(transport_configs_.size(), 1u);
  EXPECT_EQ(transport_configs_[0].SerializeAsString(), config.SerializeAsString());

  // berthd saw a challenge, then a ticket request echoing the nonce.
  EXPECT_THAT(berthd_.calls, ElementsAre("Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1"));
  ASSERT_EQ(berthd_.join_requests.size(), 1u);
  const v1::JoinRequest& request = berthd_.join_requests[0];
  EXPECT_EQ(request.node_name(), "node-1");
  EXPECT_EQ(request.role(), v1::NODE_ROLE_WORKER);
  ASSERT_EQ(berthd_.nonces_issued.size(), 1u);
  EXPECT_EQ(request.nonce(), berthd_.nonces_issued[0]);
  EXPECT_TRUE(request.disk_uuid().empty());

  // The AK offered in the challenge is this TPM's, and the evidence carries the same one.
  const v1::TpmEvidence& ev = request.evidence().tpm();
  auto tpm = OpenEsysTpm(swtpm_.Tcti());
  ASSERT_TRUE(tpm.ok());
  auto ak = (*tpm)->AttestationKeyPublic();
  ASSERT_TRUE(ak.ok());
  EXPECT_EQ(berthd_.challenge_requests[0].ak_public(), ToString(*ak));
  EXPECT_EQ(ev.ak_public(), ToString(*ak));
  EXPECT_EQ(ev.event_log(), event_log);
  // The default selection: sha256 PCRs 0-9, 14 and 15.
  ASSERT_EQ(ev.pcrs_size(), 1);
  EXPECT_EQ(ev.pcrs(0).bank(), v1::HASH_ALGORITHM_SHA256);
  std::vector<uint32_t> indices;
  for (const auto& v : ev.pcrs(0).values()) indices.push_back(v.index());
  EXPECT_EQ(indices, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15}));
  ExpectEvidenceBoundTo(request, berthd_.nonces_issued[0]);

  // kubeadm ran once, reading the private JoinConfiguration, which is gone now.
  ASSERT_EQ(runner_.argvs.size(), 1u);
  EXPECT_THAT(runner_.argvs[0],
              ElementsAre("/usr/bin/kubeadm", "join", "--config", JoinConfigPath()));
  EXPECT_EQ(runner_.seen_configs[0].mode, 0600);
  EXPECT_EQ(runner_.seen_configs[0].content,
            std::string(RenderJoinConfiguration(GoodKubeadmJoin(), "node-1").view()));
  EXPECT_FALSE(std::filesystem::exists(JoinConfigPath()));
  EXPECT_TRUE(std::filesystem::is_empty(root_.path() + "/run/berth"));

  EXPECT_THAT(
      notifier_.events,
      ElementsAre("STATUS=reading EnrolmentConfig", "STATUS=opening TPM",
                  "STATUS=measuring EnrolmentConfig", "STATUS=creating this boot's TLS identity",
                  "STATUS=requesting join ticket", "STATUS=running kubeadm join",
                  "STATUS=sealing the boot", "READY=1", "STATUS=node joined"));
  EXPECT_EQ(clock_.slept_ms(), 0);
}

TEST_F(RunAgentTest, ConfiguredPcrSelectionIsQuoted) {
  v1::EnrolmentConfig config = ValidConfig();
  v1::PcrSelection* sel = config.add_pcr_selection();
  sel->set_bank(v1::HASH_ALGORITHM_SHA256);
  for (uint32_t i = 0; i < 24; ++i) sel->add_pcrs(i);
  WriteEnrolment(config);

  Status st = RunAgent(options_, deps_);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(berthd_.join_requests.size(), 1u);
  const v1::TpmEvidence& ev = berthd_.join_requests[0].evidence().tpm();
  ASSERT_EQ(ev.pcrs_size(), 1);
  EXPECT_EQ(ev.pcrs(0).values_size(), 24);
  ExpectEvidenceBoundTo(berthd_.join_requests[0], berthd_.nonces_issued[0]);
}

TEST_F(RunAgentTest, MissingEnrolmentConfigStopsBeforeAnythingElse) {
  Status st = RunAgent(options_, deps_);
  EXPECT_EQ(st.code(), Code::kNotFound);
  // The cause, with the path, is exact; the context in front of it says which file it was.
  EXPECT_THAT(st.message(), HasSubstr("enrolment config"));
  EXPECT_THAT(st.message(), EndsWith("open(" + EnrolmentPath() + "): No such file or directory"));
  EXPECT_TRUE(tctis_opened_.empty());
  EXPECT_TRUE(transport_configs_.empty());
  EXPECT_TRUE(berthd_.calls.empty());
  EXPECT_THAT(notifier_.events, ElementsAre("STATUS=reading EnrolmentConfig"));
  ExpectNothingJoined();
}

TEST_F(RunAgentTest, CorruptEnrolmentConfigStopsBeforeAnythingElse) {
  // Random bytes that can never parse: the first tag has field number 0 and wire type 7.
  std::mt19937_64 rng(11);
  std::string junk(512, '\0');
  for (char& c : junk) c = static_cast<char>(rng() & 0xff);
  junk[0] = '\x07';
  WriteEnrolmentBytes(junk);

  Status st = RunAgent(options_, deps_);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_THAT(st.message(), EndsWith("enrolment config " + EnrolmentPath() +
                                     " is corrupt: not a binary EnrolmentConfig"));
  EXPECT_TRUE(tctis_opened_.empty());
  EXPECT_TRUE(transport_configs_.empty());
  EXPECT_TRUE(berthd_.calls.empty());
  ExpectNothingJoined();
}

TEST_F(RunAgentTest, EnrolmentConfigsThisAgentCannotServeStopBeforeAnythingElse) {
  struct Case {
    std::string name;
    std::function<void(v1::EnrolmentConfig&)> mutate;
    std::string cause;  // how the message ends
  };
  const std::string path = EnrolmentPath();
  const std::vector<Case> cases = {
      {"empty file", nullptr,
       "enrolment config " + path + " is corrupt: not a binary EnrolmentConfig"},
      {"version 2", [](v1::EnrolmentConfig& c) { c.set_version(2); },
       "enrolment config " + path + ": unsupported version 2 (expected 1)"},
      {"no endpoints", [](v1::EnrolmentConfig& c) { c.clear_endpoints(); },
       "enrolment config " + path + ": no endpoints: the node has nowhere to join"},
      {"sev-snp", [](v1::EnrolmentConfig& c) { c.set_attestation(v1::ATTESTATION_KIND_SEV_SNP); },
       "attestation kind ATTESTATION_KIND_SEV_SNP, which this agent does not provide"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    v1::EnrolmentConfig config = ValidConfig();
    if (c.mutate) {
      c.mutate(config);
      WriteEnrolment(config);
    } else {
      WriteEnrolmentBytes("");
    }
    Status st = RunAgent(options_, deps_);
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_THAT(st.message(), HasSubstr("enrolment config"));
    EXPECT_THAT(st.message(), EndsWith(c.cause));
    EXPECT_TRUE(tctis_opened_.empty());
    EXPECT_TRUE(berthd_.calls.empty());
    ExpectNothingJoined();
  }
}

TEST_F(RunAgentTest, TpmThatCannotBeOpenedStopsBeforeBerthdIsAsked) {
  WriteEnrolment(ValidConfig());
  options_.tcti = "swtpm:path=" + tpm_dir_.path() + "/no-such-socket";
  Status st = RunAgent(options_, deps_);
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), ::testing::StartsWith("opening TPM: opening TPM via TCTI \"" +
                                                  options_.tcti + "\": "));
  EXPECT_TRUE(transport_configs_.empty());
  EXPECT_TRUE(berthd_.calls.empty());
  ExpectNothingJoined();
}

TEST_F(RunAgentTest, PermissionDeniedIsFinalAfterOneAttempt) {
  WriteEnrolment(ValidConfig());
  berthd_.ticket_script.push_back(PermissionDenied("PCR sha256:7 differs from the policy"));

  Status st = RunAgent(options_, deps_);
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_EQ(
      st.message(),
      "berthd refused this node's evidence; not retrying: PCR sha256:7 differs from the policy");
  EXPECT_THAT(berthd_.calls, ElementsAre("Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1"));
  EXPECT_EQ(clock_.slept_ms(), 0);
  EXPECT_THAT(notifier_.events, ElementsAre("STATUS=reading EnrolmentConfig", "STATUS=opening TPM",
                                            "STATUS=measuring EnrolmentConfig",
                                            "STATUS=creating this boot's TLS identity",
                                            "STATUS=requesting join ticket"));
  ExpectNothingJoined();
}

TEST_F(RunAgentTest, UnavailableTwiceThenSuccessRetriesAcrossEndpointsWithFreshNonces) {
  v1::EnrolmentConfig config = ValidConfig();
  config.add_endpoints("127.0.0.1:2");
  WriteEnrolment(config);
  berthd_.ticket_script.push_back(
      Unavailable("IssueJoinTicket at 127.0.0.1:1: connection refused"));
  berthd_.ticket_script.push_back(
      Unavailable("IssueJoinTicket at 127.0.0.1:2: connection refused"));

  Status st = RunAgent(options_, deps_);
  ASSERT_TRUE(st.ok()) << st.ToString();

  EXPECT_THAT(berthd_.calls, ElementsAre("Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1",
                                         "Challenge@127.0.0.1:2", "IssueJoinTicket@127.0.0.1:2",
                                         "Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1"));
  // Every attempt starts from its own challenge and binds its own nonce.
  ASSERT_EQ(berthd_.join_requests.size(), 3u);
  ASSERT_EQ(berthd_.nonces_issued.size(), 3u);
  for (size_t i = 0; i < 3; ++i) {
    SCOPED_TRACE(i);
    EXPECT_EQ(berthd_.join_requests[i].nonce(), berthd_.nonces_issued[i]);
    ExpectEvidenceBoundTo(berthd_.join_requests[i], berthd_.nonces_issued[i]);
  }
  EXPECT_NE(berthd_.nonces_issued[0], berthd_.nonces_issued[2]);
  // One TLS identity for the whole boot.
  EXPECT_EQ(transport_configs_.size(), 1u);

  // Two backoffs: [500, 1000] + [1000, 2000] ms of fake time.
  EXPECT_GE(clock_.slept_ms(), 1500);
  EXPECT_LE(clock_.slept_ms(), 3000);

  EXPECT_EQ(runner_.argvs.size(), 1u);
  EXPECT_EQ(notifier_.ready_count(), 1);
  EXPECT_THAT(
      notifier_.events,
      ElementsAre("STATUS=reading EnrolmentConfig", "STATUS=opening TPM",
                  "STATUS=measuring EnrolmentConfig", "STATUS=creating this boot's TLS identity",
                  "STATUS=requesting join ticket",
                  "STATUS=waiting for berthd (UNAVAILABLE from 127.0.0.1:1)",
                  "STATUS=waiting for berthd (UNAVAILABLE from 127.0.0.1:2)",
                  "STATUS=running kubeadm join", "STATUS=sealing the boot", "READY=1",
                  "STATUS=node joined"));
  EXPECT_FALSE(std::filesystem::exists(JoinConfigPath()));
}

TEST_F(RunAgentTest, PendingApprovalWaitsSayingSoAndCallsTheSameEndpointAgainAtOnce) {
  v1::EnrolmentConfig config = ValidConfig();
  config.add_endpoints("127.0.0.1:2");
  WriteEnrolment(config);
  const std::string pending =
      "node node-1 is pending operator approval (attestation key sha256:0123...); an operator "
      "approves it with berthctl nodes approve node-1";
  berthd_.ticket_script.push_back(Unavailable(pending));
  berthd_.ticket_script.push_back(Unavailable(pending));
  berthd_.retry_after_script = {milliseconds(0), milliseconds(0)};

  Status st = RunAgent(options_, deps_);
  ASSERT_TRUE(st.ok()) << st.ToString();
  // berthd held the call and asked for another at once: same endpoint, no backoff.
  EXPECT_THAT(berthd_.calls, ElementsAre("Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1",
                                         "Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1",
                                         "Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1"));
  EXPECT_EQ(clock_.slept_ms(), 0);
  EXPECT_THAT(
      notifier_.events,
      ElementsAre("STATUS=reading EnrolmentConfig", "STATUS=opening TPM",
                  "STATUS=measuring EnrolmentConfig", "STATUS=creating this boot's TLS identity",
                  "STATUS=requesting join ticket", "STATUS=waiting: " + pending,
                  "STATUS=waiting: " + pending, "STATUS=running kubeadm join",
                  "STATUS=sealing the boot", "READY=1", "STATUS=node joined"));
}

TEST_F(RunAgentTest, ReleaseAgentRefusesAGoldenTicketBeforeAnythingElse) {
  v1::EnrolmentConfig config = ValidConfig();
  config.mutable_golden_ticket()->set_id(std::string(32, 'a'));
  config.mutable_golden_ticket()->set_secret(std::string(32, 's'));
  WriteEnrolment(config);
  ASSERT_EQ(deps_.read_golden_ticket, nullptr);  // what a release berth-agent links
  Status st = RunAgent(options_, deps_);
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("this berth-agent is a release build "
                                      "(BERTH_GOLDEN_TICKETS=OFF) that does not read them"));
  EXPECT_TRUE(tctis_opened_.empty());
  EXPECT_TRUE(berthd_.calls.empty());
  ExpectNothingJoined();
}

Result<v1::GoldenTicket> AcceptAnyTicket(const v1::EnrolmentConfig& config, const std::string&,
                                         int64_t) {
  return config.golden_ticket();
}

TEST_F(RunAgentTest, GoldenTicketJoinsWithoutOpeningTheTpmOrAskingForAChallenge) {
  v1::EnrolmentConfig config = ValidConfig();
  config.mutable_golden_ticket()->set_id(std::string(32, 'a'));
  config.mutable_golden_ticket()->set_secret(std::string(32, 's'));
  WriteEnrolment(config);
  deps_.read_golden_ticket = AcceptAnyTicket;  // a debug build's reader (tested itself elsewhere)
  Status st = RunAgent(options_, deps_);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(tctis_opened_.empty());
  EXPECT_THAT(berthd_.calls, ElementsAre("IssueJoinTicket@127.0.0.1:1"));
  ASSERT_EQ(berthd_.join_requests.size(), 1u);
  EXPECT_EQ(berthd_.join_requests[0].golden_ticket().id(), std::string(32, 'a'));
  EXPECT_FALSE(berthd_.join_requests[0].has_evidence());
  EXPECT_TRUE(berthd_.join_requests[0].nonce().empty());
  EXPECT_EQ(notifier_.ready_count(), 1);
}

TEST_F(RunAgentTest, DiscoveryKubeconfigIsWrittenForKubeadmAndRemovedAfterTheJoin) {
  WriteEnrolment(ValidConfig());
  berthd_.ticket.set_discovery_kubeconfig(
      "apiVersion: v1\nkind: Config\nclusters:\n- name: kubernetes\n  cluster:\n"
      "    server: https://10.0.0.10:6443\n    certificate-authority-data: Q0E=\n"
      "users:\n- name: tls-bootstrap-token-user\n  user:\n    token: abcdef.0123456789abcdef\n");
  Status st = RunAgent(options_, deps_);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(runner_.seen_configs.size(), 1u);
  const std::string& join = runner_.seen_configs[0].content;
  EXPECT_THAT(join, HasSubstr("file:"));
  EXPECT_THAT(join, HasSubstr("kubeConfigPath: \"" + root_.path() + kDiscoveryKubeconfigPath +
                              "\""));
  EXPECT_THAT(join, Not(HasSubstr("bootstrapToken")));
  EXPECT_FALSE(std::filesystem::exists(root_.path() + kDiscoveryKubeconfigPath));
  EXPECT_FALSE(std::filesystem::exists(JoinConfigPath()));
}

TEST_F(RunAgentTest, DiscoveryKubeconfigWithAnotherTokenIsAMalformedTicket) {
  WriteEnrolment(ValidConfig());
  berthd_.ticket.set_discovery_kubeconfig(
      "clusters:\n- cluster:\n    server: https://10.0.0.10:6443\n"
      "    certificate-authority-data: Q0E=\nusers:\n- user:\n    token: other.0123456789abcdef\n");
  Status st = RunAgent(options_, deps_);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_THAT(st.message(),
              HasSubstr("the discovery kubeconfig's user is not the ticket's bootstrap token"));
  EXPECT_TRUE(runner_.argvs.empty());
}

TEST_F(RunAgentTest, ExpiredNonceStartsOverWithAFreshChallenge) {
  WriteEnrolment(ValidConfig());
  berthd_.ticket_script.push_back(Aborted("nonce expired 3 s ago; ask for a fresh challenge"));

  Status st = RunAgent(options_, deps_);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_THAT(berthd_.calls, ElementsAre("Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1",
                                         "Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1"));
  ASSERT_EQ(berthd_.join_requests.size(), 2u);
  EXPECT_EQ(berthd_.join_requests[1].nonce(), berthd_.nonces_issued[1]);
  EXPECT_NE(berthd_.nonces_issued[0], berthd_.nonces_issued[1]);
  EXPECT_EQ(runner_.argvs.size(), 1u);
}

TEST_F(RunAgentTest, MaxAttemptsBoundsAnUnreachableBerthd) {
  WriteEnrolment(ValidConfig());
  options_.retry.max_attempts = 2;
  berthd_.challenge_script = {Unavailable("Challenge at 127.0.0.1:1: connection refused"),
                              Unavailable("Challenge at 127.0.0.1:1: connection refused")};

  Status st = RunAgent(options_, deps_);
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_EQ(st.message(),
            "requesting join ticket: giving up after 2 attempts: Challenge at 127.0.0.1:1: "
            "connection refused");
  EXPECT_THAT(berthd_.calls, ElementsAre("Challenge@127.0.0.1:1", "Challenge@127.0.0.1:1"));
  EXPECT_GE(clock_.slept_ms(), 500);
  EXPECT_LE(clock_.slept_ms(), 1000);
  ExpectNothingJoined();
}

TEST_F(RunAgentTest, MalformedTicketIsRefusedWithoutRunningKubeadm) {
  WriteEnrolment(ValidConfig());
  berthd_.ticket.mutable_kubeadm()->set_token(kBadToken);

  Status st = RunAgent(options_, deps_);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_EQ(st.message(), "malformed join ticket: bootstrap token is not [a-z0-9]{6}.[a-z0-9]{16}");
  EXPECT_THAT(st.message(), Not(HasSubstr(kBadToken)));
  // A malformed ticket is not retried either.
  EXPECT_THAT(berthd_.calls, ElementsAre("Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1"));
  ExpectNothingJoined();
}

// A worker never holds the cluster's keys: a ticket that hands them to one is refused, and
// nothing of it is written.
TEST_F(RunAgentTest, ClusterKeysInAWorkersTicketAreRefusedAndNothingIsWritten) {
  WriteEnrolment(ValidConfig());
  v1::ClusterKeys* keys = berthd_.ticket.mutable_cluster_keys();
  keys->set_master_secret(std::string(32, 's'));
  v1::PkiFile* ca_key = keys->add_kubernetes_pki();
  ca_key->set_name("ca.key");
  ca_key->set_content("PEM of ca.key");

  Status st = RunAgent(options_, deps_);
  EXPECT_EQ(st.ToString(), "INVALID_ARGUMENT: malformed join ticket: cluster keys for a worker");
  EXPECT_FALSE(std::filesystem::exists(options_.root + "/etc/kubernetes/pki/ca.key"));
  ExpectNothingJoined();
}

TEST_F(RunAgentTest, FailedKubeadmIsAnErrorAndLeavesNoConfigBehind) {
  WriteEnrolment(ValidConfig());
  options_.join_attempts = 1;
  runner_.result = ProcessResult{
      .exit_code = 1, .signal = 0, .output = "error execution phase kubelet-start: timed out\n"};

  Status st = RunAgent(options_, deps_);
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_EQ(st.message(),
            "joining the cluster: kubeadm join failed (exit code 1): error execution phase "
            "kubelet-start: timed out");
  EXPECT_THAT(st.message(), Not(HasSubstr(GoodKubeadmJoin().token())));
  EXPECT_EQ(runner_.argvs.size(), 1u);
  EXPECT_EQ(notifier_.ready_count(), 0);
  EXPECT_FALSE(std::filesystem::exists(JoinConfigPath()));
}

// kubeadm failing (here: the API server unreachable) is retried: the kubelet the attempt
// started is stopped, what it left is removed, and after a backoff the node attests again for
// a fresh ticket and joins with it; the unit's status says what failed meanwhile. Once joined,
// the kubelet is started (a no-op after kubeadm's own start, but the same on every path).
TEST_F(RunAgentTest, AFailedKubeadmJoinIsRetriedWithAFreshTicketAfterClearingIt) {
  WriteEnrolment(ValidConfig());
  options_.kubelet_unit = "kubelet.service";
  const ProcessResult refused{
      .exit_code = 1,
      .signal = 0,
      .output = "[preflight] Running pre-flight checks\nerror execution phase preflight: "
                "couldn't validate the identity of the API Server: connection refused\nTo see "
                "the stack trace of this error execute with --v=5 or higher\n"};
  runner_.script = {refused};
  ASSERT_TRUE(MakeDirs(root_.path() + "/etc/kubernetes/pki").ok());
  berth::testing::MustWrite(root_.path() + "/etc/kubernetes/pki/ca.crt", "left by attempt 1");

  Status st = RunAgent(options_, deps_);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(runner_.argvs.size(), 4u);
  EXPECT_THAT(runner_.argvs[0], ElementsAre("/usr/bin/kubeadm", "join", "--config", JoinConfigPath()));
  EXPECT_THAT(runner_.argvs[1], ElementsAre("/bin/systemctl", "stop", "kubelet.service"));
  EXPECT_THAT(runner_.argvs[2], ElementsAre("/usr/bin/kubeadm", "join", "--config", JoinConfigPath()));
  EXPECT_THAT(runner_.argvs[3], ElementsAre("/bin/systemctl", "start", "kubelet.service"));
  EXPECT_FALSE(std::filesystem::exists(root_.path() + "/etc/kubernetes/pki/ca.crt"));
  // Attested twice: a ticket per attempt.
  EXPECT_THAT(berthd_.calls, ElementsAre("Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1",
                                         "Challenge@127.0.0.1:1", "IssueJoinTicket@127.0.0.1:1"));
  // The first retry waits initial_backoff with jitter: 500 to 1000 ms.
  EXPECT_GE(clock_.slept_ms(), 500);
  EXPECT_LE(clock_.slept_ms(), 1000);
  EXPECT_THAT(notifier_.events,
              Contains("STATUS=waiting: kubeadm join failed (attempt 1): error "
                                "execution phase preflight: couldn't validate the identity of "
                                "the API Server: connection refused; retrying in 1 s"));
  EXPECT_EQ(notifier_.ready_count(), 1);
  EXPECT_EQ(notifier_.events.back(), "STATUS=node joined");
  EXPECT_FALSE(std::filesystem::exists(JoinConfigPath()));
}

// kubeadm may give up after the kubelet's TLS bootstrap (the kubelet did not turn healthy in
// time): the node has its credentials (kubelet.conf and its certificate) and has joined; a
// second kubeadm join
// would only be refused by its preflight.
TEST_F(RunAgentTest, AKubeadmJoinThatFailsAfterTheTlsBootstrapHasJoined) {
  WriteEnrolment(ValidConfig());
  options_.kubelet_unit = "kubelet.service";
  runner_.script = {ProcessResult{
      .exit_code = 1,
      .signal = 0,
      .output = "error execution phase kubelet-wait-bootstrap: failed while waiting for the "
                "kubelet to start\n"}};
  ASSERT_TRUE(MakeDirs(root_.path() + "/etc/kubernetes").ok());
  ASSERT_TRUE(MakeDirs(root_.path() + "/var/lib/kubelet/pki").ok());
  berth::testing::MustWrite(root_.path() + "/etc/kubernetes/kubelet.conf", "written by the kubelet");
  berth::testing::MustWrite(root_.path() + kKubeletClientCertPath, "its certificate");

  Status st = RunAgent(options_, deps_);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(runner_.argvs.size(), 2u);
  EXPECT_EQ(runner_.argvs[0][0], "/usr/bin/kubeadm");
  EXPECT_THAT(runner_.argvs[1], ElementsAre("/bin/systemctl", "start", "kubelet.service"));
  EXPECT_EQ(berthd_.join_requests.size(), 1u);
  EXPECT_EQ(notifier_.ready_count(), 1);
  EXPECT_TRUE(std::filesystem::exists(root_.path() + "/etc/kubernetes/kubelet.conf"));
}

TEST_F(RunAgentTest, KubeadmJoinAttemptsAreBoundedByTheOption) {
  WriteEnrolment(ValidConfig());
  options_.join_attempts = 3;
  runner_.result = ProcessResult{
      .exit_code = 1, .signal = 0, .output = "error execution phase preflight: boom\n"};

  Status st = RunAgent(options_, deps_);
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_EQ(st.message(),
            "giving up after 3 kubeadm join attempts: joining the cluster: kubeadm join failed "
            "(exit code 1): error execution phase preflight: boom");
  // No kubelet unit: nothing but kubeadm ran; three tickets, three joins.
  ASSERT_EQ(runner_.argvs.size(), 3u);
  for (const auto& argv : runner_.argvs) EXPECT_EQ(argv[0], "/usr/bin/kubeadm");
  EXPECT_EQ(berthd_.join_requests.size(), 3u);
  EXPECT_EQ(notifier_.ready_count(), 0);
}

std::string EkSpkiHash(Tpm& tpm) {
  auto ek = tpm.EndorsementKey();
  EXPECT_TRUE(ek.ok());
  auto pub = tpm::ParsePublic(ek->ek_public);
  auto key = tpm::PublicToEvp(*pub);
  return HexEncode(Sha256(*PublicKeyToSpkiDer(key->get())));
}

// The instance metadata service as the agent sees it: IMDSv2 (a PUT for a token, GETs with
// it), serving a document and a signature; records the calls.
class FakeImds : public InstanceMetadata {
 public:
  Result<std::string> Request(const std::string& method, const std::string& path,
                              const std::map<std::string, std::string>& headers) override {
    calls.push_back(method + " " + path);
    if (!failure.ok()) return failure;
    if (method == "PUT" && path == "/latest/api/token" &&
        headers.count("X-aws-ec2-metadata-token-ttl-seconds") == 1) {
      return std::string("session-token");
    }
    auto token = headers.find("X-aws-ec2-metadata-token");
    if (method != "GET" || token == headers.end() || token->second != "session-token") {
      return Unavailable("instance metadata " + method + " " + path + " answered 401");
    }
    if (path == "/latest/dynamic/instance-identity/document") return document;
    if (path == "/latest/dynamic/instance-identity/rsa2048") return signature_base64;
    return Unavailable("instance metadata GET " + path + " answered 404");
  }
  std::string document = "{\"instanceId\": \"i-0123456789abcdef0\"}";
  // "PKCS7 DER" base64, wrapped at 64 as IMDS serves it.
  std::string signature_base64 = "UEtDUzcgREVS\n";
  Status failure;
  std::vector<std::string> calls;
};

TEST(Ec2IdentityFetchTest, ReadsTheDocumentAndSignatureWithAnImdsV2Token) {
  FakeImds imds;
  auto identity = FetchEc2Identity(imds);
  ASSERT_TRUE(identity.ok()) << identity.status().ToString();
  EXPECT_EQ(identity->document(), imds.document);
  EXPECT_EQ(identity->pkcs7(), "PKCS7 DER");
  EXPECT_THAT(imds.calls, ElementsAre("PUT /latest/api/token",
                                      "GET /latest/dynamic/instance-identity/document",
                                      "GET /latest/dynamic/instance-identity/rsa2048"));
  imds.signature_base64 = "not base64!";
  EXPECT_EQ(FetchEc2Identity(imds).status().ToString(),
            "INVALID_ARGUMENT: the instance identity signature is not base64");
}

TEST_F(RunAgentTest, AnEc2ClaimCarriesTheInstanceIdentityDocument) {
  WriteEnrolment(ValidConfig());
  options_.ec2_instance_id = "i-0123456789abcdef0";
  options_.ec2_imds_url = "http://imds.test";
  FakeImds imds;
  std::vector<std::string> urls;
  deps_.make_imds = [&](const std::string& url) {
    urls.push_back(url);
    return std::make_unique<FakeImdsRef>(&imds);
  };
  Status st = RunAgent(options_, deps_);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_THAT(urls, ElementsAre("http://imds.test"));
  ASSERT_EQ(berthd_.join_requests.size(), 1u);
  EXPECT_EQ(berthd_.join_requests[0].ec2_instance_id(), "i-0123456789abcdef0");
  EXPECT_EQ(berthd_.join_requests[0].ec2_identity().document(), imds.document);
  EXPECT_EQ(berthd_.join_requests[0].ec2_identity().pkcs7(), "PKCS7 DER");
}

TEST_F(RunAgentTest, AnUnreachableMetadataServiceLeavesTheClaimForBerthdToJudge) {
  WriteEnrolment(ValidConfig());
  options_.ec2_instance_id = "i-0123456789abcdef0";
  FakeImds imds;
  imds.failure = Unavailable("instance metadata PUT /latest/api/token: connection refused");
  deps_.make_imds = [&](const std::string&) { return std::make_unique<FakeImdsRef>(&imds); };
  Status st = RunAgent(options_, deps_);
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(berthd_.join_requests.size(), 1u);
  EXPECT_EQ(berthd_.join_requests[0].ec2_instance_id(), "i-0123456789abcdef0");
  EXPECT_FALSE(berthd_.join_requests[0].has_ec2_identity());
}

TEST_F(RunAgentTest, DescribeIdentityPrintsThePolicySnippetForThisTpm) {
  WriteEnrolment(ValidConfig());
  auto described = DescribeIdentity(options_, deps_);
  ASSERT_TRUE(described.ok()) << described.status().ToString();

  auto tpm = OpenEsysTpm(swtpm_.Tcti());
  ASSERT_TRUE(tpm.ok());
  auto ak = (*tpm)->AttestationKeyPublic();
  ASSERT_TRUE(ak.ok());
  auto pub = tpm::ParsePublic(*ak);
  ASSERT_TRUE(pub.ok());
  auto key = tpm::PublicToEvp(*pub);
  ASSERT_TRUE(key.ok());
  auto spki = PublicKeyToSpkiDer(key->get());
  ASSERT_TRUE(spki.ok());
  std::string expected =
      "# berthd policy for this node's TPM and its current boot state\n"
      "tpm:\n"
      "  trusted_aks:\n"
      "    - name: node-1\n"
      "      sha256: " +
      HexEncode(Sha256(*spki)) +
      "\n"
      "  pcrs:\n"
      "    sha256:\n";
  // PCR 15 is berth-agent's own (replayed by berthd, never pinned); the EnrolmentConfig's
  // hash is offered for tpm.enrolment_configs.
  for (uint32_t i : {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14}) {
    expected += "      " + std::to_string(i) + ": " + std::string(64, '0') + "\n";
  }
  expected += "  enrolment_configs:\n    - name: node-1\n      sha256: " +
              HexEncode(Sha256(AsBytes(ValidConfig().SerializeAsString()))) + "\n";
  // The EK as a comment: the other way to trust this TPM, not trusted by pasting this.
  expected += "# or, instead of the AK, its endorsement key: tpm.trusted_eks: [{name: node-1, "
              "sha256: " + EkSpkiHash(**tpm) + "}]\n";
  // (berthd reads it as its policy in HostCluster::WritePolicyFromNode's tests.)
  EXPECT_EQ(*described, expected);
  EXPECT_TRUE(berthd_.calls.empty());
  ExpectNothingJoined();
}

// systemd restarts the agent within one boot (Restart=on-failure): the EnrolmentConfig is
// measured into PCR 15 once, the restart attests with the same events, and the successful
// join seals the boot with "keys released".
TEST_F(RunAgentTest, ARestartInTheSameBootDoesNotMeasureTwiceAndTheJoinSealsTheBoot) {
  const v1::EnrolmentConfig config = ValidConfig();
  WriteEnrolment(config);
  const std::string config_event =
      ToString(seal::EnrolmentConfigEvent(AsBytes(config.SerializeAsString())));
  berthd_.ticket_script.push_back(PermissionDenied("berthd said no this time"));
  ASSERT_EQ(RunAgent(options_, deps_).code(), Code::kPermissionDenied);
  ASSERT_EQ(berthd_.join_requests.size(), 1u);
  const v1::TpmEvidence& first = berthd_.join_requests[0].evidence().tpm();
  ASSERT_EQ(first.agent_events_size(), 1);
  EXPECT_EQ(first.agent_events(0).pcr(), 15u);
  EXPECT_EQ(first.agent_events(0).data(), config_event);
  // The challenge and the evidence offer the TPM's EK (an ECC EK without a certificate here).
  EXPECT_FALSE(berthd_.challenge_requests[0].ek_public().empty());
  EXPECT_EQ(first.ek_public(), berthd_.challenge_requests[0].ek_public());

  Status st = RunAgent(options_, deps_);  // the restart
  ASSERT_TRUE(st.ok()) << st.ToString();
  ASSERT_EQ(berthd_.join_requests.size(), 2u);
  const v1::TpmEvidence& second = berthd_.join_requests[1].evidence().tpm();
  ASSERT_EQ(second.agent_events_size(), 1);
  EXPECT_EQ(second.agent_events(0).data(), config_event);
  EXPECT_THAT(notifier_.events, ::testing::Contains("STATUS=sealing the boot"));

  // PCR 15 now says: config measured once, keys released.
  {
    auto tpm = OpenEsysTpm(swtpm_.Tcti());
    ASSERT_TRUE(tpm.ok());
    auto pcr = (*tpm)->ReadPcrs({Sha256Range(15, 15)});
    ASSERT_TRUE(pcr.ok());
    EXPECT_EQ(pcr->at(DigestAlg::kSha256).at(15),
              seal::Replay(DigestAlg::kSha256,
                           seal::PossibleHistories(AsBytes(config.SerializeAsString()))[2]));
  }
  // Anything that attests later in this boot shows the release (berthd refuses it).
  ASSERT_TRUE(RunAgent(options_, deps_).ok());
  const v1::TpmEvidence& third = berthd_.join_requests[2].evidence().tpm();
  ASSERT_EQ(third.agent_events_size(), 2);
  EXPECT_EQ(third.agent_events(1).data(), ToString(seal::KeysReleasedEvent()));
}

// The agent logs when it started and when it was ready, counted from exec: the time it was
// in memory before it got anywhere. A clock-tick resolution (10 ms at USER_HZ 100).
TEST(MillisSinceExecTest, CountsFromThisProcessesExecAndAdvancesWithTheClock) {
  int64_t before = MillisSinceExec();
  ASSERT_GE(before, 0);
  auto uptime = ReadFile("/proc/uptime");
  ASSERT_TRUE(uptime.ok());
  EXPECT_LE(before, static_cast<int64_t>(std::stod(*uptime) * 1000) + 10);
  std::this_thread::sleep_for(milliseconds(200));
  int64_t after = MillisSinceExec();
  EXPECT_GE(after - before, 200);
}

}  // namespace
}  // namespace berth::agent
