// Node lifecycle for operators against real parts (docs/lifecycle.md): a 3-member etcd
// cluster, berthd processes, swtpm nodes whose agent runs in-process, berthctl against
// AdminService, and berthd's Prometheus endpoint. Approval (a pending node joins within a
// second of approval; a denied one never does), the live policy (a refused node joins after a
// reload without a restart; a broken policy file leaves the old one in force), and golden
// tickets (a debug berthd admits one join per ticket; a release berthd refuses to issue one).
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <openssl/evp.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <regex>
#include <thread>

#include "agent/golden_ticket.h"
#include "agent/join_client.h"
#include "common/crypto.h"
#include "common/enrolment.h"
#include "common/time.h"
#include "server/join/bootstrap_token.h"
#include "server/nodes/store.h"
#include "tests/integration/etcd_testbed.h"
#include "tests/testing/ec2_documents.h"

namespace berth::testing {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;

// One series of berthd's /metrics, or -1 when it is not there.
double Metric(int port, const std::string& series) {
  httplib::Client client("127.0.0.1", port);
  auto res = client.Get("/metrics");
  if (!res || res->status != 200) return -1;
  const std::string& body = res->body;
  size_t at = body.find("\n" + series + " ");
  if (at == std::string::npos) return -1;
  at += series.size() + 2;
  return std::stod(body.substr(at, body.find('\n', at) - at));
}

std::optional<v1::NodeRecord> Record(EtcdTestbed& bed, const std::string& name) {
  auto client = bed.etcd().NewClient();
  server::NodeStore store(client.get());
  auto r = store.Get(name);
  if (!r.ok() || !r->has_value()) return std::nullopt;
  return (*r)->record;
}

bool LogHas(EtcdTestbed& bed, const std::string& text, int replica = 0) {
  return MustRead(bed.BerthdLog(replica)).find(text) != std::string::npos;
}

const std::string kPendingSeries =
    "berth_requests_total{call=\"IssueJoinTicket\",outcome=\"pending\"}";

TEST(LifecycleTest, PendingNodeJoinsOnceApprovedAndADeniedOneNever) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& approved = bed.AddNode("w-approved", false);
  TestNode& denied = bed.AddNode("w-denied", false);
  bed.policy_extra = "admission:\n  approval: required\n";
  bed.berthd_flags = {"--approval-hold-ms", "1500"};
  ASSERT_TRUE(bed.StartBerthd());
  const std::vector<std::string> eps = {bed.BerthdEndpoint()};

  AgentOutcome approved_run, denied_run;
  std::thread a([&] { approved_run = bed.RunAgent(approved, false, eps); });
  std::thread d([&] { denied_run = bed.RunAgent(denied, false, eps); });
  // Both are pending, and each has been held and asked to call again at least once.
  ASSERT_TRUE(WaitFor([&] { return Metric(bed.metrics_port(), kPendingSeries) >= 2; },
                      std::chrono::seconds(30)))
      << MustRead(bed.BerthdLog());
  ASSERT_EQ(Record(bed, "w-approved")->state(), v1::NODE_STATE_PENDING);
  EXPECT_EQ(Record(bed, "w-approved")->ak_sha256(), approved.ak_sha256);
  EXPECT_TRUE(LogHas(bed, "audit call=IssueJoinTicket decision=pending node=w-approved"));
  auto listed = bed.ListNodes();
  ASSERT_EQ(listed["nodes"].size(), 2u);
  EXPECT_EQ(listed["nodes"][0]["state"], "NODE_STATE_PENDING");

  ProcessResult deny = bed.Berthctl({"nodes", "deny", "w-denied"});
  ASSERT_EQ(deny.exit_code, 0) << deny.output;
  EXPECT_THAT(deny.output, HasSubstr("denied w-denied: revoked"));

