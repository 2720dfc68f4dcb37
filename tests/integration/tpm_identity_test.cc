// Host integration tests of TPM identity and sealed boots, every part a real process: a node
// whose swtpm was manufactured with an EK certificate joins through credential activation;
// an EK certificate from an untrusted CA, an AK from another TPM, an edited EnrolmentConfig
// and a second attestation in the same boot are refused.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <sstream>

#include "agent/attestation.h"
#include "agent/boot_seal.h"
#include "agent/join_client.h"
#include "common/binding.h"
#include "common/enrolment.h"
#include "tests/integration/cluster.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string Indented(const std::string& text, int spaces) {
  std::string out, pad(spaces, ' ');
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out += pad + line + "\n";
  return out;
}

// The policy berth-agent --print-identity wrote, with its trusted_aks entry replaced by
// `replacement` (how else the AK is to be trusted).
std::string ReplaceTrustedAks(const std::string& policy, const std::string& replacement) {
  size_t start = policy.find("  trusted_aks:\n");
  size_t end = policy.find("  pcrs:\n");
  EXPECT_NE(start, std::string::npos);
  EXPECT_NE(end, std::string::npos);
  return policy.substr(0, start) + replacement + policy.substr(end);
}

// A node whose TPM holds an EK certificate from the "manufacturer" CA in ca_.
class EkIdentityTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.tpm().ok()) << cluster_.tpm().error();
    ASSERT_TRUE(cluster_.StartKubeApiServer());
    port_ = UnusedPort();
    config_ = cluster_.BaseEnrolment();
    config_.set_endpoints(0, "127.0.0.1:" + std::to_string(port_));
    cluster_.WriteEnrolment(config_);
    ASSERT_TRUE(cluster_.WritePolicyFromNode());
  }
  std::string PolicyPath() const { return cluster_.dir().Join("policy.yaml"); }
  // The node's identity policy, trusting EKs from the CA bundle `ek_ca_pem` instead of the AK.
  void TrustEkCa(const std::string& ek_ca_pem) {
    MustWrite(PolicyPath(), ReplaceTrustedAks(MustRead(PolicyPath()),
                                              "  ek_ca_pem: |\n" + Indented(ek_ca_pem, 4)));
  }

  TempDir ca_;
  HostCluster cluster_{{.ek_ca_dir = ca_.Join("manufacturer")}};
  int port_ = 0;
  v1::EnrolmentConfig config_;
};

TEST_F(EkIdentityTest, NodeJoinsThroughCredentialActivation) {
  TrustEkCa(Swtpm::EkCaBundlePem(ca_.Join("manufacturer")));
  EXPECT_THAT(MustRead(PolicyPath()), Not(HasSubstr("trusted_aks")));
  ASSERT_TRUE(cluster_.StartBerthd(port_));
  AgentRun run = cluster_.RunAgent();
  ASSERT_EQ(run.result.exit_code, 0) << run.log << MustRead(cluster_.berthd_log());
  EXPECT_EQ(cluster_.KubeadmJoins().size(), 1u);
  // The audit line names the rules: the manufacturer's CA, activation, the PCRs, the config.
  EXPECT_THAT(MustRead(cluster_.berthd_log()),
              HasSubstr("rule=\"ek_certificate[CN=swtpm-localca] + credential activation + pcrs "
                        "sha256:0,1,2,3,4,5,6,7,8,9,14 + enrolment_configs[node-1]\""));
  for (const char* step : {"measure-enrolment", "request-ticket", "kubeadm-join", "release-keys"}) {
    EXPECT_THAT(run.log, HasSubstr(std::string("step=") + step + " result=ok duration_ms="));
  }
}

TEST_F(EkIdentityTest, EkCertificateFromAnUntrustedCaIsRefused) {
  TempDir other;
  TrustEkCa(MakeTestPki(other.path()).ca_pem_text);  // a CA that never issued this EK
  ASSERT_TRUE(cluster_.StartBerthd(port_));
  AgentRun run = cluster_.RunAgent();
  EXPECT_EQ(run.result.exit_code, 1) << run.log;
  EXPECT_THAT(run.log,
              HasSubstr("PERMISSION_DENIED: berthd refused this node's evidence; not retrying"));
  EXPECT_THAT(run.log, HasSubstr("EK certificate issued by CN=swtpm-localca does not chain to a "
                                 "trusted manufacturer CA (tpm.ek_ca)"));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
  EXPECT_TRUE(cluster_.KubeadmJoins().empty());
  EXPECT_THAT(MustRead(cluster_.berthd_log()),
              HasSubstr("audit call=IssueJoinTicket decision=refused node=node-1"));
}

