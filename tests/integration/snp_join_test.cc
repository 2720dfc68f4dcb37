// Host integration: SEV-SNP nodes join through a real berthd process over real TLS. The node
// side is the agent's real flow and gRPC transport with a fake SNP guest device whose reports a
// test chain signs; berthd trusts that chain's ARK through --insecure-test-snp-ark, the flag
// meant for test chains only.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "agent/agent.h"
#include "agent/snp_attester.h"
#include "common/binding.h"
#include "tests/fakes/agent_fakes.h"
#include "tests/fakes/fake_sev_guest.h"
#include "tests/integration/cluster.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class SnpJoinTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { chain_ = new SnpTestChain(snp::Product::kMilan); }
  static void TearDownTestSuite() { delete chain_; }

  void SetUp() override {
    ASSERT_TRUE(cluster_.StartKubeApiServer());
    spec_.reported_tcb = snp::EncodeTcb(tcb_, snp::Product::kMilan);
    vcek_ = chain_->IssueVcek({.hwid = spec_.chip_id, .tcb = tcb_});
    MustWrite(cluster_.dir().Join("test-ark.pem"), chain_->ArkPem());
    MustWrite(cluster_.dir().Join("policy.yaml"),
              "sev_snp:\n  measurements: [" + HexEncode(spec_.measurement) +
                  "]\n  min_tcb: {bootloader: 3, tee: 0, snp: 8, microcode: 115}\n");
    ASSERT_TRUE(cluster_.StartBerthd(
        0, {"--insecure-test-snp-ark", "Milan=" + cluster_.dir().Join("test-ark.pem"),
            "--snp-cert-cache", cluster_.dir().Join("snp-cache")}));
  }

  snp::CertTable HostCerts() {
    return {.vcek = *CertToDer(vcek_.cert.get()), .ask = chain_->AskDer()};
  }

  // One boot of an SEV-SNP node, in this process, against the real berthd.
  Status RunSnpAgent(const SnpReportSpec& spec, snp::CertTable certs) {
    return RunSnpAgentSignedBy(spec, vcek_.key.get(), std::move(certs));
  }
  // The same, with the reports signed by `key` (the VCEK's, or not).
  Status RunSnpAgentSignedBy(const SnpReportSpec& spec, EVP_PKEY* key, snp::CertTable certs) {
    v1::EnrolmentConfig config = cluster_.BaseEnrolment();
    config.set_attestation(v1::ATTESTATION_KIND_SEV_SNP);
    cluster_.WriteEnrolment(config);
    agent::AgentOptions options;
    options.root = cluster_.node_root();
    options.retry.max_attempts = 2;
    options.retry.initial_backoff = std::chrono::milliseconds(100);
    agent::AgentDeps deps = agent::RealAgentDeps();
    deps.runner = &kubeadm_;
    deps.notifier = &notifier_;
    deps.open_tpm = [](const std::string&) -> Result<std::unique_ptr<agent::Tpm>> {
      return Internal("an SEV-SNP node must not open a TPM");
    };
    deps.open_sev_guest = [&](const std::string&) -> Result<std::unique_ptr<agent::SevGuest>> {
      return std::unique_ptr<agent::SevGuest>(new FakeSevGuest(spec, key, std::move(certs)));
    };
    return agent::RunAgent(options, deps);
  }

  static SnpTestChain* chain_;
  HostCluster cluster_;
  snp::Tcb tcb_{.bootloader = 3, .tee = 0, .snp = 8, .microcode = 115};
  SnpReportSpec spec_;
  SnpIssued vcek_;
  agent::FakeProcessRunner kubeadm_;
  agent::RecordingNotifier notifier_;
};
SnpTestChain* SnpJoinTest::chain_ = nullptr;