  // That a call held when the approval lands is admitted at berthd's next re-read of the
  // record, not at the end of the hold, is tested on a fake clock (admission_test.cc,
  // ApprovalWhileTheCallIsHeldAdmitsItAtTheNextPoll): a wall-clock bound here would fail on
  // a loaded machine.
  ProcessResult approve =
      bed.Berthctl({"nodes", "approve", "w-approved", "--ak-sha256", approved.ak_sha256});
  ASSERT_EQ(approve.exit_code, 0) << approve.output;
  std::optional<v1::NodeRecord> joined;
  ASSERT_TRUE(WaitFor(
      [&] {
        joined = Record(bed, "w-approved");
        return joined && joined->state() == v1::NODE_STATE_JOINED;
      },
      std::chrono::seconds(30)))
      << MustRead(bed.BerthdLog());
  EXPECT_THAT(joined->approved_by(), HasSubstr("alice"));

  a.join();
  d.join();
  ASSERT_TRUE(approved_run.status.ok()) << approved_run.status.ToString();
  // The agent said what it was waiting for.
  bool said = false;
  for (const auto& n : approved_run.notifications) {
    said |= n.find("STATUS=waiting: ") == 0 &&
            n.find("node w-approved is pending operator approval") != std::string::npos;
  }
  EXPECT_TRUE(said) << ::testing::PrintToString(approved_run.notifications);
  EXPECT_THAT(approved_run.notifications, Contains("READY=1"));
  EXPECT_TRUE(LogHas(bed, "audit call=IssueJoinTicket decision=granted node=w-approved"));

  // Denied: refused for good, with nothing minted for it.
  EXPECT_EQ(denied_run.status.code(), Code::kPermissionDenied) << denied_run.status.ToString();
  EXPECT_THAT(denied_run.notifications, Not(Contains("READY=1")));
  EXPECT_EQ(Record(bed, "w-denied")->state(), v1::NODE_STATE_REVOKED);
  EXPECT_EQ(Record(bed, "w-denied")->joins(), 0);
  auto again = bed.RequestJoinTicket(denied, false, eps[0], eps[0]);
  EXPECT_EQ(again.status().code(), Code::kPermissionDenied);
  for (const auto& r : bed.KubeadmJoins()) EXPECT_THAT(r.dump(), Not(HasSubstr("w-denied")));
  EXPECT_TRUE(bed.kube()->BerthTokens("w-denied").empty());
  EXPECT_EQ(bed.kube()->BerthTokens("w-approved").size(), 1u);

  // What the metrics say about it.
  EXPECT_EQ(Metric(bed.metrics_port(),
                   "berth_requests_total{call=\"IssueJoinTicket\",outcome=\"granted\"}"),
            1);
  EXPECT_GE(Metric(bed.metrics_port(),
                   "berth_requests_total{call=\"IssueJoinTicket\",outcome=\"refused_policy\"}"),
            2);
  EXPECT_GE(
      Metric(bed.metrics_port(), "berth_request_duration_seconds_count{call=\"IssueJoinTicket\"}"),
      4);
}

