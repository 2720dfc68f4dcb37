// Host integration tests: a node joins (or is refused) with every part a real process.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <yaml-cpp/yaml.h>

#include <regex>
#include <thread>

#include "agent/attestation.h"
#include "agent/join_client.h"
#include "agent/kubeadm.h"
#include "common/binding.h"
#include "common/enrolment.h"
#include "common/time.h"
#include "tests/bench/load.h"
#include "tests/bench/soft_ak.h"
#include "tests/fakes/agent_fakes.h"
#include "tests/integration/cluster.h"

namespace berth::testing {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

class JoinTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.StartKubeApiServer());
    ASSERT_TRUE(cluster_.WritePolicyFromNode());
  }
  // Files the test itself put under the node's root; the agent may add nothing else on failure.
  const std::vector<std::string> kEnrolmentOnly = {"efi", "efi/berth", "efi/berth/enrolment.binpb"};
  HostCluster cluster_;
};

TEST_F(JoinTest, NodeWhosePcrsMatchThePolicyJoins) {
  ASSERT_TRUE(cluster_.StartBerthd());
  cluster_.WriteEnrolment(cluster_.BaseEnrolment());
  AgentRun run = cluster_.RunAgent();
  ASSERT_EQ(run.result.exit_code, 0) << run.log << MustRead(cluster_.berthd_log());

  // The API server holds exactly one bootstrap-token Secret, this node's, as berth makes it.
  auto tokens = cluster_.TokenSecrets();
  ASSERT_EQ(tokens.size(), 1u);
  const auto& secret = tokens[0];
  EXPECT_EQ(secret["type"], "bootstrap.kubernetes.io/token");
  EXPECT_EQ(secret["metadata"]["namespace"], "kube-system");
  EXPECT_EQ(secret["metadata"]["labels"]["berth.dev/node"], "node-1");
  EXPECT_EQ(secret["metadata"]["labels"]["app.kubernetes.io/managed-by"], "berth");
  const std::string token_id = secret["data"]["token-id"];
  const std::string token = token_id + "." + std::string(secret["data"]["token-secret"]);
  EXPECT_EQ(secret["metadata"]["name"], "bootstrap-token-" + token_id);
  EXPECT_EQ(secret["data"]["auth-extra-groups"], "system:bootstrappers:kubeadm:default-node-token");
  // Its lifetime is berthd's --token-ttl (900 s by default), counted from berthd's clock just
  // before it asked: the API server's creation time (whole seconds) is at most 5 s later.
  const int64_t expires = *ParseRfc3339(secret["data"]["expiration"].get<std::string>());
  const int64_t created = *ParseRfc3339(secret["metadata"]["creationTimestamp"].get<std::string>());
  EXPECT_LE(expires - created, 900);
  EXPECT_GE(expires - created, 895);
  EXPECT_THAT(MustRead(cluster_.berthd_log()),
              HasSubstr(" token_id=" + token_id + " token_expires=" + Rfc3339(expires) + " "));
  // kubeadm itself lists it, as a join token with berth's description.
  bool listed = false;
  for (const auto& t : cluster_.kube().KubeadmTokens()) {
    if (t["id"] != token_id) continue;
    listed = true;
    EXPECT_EQ(t["usages"], nlohmann::json::array({"authentication", "signing"}));
    EXPECT_EQ(t["groups"], nlohmann::json::array({"system:bootstrappers:kubeadm:default-node-token"}));
    EXPECT_EQ(t["description"], "berth: attested join of node node-1");
    EXPECT_EQ(*ParseRfc3339(t["expires"].get<std::string>()), expires);
  }
  EXPECT_TRUE(listed) << "kubeadm token list does not show " << token_id;

  // The real kubeadm ran once, with berth-agent's JoinConfiguration (mode 0600): token
  // discovery checked the JWS signature the bootstrap signer put on cluster-info for this
  // token and the CA pin, and kubeadm read the cluster's configuration with the token.
  auto kubeadm = cluster_.KubeadmJoins();
  ASSERT_EQ(kubeadm.size(), 1u);
  const std::string kubeadm_said = kubeadm[0]["output"];
  EXPECT_EQ(kubeadm[0]["ok"], true) << kubeadm_said;
  EXPECT_EQ(kubeadm[0]["config_mode"], "0600");
  // The agent (run as root here) dropped all but root's file access before running kubeadm,
  // and kubeadm cannot regain the rest (agent/privileges.h).
  EXPECT_EQ(kubeadm[0]["capabilities"]["CapBnd"], "000000000000001f") << kubeadm[0].dump();
  EXPECT_EQ(kubeadm[0]["capabilities"]["CapEff"], "000000000000001f");
  EXPECT_EQ(kubeadm[0]["capabilities"]["CapInh"], "0000000000000000");
  EXPECT_EQ(kubeadm[0]["capabilities"]["CapAmb"], "0000000000000000");
  const std::string endpoint = cluster_.kube().api_server_endpoint();
  EXPECT_THAT(kubeadm_said,
              HasSubstr("[discovery] Cluster info signature and contents are valid and TLS "
                        "certificate validates against pinned roots, will use API Server \"" +
                        endpoint + "\""));
  EXPECT_THAT(kubeadm_said, HasSubstr("Reading configuration from the \"kubeadm-config\" ConfigMap"));
  EXPECT_THAT(kubeadm_said, HasSubstr("This node has joined the cluster"));
  EXPECT_THAT(kubeadm_said, Not(HasSubstr(std::string(secret["data"]["token-secret"]))));
  // What kubeadm would have written for the kubelet: the TLS bootstrap kubeconfig with the
  // API server, the cluster CA it fetched and pinned, berth's token; the node's name.
  const std::string dry = std::string(kubeadm[0]["dir"]) + "/dry-run";
  YAML::Node bootstrap = YAML::LoadFile(dry + "/bootstrap-kubelet.conf");
  EXPECT_EQ(bootstrap["clusters"][0]["cluster"]["server"].as<std::string>(), "https://" + endpoint);
  EXPECT_TRUE(bootstrap["users"][0]["user"]["token"].as<std::string>() == token)
      << "bootstrap-kubelet.conf does not hold the token berthd minted";
  EXPECT_EQ(MustRead(dry + "/ca.crt"), MustRead(cluster_.kube().ca_cert()));
  EXPECT_THAT(MustRead(dry + "/kubeadm-flags.env"), HasSubstr("--hostname-override=node-1"));

  // One log line per step, with its duration; the token never reaches a log.
  for (const char* step :
       {"read-enrolment", "open-tpm", "request-ticket", "drop-privileges", "kubeadm-join"}) {
    EXPECT_THAT(run.log, HasSubstr(std::string("step=") + step + " result=ok duration_ms="));
  }
  EXPECT_THAT(run.log, Not(HasSubstr(std::string(secret["data"]["token-secret"]))));
  EXPECT_THAT(MustRead(cluster_.berthd_log()),
              Not(HasSubstr(std::string(secret["data"]["token-secret"]))));
  EXPECT_THAT(MustRead(cluster_.berthd_log()),
              HasSubstr("audit call=IssueJoinTicket decision=granted node=node-1"));
  // When the agent started and when it was ready, in milliseconds since exec.
  std::smatch started, ready;
  ASSERT_TRUE(std::regex_search(run.log, started, std::regex("started ms_since_exec=(\\d+)\n")))
      << run.log;
  ASSERT_TRUE(std::regex_search(run.log, ready, std::regex("ready ms_since_exec=(\\d+)\n")));
  EXPECT_LE(std::stoll(started[1]), std::stoll(ready[1]));
  EXPECT_LT(started.position(0), ready.position(0));
  // The JoinConfiguration held the token: it is gone once kubeadm has run.
  EXPECT_THAT(cluster_.NodeFiles(), ElementsAre("efi", "efi/berth", "efi/berth/enrolment.binpb",
                                                "run", "run/berth"));
}