TEST_F(SnpJoinTest, NodesJoinWithSentCertificatesThenFromBerthdsCache) {
  Status st = RunSnpAgent(spec_, HostCerts());
  ASSERT_TRUE(st.ok()) << st.ToString() << MustRead(cluster_.berthd_log());
  auto tokens = cluster_.TokenSecrets();
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0]["type"], "bootstrap.kubernetes.io/token");
  EXPECT_EQ(tokens[0]["metadata"]["labels"]["berth.dev/node"], "node-1");
  ASSERT_EQ(kubeadm_.argvs.size(), 1u);
  EXPECT_THAT(kubeadm_.seen_configs[0].content,
              HasSubstr(std::string(tokens[0]["data"]["token-id"])));
  EXPECT_EQ(notifier_.ready_count(), 1);
  std::string log = MustRead(cluster_.berthd_log());
  EXPECT_THAT(log, HasSubstr("INSECURE: the SEV-SNP ARK pinned for Milan is replaced by"));
  EXPECT_THAT(log, HasSubstr("audit call=IssueJoinTicket decision=granted node=node-1"));
  EXPECT_THAT(log, HasSubstr("product Milan"));
  EXPECT_THAT(log, HasSubstr("VCEK sent"));
  // berthd names the node by the identity key it sealed on its ESP, not by the host's VCEK.
  v1::SnpSealedIdentity sealed;
  ASSERT_TRUE(sealed.ParseFromString(MustRead(cluster_.node_root() + "/efi/berth/snp-identity.binpb")));
  const std::string identity = HexEncode(Sha256(AsBytes(sealed.public_key())));
  EXPECT_THAT(log, HasSubstr(" ak=sha256:" + identity + " "));
  EXPECT_THAT(log, Not(HasSubstr(" ak=sha256:" + HexEncode(*CertSpkiSha256(vcek_.cert.get())))));
  // berthd cached what verified.
  const std::string cache = cluster_.dir().Join("snp-cache/Milan");
  EXPECT_EQ(MustRead(cache + "/ask.der"), ToString(chain_->AskDer()));
  EXPECT_EQ(MustRead(cache + "/vcek-" + HexEncode(spec_.chip_id) + "-7308000000000003.der"),
            ToString(*CertToDer(vcek_.cert.get())));

  // The next boot's host hands out no certificates: berthd verifies from its cache.
  std::filesystem::remove_all(cluster_.node_root() + "/run");
  st = RunSnpAgent(spec_, {});
  ASSERT_TRUE(st.ok()) << st.ToString() << MustRead(cluster_.berthd_log());
  EXPECT_EQ(cluster_.TokenSecrets().size(), 2u);
  EXPECT_THAT(MustRead(cluster_.berthd_log()), HasSubstr("VCEK cache"));
  // The same identity, unsealed on the second boot: both grants name it.
  const std::string both = MustRead(cluster_.berthd_log());
  size_t grants = 0;
  for (size_t at = both.find(" ak=sha256:" + identity + " "); at != std::string::npos;
       at = both.find(" ak=sha256:" + identity + " ", at + 1)) {
    ++grants;
  }
  EXPECT_EQ(grants, 2u);
}

TEST_F(SnpJoinTest, PolicyRefusalStopsTheNodeWithoutATicket) {
  SnpReportSpec debug = spec_;
  debug.policy |= uint64_t{1} << snp::kPolicyDebugBit;
  Status st = RunSnpAgent(debug, HostCerts());
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_THAT(st.message(), HasSubstr("berthd refused this node's evidence; not retrying"));
  EXPECT_THAT(st.message(), HasSubstr("policy: the guest policy allows debugging"));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
  EXPECT_TRUE(kubeadm_.argvs.empty());
  EXPECT_THAT(MustRead(cluster_.berthd_log()),
              HasSubstr("audit call=IssueJoinTicket decision=refused node=node-1"));
}