TEST(LifecycleTest, PolicyReloadsWithoutARestartAndABrokenPolicyLeavesTheOldOneInForce) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& late = bed.AddNode("w-late", false);
  TestNode& known = bed.AddNode("w-known", false);
  bed.left_out_of_policy = {"w-late"};
  ASSERT_TRUE(bed.StartBerthd());
  const std::string ep = bed.BerthdEndpoint();
  const pid_t pid = bed.berthd_pid();

  // One channel to berthd, kept open across every reload below.
  auto id = agent::MakeClientIdentity("observer");
  ASSERT_TRUE(id.ok());
  auto channel = agent::MakeGrpcJoinTransport(*id, bed.JoinCaPem(), "", std::chrono::seconds(10));
  ASSERT_TRUE(channel->Challenge(ep, v1::ChallengeRequest()).ok());

  auto refused = bed.RequestJoinTicket(late, false, ep, ep);
  ASSERT_EQ(refused.status().code(), Code::kPermissionDenied) << refused.status().ToString();

  // The file changes (written in place): reloaded, and the node joins.
  bed.left_out_of_policy.clear();
  const std::string path = bed.WritePolicy();
  ASSERT_TRUE(
      WaitFor([&] { return LogHas(bed, "(file changed): sha256"); }, std::chrono::seconds(10)))
      << MustRead(bed.BerthdLog());
  auto joined = bed.RequestJoinTicket(late, false, ep, ep);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  EXPECT_EQ(Record(bed, "w-late")->state(), v1::NODE_STATE_JOINED);

  // A broken policy (replaced by an editor's rename) is rejected; the old one stays.
  MustWrite(path + ".new", "tpm:\n  trusted_aks: [\n");
  ASSERT_EQ(rename((path + ".new").c_str(), path.c_str()), 0);
  ASSERT_TRUE(
      WaitFor([&] { return LogHas(bed, "(file changed) rejected, the policy in force stays"); },
              std::chrono::seconds(10)));
  EXPECT_TRUE(LogHas(bed, "policy: YAML error"));
  // SIGHUP with the broken file: rejected the same way.
  ASSERT_EQ(kill(pid, SIGHUP), 0);
  ASSERT_TRUE(WaitFor([&] { return LogHas(bed, "(SIGHUP) rejected, the policy in force stays"); },
                      std::chrono::seconds(10)));
  auto still = bed.RequestJoinTicket(known, false, ep, ep);
  EXPECT_TRUE(still.ok()) << still.status().ToString();
  auto rejoin = bed.RequestRejoinTicket(late, ep);
  EXPECT_TRUE(rejoin.ok()) << rejoin.status().ToString();

  // A good policy again (truncated first, as some editors write), then the same via SIGHUP.
  bed.left_out_of_policy = {"w-known"};
  MustWrite(path, "");
  bed.WritePolicy();
  ASSERT_TRUE(WaitFor(
      [&] { return Metric(bed.metrics_port(), "berth_policy_reloads_total{result=\"ok\"}") >= 2; },
      std::chrono::seconds(10)));
  ASSERT_EQ(kill(pid, SIGHUP), 0);
  ASSERT_TRUE(WaitFor([&] { return LogHas(bed, "(SIGHUP): sha256"); }, std::chrono::seconds(10)));
  auto now_refused = bed.RequestRejoinTicket(known, ep);
  EXPECT_EQ(now_refused.status().code(), Code::kPermissionDenied);

  // Never restarted, and the channel opened at the start still works.
  EXPECT_EQ(bed.berthd_pid(), pid);
  EXPECT_EQ(kill(pid, 0), 0);
  EXPECT_TRUE(channel->Challenge(ep, v1::ChallengeRequest()).ok());
  EXPECT_GE(Metric(bed.metrics_port(), "berth_policy_reloads_total{result=\"rejected\"}"), 2);
}

// A worker's EnrolmentConfig for the node, as an operator would have provisioned it.
std::string WriteEnrolmentFile(EtcdTestbed& bed, const TestNode& node) {
  v1::EnrolmentConfig c;
  c.set_version(1);
  c.set_cluster_id("berth-test");
  c.add_endpoints(bed.BerthdEndpoint());
  c.set_cluster_ca_pem(bed.JoinCaPem());
  c.set_role(v1::NODE_ROLE_WORKER);
  c.set_attestation(v1::ATTESTATION_KIND_TPM);
  c.set_node_name(node.name);
  const std::string path = bed.dir().Join(node.name + "-enrolment.binpb");
  MustWrite(path, c.SerializeAsString(), 0600);
  return path;
}