TEST_F(EkIdentityTest, AkFromAnotherTpmIsRefused) {
  TrustEkCa(Swtpm::EkCaBundlePem(ca_.Join("manufacturer")));
  ASSERT_TRUE(cluster_.StartBerthd(port_));
  // The impostor's TPM reproduces everything berthd checks except the TPM's identity: the same
  // boot measurements and the same EnrolmentConfig in PCR 15.
  Swtpm other(cluster_.dir().Join("other-tpm"));
  ASSERT_TRUE(other.ok());
  ASSERT_TRUE(other.ExtendPcr(0, std::string(64, 'a')));
  ASSERT_TRUE(other.ExtendPcr(4, std::string(64, 'b')));

  // An impostor presents the manufactured TPM's EK and certificate with its own TPM's AK.
  agent::Endorsement ek;
  {
    auto trusted = agent::OpenEsysTpm(cluster_.tpm().Tcti());
    ASSERT_TRUE(trusted.ok());
    ek = *(*trusted)->EndorsementKey();
  }
  auto identity = agent::MakeClientIdentity("node-1");
  ASSERT_TRUE(identity.ok());
  auto transport = agent::MakeGrpcJoinTransport(*identity, cluster_.join_pki().ca_pem_text, "",
                                                std::chrono::seconds(10));
  const std::string endpoint = "127.0.0.1:" + std::to_string(port_);
  auto foreign = agent::OpenEsysTpm(other.Tcti());
  ASSERT_TRUE(foreign.ok());
  auto seal = agent::BootSeal::Measure(**foreign, AsBytes(config_.SerializeAsString()));
  ASSERT_TRUE(seal.ok()) << seal.status().ToString();
  v1::ChallengeRequest request;
  request.set_ak_public(ToString(*(*foreign)->AttestationKeyPublic()));
  request.set_ek_public(ToString(ek.ek_public));
  request.set_ek_certificate(ToString(ek.ek_certificate));
  auto challenge = transport->Challenge(endpoint, request);
  ASSERT_TRUE(challenge.ok()) << challenge.status().ToString();
  ASSERT_FALSE(challenge->credential_blob().empty());

  // Its TPM holds the AK but not the EK: activation fails.
  auto activated = (*foreign)->ActivateCredential(AsBytes(challenge->credential_blob()),
                                                  AsBytes(challenge->encrypted_secret()));
  EXPECT_EQ(activated.status().code(), Code::kPermissionDenied);

  Bytes binding = ComputeBinding(AsBytes(challenge->nonce()), identity->spki_sha256);
  auto evidence =
      agent::CollectTpmEvidence(**foreign, DefaultPcrSelection(), binding, "/nonexistent");
  ASSERT_TRUE(evidence.ok());
  evidence->mutable_tpm()->set_ek_public(ToString(ek.ek_public));
  evidence->mutable_tpm()->set_ek_certificate(ToString(ek.ek_certificate));
  for (const auto& e : seal->Events()) *evidence->mutable_tpm()->add_agent_events() = e;
  v1::JoinRequest join;
  *join.mutable_evidence() = *evidence;
  join.set_nonce(challenge->nonce());
  join.set_node_name("node-1");
  join.set_role(v1::NODE_ROLE_WORKER);
  join.set_activated_credential(ToString(RandomBytes(32)));  // a guess
  auto refused = transport->IssueJoinTicket(endpoint, join);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("the AK does not live in the TPM of the endorsement key"));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
}

// The sealed boot, on a plain node whose AK the policy pins.
class SealedBootJoinTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(cluster_.StartKubeApiServer()); }
  HostCluster cluster_;
};

TEST_F(SealedBootJoinTest, EditedEnrolmentConfigIsRefusedByAPolicyThatPinsIt) {
  const int port = UnusedPort();
  v1::EnrolmentConfig config = cluster_.BaseEnrolment();
  config.set_endpoints(0, "127.0.0.1:" + std::to_string(port));
  cluster_.WriteEnrolment(config);
  ASSERT_TRUE(cluster_.WritePolicyFromNode());  // pins this config's SHA-256
  const std::string policy = MustRead(cluster_.dir().Join("policy.yaml"));
  ASSERT_THAT(policy, HasSubstr("  enrolment_configs:\n    - name: node-1\n      sha256: " +
                                HexEncode(Sha256(AsBytes(config.SerializeAsString())))));
  ASSERT_TRUE(cluster_.StartBerthd(port));

  // Someone with the disk edits the ESP: the node is told to join another cluster id.
  v1::EnrolmentConfig edited = config;
  edited.set_cluster_id("berth-test-edited");
  cluster_.WriteEnrolment(edited);
  AgentRun run = cluster_.RunAgent();
  EXPECT_EQ(run.result.exit_code, 1) << run.log;
  EXPECT_THAT(run.log, HasSubstr("the node booted with EnrolmentConfig sha256:" +
                                 HexEncode(Sha256(AsBytes(edited.SerializeAsString()))) +
                                 ", which is not in tpm.enrolment_configs"));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
  EXPECT_TRUE(cluster_.KubeadmJoins().empty());
}

TEST_F(SealedBootJoinTest, SecondAttestationInTheSameBootIsRefused) {
  ASSERT_TRUE(cluster_.WritePolicyFromNode());
  ASSERT_TRUE(cluster_.StartBerthd());
  cluster_.WriteEnrolment(cluster_.BaseEnrolment());
  AgentRun first = cluster_.RunAgent();
  ASSERT_EQ(first.result.exit_code, 0) << first.log << MustRead(cluster_.berthd_log());
  EXPECT_THAT(first.log, HasSubstr("step=release-keys result=ok"));

  // Anything later in this boot (here the agent itself, run again) gets nothing.
  AgentRun second = cluster_.RunAgent();
  EXPECT_EQ(second.result.exit_code, 1) << second.log;
  EXPECT_THAT(second.log, HasSubstr("PCR 15 already holds this EnrolmentConfig (an earlier run in "
                                    "this boot), and this boot already released its keys"));
  EXPECT_THAT(second.log, HasSubstr("berth-agent event #1 (PCR 15) says this boot already "
                                    "released its keys: a second attestation in the same boot "
                                    "is refused; reboot the node"));
  EXPECT_EQ(cluster_.TokenSecrets().size(), 1u);
  EXPECT_EQ(cluster_.KubeadmJoins().size(), 1u);
}

}  // namespace
}  // namespace berth::testing