TEST_F(JoinTest, PcrMismatchIsRefusedAndNothingIsWritten) {
  ASSERT_TRUE(cluster_.StartBerthd());
  cluster_.WriteEnrolment(cluster_.BaseEnrolment());
  // A different kernel was booted: PCR 4 no longer matches the policy.
  ASSERT_TRUE(cluster_.tpm().ExtendPcr(4, std::string(64, 'e')));
  AgentRun run = cluster_.RunAgent();
  EXPECT_EQ(run.result.exit_code, 1) << run.log;
  EXPECT_THAT(run.log, HasSubstr("PERMISSION_DENIED"));
  EXPECT_THAT(run.log, HasSubstr("PCR sha256:4 is "));
  EXPECT_THAT(run.log, HasSubstr("berthd refused this node's evidence; not retrying"));
  EXPECT_THAT(run.log, Not(HasSubstr("retrying in")));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
  EXPECT_TRUE(cluster_.KubeadmJoins().empty());
  EXPECT_EQ(cluster_.NodeFiles(), kEnrolmentOnly);
  EXPECT_THAT(MustRead(cluster_.berthd_log()),
              HasSubstr("audit call=IssueJoinTicket decision=refused node=node-1"));
}

TEST_F(JoinTest, UnknownAttestationKeyIsRefused) {
  // The policy trusts another TPM's AK.
  Swtpm other(cluster_.dir().Join("other-tpm"));
  ASSERT_TRUE(other.ok());
  RealProcessRunner runner;
  auto other_identity = runner.Run({BuildDir() + "/agent/berth-agent", "--root",
                                    cluster_.node_root(), "--tcti", other.Tcti(),
                                    "--print-identity"});
  ASSERT_TRUE(other_identity.ok() && other_identity->success());
  std::string policy = MustRead(cluster_.dir().Join("policy.yaml"));
  std::string other_policy = other_identity->output;
  auto ak_line = [](const std::string& p) {
    size_t at = p.find("sha256: ");
    return p.substr(at, p.find('\n', at) - at);
  };
  policy.replace(policy.find(ak_line(policy)), ak_line(policy).size(), ak_line(other_policy));
  MustWrite(cluster_.dir().Join("policy.yaml"), policy);
  ASSERT_TRUE(cluster_.StartBerthd());
  cluster_.WriteEnrolment(cluster_.BaseEnrolment());
  AgentRun run = cluster_.RunAgent();
  EXPECT_EQ(run.result.exit_code, 1);
  EXPECT_THAT(run.log, HasSubstr("is not in the policy's trusted_aks"));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
  EXPECT_TRUE(cluster_.KubeadmJoins().empty());
}