TEST(LifecycleTest, GoldenTicketFromADebugBerthdAdmitsOneJoinAndAReleaseBerthdIssuesNone) {
  {
    EtcdTestbed bed;
    ASSERT_TRUE(bed.ok()) << bed.error();
    TestNode& node = bed.AddNode("w-release", false);
    ASSERT_TRUE(bed.StartBerthd());
    const std::string file = WriteEnrolmentFile(bed, node);
    const std::string before = MustRead(file);
    ProcessResult r =
        bed.Berthctl({"golden-ticket", "--node-address", "127.0.0.1", "--enrolment", file});
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_THAT(r.output, HasSubstr("golden tickets are compiled out of this berthd"));
    EXPECT_EQ(MustRead(file), before);
  }
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& node = bed.AddNode("w-golden", false);
  TestNode& other = bed.AddNode("w-trusted", false);
  bed.left_out_of_policy = {"w-golden"};  // no attestation could admit it
  bed.berthd_binary = "server/berthd-debug";
  bed.golden_reader = agent::ReadGoldenTicket;  // this binary links the debug agent flavour
  ASSERT_TRUE(bed.StartBerthd());
  EXPECT_TRUE(LogHas(bed, "INSECURE: this berthd is a debug build"));
  const std::string file = WriteEnrolmentFile(bed, node);
  ProcessResult r = bed.Berthctl({"golden-ticket", "--node-address", "127.0.0.1", "--node-name",
                                  "w-golden", "--enrolment", file});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_THAT(r.output, HasSubstr("single use, written to " + file));
  auto config = ReadEnrolmentConfigUnvalidated(file);
  ASSERT_TRUE(config.ok());
  ASSERT_TRUE(config->has_golden_ticket());
  EXPECT_EQ(config->golden_ticket().node_name(), "w-golden");
  EXPECT_EQ(config->golden_ticket().secret().size(), 32u);
  // The secret never reaches a log.
  EXPECT_THAT(MustRead(bed.BerthdLog()), Not(HasSubstr(config->golden_ticket().secret())));

  node.golden = config->golden_ticket();
  AgentOutcome boot = bed.RunAgent(node, false, {bed.BerthdEndpoint()});
  ASSERT_TRUE(boot.status.ok()) << boot.status.ToString() << "\n" << MustRead(bed.BerthdLog());
  auto rec = Record(bed, "w-golden");
  ASSERT_TRUE(rec.has_value());
  EXPECT_EQ(rec->state(), v1::NODE_STATE_JOINED);
  EXPECT_EQ(rec->golden_ticket_id(), config->golden_ticket().id());
  EXPECT_TRUE(LogHas(bed, "audit call=UseGoldenTicket decision=granted node=w-golden"));

  // Never twice: a new boot (another TLS key) presenting it again is refused.
  auto twice = bed.RequestJoinTicket(node, false, bed.BerthdEndpoint(), bed.BerthdEndpoint());
  EXPECT_EQ(twice.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(twice.status().message(), HasSubstr("a ticket admits one join"));
  // Attested nodes join as before beside it.
  EXPECT_TRUE(bed.RequestJoinTicket(other, false, bed.BerthdEndpoint(), bed.BerthdEndpoint()).ok());
}

// ---- SNS ----

const std::string kTopic = "arn:aws:sns:eu-west-1:123456789012:berth-ec2";
const std::string kInstance = "i-0123456789abcdef0";

std::string Base64(const Bytes& b) {
  std::string out(4 * ((b.size() + 2) / 3) + 1, '\0');
  int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), b.data(),
                          static_cast<int>(b.size()));
  out.resize(static_cast<size_t>(n));
  return out;
}

// An SNS Notification carrying an EventBridge EC2 state change, signed (SignatureVersion 2)
// over AWS's canonical string with `key`.
std::string SignedEc2Notification(EVP_PKEY* key, const std::string& cert_url,
                                  const std::string& message_id, const std::string& state) {
  const std::string message =
      nlohmann::json{
          {"version", "0"},        {"detail-type", "EC2 Instance State-change Notification"},
          {"source", "aws.ec2"},   {"account", "123456789012"},
          {"region", "eu-west-1"}, {"detail", {{"instance-id", kInstance}, {"state", state}}}}
          .dump();
  const std::string timestamp = Rfc3339(time(nullptr));
  const std::string text = "Message\n" + message + "\nMessageId\n" + message_id + "\nTimestamp\n" +
                           timestamp + "\nTopicArn\n" + kTopic + "\nType\nNotification\n";
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EXPECT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key), 1);
  size_t len = 0;
  EVP_DigestSign(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(text.data()),
                 text.size());
  Bytes sig(len);
  EXPECT_EQ(EVP_DigestSign(ctx.get(), sig.data(), &len,
                           reinterpret_cast<const unsigned char*>(text.data()), text.size()),
            1);
  sig.resize(len);
  return nlohmann::json{{"Type", "Notification"},   {"MessageId", message_id},
                        {"TopicArn", kTopic},       {"Message", message},
                        {"Timestamp", timestamp},   {"SignatureVersion", "2"},
                        {"Signature", Base64(sig)}, {"SigningCertURL", cert_url}}
      .dump();
}