// A report signed by a key that is not the VCEK sent with it (a forged signature: the
// guest's host, or anyone, signing a report of their choosing), and a report whose
// reported_tcb is not the TCB the VCEK certifies (a VCEK of an older, vulnerable firmware
// vouching for a report that claims a newer one): each refused by berthd naming the check,
// no ticket, no token (issue 22, section 5).
TEST_F(SnpJoinTest, AForgedSignatureIsRefused) {
  // Another P-384 key, as a VCEK of another chip would hold.
  SnpIssued forger = chain_->IssueVcek({.hwid = Bytes(64, 0xf0), .tcb = tcb_});
  Status st = RunSnpAgentSignedBy(spec_, forger.key.get(), HostCerts());
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_THAT(st.message(), HasSubstr("berthd refused this node's evidence; not retrying"));
  EXPECT_THAT(st.message(),
              HasSubstr("signature: the report's signature does not verify with the VCEK's key"));
  EXPECT_TRUE(cluster_.ApiServerRecords().empty());
  EXPECT_TRUE(kubeadm_.argvs.empty());
  EXPECT_THAT(MustRead(cluster_.berthd_log()),
              HasSubstr("audit call=IssueJoinTicket decision=refused node=node-1"));
}

TEST_F(SnpJoinTest, AVcekForAnotherTcbIsRefused) {
  // The VCEK certifies microcode 115; the report claims 116, and is signed by that VCEK.
  snp::Tcb claimed = tcb_;
  claimed.microcode = 116;
  SnpReportSpec newer = spec_;
  newer.reported_tcb = snp::EncodeTcb(claimed, snp::Product::kMilan);
  Status st = RunSnpAgent(newer, HostCerts());
  EXPECT_EQ(st.code(), Code::kPermissionDenied);
  EXPECT_THAT(st.message(), HasSubstr("berthd refused this node's evidence; not retrying"));
  EXPECT_THAT(st.message(), HasSubstr("tcb: the VCEK is for TCB " + tcb_.ToString() +
                                      ", the report's reported_tcb is " + claimed.ToString()));
  EXPECT_TRUE(cluster_.ApiServerRecords().empty());
  EXPECT_TRUE(kubeadm_.argvs.empty());
}

TEST_F(SnpJoinTest, ReportBoundToAnotherTlsKeyIsRefused) {
  auto node = agent::MakeClientIdentity("node-1");
  auto attacker = agent::MakeClientIdentity("node-1");
  ASSERT_TRUE(node.ok() && attacker.ok());
  const std::string endpoint = "127.0.0.1:" + std::to_string(cluster_.berthd_port());
  auto node_transport = agent::MakeGrpcJoinTransport(*node, cluster_.join_pki().ca_pem_text, "",
                                                     std::chrono::seconds(10));
  auto attacker_transport = agent::MakeGrpcJoinTransport(*attacker, cluster_.join_pki().ca_pem_text,
                                                         "", std::chrono::seconds(10));
  auto challenge = node_transport->Challenge(endpoint, v1::ChallengeRequest());
  ASSERT_TRUE(challenge.ok()) << challenge.status().ToString();
  FakeSevGuest device(spec_, vcek_.key.get(), HostCerts());
  auto identity = agent::SnpIdentity::LoadOrCreate(device, cluster_.dir().Join("identity"), 0);
  ASSERT_TRUE(identity.ok()) << identity.status().ToString();
  Bytes binding = ComputeBinding(AsBytes(challenge->nonce()), node->spki_sha256);
  auto evidence = agent::CollectSnpEvidence(device, binding, 0, *identity);
  ASSERT_TRUE(evidence.ok()) << evidence.status().ToString();
  v1::JoinRequest request;
  *request.mutable_evidence() = *evidence;
  request.set_nonce(challenge->nonce());
  request.set_node_name("node-1");
  request.set_role(v1::NODE_ROLE_WORKER);

  auto stolen = attacker_transport->IssueJoinTicket(endpoint, request);
  ASSERT_FALSE(stolen.ok());
  EXPECT_EQ(stolen.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(stolen.status().message(),
              HasSubstr("report_data: does not equal the channel binding of this call"));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
  // On the channel it is bound to, the same request is granted.
  auto genuine = node_transport->IssueJoinTicket(endpoint, request);
  EXPECT_TRUE(genuine.ok()) << genuine.status().ToString();
  EXPECT_EQ(cluster_.TokenSecrets().size(), 1u);
  EXPECT_THAT(MustRead(cluster_.berthd_log()), Not(HasSubstr(genuine->kubeadm().token())));
}

}  // namespace
}  // namespace berth::testing