// A key the policy trusts, whose TPMT_PUBLIC lacks an AK attribute, signing a well-formed quote
// with the PCR values the policy wants, over TLS to a real berthd: refused naming the attribute,
// nothing minted; the same key with the attributes joins (issue 22, section 5). The node is a
// software AK producing real TPM structures (tests/bench/soft_ak.h).
TEST(AkAttributesJoinTest, ATrustedKeyWithoutTheAkAttributesIsRefusedByBerthd) {
  HostCluster cluster;
  ASSERT_TRUE(cluster.StartApiServer());
  auto key = GenerateP256Key();
  ASSERT_TRUE(key.ok());
  auto pem = PrivateKeyToPem(key->get());
  ASSERT_TRUE(pem.ok());
  auto with = [&](TPMA_OBJECT attributes) {
    auto copy = PrivateKeyFromPem(pem->view());
    EXPECT_TRUE(copy.ok());
    auto ak = bench::SoftAk::FromKey(std::move(*copy), {0, 7}, attributes);
    EXPECT_TRUE(ak.ok()) << ak.status().ToString();
    return std::move(*ak);
  };
  const bench::SoftAk good = with(bench::SoftAk::kAkAttributes);
  MustWrite(cluster.dir().Join("policy.yaml"), *good.PolicyYaml());
  ASSERT_TRUE(cluster.StartBerthd());
  bench::LoadOptions options;
  options.endpoint = "127.0.0.1:" + std::to_string(cluster.berthd_port());
  options.ca_pem = cluster.join_pki().ca_pem_text;
  options.server_name = "localhost";

  const struct {
    TPMA_OBJECT attributes;
    std::string node, refusal;
  } cases[] = {
      {bench::SoftAk::kAkAttributes & ~TPMA_OBJECT_RESTRICTED, "unrestricted",
       "the attestation key lacks the restricted attribute"},
      {bench::SoftAk::kAkAttributes & ~TPMA_OBJECT_FIXEDTPM, "not-fixed-tpm",
       "the attestation key lacks the fixedTPM attribute"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.node);
    bench::JoinAttempt refused = bench::JoinOnce(options, with(c.attributes), c.node);
    EXPECT_EQ(refused.status.ToString(), "PERMISSION_DENIED: " + c.refusal);
    EXPECT_THAT(MustRead(cluster.berthd_log()),
                HasSubstr("audit call=IssueJoinTicket decision=refused node=" + c.node + " "));
  }
  EXPECT_TRUE(cluster.ApiServerRecords().empty());

  bench::JoinAttempt granted = bench::JoinOnce(options, good, "restricted");
  EXPECT_TRUE(granted.status.ok()) << granted.status.ToString();
  EXPECT_EQ(cluster.ApiServerRecords().size(), 1u);
}