TEST(LifecycleTest, SnsEventsPreauthorizeAnInstanceForOneJoinAndTerminationRevokesIt) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& node = bed.AddNode("w-ec2", false);
  TestNode& impostor = bed.AddNode("w-impostor", false);  // another TPM, another AK
  node.ec2_instance_id = kInstance;
  impostor.ec2_instance_id = kInstance;
  // The instance metadata service stand-in (IMDSv2, as on the instance), serving the
  // instance's document signed by a test key that the policy names as eu-west-1's.
  TestAwsSigner aws = MakeTestAwsSigner();
  const v1::Ec2InstanceIdentity identity =
      MakeEc2Identity(kInstance, "123456789012", "eu-west-1", aws);
  httplib::Server imds;
  std::atomic<int> imds_gets{0};
  imds.Put("/latest/api/token", [](const httplib::Request& req, httplib::Response& res) {
    if (req.get_header_value("X-aws-ec2-metadata-token-ttl-seconds").empty()) {
      res.status = 400;
      return;
    }
    res.set_content("imds-session-token", "text/plain");
  });
  auto serve = [&](const std::string& body) {
    return [&imds_gets, body](const httplib::Request& req, httplib::Response& res) {
      if (req.get_header_value("X-aws-ec2-metadata-token") != "imds-session-token") {
        res.status = 401;  // IMDSv2 only
        return;
      }
      ++imds_gets;
      res.set_content(body, "text/plain");
    };
  };
  imds.Get("/latest/dynamic/instance-identity/document", serve(identity.document()));
  imds.Get("/latest/dynamic/instance-identity/rsa2048", serve(Base64(ToBytes(identity.pkcs7()))));
  const int imds_port = imds.bind_to_any_port("127.0.0.1");
  std::thread imds_thread([&] { imds.listen_after_bind(); });
  node.ec2_imds_url = "http://127.0.0.1:" + std::to_string(imds_port);
  node.ec2_identity = identity;  // for the step-by-step request below
  const std::string ca = bed.dir().Join("join/ca.pem");
  // The "SNS" host that serves the signing certificate, over https with the test CA.
  auto key = GenerateRsaKey(2048);
  ASSERT_TRUE(key.ok());
  auto cert = IssueCert({.common_name = "sns.amazonaws.com"}, key->get(), nullptr, key->get());
  ASSERT_TRUE(cert.ok());
  const std::string cert_pem = *CertToPem(cert->get());
  httplib::SSLServer sns_host(bed.dir().Join("join/server.pem").c_str(),
                              bed.dir().Join("join/server.key").c_str());
  ASSERT_TRUE(sns_host.is_valid());
  sns_host.Get("/SimpleNotificationService-test.pem",
               [&](const httplib::Request&, httplib::Response& res) {
                 res.set_content(cert_pem, "application/x-pem-file");
               });
  const int host_port = sns_host.bind_to_any_port("127.0.0.1");
  std::thread host_thread([&] { sns_host.listen_after_bind(); });
  const std::string cert_url =
      "https://127.0.0.1:" + std::to_string(host_port) + "/SimpleNotificationService-test.pem";

  bed.policy_extra = Ec2AdmissionPolicyYaml("eu-west-1", aws);
  bed.berthd_flags = {"--sns-listen",
                      "127.0.0.1:0",
                      "--sns-port-file",
                      bed.dir().Join("sns.port"),
                      "--sns-topic-arn",
                      kTopic,
                      "--sns-cert-host-pattern",
                      "127\\.0\\.0\\.1:[0-9]+",
                      "--sns-signing-cert-sha256",
                      HexEncode(Sha256(*CertToDer(cert->get()))),
                      "--sns-fetch-ca",
                      ca};
  const bool started = bed.StartBerthd();
  const int sns_port = WaitForPortFile(bed.dir().Join("sns.port"), std::chrono::seconds(5));
  auto post = [&](const std::string& body) {
    httplib::SSLClient client("127.0.0.1", sns_port);
    client.set_ca_cert_path(ca.c_str());
    client.enable_server_certificate_verification(true);
    return client.Post("/", {{"x-amz-sns-message-type", "Notification"}}, body, "text/plain");
  };
  if (started && sns_port > 0) {
    const std::string ep = bed.BerthdEndpoint();
    // Booted before its "running" event: told to wait.
    auto early = bed.RequestJoinTicket(node, false, ep, ep);
    EXPECT_EQ(early.status().code(), Code::kUnavailable) << early.status().ToString();

    const std::string running = SignedEc2Notification(key->get(), cert_url, "msg-1", "running");
    auto r = post(running);
    ASSERT_TRUE(r) << httplib::to_string(r.error());
    EXPECT_EQ(r->status, 200) << r->body;
    EXPECT_THAT(r->body, HasSubstr("instance " + kInstance + " pre-authorized for one join"));
    auto replay = post(running);
    ASSERT_TRUE(replay);
    EXPECT_EQ(replay->status, 409) << replay->body;
    std::string forged = running;
    forged.replace(forged.find("running"), 7, "RUNNING");  // altered after signing
    auto bad = post(forged);
    ASSERT_TRUE(bad);
    EXPECT_EQ(bad->status, 403) << bad->body;

    // Issue 22, section 3: another attested machine claiming the instance (as a flag or a
    // DMI tag would) without its identity document is refused, and the real instance then
    // joins with the document its agent read from the metadata service.
    auto claim_only = bed.RequestJoinTicket(impostor, false, ep, ep);
    EXPECT_EQ(claim_only.status().code(), Code::kPermissionDenied);
    EXPECT_THAT(claim_only.status().message(),
                HasSubstr("node w-impostor claims EC2 instance " + kInstance +
                          " without its signed instance identity document"));
    EXPECT_FALSE(Record(bed, "w-impostor").has_value());

    AgentOutcome boot = bed.RunAgent(node, false, {ep});
    ASSERT_TRUE(boot.status.ok()) << boot.status.ToString() << "\n" << MustRead(bed.BerthdLog());
    EXPECT_EQ(Record(bed, "w-ec2")->ec2_instance_id(), kInstance);
    EXPECT_EQ(imds_gets.load(), 2);  // the document and its signature, with an IMDSv2 token
    EXPECT_TRUE(LogHas(bed, "ec2_instance=" + kInstance + " ec2_event=msg-1 "
                            "ec2_account=123456789012 ec2_region=eu-west-1"));
    // The document is replayable, the pre-authorization is not: the impostor with a copy of
    // it gets nothing.
    impostor.ec2_identity = identity;
    auto replayed = bed.RequestJoinTicket(impostor, false, ep, ep);
    EXPECT_EQ(replayed.status().code(), Code::kPermissionDenied);
    EXPECT_THAT(replayed.status().message(),
                HasSubstr("the pre-authorization of EC2 instance " + kInstance + " was used at"));

    auto gone = post(SignedEc2Notification(key->get(), cert_url, "msg-2", "terminated"));
    ASSERT_TRUE(gone);
    EXPECT_EQ(gone->status, 200) << gone->body;
    EXPECT_EQ(gone->body, "instance " + kInstance + " terminated; revoked: w-ec2\n");
    EXPECT_EQ(Record(bed, "w-ec2")->state(), v1::NODE_STATE_REVOKED);
    EXPECT_EQ(bed.RequestRejoinTicket(node, ep).status().code(), Code::kPermissionDenied);
    EXPECT_EQ(Metric(bed.metrics_port(),
                     "berth_ec2_events_total{state=\"terminated\",action=\"revoked\"}"),
              1);
  } else {
    ADD_FAILURE() << "berthd with --sns-listen did not start:\n" << MustRead(bed.BerthdLog());
  }
  sns_host.stop();
  host_thread.join();
  imds.stop();
  imds_thread.join();
}

}  // namespace
}  // namespace berth::testing