// A client that speaks the protocol step by step, to replay and delay evidence.
class ManualClient {
 public:
  explicit ManualClient(HostCluster& cluster) {
    identity_ = std::move(agent::MakeClientIdentity("node-1")).value();
    transport_ = agent::MakeGrpcJoinTransport(identity_, cluster.join_pki().ca_pem_text, "",
                                              std::chrono::seconds(10));
    tpm_ = std::move(agent::OpenEsysTpm(cluster.tpm().Tcti())).value();
    endpoint_ = "127.0.0.1:" + std::to_string(cluster.berthd_port());
  }
  std::string Nonce() {
    v1::ChallengeRequest req;
    auto c = transport_->Challenge(endpoint_, req);
    EXPECT_TRUE(c.ok()) << c.status().ToString();
    return c->nonce();
  }
  v1::JoinRequest RequestFor(const std::string& nonce) {
    v1::JoinRequest r;
    Bytes binding = ComputeBinding(AsBytes(nonce), identity_.spki_sha256);
    auto e = agent::CollectTpmEvidence(*tpm_, DefaultPcrSelection(), binding, "/nonexistent");
    EXPECT_TRUE(e.ok());
    *r.mutable_evidence() = *e;
    r.set_nonce(nonce);
    r.set_node_name("node-1");
    r.set_role(v1::NODE_ROLE_WORKER);
    return r;
  }
  Result<v1::JoinTicket> Send(const v1::JoinRequest& r) {
    return transport_->IssueJoinTicket(endpoint_, r);
  }

 private:
  agent::ClientIdentity identity_;
  std::unique_ptr<agent::JoinTransport> transport_;
  std::unique_ptr<agent::Tpm> tpm_;
  std::string endpoint_;
};

TEST_F(JoinTest, EvidenceReplayedFromAnotherTlsKeyIsRefused) {
  ASSERT_TRUE(cluster_.StartBerthd());
  ManualClient node(cluster_), attacker(cluster_);
  v1::JoinRequest captured = node.RequestFor(node.Nonce());
  auto stolen = attacker.Send(captured);
  ASSERT_FALSE(stolen.ok());
  EXPECT_EQ(stolen.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(stolen.status().message(), HasSubstr("extraData"));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
  // The same request on the channel it is bound to is granted.
  auto genuine = node.Send(captured);
  EXPECT_TRUE(genuine.ok()) << genuine.status().ToString();
  EXPECT_EQ(cluster_.TokenSecrets().size(), 1u);
}

TEST_F(JoinTest, StaleNonceIsRefused) {
  ASSERT_TRUE(cluster_.StartBerthd(0, {"--nonce-ttl", "2"}));
  ManualClient node(cluster_);
  v1::JoinRequest request = node.RequestFor(node.Nonce());
  std::this_thread::sleep_for(std::chrono::milliseconds(3100));
  auto ticket = node.Send(request);
  ASSERT_FALSE(ticket.ok());
  EXPECT_EQ(ticket.status().code(), Code::kAborted);
  EXPECT_THAT(ticket.status().message(), HasSubstr("nonce expired"));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
}

TEST_F(JoinTest, AgentRetriesUntilBerthdComesUp) {
  const int port = UnusedPort();
  v1::EnrolmentConfig config = cluster_.BaseEnrolment();
  config.set_endpoints(0, "127.0.0.1:" + std::to_string(port));
  cluster_.WriteEnrolment(config);
  auto agent = Subprocess::Start(cluster_.AgentArgv(), cluster_.dir().Join("agent.log"),
                                 cluster_.AgentEnv());
  ASSERT_TRUE(agent.ok());
  ASSERT_TRUE(
      WaitForText(cluster_.dir().Join("agent.log"), "retrying in", std::chrono::seconds(30)));
  ASSERT_TRUE(cluster_.StartBerthd(port));
  ProcessResult result = agent->Wait(std::chrono::seconds(60));
  std::string log = MustRead(cluster_.dir().Join("agent.log"));
  EXPECT_EQ(result.exit_code, 0) << log;
  EXPECT_THAT(log, HasSubstr("UNAVAILABLE"));
  EXPECT_EQ(cluster_.KubeadmJoins().size(), 1u);
}

TEST_F(JoinTest, DeadEndpointIsSkippedForALiveOne) {
  ASSERT_TRUE(cluster_.StartBerthd());
  v1::EnrolmentConfig config = cluster_.BaseEnrolment();
  config.clear_endpoints();
  config.add_endpoints("127.0.0.1:" + std::to_string(UnusedPort()));
  config.add_endpoints("127.0.0.1:" + std::to_string(cluster_.berthd_port()));
  cluster_.WriteEnrolment(config);
  AgentRun run = cluster_.RunAgent();
  EXPECT_EQ(run.result.exit_code, 0) << run.log;
  EXPECT_EQ(cluster_.KubeadmJoins().size(), 1u);
}

// The stand-in: a real API server does not answer 503 on demand (tests/standins/README.md).
TEST_F(JoinTest, ApiServerOutageIsRetriedThroughBerthd) {
  HostCluster flaky;
  ASSERT_TRUE(flaky.StartStandinApiServer({"--fail-first", "2"}));
  ASSERT_TRUE(flaky.WritePolicyFromNode());
  ASSERT_TRUE(flaky.StartBerthd());
  flaky.WriteEnrolment(flaky.BaseEnrolment());
  AgentRun run = flaky.RunAgent();
  EXPECT_EQ(run.result.exit_code, 0) << run.log;
  EXPECT_THAT(run.log, HasSubstr("Kubernetes API answered 503"));
  EXPECT_EQ(flaky.KubeadmJoins().size(), 1u);
}

TEST_F(JoinTest, UnreachableEndpointGivesUpWithAClearError) {
  v1::EnrolmentConfig config = cluster_.BaseEnrolment();
  config.set_endpoints(0, "127.0.0.1:" + std::to_string(UnusedPort()));
  cluster_.WriteEnrolment(config);
  AgentRun run = cluster_.RunAgent({"--max-attempts", "3"});
  EXPECT_EQ(run.result.exit_code, 1);
  EXPECT_THAT(run.log, HasSubstr("UNAVAILABLE: requesting join ticket: giving up after 3 attempts: "
                                 "Challenge at " + config.endpoints(0)));
  EXPECT_EQ(cluster_.NodeFiles(), kEnrolmentOnly);
}

TEST_F(JoinTest, MissingEnrolmentConfigIsNamed) {
  ASSERT_TRUE(cluster_.StartBerthd());
  AgentRun run = cluster_.RunAgent();
  EXPECT_EQ(run.result.exit_code, 1);
  EXPECT_THAT(run.log,
              HasSubstr("NOT_FOUND: reading enrolment config: open(" + cluster_.node_root() +
                        "/efi/berth/enrolment.binpb): No such file or directory"));
  EXPECT_TRUE(cluster_.NodeFiles().empty());
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
}

TEST_F(JoinTest, CorruptEnrolmentConfigIsNamed) {
  ASSERT_TRUE(cluster_.StartBerthd());
  EXPECT_TRUE(MakeDirs(cluster_.node_root() + "/efi/berth").ok());
  MustWrite(cluster_.node_root() + "/efi/berth/enrolment.binpb", "\xff\xff\xff garbage");
  AgentRun run = cluster_.RunAgent();
  EXPECT_EQ(run.result.exit_code, 1);
  EXPECT_THAT(run.log, HasSubstr("INVALID_ARGUMENT: enrolment config " + cluster_.node_root() +
                                 "/efi/berth/enrolment.binpb is corrupt: not a binary "
                                 "EnrolmentConfig"));
  EXPECT_EQ(cluster_.NodeFiles(), kEnrolmentOnly);

  // Well-formed protobuf, invalid content: the field is named.
  v1::EnrolmentConfig config = cluster_.BaseEnrolment();
  config.set_cluster_ca_pem("not a certificate");
  cluster_.WriteEnrolment(config);
  run = cluster_.RunAgent();
  EXPECT_EQ(run.result.exit_code, 1);
  EXPECT_THAT(run.log, HasSubstr("INVALID_ARGUMENT: enrolment config " + cluster_.node_root() +
                                 "/efi/berth/enrolment.binpb: cluster_ca_pem holds no valid "
                                 "certificate"));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
}

TEST_F(JoinTest, WrongClusterCaIsRefusedAtTls) {
  ASSERT_TRUE(cluster_.StartBerthd());
  v1::EnrolmentConfig config = cluster_.BaseEnrolment();
  TestPki impostor = MakeTestPki(cluster_.dir().Join("kube"));  // another CA
  config.set_cluster_ca_pem(impostor.ca_pem_text);
  cluster_.WriteEnrolment(config);
  AgentRun run = cluster_.RunAgent({"--max-attempts", "2"});
  EXPECT_EQ(run.result.exit_code, 1);
  EXPECT_THAT(run.log, HasSubstr("UNAVAILABLE"));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
  EXPECT_EQ(cluster_.NodeFiles(), kEnrolmentOnly);
}

// The JoinConfigurations berth-agent writes, as the pinned kubeadm reads them. `config
// validate` checks the fields; `join --dry-run` first checks the phases to skip, then runs
// preflight, which fails on this host (no kubelet): getting there means the phase names were
// accepted. berth-agent skipped "control-plane-join/etcd", which kubeadm v1.37 refuses
// ("invalid phase name"): its phase is etcd-join.
TEST(KubeadmConfigTest, ThePinnedKubeadmAcceptsAWorkersAndAControlPlanesConfiguration) {
  KubeCluster& kube = KubeCluster::Shared();
  ASSERT_TRUE(kube.ok()) << kube.error();
  TempDir dir;
  agent::ControlPlaneJoin cp{.advertise_address = "10.0.0.5"};
  const v1::KubeadmJoin join = agent::GoodKubeadmJoin();
  const struct {
    std::string name;
    SecretBytes text;
  } configs[] = {{"worker", agent::RenderJoinConfiguration(join, "w-1")},
                 {"control-plane", agent::RenderJoinConfiguration(join, "cp-1", &cp)}};
  RealProcessRunner runner;
  for (const auto& c : configs) {
    SCOPED_TRACE(c.name);
    const std::string path = dir.Join(c.name + ".yaml");
    MustWrite(path, std::string(c.text.view()), 0600);
    auto validated = runner.Run({kube.bin_dir() + "/kubeadm", "config", "validate", "--config", path});
    ASSERT_TRUE(validated.ok());
    EXPECT_TRUE(validated->success()) << validated->output;
    EXPECT_EQ(validated->output, "ok\n");
    auto dry = runner.Run({kube.bin_dir() + "/kubeadm", "join", "--config", path, "--dry-run"});
    ASSERT_TRUE(dry.ok());
    EXPECT_FALSE(dry->success());
    EXPECT_THAT(dry->output, Not(HasSubstr("invalid phase name")));
    EXPECT_THAT(dry->output, HasSubstr("error execution phase preflight"));
  }
}

}  // namespace
}  // namespace berth::testing
