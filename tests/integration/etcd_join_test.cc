// Control planes joining etcd, with real etcd processes (a 3-member TLS cluster on loopback),
// berthd processes keeping node records in it, the agent in-process starting real etcd
// members from the PKI and environment it wrote, and berthctl against AdminService.
#include "agent/etcd_join.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <thread>

#include "agent/bootstrap.h"
#include "agent/control_plane_keys.h"
#include "agent/hw/disk.h"
#include "cli/operator_client.h"
#include "cli/recovery_shares.h"
#include "common/cluster_keys.h"
#include "common/etcd_pki.h"
#include "common/recovery.h"
#include "server/nodes/store.h"
#include "tests/integration/etcd_testbed.h"

namespace berth::testing {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::StartsWith;
using ::testing::UnorderedElementsAre;
using ::testing::UnorderedElementsAreArray;

// Members at `peer_url` (exactly one is expected whenever a node joined).
std::vector<etcdserverpb::Member> MembersAt(EtcdTestbed& bed, const std::string& peer_url) {
  std::vector<etcdserverpb::Member> out;
  auto list = bed.etcd().Members();
  EXPECT_TRUE(list.ok()) << list.status().ToString();
  if (!list.ok()) return out;
  for (const auto& m : list->members()) {
    for (const auto& u : m.peerurls()) {
      if (u == peer_url) out.push_back(m);
    }
  }
  return out;
}

int MemberCount(EtcdTestbed& bed) {
  auto list = bed.etcd().Members();
  return list.ok() ? list->members_size() : -1;
}

bool IsVoter(EtcdTestbed& bed, const std::string& peer_url) {
  auto m = MembersAt(bed, peer_url);
  return m.size() == 1 && !m[0].islearner();
}

// A direct ticket request, retried while berthd says UNAVAILABLE (etcd refuses to reconfigure
// until its members have been connected for 5 s), as the agent would.
Result<v1::JoinTicket> RequestUntilAnswered(EtcdTestbed& bed, TestNode& node, bool control_plane,
                                            agent::EtcdKeys* keys) {
  const std::string ep = bed.BerthdEndpoint();
  Result<v1::JoinTicket> t = Unavailable("not asked");
  WaitFor(
      [&] {
        t = bed.RequestJoinTicket(node, control_plane, ep, ep, keys);
        if (t.ok() || !IsRetryable(t.status())) return true;
        std::this_thread::sleep_for(std::chrono::milliseconds(300));
        return false;
      },
      std::chrono::seconds(40));
  return t;
}

// Every node record's certificates are in the issued-certificate log and vice versa; every
// record in state joined with a peer URL is a voting member there. (Nothing half-written.)
void ExpectRecordsConsistent(EtcdTestbed& bed) {
  auto client = bed.etcd().NewClient();
  server::NodeStore store(client.get());
  auto nodes = store.List();
  auto issued = store.ListIssued();
  ASSERT_TRUE(nodes.ok() && issued.ok());
  std::vector<std::string> record_serials, log_serials;
  for (const auto& n : *nodes) {
    for (const auto& s : n.record.etcd_cert_serials()) record_serials.push_back(s);
    if (n.record.state() == v1::NODE_STATE_JOINED && !n.record.etcd_peer_url().empty()) {
      auto m = MembersAt(bed, n.record.etcd_peer_url());
      ASSERT_EQ(m.size(), 1u) << n.record.name();
      EXPECT_FALSE(m[0].islearner()) << n.record.name();
      EXPECT_EQ(m[0].id(), n.record.etcd_member_id()) << n.record.name();
    }
  }
  for (const auto& c : *issued) log_serials.push_back(c.serial());
  EXPECT_THAT(log_serials, UnorderedElementsAreArray(record_serials));
}

// The promotion loop records a node as joined just after it promoted it; the node's agent may
// see itself a voter a moment before that.
bool WaitForRecordState(EtcdTestbed& bed, const std::string& name, v1::NodeState state) {
  auto client = bed.etcd().NewClient();
  server::NodeStore store(client.get());
  return WaitFor(
      [&] {
        auto r = store.Get(name);
        return r.ok() && r->has_value() && (*r)->record.state() == state;
      },
      std::chrono::seconds(30));
}

std::string FileSerial(const std::string& path) {
  auto cert = CertFromPem(MustRead(path));
  EXPECT_TRUE(cert.ok()) << path;
  return cert.ok() ? SerialHex(cert->get()) : "";
}

std::string Upper(std::string s) {
  for (char& c : s) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return s;
}

TEST(EtcdJoinTest, TwoControlPlanesJoinOneAfterTheOtherAndBothEndAsVoters) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& cp1 = bed.AddNode("cp-1", /*control_plane=*/true);
  TestNode& cp2 = bed.AddNode("cp-2", true);
  ASSERT_TRUE(bed.StartBerthd());
  HealthWatch health(bed.etcd());

  AgentOutcome first = bed.RunAgent(cp1, true, {bed.BerthdEndpoint()});
  ASSERT_TRUE(first.status.ok()) << first.status.ToString() << "\n" << MustRead(bed.BerthdLog());
  EXPECT_EQ(MemberCount(bed), 4);
  ASSERT_TRUE(IsVoter(bed, cp1.PeerUrl()));
  EXPECT_EQ(MembersAt(bed, cp1.PeerUrl())[0].name(), "cp-1");

  AgentOutcome second = bed.RunAgent(cp2, true, {bed.BerthdEndpoint()});
  ASSERT_TRUE(second.status.ok()) << second.status.ToString() << "\n" << MustRead(bed.BerthdLog());
  EXPECT_EQ(MemberCount(bed), 5);
  EXPECT_TRUE(IsVoter(bed, cp1.PeerUrl()));
  EXPECT_TRUE(IsVoter(bed, cp2.PeerUrl()));
  EXPECT_TRUE(bed.etcd().Healthy());
  std::vector<std::string> failures = health.Stop();
  EXPECT_THAT(failures, IsEmpty());
  EXPECT_GT(health.polls(), 20);

  for (TestNode* n : {&cp1, &cp2}) {
    SCOPED_TRACE(n->name);
    // kubeadm's layout, keys 0600, made on the node: the key matches the certificate.
    const std::string pki = n->Path("/etc/kubernetes/pki/etcd");
    for (const char* f :
         {"ca.crt", "server.crt", "server.key", "peer.crt", "peer.key", "crl.der"}) {
      EXPECT_TRUE(std::filesystem::exists(pki + "/" + f)) << f;
    }
    EXPECT_FALSE(std::filesystem::exists(pki + "/ca.key"));
    EXPECT_EQ(std::filesystem::status(pki + "/server.key").permissions(),
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    EXPECT_EQ(std::filesystem::status(pki + "/peer.key").permissions(),
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    auto cert = CertFromPem(MustRead(pki + "/peer.crt"));
    auto key = PrivateKeyFromPem(MustRead(pki + "/peer.key"));
    ASSERT_TRUE(cert.ok() && key.ok());
    EXPECT_EQ(EVP_PKEY_eq(X509_get0_pubkey(cert->get()), key->get()), 1);
    std::string env = MustRead(n->Path(agent::kEtcdEnvPath));
    EXPECT_THAT(env, HasSubstr("ETCD_INITIAL_CLUSTER_STATE=existing\n"));
    EXPECT_THAT(env, HasSubstr("ETCD_NAME=" + n->name + "\n"));
    // The progress record: PKI written, joined.
    auto progress =
        nlohmann::json::parse(MustRead(n->Path("/var/lib/berth/state/.berth/progress.json")));
    EXPECT_EQ(progress["pki_written"], true);
    EXPECT_EQ(progress["joined"], true);
  }
  // The second node's initial cluster listed the first one.
  EXPECT_THAT(MustRead(cp2.Path(agent::kEtcdEnvPath)), HasSubstr("cp-1=" + cp1.PeerUrl()));
  // cp-1 watched itself go from learner to voter.
  EXPECT_THAT(first.notifications, Contains("STATUS=etcd: voting member"));
  EXPECT_THAT(first.notifications, Contains("READY=1"));

  // kubeadm joined each as a control plane, without its own etcd phase. The stand-in's
  // records: see etcd_testbed.h for why control planes do not run the real kubeadm yet.
  auto kubeadm = bed.KubeadmJoins();
  ASSERT_EQ(kubeadm.size(), 2u);
  for (const auto& k : kubeadm) {
    EXPECT_EQ(k["ok"], true) << k.dump();
    EXPECT_EQ(k["config"][0]["controlPlane"]["localAPIEndpoint"]["advertiseAddress"], "127.0.0.1");
    EXPECT_EQ(k["config"][0]["skipPhases"], nlohmann::json::array({"etcd-join"}));
  }

  // The records, as an operator sees them.
  EXPECT_TRUE(WaitForRecordState(bed, "cp-1", v1::NODE_STATE_JOINED));
  EXPECT_TRUE(WaitForRecordState(bed, "cp-2", v1::NODE_STATE_JOINED));
  auto list = bed.ListNodes();
  ASSERT_EQ(list["nodes"].size(), 2u);
  for (const auto& n : list["nodes"]) {
    TestNode& node = n["name"] == "cp-1" ? cp1 : cp2;
    EXPECT_EQ(n["state"], "NODE_STATE_JOINED");
    EXPECT_EQ(n["role"], "NODE_ROLE_CONTROL_PLANE");
    EXPECT_EQ(n["ak_sha256"], node.ak_sha256);
    EXPECT_EQ(n["disk_uuid"], node.disk.uuid);
    EXPECT_EQ(n["etcd_peer_url"], node.PeerUrl());
    EXPECT_EQ(n["role_authorization"],
              "policy roles.control_plane[" + std::string(node.name == "cp-1" ? "0" : "1") + "]");
    EXPECT_THAT(n["etcd_cert_serials"].get<std::vector<std::string>>(),
                UnorderedElementsAre(FileSerial(node.Path("/etc/kubernetes/pki/etcd/server.crt")),
                                     FileSerial(node.Path("/etc/kubernetes/pki/etcd/peer.crt"))));
  }
  ExpectRecordsConsistent(bed);

  // cp-1 reboots: its etcd is down until the agent, rejoining, starts it from its state disk.
  bed.etcd().StopExtra("cp-1");
  AgentOutcome reboot = bed.RunAgent(cp1, true, {bed.BerthdEndpoint()});
  ASSERT_TRUE(reboot.status.ok()) << reboot.status.ToString();
  EXPECT_TRUE(bed.NodeEtcdRunning("cp-1"));
  EXPECT_TRUE(IsVoter(bed, cp1.PeerUrl()));
  EXPECT_EQ(MemberCount(bed), 5);
  EXPECT_THAT(reboot.notifications, Contains("STATUS=etcd: voting member"));
  EXPECT_EQ(bed.KubeadmJoins().size(), 2u);  // no second kubeadm join
  EXPECT_TRUE(bed.ListNodes()["nodes"][0].contains("last_rejoin_unix"));
}

TEST(EtcdJoinTest, SecondLearnerWaitsAndARetriedJoinAddsNoSecondMember) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& cp1 = bed.AddNode("cp-1", true);
  TestNode& cp2 = bed.AddNode("cp-2", true);
  ASSERT_TRUE(bed.StartBerthd());

  // cp-1 is admitted as a learner; its etcd has not started yet.
  auto keys = agent::MakeEtcdKeys("cp-1");
  ASSERT_TRUE(keys.ok());
  auto ticket = RequestUntilAnswered(bed, cp1, true, &*keys);
  ASSERT_TRUE(ticket.ok()) << ticket.status().ToString() << "\n" << MustRead(bed.BerthdLog());
  const uint64_t member = ticket->etcd().member_id();
  ASSERT_EQ(MembersAt(bed, cp1.PeerUrl()).size(), 1u);
  EXPECT_TRUE(MembersAt(bed, cp1.PeerUrl())[0].islearner());

  // The reply is lost; cp-1 asks again (new challenge, new keys): the same member.
  auto keys_again = agent::MakeEtcdKeys("cp-1");
  auto again =
      bed.RequestJoinTicket(cp1, true, bed.BerthdEndpoint(), bed.BerthdEndpoint(), &*keys_again);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->etcd().member_id(), member);
  EXPECT_EQ(MemberCount(bed), 4);

  // cp-2 boots meanwhile: berthd tells it to wait, and its agent retries.
  AgentOutcome second;
  std::thread agent2([&] { second = bed.RunAgent(cp2, true, {bed.BerthdEndpoint()}); });
  bool told_to_wait = WaitFor(
      [&] {
        std::string log = MustRead(bed.BerthdLog());
        return log.find("decision=refused node=cp-2") != std::string::npos &&
               log.find("code=UNAVAILABLE reason=\"another control plane is joining: etcd member " +
                        etcd::MemberIdHex(member)) != std::string::npos;
      },
      std::chrono::seconds(60));
  EXPECT_TRUE(told_to_wait) << MustRead(bed.BerthdLog());
  EXPECT_EQ(MemberCount(bed), 4);
  EXPECT_TRUE(MembersAt(bed, cp2.PeerUrl()).empty());

  // cp-1 starts its etcd from the ticket it did receive; once promoted, cp-2 gets in.
  ASSERT_TRUE(bed.StartNodeEtcd(cp1, *again, *keys_again));
  agent2.join();
  ASSERT_TRUE(second.status.ok()) << second.status.ToString() << "\n" << MustRead(bed.BerthdLog());
  EXPECT_THAT(second.notifications, Contains(AllOf(HasSubstr("waiting for berthd (UNAVAILABLE"),
                                                   HasSubstr(bed.BerthdEndpoint()))));
  EXPECT_EQ(MemberCount(bed), 5);
  ASSERT_EQ(MembersAt(bed, cp1.PeerUrl()).size(), 1u);
  EXPECT_EQ(MembersAt(bed, cp1.PeerUrl())[0].id(), member);
  EXPECT_TRUE(IsVoter(bed, cp1.PeerUrl()));
  EXPECT_TRUE(IsVoter(bed, cp2.PeerUrl()));
  EXPECT_TRUE(WaitForRecordState(bed, "cp-2", v1::NODE_STATE_JOINED));
  auto list = bed.ListNodes();
  for (const auto& n : list["nodes"]) {
    EXPECT_EQ(n["state"], "NODE_STATE_JOINED") << n.dump();
    if (n["name"] == "cp-1") {
      EXPECT_EQ(n["joins"], 2) << n.dump();
    }
  }
  ExpectRecordsConsistent(bed);
}

TEST(EtcdJoinTest, MemberStoppedDuringJoinsRetriesCleanlyOrCompletes) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& cp1 = bed.AddNode("cp-1", true);
  TestNode& cp2 = bed.AddNode("cp-2", true);
  ASSERT_TRUE(bed.StartBerthd());

  // A member is down when cp-1 joins: etcd refuses to change membership ("unhealthy cluster"),
  // berthd answers UNAVAILABLE with nothing written, and the agent retries.
  bed.etcd().Stop(0);  // berthd's first endpoint, too
  AgentOutcome first;
  std::thread agent1([&] { first = bed.RunAgent(cp1, true, {bed.BerthdEndpoint()}); });
  bool refused = WaitFor(
      [&] {
        std::string log = MustRead(bed.BerthdLog());
        return log.find("decision=refused node=cp-1") != std::string::npos &&
               log.find("unhealthy cluster") != std::string::npos;
      },
      std::chrono::seconds(60));
  EXPECT_TRUE(refused) << MustRead(bed.BerthdLog());
  auto client = bed.etcd().NewClient();
  server::NodeStore store(client.get());
  EXPECT_FALSE(store.Get("cp-1")->has_value());
  EXPECT_TRUE(store.ListIssued()->empty());
  EXPECT_EQ(MemberCount(bed), 3);
  ASSERT_TRUE(bed.etcd().Restart(0));
  agent1.join();
  ASSERT_TRUE(first.status.ok()) << first.status.ToString() << "\n" << MustRead(bed.BerthdLog());
  EXPECT_TRUE(IsVoter(bed, cp1.PeerUrl()));

  // A member stops after cp-2 became a learner: the rest are a quorum, so the join completes.
  auto keys = agent::MakeEtcdKeys("cp-2");
  auto ticket = RequestUntilAnswered(bed, cp2, true, &*keys);
  ASSERT_TRUE(ticket.ok()) << ticket.status().ToString();
  bed.etcd().Stop(2);
  ASSERT_TRUE(bed.StartNodeEtcd(cp2, *ticket, *keys));
  EXPECT_TRUE(WaitFor([&] { return IsVoter(bed, cp2.PeerUrl()); }, std::chrono::seconds(60)))
      << MustRead(bed.BerthdLog());
  EXPECT_TRUE(WaitForRecordState(bed, "cp-2", v1::NODE_STATE_JOINED));
  ASSERT_TRUE(bed.etcd().Restart(2));
  EXPECT_TRUE(bed.etcd().WaitHealthy(std::chrono::seconds(30)));
  EXPECT_EQ(MemberCount(bed), 5);
  ExpectRecordsConsistent(bed);
}

TEST(EtcdJoinTest, RevokedNodeIsRefusedItsMemberGoneItsCertificatesOnTheCrlItsTokenDeleted) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& cp1 = bed.AddNode("cp-1", true);
  ASSERT_TRUE(bed.StartBerthd());
  AgentOutcome joined = bed.RunAgent(cp1, true, {bed.BerthdEndpoint()});
  ASSERT_TRUE(joined.status.ok()) << joined.status.ToString() << "\n" << MustRead(bed.BerthdLog());
  const uint64_t member = MembersAt(bed, cp1.PeerUrl()).at(0).id();
  const std::string server_serial = FileSerial(cp1.Path("/etc/kubernetes/pki/etcd/server.crt"));
  const std::string peer_serial = FileSerial(cp1.Path("/etc/kubernetes/pki/etcd/peer.crt"));
  auto created = bed.TokenSecrets();
  ASSERT_EQ(created.size(), 1u);
  const std::string token_secret = created[0]["metadata"]["name"];
  EXPECT_EQ(created[0]["metadata"]["labels"]["berth.dev/node"], "cp-1");

  ProcessResult revoked = bed.Berthctl({"nodes", "revoke", "cp-1"});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.output << MustRead(bed.BerthdLog());
  EXPECT_THAT(revoked.output, HasSubstr("revoked cp-1 at "));
  EXPECT_THAT(revoked.output, HasSubstr("etcd member removed: " + etcd::MemberIdHex(member)));
  EXPECT_THAT(revoked.output, HasSubstr("bootstrap token deleted: " + token_secret));
  EXPECT_THAT(revoked.output, HasSubstr("certificate on the CRL: " + server_serial));
  EXPECT_THAT(revoked.output, HasSubstr("certificate on the CRL: " + peer_serial));
  EXPECT_THAT(MustRead(bed.BerthdLog()),
              HasSubstr("audit call=RevokeNode decision=done operator=\"CN=alice\" node=cp-1"));

  // Its member is gone, and etcd stopped the removed member by itself.
  EXPECT_TRUE(MembersAt(bed, cp1.PeerUrl()).empty());
  EXPECT_EQ(MemberCount(bed), 3);
  EXPECT_TRUE(WaitFor([&] { return !bed.NodeEtcdRunning("cp-1"); }, std::chrono::seconds(30)));
  EXPECT_TRUE(bed.etcd().Healthy());

  // Its certificates are on the CRL, signed by the etcd CA; openssl refuses them with it.
  const std::string crl = bed.dir().Join("crl.pem");
  ProcessResult got = bed.Berthctl({"nodes", "crl", "--out", crl});
  ASSERT_EQ(got.exit_code, 0) << got.output;
  auto text = RealProcessRunner().Run(
      {"/usr/bin/openssl", "crl", "-in", crl, "-noout", "-text", "-CAfile", bed.etcd().ca_cert()});
  ASSERT_TRUE(text.ok());
  EXPECT_THAT(text->output, HasSubstr("verify OK"));
  EXPECT_THAT(text->output, HasSubstr("Serial Number: " + Upper(server_serial)));
  EXPECT_THAT(text->output, HasSubstr("Serial Number: " + Upper(peer_serial)));
  auto verify = RealProcessRunner().Run({"/usr/bin/openssl", "verify", "-crl_check", "-CAfile",
                                         bed.etcd().ca_cert(), "-CRLfile", crl,
                                         cp1.Path("/etc/kubernetes/pki/etcd/peer.crt")});
  ASSERT_TRUE(verify.ok());
  EXPECT_THAT(verify->output, HasSubstr("certificate revoked"));

  // Its bootstrap token is deleted from the API server.
  EXPECT_TRUE(bed.TokenSecrets().empty());
  ProcessResult gone = bed.kube()->Kubectl({"-n", "kube-system", "get", "secret", token_secret});
  EXPECT_THAT(gone.output, HasSubstr("secrets \"" + token_secret + "\" not found"));

  auto list = bed.ListNodes();
  ASSERT_EQ(list["nodes"].size(), 1u);
  EXPECT_EQ(list["nodes"][0]["state"], "NODE_STATE_REVOKED");
  EXPECT_EQ(list["nodes"][0]["revoked_by"], "CN=alice");

  // It reboots: the rejoin is refused, and so is a fresh join. No member, no token.
  AgentOutcome reboot = bed.RunAgent(cp1, true, {bed.BerthdEndpoint()});
  EXPECT_EQ(reboot.status.code(), Code::kPermissionDenied) << reboot.status.ToString();
  EXPECT_THAT(reboot.status.message(), HasSubstr("node cp-1 was revoked at "));
  EXPECT_THAT(reboot.notifications, Not(Contains("READY=1")));
  auto fresh = bed.RequestJoinTicket(cp1, true, bed.BerthdEndpoint(), bed.BerthdEndpoint());
  EXPECT_EQ(fresh.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(MemberCount(bed), 3);
  EXPECT_TRUE(bed.TokenSecrets().empty());
  // Revoking again is harmless (idempotent).
  EXPECT_EQ(bed.Berthctl({"nodes", "revoke", "cp-1"}).exit_code, 0);
  EXPECT_EQ(bed.Berthctl({"nodes", "revoke", "nobody"}).exit_code, 1);
}

TEST(EtcdJoinTest, TwoReplicasAnswerTheSameAndWorkerJoinsAreRecorded) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& w1 = bed.AddNode("worker-1", false);
  TestNode& w2 = bed.AddNode("worker-2", false);
  ASSERT_TRUE(bed.StartBerthd(0));
  ASSERT_TRUE(bed.StartBerthd(1));

  // Challenged by replica 0, answered by replica 1.
  auto ticket = bed.RequestJoinTicket(w1, false, bed.BerthdEndpoint(0), bed.BerthdEndpoint(1));
  ASSERT_TRUE(ticket.ok()) << ticket.status().ToString() << "\n" << MustRead(bed.BerthdLog(1));
  EXPECT_EQ(ticket->disk_key().size(), 32u);
  EXPECT_FALSE(ticket->has_etcd());
  EXPECT_THAT(MustRead(bed.BerthdLog(1)),
              HasSubstr("audit call=IssueJoinTicket decision=granted node=worker-1"));
  // Either replica sees the same record.
  auto from0 = bed.ListNodes(0), from1 = bed.ListNodes(1);
  EXPECT_EQ(from0, from1);
  ASSERT_EQ(from0["nodes"].size(), 1u);
  EXPECT_EQ(from0["nodes"][0]["name"], "worker-1");
  EXPECT_EQ(from0["nodes"][0]["state"], "NODE_STATE_JOINED");
  EXPECT_EQ(from0["nodes"][0]["ak_sha256"], w1.ak_sha256);
  // A rejoin at the other replica gets the same disk key.
  auto rejoin = bed.RequestRejoinTicket(w1, bed.BerthdEndpoint(0));
  ASSERT_TRUE(rejoin.ok()) << rejoin.status().ToString();
  EXPECT_EQ(rejoin->disk_key(), ticket->disk_key());

  // Issue 22, section 6: the same request replayed over the same TLS key (as whoever holds
  // the agent's key could, its first quote made before PCR 15 sealed the boot) is refused by
  // both replicas, the other one through the nonce recorded with the grant in etcd.
  auto prepared = bed.PrepareRejoin(w1, bed.BerthdEndpoint(0));
  ASSERT_TRUE(prepared.ok()) << prepared.status().ToString();
  ASSERT_TRUE(bed.SendRejoin(*prepared, bed.BerthdEndpoint(0)).ok());
  for (int replica : {1, 0}) {
    auto replayed = bed.SendRejoin(*prepared, bed.BerthdEndpoint(replica));
    EXPECT_EQ(replayed.status().code(), Code::kPermissionDenied) << replica;
    EXPECT_THAT(replayed.status().message(), HasSubstr("nonce was already used")) << replica;
  }

  // The whole agent on replica 1, then a reboot on replica 0: both recorded.
  AgentOutcome boot = bed.RunAgent(w2, false, {bed.BerthdEndpoint(1)});
  ASSERT_TRUE(boot.status.ok()) << boot.status.ToString();
  AgentOutcome reboot = bed.RunAgent(w2, false, {bed.BerthdEndpoint(0)});
  ASSERT_TRUE(reboot.status.ok()) << reboot.status.ToString();
  auto list = bed.ListNodes(1);
  ASSERT_EQ(list["nodes"].size(), 2u);
  const auto& rec = list["nodes"][1];
  EXPECT_EQ(rec["name"], "worker-2");
  EXPECT_EQ(rec["state"], "NODE_STATE_JOINED");
  EXPECT_EQ(rec["disk_uuid"], w2.disk.uuid);
  EXPECT_EQ(rec["ak_sha256"], w2.ak_sha256);
  EXPECT_TRUE(rec.contains("last_rejoin_unix")) << rec.dump();

  // Revoked through one replica, refused by the other.
  ASSERT_EQ(bed.Berthctl({"nodes", "revoke", "worker-1"}, 1).exit_code, 0);
  auto refused = bed.RequestRejoinTicket(w1, bed.BerthdEndpoint(0));
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(refused.status().message(), HasSubstr("node worker-1 was revoked"));
  EXPECT_EQ(MemberCount(bed), 3);
}

// Another node, whose AK the policy trusts too, asks for a rejoin ticket under a joined node's
// name and disk: its record binds the name to the first node's AK, so berthd refuses, naming
// both keys, and hands out no disk key; the node itself still rejoins (issue 22, section 5).
TEST(EtcdJoinTest, ARejoinUnderAnotherNodesNameIsRefusedNamingTheRecordedKey) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& w1 = bed.AddNode("worker-1", false);
  TestNode& w2 = bed.AddNode("worker-2", false);
  ASSERT_TRUE(bed.StartBerthd(0));
  auto ticket = bed.RequestJoinTicket(w1, false, bed.BerthdEndpoint(0), bed.BerthdEndpoint(0));
  ASSERT_TRUE(ticket.ok()) << ticket.status().ToString() << "\n" << MustRead(bed.BerthdLog(0));

  // worker-2's TPM and evidence, claiming worker-1's name and disk.
  const std::string own_name = w2.name;
  const FakeDiskState own_disk = w2.disk;
  w2.name = w1.name;
  w2.disk = w1.disk;
  auto stolen = bed.RequestRejoinTicket(w2, bed.BerthdEndpoint(0));
  w2.name = own_name;
  w2.disk = own_disk;
  ASSERT_FALSE(stolen.ok());
  EXPECT_EQ(stolen.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(stolen.status().message(),
            "IssueRejoinTicket at " + bed.BerthdEndpoint(0) +
                ": node name worker-1 is recorded with attestation key sha256:" +
                w1.ak_sha256.substr(0, 16) + "..., not this node's sha256:" +
                w2.ak_sha256.substr(0, 16) + "...");
  EXPECT_THAT(MustRead(bed.BerthdLog(0)),
              HasSubstr("audit call=IssueRejoinTicket decision=refused node=worker-1"));
  // The record is unchanged: still worker-1's key.
  auto list = bed.ListNodes(0);
  ASSERT_EQ(list["nodes"].size(), 1u);
  EXPECT_EQ(list["nodes"][0]["ak_sha256"], w1.ak_sha256);

  auto own = bed.RequestRejoinTicket(w1, bed.BerthdEndpoint(0));
  ASSERT_TRUE(own.ok()) << own.status().ToString();
  EXPECT_EQ(own->disk_key(), ticket->disk_key());
}

TEST(EtcdJoinTest, ControlPlaneNotAuthorizedIsPermissionDeniedUntilAnOperatorAuthorizesIt) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& node = bed.AddNode("cp-x", /*control_plane=*/false);  // trusted, but a worker
  ASSERT_TRUE(bed.StartBerthd());

  AgentOutcome out = bed.RunAgent(node, /*control_plane=*/true, {bed.BerthdEndpoint()});
  EXPECT_EQ(out.status.code(), Code::kPermissionDenied) << out.status.ToString();
  EXPECT_THAT(out.status.message(), HasSubstr("is not authorized to be a control plane"));
  std::string log = MustRead(bed.BerthdLog());
  EXPECT_THAT(log, HasSubstr("decision=refused node=cp-x"));
  EXPECT_EQ(MemberCount(bed), 3);
  EXPECT_TRUE(bed.TokenSecrets().empty());  // no token
  EXPECT_FALSE(std::filesystem::exists(node.Path("/etc/kubernetes/pki")));
  EXPECT_TRUE(bed.ListNodes()["nodes"].is_null());
  EXPECT_EQ(node.disk.kind, agent::ProbeResult::Kind::kBlank);  // the disk was not touched

  // An operator authorizes it, pinned to its attestation key: it is admitted as a learner.
  ProcessResult granted = bed.Berthctl(
      {"nodes", "authorize", "cp-x", "--role", "control-plane", "--ak-sha256", node.ak_sha256});
  ASSERT_EQ(granted.exit_code, 0) << granted.Describe() << ": " << granted.output;
  auto keys = agent::MakeEtcdKeys("cp-x");
  auto ticket = RequestUntilAnswered(bed, node, true, &*keys);
  ASSERT_TRUE(ticket.ok()) << ticket.status().ToString();
  EXPECT_EQ(MembersAt(bed, node.PeerUrl()).size(), 1u);
  auto list = bed.ListNodes();
  EXPECT_EQ(list["authorizations"][0]["authorized_by"], "CN=alice");
  EXPECT_THAT(std::string(list["nodes"][0]["role_authorization"]),
              HasSubstr("operator CN=alice at "));
}

// A control plane whose image runs the Kubernetes control plane as units needs the cluster's
// keys to make its API server's certificates: a ticket from a berthd that shares none (no
// --control-plane-pki) is refused before the disk is formatted, and nothing starts.
TEST(EtcdJoinTest, AControlPlaneThatRunsItsOwnApiServerRefusesATicketWithoutTheClusterKeys) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& cp = bed.AddNode("cp-1", /*control_plane=*/true);
  cp.disk.image = cp.Path("/state.img");
  cp.control_plane_units = true;
  ASSERT_TRUE(bed.StartBerthd());
  AgentOutcome refused = bed.RunAgent(cp, true, {bed.BerthdEndpoint()});
  EXPECT_EQ(refused.status.code(), Code::kFailedPrecondition) << refused.status.ToString();
  EXPECT_THAT(refused.status.message(),
              HasSubstr("this control plane runs the Kubernetes control plane itself, but "
                        "berthd shared no cluster keys with it (berthd --control-plane-pki)"));
  EXPECT_FALSE(std::filesystem::exists(cp.disk.image));
  EXPECT_FALSE(bed.NodeEtcdRunning("cp-1"));
  EXPECT_FALSE(bed.ServiceRunning(cp, "kube-apiserver"));
  EXPECT_TRUE(bed.KubeadmJoins().empty());
  EXPECT_THAT(refused.notifications, Not(Contains("READY=1")));
}

// Issue 26, cold start: every berthd down (all control planes restarting at once). A control
// plane opens its state disk with the key its own TPM releases for a boot the cluster signed,
// starts its etcd and is ready without berthd; a tampered boot gets nothing from its TPM, waits
// for berthd, and its disk is left as it was. The LUKS2 header is real (an image file); the
// TPM is the node's swtpm.
TEST(EtcdJoinTest, WithEveryBerthdDownAControlPlaneOpensItsDiskByColdStartButATamperedBootCannot) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& cp = bed.AddNode("cp-1", /*control_plane=*/true);
  cp.disk.image = cp.Path("/state.img");
  // berthd shares kubeadm's CA keys, and its master secret, with control planes it admits.
  const std::string pki = bed.dir().Join("kubeadm-pki");
  ASSERT_TRUE(MakeDirs(pki).ok());
  for (const auto& f : kSharedPkiFiles) {
    MustWrite(pki + "/" + std::string(f.name), "PEM of " + std::string(f.name), 0600);
  }
  bed.berthd_flags = {"--control-plane-pki", pki};
  ASSERT_TRUE(bed.StartBerthd());

  AgentOutcome joined = bed.RunAgent(cp, true, {bed.BerthdEndpoint()});
  ASSERT_TRUE(joined.status.ok()) << joined.status.ToString() << "\n" << MustRead(bed.BerthdLog());
  // berthd signed the policy's cold-start PCRs (the default, 0-7; not the quoted 8, 9, 14
  // or 15) and said so in its audit line.
  EXPECT_THAT(MustRead(bed.BerthdLog()), HasSubstr("role=control-plane ak=sha256:" + cp.ak_sha256));
  EXPECT_THAT(MustRead(bed.BerthdLog()), HasSubstr(R"(cold_start="sha256:0,1,2,3,4,5,6,7")"));
  auto keyslots = agent::MakeLibLuksKeyslots();
  auto tokens = keyslots->Tokens(cp.disk.image, agent::kColdStartToken);
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  ASSERT_EQ(tokens->size(), 1u);
  auto token = nlohmann::json::parse((*tokens)[0].json);
  ASSERT_EQ(token["policies"].size(), 1u);
  EXPECT_EQ(token["policies"][0]["pcrs"], nlohmann::json::array({0, 1, 2, 3, 4, 5, 6, 7}));
  // The cluster keys: kubeadm's files where its control-plane join reads them, the master
  // secret on the state disk, all with exactly berthd's bytes.
  EXPECT_THAT(MustRead(bed.BerthdLog()), HasSubstr(" cluster_keys=shared "));
  for (const auto& f : kSharedPkiFiles) {
    EXPECT_EQ(MustRead(cp.Path("/etc/kubernetes/pki/" + std::string(f.name))),
              "PEM of " + std::string(f.name));
  }
  EXPECT_EQ(MustRead(cp.Path("/var/lib/berth/state/berthd/master.secret")),
            MustRead(bed.dir().Join("master.secret")));

  // Power loss: berthd is gone, the node boots the same boot again.
  bed.KillBerthd();
  bed.etcd().StopExtra("cp-1");
  cp.agent_attempts = 2;  // were it to wait for berthd, it would give up soon
  AgentOutcome cold = bed.RunAgent(cp, true, {bed.BerthdEndpoint()});
  ASSERT_TRUE(cold.status.ok()) << cold.status.ToString();
  EXPECT_THAT(cold.notifications,
              Contains("STATUS=no berthd answers: unsealing the cold-start key"));
  EXPECT_THAT(cold.notifications, Contains("READY=1"));
  EXPECT_TRUE(bed.NodeEtcdRunning("cp-1"));
  EXPECT_TRUE(IsVoter(bed, cp.PeerUrl()));
  EXPECT_EQ(bed.KubeadmJoins().size(), 1u);  // no second join

  // The same machine booting something else: no signature covers its PCR 4, so its TPM
  // releases nothing; the agent waits for berthd (here it gives up) and opens nothing.
  bed.etcd().StopExtra("cp-1");
  cp.extra_measurements = {{4, std::string(64, 'e')}};
  const std::string before = HexEncode(Sha256(AsBytes(MustRead(cp.disk.image))));
  AgentOutcome tampered = bed.RunAgent(cp, true, {bed.BerthdEndpoint()});
  EXPECT_EQ(tampered.status.code(), Code::kUnavailable) << tampered.status.ToString();
  EXPECT_THAT(tampered.notifications,
              Contains("STATUS=waiting for berthd: no berthd answers, and none of the 1 signed "
                       "boot policies matches this boot (this boot's sha256 PCRs "
                       "0,1,2,3,4,5,6,7 are not the approved ones)"))
      << ::testing::PrintToString(tampered.notifications);
  EXPECT_THAT(tampered.notifications, Not(Contains("READY=1")));
  EXPECT_FALSE(bed.NodeEtcdRunning("cp-1"));
  EXPECT_EQ(HexEncode(Sha256(AsBytes(MustRead(cp.disk.image)))), before);
}

// berthctl as an operator runs it (not through the testbed's AdminService flags).
ProcessResult RunBerthctl(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {BuildDir() + "/cli/berthctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RealProcessRunner().Run(argv);
  EXPECT_TRUE(r.ok()) << r.status().ToString();
  return r.ok() ? *r : ProcessResult{};
}

// A fresh TPM's SHA-256 PCR after extending each of `digests` (hex SHA-256) into it in turn.
std::string Extended(const std::vector<std::string>& digests) {
  Bytes pcr(32, 0);
  for (const auto& d : digests) DigestInto(DigestAlg::kSha256, pcr, *HexDecode(d), pcr);
  return HexEncode(pcr);
}

// Whether something accepts TCP connections on 127.0.0.1:`port`.
bool Listening(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return false;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool open = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  close(fd);
  return open;
}

// berthctl `command` against the node's operator endpoint at 127.0.0.1:`port`, as the operator
// whose key and certificate are in `op` (PinNewOperator), with `args` after.
ProcessResult RunAsOperator(std::vector<std::string> command, int port, const std::string& op,
                            const std::vector<std::string>& args) {
  command.insert(command.end(), {"--node", "127.0.0.1:" + std::to_string(port), "--operator-cert",
                                 op + "/operator.pem", "--operator-key", op + "/operator.key"});
  command.insert(command.end(), args.begin(), args.end());
  return RunBerthctl(command);
}

// An operator's key and certificate, made by `berthctl operator key` (its directory, empty on
// failure), pinned in `node`'s EnrolmentConfig.
std::string PinNewOperator(EtcdTestbed& bed, TestNode& node) {
  const std::string op = bed.dir().Join("operator-alice");
  ProcessResult made = RunBerthctl({"operator", "key", "--out", op});
  EXPECT_EQ(made.exit_code, 0) << made.output;
  const size_t at = made.output.find("operator_spki_sha256: ");
  EXPECT_NE(at, std::string::npos) << made.output;
  if (made.exit_code != 0 || at == std::string::npos) return "";
  node.operator_access.add_operator_spki_sha256(made.output.substr(at + 22, 64));
  return op;
}

// `node` waits for an operator's bootstrap: it pins a new operator (PinNewOperator: its
// directory, empty on failure) and serves it on `*port`, an unused port.
std::string AwaitsBootstrap(EtcdTestbed& bed, TestNode& node, int* port) {
  node.operator_access.set_bootstrap(true);
  *port = UnusedPort();
  node.operator_access.set_port(*port);
  return PinNewOperator(bed, node);
}

// This host's first address (kubeadm advertises an API server at it, never at loopback; etcd
// checks a peer's certificate against the address it calls from); empty if it has none.
std::string HostAddress() {
  auto addresses = agent::DetectNodeAddresses();
  EXPECT_TRUE(addresses.ok() && !addresses->empty()) << addresses.status().ToString();
  return addresses.ok() && !addresses->empty() ? (*addresses)[0] : "";
}

// `node` as a control plane that runs its control plane here: a state disk, the real kubeadm,
// its address `ip`, its API server, controller manager, scheduler and berthd on unused ports.
void RunsItsControlPlane(EtcdTestbed& bed, TestNode& node, const std::string& ip) {
  node.disk.image = node.Path("/state.img");
  node.kubeadm = bed.kube()->Binary("kubeadm");
  node.addresses = {ip};
  node.api_server_port = UnusedPort();
  node.controller_manager_port = UnusedPort();
  node.scheduler_port = UnusedPort();
  node.berthd_port = UnusedPort();
}

// The real kubectl with `kubeconfig` and `args` (a 20 s request timeout); its output, or an
// empty result when it could not run.
ProcessResult Kubectl(EtcdTestbed& bed, const std::string& kubeconfig,
                      const std::vector<std::string>& args) {
  std::vector<std::string> argv = {bed.kube()->Binary("kubectl"), "--kubeconfig", kubeconfig,
                                   "--request-timeout", "20s"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RealProcessRunner().Run(argv);
  return r.ok() ? *r : ProcessResult{};
}

// A socket listening on `port` of every address (so no API server can bind it): its
// descriptor, or -1. SO_REUSEADDR: the port may have connections in TIME_WAIT from a server
// that was killed; no second listener can bind it all the same.
int HoldPort(int port) {
  int held = socket(AF_INET, SOCK_STREAM, 0);
  if (held < 0) return -1;
  const int on = 1;
  setsockopt(held, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on));
  sockaddr_in any{};
  any.sin_family = AF_INET;
  any.sin_port = htons(static_cast<uint16_t>(port));
  any.sin_addr.s_addr = htonl(INADDR_ANY);
  if (bind(held, reinterpret_cast<sockaddr*>(&any), sizeof(any)) != 0 || listen(held, 1) != 0) {
    close(held);
    return -1;
  }
  return held;
}

// Issue 26, recovery with operators (docs/cluster-lifecycle.md "Recovery"): a control plane
// whose boot changed outside the policy cannot open its disk by itself, so with no berthd it
// waits and serves berth's recovery endpoint. `berthctl recover` checks the node's attestation
// against the operator's policy first; with too few shares, a wrong share, or a policy the boot
// fails, it is refused, the node goes on waiting and its disk is unchanged; with K of the N
// shares the node opens its disk with its recovery keyslot and comes back with its data.
TEST(EtcdJoinTest, AControlPlaneThatCannotOpenItsDiskWaitsUntilKOfNOperatorsRecoverIt) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& cp = bed.AddNode("cp-1", /*control_plane=*/true);
  cp.disk.image = cp.Path("/state.img");

  // What `berthctl cluster init` made at bootstrap: the recovery secret split 2 of 3, and its
  // public key for berthd. One more "share" is share 2 with its bytes altered, a file as valid
  // as the others.
  SecretBytes secret(RandomBytes(recovery::kSecretSize).data(), recovery::kSecretSize);
  auto public_key = recovery::PublicKeyOf(secret);
  ASSERT_TRUE(public_key.ok());
  auto shares = cli::SplitRecoverySecret(secret, "berth-test", 2, 3);
  ASSERT_TRUE(shares.ok()) << shares.status().ToString();
  auto share_file = [&](const cli::RecoveryShare& s, const std::string& name) {
    const std::string path = bed.dir().Join(name);
    MustWrite(path, std::string(cli::FormatShare(s).view()), 0600);
    return path;
  };
  const std::string share1 = share_file((*shares)[0], "share-1");
  const std::string share3 = share_file((*shares)[2], "share-3");
  cli::RecoveryShare altered{.cluster_id = (*shares)[1].cluster_id,
                             .threshold = 2,
                             .count = 3,
                             .index = 2,
                             .recovery_key_sha256 = (*shares)[1].recovery_key_sha256,
                             .share = (*shares)[1].share.Clone()};
  altered.share.data()[0] ^= 0x01;
  const std::string wrong2 = share_file(altered, "share-2-wrong");
  const std::string key_file = bed.dir().Join("recovery-key.txt");
  MustWrite(key_file, "recovery-key-sha256: " + recovery::Fingerprint(*public_key) +
                          "\nrecovery-public-key: " + HexEncode(*public_key) + "\n");
  bed.berthd_flags = {"--recovery-key", key_file};

  // An operator, pinned in the node's EnrolmentConfig.
  const std::string op = PinNewOperator(bed, cp);
  ASSERT_FALSE(op.empty());
  const int operator_port = UnusedPort();
  cp.operator_access.set_port(operator_port);
  ASSERT_TRUE(bed.StartBerthd());

  AgentOutcome joined = bed.RunAgent(cp, true, {bed.BerthdEndpoint()});
  ASSERT_TRUE(joined.status.ok()) << joined.status.ToString() << "\n" << MustRead(bed.BerthdLog());
  EXPECT_THAT(
      MustRead(bed.BerthdLog()),
      HasSubstr(" recovery_key=sha256:" + recovery::Fingerprint(*public_key).substr(0, 16)));
  auto keyslots = agent::MakeLibLuksKeyslots();
  auto tokens = keyslots->Tokens(cp.disk.image, agent::kRecoveryToken);
  ASSERT_TRUE(tokens.ok()) << tokens.status().ToString();
  ASSERT_EQ(tokens->size(), 1u);
  EXPECT_EQ(nlohmann::json::parse((*tokens)[0].json)["recovery-key-sha256"],
            recovery::Fingerprint(*public_key));
  MustWrite(cp.Path("/var/lib/berth/state/data"), "the node's data");

  // Every berthd gone, and the node boots with a changed boot loader (PCR 4): no signed policy
  // covers it, so its TPM releases nothing and it waits, for berthd or for its operators.
  bed.KillBerthd();
  bed.etcd().StopExtra("cp-1");
  cp.extra_measurements = {{4, std::string(64, 'e')}};
  const std::string before = HexEncode(Sha256(AsBytes(MustRead(cp.disk.image))));
  AgentOutcome recovered;
  std::thread node([&] { recovered = bed.RunAgent(cp, true, {bed.BerthdEndpoint()}); });
  ASSERT_TRUE(WaitFor([&] { return Listening(operator_port); }, std::chrono::seconds(60)));

  // The operator's policy: the node's AK, the firmware as before, and the new boot loader the
  // operators decided to accept.
  const std::string pcr0 = Extended({std::string(64, 'a')});
  const std::string new_pcr4 = Extended({std::string(64, 'b'), std::string(64, 'e')});
  const std::string old_pcr4 = Extended({std::string(64, 'b')});
  auto policy_file = [&](const std::string& name, const std::string& pcr4) {
    const std::string path = bed.dir().Join(name);
    MustWrite(path, "tpm:\n  trusted_aks:\n    - name: cp-1\n      sha256: " + cp.ak_sha256 +
                        "\n  pcrs:\n    sha256:\n      0: " + pcr0 + "\n      4: " + pcr4 + "\n");
    return path;
  };
  const std::string accepted = policy_file("operator-policy.yaml", new_pcr4);
  const std::string stale = policy_file("stale-policy.yaml", old_pcr4);
  auto recover = [&](const std::string& policy, const std::vector<std::string>& share_files) {
    std::vector<std::string> args = {"--policy", policy};
    for (const auto& f : share_files) args.insert(args.end(), {"--share", f});
    return RunAsOperator({"recover"}, operator_port, op, args);
  };
  auto disk_hash = [&] { return HexEncode(Sha256(AsBytes(MustRead(cp.disk.image)))); };

  // A node whose boot the operators' policy does not accept gets nothing.
  ProcessResult refused_boot = recover(stale, {share1, share3});
  EXPECT_EQ(refused_boot.exit_code, 1) << refused_boot.output;
  const std::string why = "the node 127.0.0.1:" + std::to_string(operator_port) +
                          " failed attestation: PCR sha256:4 is " + new_pcr4 + ", policy expects " +
                          old_pcr4;
  EXPECT_EQ(refused_boot.output, why + "\naudit call=Recover decision=refused node=127.0.0.1:" +
                                     std::to_string(operator_port) + " policy=" + stale +
                                     " code=PERMISSION_DENIED reason=\"" + why + "\"\n");
  // One share of the two needed.
  ProcessResult too_few = recover(accepted, {share1});
  EXPECT_EQ(too_few.exit_code, 1) << too_few.output;
  EXPECT_THAT(too_few.output, HasSubstr("1 recovery share given, 2 needed"));
  EXPECT_THAT(too_few.output,
              HasSubstr("audit call=Recover decision=refused node=127.0.0.1:" +
                        std::to_string(operator_port) + " policy=" + accepted +
                        " code=FAILED_PRECONDITION reason=\"1 recovery share given, 2 needed\"\n"));
  // A wrong share: the combined key is not the recovery key the shares name.
  ProcessResult wrong = recover(accepted, {share1, wrong2});
  EXPECT_EQ(wrong.exit_code, 1) << wrong.output;
  EXPECT_THAT(wrong.output, HasSubstr("at least one share is wrong"));
  // An operator client that skips berthctl's checks and sends a key of its own choosing: the
  // node checks it against its keyslots and refuses it.
  {
    auto policy = verify::LoadPolicy(accepted);
    ASSERT_TRUE(policy.ok()) << policy.status().ToString();
    auto cert = ReadFile(op + "/operator.pem");
    auto key = ReadFile(op + "/operator.key");
    ASSERT_TRUE(cert.ok() && key.ok());
    auto attested = cli::AttestedNode::Connect(
        {.node = "127.0.0.1:" + std::to_string(operator_port),
         .cert_pem = *cert,
         .key_pem = SecretBytes::TakeFrom(*key)},
        *policy);
    ASSERT_TRUE(attested.ok()) << attested.status().ToString();
    SecretBytes guess(RandomBytes(32).data(), 32);
    EXPECT_EQ(attested->Recover(guess).ToString(),
              "PERMISSION_DENIED: Recover at 127.0.0.1:" + std::to_string(operator_port) +
                  ": the key opens no keyslot of this node's state disk");
  }
  EXPECT_EQ(disk_hash(), before);
  EXPECT_FALSE(bed.NodeEtcdRunning("cp-1"));

  // Two right shares: the node opens its disk, starts its etcd and is ready, with its data.
  ProcessResult ok = recover(accepted, {share3, share1});
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  EXPECT_THAT(ok.output, HasSubstr("node cp-1 opened its state disk with the recovery keyslot"));
  EXPECT_THAT(ok.output, HasSubstr("audit call=Recover decision=opened node=127.0.0.1:" +
                                   std::to_string(operator_port) + " policy=" + accepted + "\n"));
  node.join();
  ASSERT_TRUE(recovered.status.ok()) << recovered.status.ToString();
  EXPECT_THAT(recovered.notifications,
              Contains(AllOf(HasSubstr("STATUS=waiting for berthd or an operator's recovery"),
                             HasSubstr("none of the 1 signed boot policies matches this boot"))))
      << ::testing::PrintToString(recovered.notifications);
  EXPECT_THAT(recovered.notifications, Contains("READY=1"));
  EXPECT_TRUE(bed.NodeEtcdRunning("cp-1"));
  EXPECT_EQ(MustRead(cp.Path("/var/lib/berth/state/data")), "the node's data");
  EXPECT_EQ(bed.KubeadmJoins().size(), 1u);  // no second join
}

// Issue 26, bootstrap (docs/cluster-lifecycle.md "Bootstrap"): a cluster from nothing. The
// first control plane, a blank node whose EnrolmentConfig says bootstrap and names no berthd,
// waits for its operator. `berthctl cluster init` attests it first (a policy its boot fails
// gets it nothing sent); then the node makes every secret of the cluster on itself and keeps
// them only on its encrypted state disk: the disk's key is the one berthd derives from the
// master secret written there, its cold-start keyslot opens in this boot and its recovery
// keyslot is sealed to the key whose shares the operator got; kubeadm's own phases made the
// Kubernetes CA the operator receives; etcd runs as the cluster's one voter, the real
// kube-apiserver and kube-controller-manager with kubeadm's flags, and berthd, through which
// a worker then joins that cluster with the real kubeadm. Then every power goes at once: the
// first control plane boots again with no berthd anywhere and no operator, opens its disk by
// cold start, its etcd comes back with its data and its services with it, and the worker
// rejoins. Last, a second control plane joins that cluster through the berthd that came back:
// it gets the cluster's keys (the etcd CA's key for its berthd only, never in kubeadm's PKI),
// ends an etcd voter, serves the cluster's Kubernetes API with its own API server and
// controller manager (its certificate naming the control plane endpoint the operator gave the
// bootstrap), and runs its own berthd, through which a second worker joins; all of it comes
// back after cp-2 loses power. Last, both control planes lose power at once and come
// back by themselves: each opens its disk by cold start, etcd regains its quorum, and the
// workers rejoin through either berthd.
TEST(EtcdJoinTest, AClusterFromNothingJoinsAWorkerAdmitsAControlPlaneAndComesBackAfterEveryPowerLoss) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& cp = bed.AddNode("cp-1", /*control_plane=*/true);
  TestNode& worker = bed.AddNode("w-1", /*control_plane=*/false);
  TestNode& cp2 = bed.AddNode("cp-2", /*control_plane=*/true);
  TestNode& worker2 = bed.AddNode("w-2", /*control_plane=*/false);
  const std::string ip = HostAddress();
  ASSERT_FALSE(ip.empty());
  RunsItsControlPlane(bed, cp, ip);
  RunsItsControlPlane(bed, cp2, ip);
  int operator_port = 0;
  const std::string op = AwaitsBootstrap(bed, cp, &operator_port);
  ASSERT_FALSE(op.empty());

  AgentOutcome booted;
  std::thread node([&] { booted = bed.RunAgent(cp, true, {}); });
  ASSERT_TRUE(WaitFor([&] { return Listening(operator_port); }, std::chrono::seconds(60)));
  const std::string esp = MustRead(cp.Path("/efi/berth/enrolment.binpb"));

  // The operator's policy, made from a reference boot: the nodes' AKs, firmware and loader,
  // and cp-2 authorized as a control plane.
  auto policy_file = [&](const std::string& name, const std::string& pcr4) {
    const std::string path = bed.dir().Join(name);
    MustWrite(path, "tpm:\n  trusted_aks:\n    - name: cp-1\n      sha256: " + cp.ak_sha256 +
                        "\n    - name: w-1\n      sha256: " + worker.ak_sha256 +
                        "\n    - name: cp-2\n      sha256: " + cp2.ak_sha256 +
                        "\n    - name: w-2\n      sha256: " + worker2.ak_sha256 +
                        "\n  pcrs:\n    sha256:\n      0: " + Extended({std::string(64, 'a')}) +
                        "\n      4: " + pcr4 + "\nroles:\n  control_plane:\n    - ak: cp-2\n");
    return path;
  };
  const std::string reference = policy_file("reference.yaml", Extended({std::string(64, 'b')}));
  const std::string other = policy_file("other.yaml", Extended({std::string(64, 'c')}));
  // The operator names the cluster's control plane endpoint: a DNS name in front of the
  // control planes (here one that leads to cp-1's API server), which every control plane's API
  // server certificate must name.
  const std::string endpoint = "localhost:" + std::to_string(cp.api_server_port);
  auto init = [&](const std::string& policy, const std::string& out) {
    return RunAsOperator(
        {"cluster", "init"}, operator_port, op,
        {"--policy", policy, "--cluster-id", "prod-eu1", "--out", out, "--recovery-shares", "3",
         "--recovery-threshold", "2", "--control-plane-endpoint", endpoint});
  };

  // A boot the operator's policy does not describe gets nothing: the disk stays blank.
  ProcessResult refused = init(other, bed.dir().Join("refused"));
  EXPECT_EQ(refused.exit_code, 1) << refused.output;
  EXPECT_THAT(refused.output, HasSubstr("failed attestation: PCR sha256:4 is "));
  EXPECT_FALSE(std::filesystem::exists(cp.disk.image));
  EXPECT_FALSE(std::filesystem::exists(cp.Path("/var/lib/berth/state/berthd")));
  // A request the node refuses (a cluster id kubeconfigs cannot carry) changes nothing either,
  // and the node goes on waiting.
  ProcessResult bad_id = RunAsOperator(
      {"cluster", "init"}, operator_port, op,
      {"--policy", reference, "--cluster-id", "Prod_EU1", "--out", bed.dir().Join("bad-id")});
  EXPECT_EQ(bad_id.exit_code, 2) << bad_id.output;
  EXPECT_THAT(bad_id.output, HasSubstr("bootstrap: cluster id \"Prod_EU1\" is not a DNS-1123 "
                                       "label"));
  EXPECT_FALSE(std::filesystem::exists(cp.disk.image));
  EXPECT_FALSE(std::filesystem::exists(bed.dir().Join("bad-id/recovery-share-1-of-3")));

  const std::string out = bed.dir().Join("cluster");
  ProcessResult ok = init(reference, out);
  ASSERT_EQ(ok.exit_code, 0) << ok.output;
  node.join();
  ASSERT_TRUE(booted.status.ok()) << booted.status.ToString();
  EXPECT_THAT(booted.notifications,
              Contains(HasSubstr("STATUS=waiting for an operator's bootstrap (berthctl cluster "
                                 "init --node <this node>:" +
                                 std::to_string(operator_port))));
  EXPECT_THAT(booted.notifications, Contains("READY=1"));
  EXPECT_EQ(MustRead(cp.Path("/efi/berth/enrolment.binpb")), esp);  // the ESP is only read
  // The API server alone until it is ready, then the others, then berthd (the agent's
  // WaitForRestartedApiServer says why).
  EXPECT_THAT(cp.started,
              ElementsAre("kube-apiserver", "kube-controller-manager (API server ready)",
                          "kube-scheduler (API server ready)", "berthd"));

  // The operator's side: public material, the admin kubeconfig, the shares.
  for (const char* f :
       {"admin.conf", "join-ca.pem", "kubernetes-ca.pem", "recovery-key.txt",
        "recovery-share-1-of-3", "recovery-share-2-of-3", "recovery-share-3-of-3"}) {
    EXPECT_TRUE(std::filesystem::exists(out + "/" + f)) << f;
  }
  const std::string berthd = cp.Path("/var/lib/berth/state/berthd");
  const std::string api = ip + ":" + std::to_string(cp.api_server_port);
  const std::string berthd_endpoint = ip + ":" + std::to_string(cp.berthd_port);
  EXPECT_EQ(MustRead(out + "/kubernetes-ca.pem"), MustRead(cp.Path("/etc/kubernetes/pki/ca.crt")));
  EXPECT_EQ(MustRead(out + "/join-ca.pem"), MustRead(berthd + "/join-ca.pem"));
  EXPECT_EQ(MustRead(out + "/recovery-key.txt"), MustRead(berthd + "/recovery-key.txt"));
  EXPECT_THAT(ok.output, HasSubstr("berthd:          " + berthd_endpoint));
  EXPECT_THAT(ok.output, HasSubstr("Kubernetes API:  " + endpoint));
  // berthd's TLS certificate chains to the join CA and names the node's address.
  auto ca = CertFromPem(MustRead(berthd + "/join-ca.pem"));
  auto tls = CertFromPem(MustRead(berthd + "/tls.pem"));
  ASSERT_TRUE(ca.ok() && tls.ok());
  EXPECT_EQ(X509_verify(tls->get(), X509_get0_pubkey(ca->get())), 1);
  EXPECT_EQ(X509_check_ip_asc(tls->get(), ip.c_str(), 0), 1);
  // Every private key on the node is its owner's alone, kubeadm's CA keys included.
  for (const std::string& f :
       {berthd + "/master.secret", berthd + "/join-ca.key", berthd + "/tls.key",
        berthd + "/etcd-client.key", berthd + "/kube-client.key", berthd + "/kubeconfig",
        cp.Path("/etc/kubernetes/pki/ca.key"), cp.Path("/etc/kubernetes/pki/etcd/ca.key"),
        cp.Path("/etc/kubernetes/pki/sa.key"), cp.Path("/etc/kubernetes/admin.conf")}) {
    EXPECT_EQ(std::filesystem::status(f).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)
        << f;
  }
  // The staging directory kubeadm made them in is gone.
  EXPECT_FALSE(std::filesystem::exists(cp.Path("/run/berth/bootstrap")));

  // The disk: its key is the one berthd derives from the master secret on it, for its UUID.
  const std::string master_text = MustRead(berthd + "/master.secret");
  ASSERT_EQ(master_text.size(), 32u);
  SecretBytes master(master_text.data(), master_text.size());
  auto disk = agent::MakeLibDisk();
  auto probe = disk->Probe(cp.disk.image);
  ASSERT_TRUE(probe.ok() && probe->kind == agent::ProbeResult::Kind::kLuks);
  auto keyslots = agent::MakeLibLuksKeyslots();
  auto derived = DeriveDiskKey(master, "prod-eu1", cp.disk.uuid);
  ASSERT_TRUE(derived.ok());
  EXPECT_TRUE(disk->CheckKey(cp.disk.image, *derived).ok());
  auto wrong = DeriveDiskKey(master, "prod-us1", cp.disk.uuid);
  EXPECT_EQ(disk->CheckKey(cp.disk.image, *wrong).code(), Code::kPermissionDenied);
  // The recovery keyslot is sealed to the operator's recovery key...
  auto tokens = keyslots->Tokens(cp.disk.image, agent::kRecoveryToken);
  ASSERT_TRUE(tokens.ok() && tokens->size() == 1u);
  EXPECT_THAT(
      MustRead(out + "/recovery-key.txt"),
      HasSubstr(
          nlohmann::json::parse((*tokens)[0].json)["recovery-key-sha256"].get<std::string>()));
  // ...and this boot's TPM releases the cold-start key, which opens the disk.
  {
    auto tpm = agent::OpenEsysTpm(cp.tpm->Tcti());
    ASSERT_TRUE(tpm.ok()) << tpm.status().ToString();
    auto cold = agent::ControlPlaneKeys(tpm->get(), keyslots.get(), cp.disk.image, cp.disk.uuid)
                    .ColdStartKey();
    ASSERT_TRUE(cold.ok()) << cold.status().ToString();
    EXPECT_TRUE(disk->CheckKey(cp.disk.image, *cold).ok());
  }

  // etcd: one member, the node, a voter; berthd's client certificate is accepted.
  ASSERT_TRUE(bed.NodeEtcdRunning("cp-1"));
  auto options = agent::LocalEtcdClientOptions(cp.root, cp.ClientUrl());
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  options->cert_pem = MustRead(berthd + "/etcd-client.pem");
  std::string client_key = MustRead(berthd + "/etcd-client.key");
  options->key_pem = SecretBytes::TakeFrom(client_key);
  auto client = etcd::MakeGrpcClient(std::move(*options));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto members = (*client)->MemberList();
  ASSERT_TRUE(members.ok()) << members.status().ToString();
  ASSERT_EQ(members->members_size(), 1);
  EXPECT_EQ(members->members(0).name(), "cp-1");
  EXPECT_FALSE(members->members(0).islearner());
  etcdserverpb::PutRequest put;
  put.set_key("/berth-test/written-before-the-outage");
  put.set_value("kept");
  ASSERT_TRUE((*client)->Put(put).ok());
  client->reset();

  // The Kubernetes API the node started answers the operator's admin kubeconfig.
  auto kubectl = [&](const std::vector<std::string>& args) {
    return Kubectl(bed, out + "/admin.conf", args);
  };
  EXPECT_EQ(kubectl({"get", "--raw", "/readyz"}).output, "ok");
  EXPECT_THAT(kubectl({"config", "view", "-o", "jsonpath={.clusters[0].cluster.server}"}).output,
              "https://" + endpoint);
  ASSERT_TRUE(WaitFor([&] { return Listening(cp.berthd_port); }, std::chrono::seconds(60)))
      << MustRead(bed.ServiceLog(cp, "berthd"));

  // A worker joins the new cluster through that berthd, pinning the join CA the operator got,
  // with the real kubeadm against the real API server the node started.
  worker.cluster_ca_pem = MustRead(out + "/join-ca.pem");
  AgentOutcome joined = bed.RunAgent(worker, false, {berthd_endpoint});
  ASSERT_TRUE(joined.status.ok()) << joined.status.ToString() << "\n"
                                  << MustRead(bed.ServiceLog(cp, "berthd"));
  auto joins = bed.KubeadmJoins();
  ASSERT_EQ(joins.size(), 1u);
  EXPECT_TRUE(joins[0]["ok"].get<bool>()) << joins[0].dump();
  EXPECT_THAT(joins[0]["output"].get<std::string>(), HasSubstr(endpoint));
  // The one bootstrap token is berthd's for the worker: kubeadm's own is gone.
  const std::string token_secrets =
      kubectl({"get", "secrets", "-n", "kube-system", "--field-selector",
               "type=bootstrap.kubernetes.io/token", "-o", "name"})
          .output;
  EXPECT_EQ(std::count(token_secrets.begin(), token_secrets.end(), '\n'), 1) << token_secrets;
  EXPECT_THAT(MustRead(bed.ServiceLog(cp, "berthd")), HasSubstr("decision=granted node=w-1"));

  // The controller manager leading the cluster (its bootstrap signer signs cluster-info for
  // each new token).
  auto kcm_leader = [&] {
    return kubectl({"get", "lease", "kube-controller-manager", "-n", "kube-system", "-o",
                    "jsonpath={.spec.holderIdentity}"})
        .output;
  };
  const std::string leader_before = kcm_leader();
  EXPECT_FALSE(leader_before.empty());

  // Every power at once: the services and etcd die with the node, which boots again with no
  // berthd anywhere and no operator. Its TPM releases the cold-start key for this (approved)
  // boot; etcd comes back with its data, and the API server and berthd with it.
  bed.KillServices(cp);
  bed.etcd().StopExtra("cp-1");
  AgentOutcome cold = bed.RunAgent(cp, true, {});
  ASSERT_TRUE(cold.status.ok()) << cold.status.ToString();
  EXPECT_THAT(cold.notifications, Contains("READY=1"));
  // berthd and the API server first, the others once the API server is ready.
  const std::vector<std::string> later_boot = {"berthd", "kube-apiserver",
                                               "kube-controller-manager (API server ready)",
                                               "kube-scheduler (API server ready)"};
  EXPECT_EQ(cp.started, later_boot);
  ASSERT_TRUE(bed.NodeEtcdRunning("cp-1"));
  EXPECT_TRUE(bed.ServiceRunning(cp, "kube-apiserver"));
  EXPECT_TRUE(bed.ServiceRunning(cp, "kube-controller-manager"));
  EXPECT_TRUE(bed.ServiceRunning(cp, "kube-scheduler"));
  EXPECT_TRUE(bed.ServiceRunning(cp, "berthd"));
  auto again = agent::LocalEtcdClientOptions(cp.root, cp.ClientUrl());
  ASSERT_TRUE(again.ok());
  auto after = etcd::MakeGrpcClient(std::move(*again));
  ASSERT_TRUE(after.ok());
  etcdserverpb::RangeRequest get;
  get.set_key("/berth-test/written-before-the-outage");
  auto read = (*after)->Range(get);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  ASSERT_EQ(read->kvs_size(), 1);
  EXPECT_EQ(read->kvs(0).value(), "kept");
  // The worker reboots and rejoins through the berthd that came back: same disk, no new join.
  AgentOutcome rejoined = bed.RunAgent(worker, false, {berthd_endpoint});
  ASSERT_TRUE(rejoined.status.ok()) << rejoined.status.ToString() << "\n"
                                    << MustRead(bed.ServiceLog(cp, "berthd"));
  EXPECT_THAT(rejoined.notifications, Contains("READY=1"));
  EXPECT_EQ(bed.KubeadmJoins().size(), 1u);

  // A second control plane joins the cluster the first one made: authorized by the operator's
  // policy, it gets the cluster's keys and berthd's over berth's channel and its etcd member,
  // made a learner by that berthd and promoted to a voter. Its image runs the control plane as
  // units, as the first one's: it makes its API server's certificates itself and starts its own
  // API server and controller manager, with kubeadm's phases and flags (the real kubeadm; no
  // kubeadm join, whose static Pods no registry serves).
  cp2.cluster_ca_pem = worker.cluster_ca_pem;
  cp2.control_plane_units = true;
  AgentOutcome second = bed.RunAgent(cp2, true, {berthd_endpoint});
  ASSERT_TRUE(second.status.ok()) << second.status.ToString() << "\n"
                                  << MustRead(bed.ServiceLog(cp, "berthd"));
  EXPECT_THAT(second.notifications, Contains("READY=1"));
  EXPECT_THAT(cp2.started,
              ElementsAre("kube-apiserver", "kube-controller-manager (API server ready)",
                          "kube-scheduler (API server ready)", "berthd"));
  EXPECT_EQ(MustRead(cp2.Path("/var/lib/berth/state/berthd/master.secret")), master_text);
  EXPECT_EQ(MustRead(cp2.Path("/etc/kubernetes/pki/ca.crt")),
            MustRead(cp.Path("/etc/kubernetes/pki/ca.crt")));
  EXPECT_EQ(MustRead(cp2.Path("/etc/kubernetes/pki/etcd/ca.crt")),
            MustRead(cp.Path("/etc/kubernetes/pki/etcd/ca.crt")));
  EXPECT_FALSE(std::filesystem::exists(cp2.Path("/etc/kubernetes/pki/etcd/ca.key")));
  EXPECT_THAT(MustRead(bed.ServiceLog(cp, "berthd")), HasSubstr("decision=granted node=cp-2"));
  EXPECT_THAT(MustRead(bed.ServiceLog(cp, "berthd")), HasSubstr(" cluster_keys=shared+berthd"));
  auto voters = (*after)->MemberList();
  ASSERT_TRUE(voters.ok()) << voters.status().ToString();
  ASSERT_EQ(voters->members_size(), 2);
  for (const auto& m : voters->members()) EXPECT_FALSE(m.islearner()) << m.name();

  // cp-2 serves the cluster's Kubernetes API: the operator's admin kubeconfig (which trusts the
  // cluster's CA) reaches it, and what is written through it is read through cp-1's.
  const std::string api2 = "https://" + ip + ":" + std::to_string(cp2.api_server_port);
  EXPECT_TRUE(bed.ServiceRunning(cp2, "kube-apiserver"));
  EXPECT_TRUE(bed.ServiceRunning(cp2, "kube-controller-manager"));
  EXPECT_TRUE(bed.ServiceRunning(cp2, "kube-scheduler"));
  EXPECT_EQ(kubectl({"--server", api2, "get", "--raw", "/readyz"}).output, "ok");
  ProcessResult created = kubectl({"--server", api2, "create", "configmap", "written-through-cp-2",
                                   "-n", "default", "--from-literal=by=cp-2"});
  EXPECT_EQ(created.exit_code, 0) << created.output;
  EXPECT_EQ(kubectl({"get", "configmap", "written-through-cp-2", "-n", "default", "-o",
                     "jsonpath={.data.by}"})
                .output,
            "cp-2");
  // Its API server's certificate and key were made on it, by kubeadm, from the shared CA; its
  // etcd client identity is its own etcd member's certificate (kubeadm's PKI there has no etcd
  // CA key), and it has no super-admin credential (kubeadm makes that on the first control
  // plane only).
  auto cluster_ca = CertFromPem(MustRead(cp2.Path("/etc/kubernetes/pki/ca.crt")));
  auto apiserver2 = CertFromPem(MustRead(cp2.Path("/etc/kubernetes/pki/apiserver.crt")));
  ASSERT_TRUE(cluster_ca.ok() && apiserver2.ok());
  EXPECT_EQ(X509_verify(apiserver2->get(), X509_get0_pubkey(cluster_ca->get())), 1);
  EXPECT_EQ(X509_check_ip_asc(apiserver2->get(), ip.c_str(), 0), 1);
  // The cluster's control plane endpoint came with the cluster keys: it is kubeadm's
  // controlPlaneEndpoint on cp-2 too, its API server's certificate names it (kubeadm's own
  // names nothing like it), and cp-2's berthd names it in its tickets and hands it on.
  EXPECT_EQ(X509_check_host(apiserver2->get(), "localhost", 0, 0, nullptr), 1);
  EXPECT_THAT(MustRead(cp2.Path("/etc/kubernetes/kubeadm-init.yaml")),
              HasSubstr("controlPlaneEndpoint: \"" + endpoint + "\""));
  EXPECT_THAT(MustRead(cp2.Path("/var/lib/berth/state/berthd/berthd.env")),
              HasSubstr("--api-server-endpoint " + endpoint + " --control-plane-endpoint " +
                        endpoint + " "));
  EXPECT_NE(MustRead(cp2.Path("/etc/kubernetes/pki/apiserver.key")),
            MustRead(cp.Path("/etc/kubernetes/pki/apiserver.key")));
  EXPECT_THAT(MustRead(cp2.Path("/etc/kubernetes/berth/kube-apiserver.env")),
              HasSubstr("--etcd-certfile=" + cp2.Path("/etc/kubernetes/pki/etcd/server.crt")));
  EXPECT_FALSE(std::filesystem::exists(cp2.Path("/etc/kubernetes/super-admin.conf")));
  EXPECT_FALSE(std::filesystem::exists(cp2.Path("/etc/kubernetes/pki/apiserver-etcd-client.key")));
  EXPECT_EQ(bed.KubeadmJoins().size(), 1u);  // the worker's only

  // cp-2 runs its own berthd, with the keys cp-1's berthd shared with it: the same join CA
  // (its key, and a TLS certificate of its own made on cp-2), the etcd CA's key in berthd's
  // directory only, the operator's policy. A worker that names only cp-2's berthd joins
  // through it; its kubeadm's discovery goes to the cluster's control plane endpoint, which
  // cp-2's berthd names as cp-1's does.
  const std::string berthd2 = cp2.Path("/var/lib/berth/state/berthd");
  EXPECT_EQ(MustRead(berthd2 + "/join-ca.key"), MustRead(berthd + "/join-ca.key"));
  EXPECT_EQ(MustRead(berthd2 + "/etcd-ca.key"),
            MustRead(cp.Path("/etc/kubernetes/pki/etcd/ca.key")));
  EXPECT_EQ(MustRead(berthd2 + "/policy.yaml"), MustRead(berthd + "/policy.yaml"));
  EXPECT_EQ(MustRead(berthd2 + "/recovery-key.txt"), MustRead(berthd + "/recovery-key.txt"));
  auto tls2 = CertFromPem(MustRead(berthd2 + "/tls.pem"));
  ASSERT_TRUE(tls2.ok());
  EXPECT_EQ(X509_verify(tls2->get(), X509_get0_pubkey(ca->get())), 1);
  EXPECT_NE(MustRead(berthd2 + "/tls.key"), MustRead(berthd + "/tls.key"));
  for (const char* f : {"/join-ca.key", "/etcd-ca.key", "/tls.key", "/etcd-client.key",
                        "/kube-client.key", "/kubeconfig", "/master.secret"}) {
    EXPECT_EQ(std::filesystem::status(berthd2 + f).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write)
        << f;
  }
  ASSERT_TRUE(WaitFor([&] { return Listening(cp2.berthd_port); }, std::chrono::seconds(60)))
      << MustRead(bed.ServiceLog(cp2, "berthd"));
  worker2.cluster_ca_pem = worker.cluster_ca_pem;
  // The controller manager that led before the outage died with it; a new one takes the lease
  // once it expires (kube-controller-manager's 15 s) and then starts its controllers. A token
  // of the test's own shows when its bootstrap signer signs again.
  std::string leader_after;
  EXPECT_TRUE(WaitFor(
      [&] {
        leader_after = kcm_leader();
        return !leader_after.empty() && leader_after != leader_before;
      },
      std::chrono::seconds(90)))
      << leader_before << " still leads";
  ProcessResult probe_token =
      kubectl({"create", "secret", "generic", "bootstrap-token-probe1", "-n", "kube-system",
               "--type", "bootstrap.kubernetes.io/token", "--from-literal=token-id=probe1",
               "--from-literal=token-secret=0123456789abcdef",
               "--from-literal=usage-bootstrap-signing=true"});
  ASSERT_EQ(probe_token.exit_code, 0) << probe_token.output;
  EXPECT_TRUE(WaitFor(
      [&] {
        return kubectl({"get", "configmap", "cluster-info", "-n", "kube-public", "-o",
                        "jsonpath={.data}"})
                   .output.find("jws-kubeconfig-probe1") != std::string::npos;
      },
      std::chrono::seconds(90)));
  EXPECT_EQ(kubectl({"delete", "secret", "-n", "kube-system", "bootstrap-token-probe1"}).exit_code,
            0);
  AgentOutcome via_cp2 = bed.RunAgent(worker2, false, {ip + ":" + std::to_string(cp2.berthd_port)});
  ASSERT_TRUE(via_cp2.status.ok()) << via_cp2.status.ToString() << "\n"
                                   << MustRead(bed.ServiceLog(cp2, "berthd"));
  EXPECT_THAT(MustRead(bed.ServiceLog(cp2, "berthd")), HasSubstr("decision=granted node=w-2"));
  EXPECT_THAT(MustRead(bed.ServiceLog(cp, "berthd")), Not(HasSubstr("node=w-2")));
  // The real kubeadm's discovery (--dry-run, as no kubelet runs on the host) looks for the
  // token's signature in cluster-info once: when the controller manager's bootstrap signer has
  // not signed it yet (its leader changes as controller managers come and go), kubeadm fails,
  // and the agent joins again with a fresh ticket, as after any failed kubeadm join.
  joins = bed.KubeadmJoins();
  ASSERT_GE(joins.size(), 2u);
  EXPECT_TRUE(joins.back()["ok"].get<bool>()) << joins.back().dump();
  EXPECT_THAT(joins.back()["output"].get<std::string>(), HasSubstr(endpoint));
  for (size_t i = 1; i + 1 < joins.size(); ++i) {
    EXPECT_FALSE(joins[i]["ok"].get<bool>());
    EXPECT_THAT(joins[i]["output"].get<std::string>(),
                HasSubstr("could not find a JWS signature in the cluster-info ConfigMap"))
        << joins[i].dump();
  }
  const size_t w2_joins = joins.size() - 1;

  // cp-2 loses power and boots again: it rejoins through berthd, and its API server,
  // controller manager and berthd come back from their files on its state disk.
  bed.KillServices(cp2);
  bed.etcd().StopExtra("cp-2");
  AgentOutcome rebooted = bed.RunAgent(cp2, true, {berthd_endpoint});
  ASSERT_TRUE(rebooted.status.ok()) << rebooted.status.ToString();
  EXPECT_THAT(rebooted.notifications, Contains("READY=1"));
  EXPECT_TRUE(bed.ServiceRunning(cp2, "kube-apiserver"));
  EXPECT_TRUE(bed.ServiceRunning(cp2, "kube-controller-manager"));
  EXPECT_TRUE(bed.ServiceRunning(cp2, "kube-scheduler"));
  EXPECT_TRUE(bed.ServiceRunning(cp2, "berthd"));
  EXPECT_EQ(bed.KubeadmJoins().size(), 1 + w2_joins);  // no kubeadm join on cp-2's reboot
  EXPECT_TRUE(WaitFor(
      [&] {
        return kubectl({"--server", api2, "get", "--raw", "/readyz"}).output == "ok";
      },
      std::chrono::seconds(60)));

  // Then every control plane loses power at once, and both boot again at the same time, each
  // naming both berthds as an operator's EnrolmentConfigs would by now. Neither can be given
  // its key: a berthd needs etcd's quorum, which needs both members, whose disks are shut. Each
  // opens its own disk by cold start; etcd regains its quorum, every service comes back with
  // the data written before, and both berthds serve the workers' rejoins, with no operator.
  const std::string berthd2_endpoint = ip + ":" + std::to_string(cp2.berthd_port);
  bed.KillServices(cp);
  bed.KillServices(cp2);
  bed.etcd().StopExtra("cp-1");
  bed.etcd().StopExtra("cp-2");
  EXPECT_FALSE(Listening(cp.berthd_port));
  EXPECT_FALSE(Listening(cp2.berthd_port));
  AgentOutcome back1, back2;
  std::thread boot1([&] { back1 = bed.RunAgent(cp, true, {berthd_endpoint, berthd2_endpoint}); });
  std::thread boot2([&] { back2 = bed.RunAgent(cp2, true, {berthd2_endpoint, berthd_endpoint}); });
  boot1.join();
  boot2.join();
  for (const auto* back : {&back1, &back2}) {
    ASSERT_TRUE(back->status.ok()) << back->status.ToString();
    EXPECT_THAT(back->notifications,
                Contains("STATUS=no berthd answers: unsealing the cold-start key"));
    EXPECT_THAT(back->notifications, Contains("READY=1"));
  }
  EXPECT_EQ(bed.KubeadmJoins().size(), 1 + w2_joins);  // nobody joined again
  for (const TestNode* n : {&cp, &cp2}) {
    EXPECT_EQ(n->started, later_boot) << n->name;
    EXPECT_TRUE(bed.NodeEtcdRunning(n->name)) << n->name;
    for (const char* s : {"kube-apiserver", "kube-controller-manager", "kube-scheduler", "berthd"}) {
      EXPECT_TRUE(bed.ServiceRunning(*n, s)) << n->name << " " << s;
    }
  }
  auto quorum = agent::LocalEtcdClientOptions(cp2.root, cp2.ClientUrl());
  ASSERT_TRUE(quorum.ok()) << quorum.status().ToString();
  auto regained = etcd::MakeGrpcClient(std::move(*quorum));
  ASSERT_TRUE(regained.ok()) << regained.status().ToString();
  auto kept = (*regained)->Range(get);  // linearizable: only with a quorum
  ASSERT_TRUE(kept.ok()) << kept.status().ToString();
  ASSERT_EQ(kept->kvs_size(), 1);
  EXPECT_EQ(kept->kvs(0).value(), "kept");
  auto both = (*regained)->MemberList();
  ASSERT_TRUE(both.ok()) << both.status().ToString();
  ASSERT_EQ(both->members_size(), 2);
  for (const auto& m : both->members()) EXPECT_FALSE(m.islearner()) << m.name();
  for (const std::string& server : {"https://" + api, api2}) {
    EXPECT_TRUE(WaitFor(
        [&] { return kubectl({"--server", server, "get", "--raw", "/readyz"}).output == "ok"; },
        std::chrono::seconds(90)))
        << server;
    EXPECT_EQ(kubectl({"--server", server, "get", "configmap", "written-through-cp-2", "-n",
                       "default", "-o", "jsonpath={.data.by}"})
                  .output,
              "cp-2")
        << server;
  }
  ASSERT_TRUE(WaitFor([&] { return Listening(cp.berthd_port) && Listening(cp2.berthd_port); },
                      std::chrono::seconds(60)));
  // Each worker reboots and rejoins through the berthd it names: same disks, no new join.
  AgentOutcome w1_back = bed.RunAgent(worker, false, {berthd_endpoint});
  ASSERT_TRUE(w1_back.status.ok()) << w1_back.status.ToString() << "\n"
                                   << MustRead(bed.ServiceLog(cp, "berthd"));
  EXPECT_THAT(w1_back.notifications, Contains("READY=1"));
  AgentOutcome w2_back = bed.RunAgent(worker2, false, {berthd2_endpoint});
  ASSERT_TRUE(w2_back.status.ok()) << w2_back.status.ToString() << "\n"
                                   << MustRead(bed.ServiceLog(cp2, "berthd"));
  EXPECT_THAT(w2_back.notifications, Contains("READY=1"));
  EXPECT_EQ(bed.KubeadmJoins().size(), 1 + w2_joins);
}

// A bootstrap that stops after the disk was formatted (here something else holds the API
// server's port, so the API server never answers): the operator is told why, the agent stops
// waiting (no second bootstrap can succeed on a disk that is no longer blank) and says what to
// do, and a later boot of that disk says the bootstrap did not finish instead of starting half a
// cluster; it formats nothing and starts nothing.
TEST(EtcdJoinTest, ABootstrapThatStopsAfterFormattingIsNeverTakenForAFinishedOne) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& cp = bed.AddNode("cp-1", /*control_plane=*/true);
  const std::string ip = HostAddress();
  ASSERT_FALSE(ip.empty());
  RunsItsControlPlane(bed, cp, ip);
  cp.control_plane_wait = std::chrono::seconds(15);
  const int held = HoldPort(cp.api_server_port);
  ASSERT_GE(held, 0);
  int operator_port = 0;
  const std::string op = AwaitsBootstrap(bed, cp, &operator_port);
  ASSERT_FALSE(op.empty());
  const std::string policy = bed.dir().Join("reference.yaml");
  MustWrite(policy, "tpm:\n  trusted_aks:\n    - name: cp-1\n      sha256: " + cp.ak_sha256 +
                        "\n  pcrs:\n    sha256:\n      0: " + Extended({std::string(64, 'a')}) +
                        "\n      4: " + Extended({std::string(64, 'b')}) + "\n");

  AgentOutcome booted;
  std::thread node([&] { booted = bed.RunAgent(cp, true, {}); });
  ASSERT_TRUE(WaitFor([&] { return Listening(operator_port); }, std::chrono::seconds(60)));
  ProcessResult init = RunAsOperator(
      {"cluster", "init"}, operator_port, op,
      {"--policy", policy, "--cluster-id", "prod-eu1", "--out", bed.dir().Join("cluster")});
  node.join();
  close(held);
  EXPECT_NE(init.exit_code, 0) << init.output;
  EXPECT_THAT(init.output, HasSubstr("the Kubernetes API server did not become ready in 15 s"));
  // The disk's recovery keyslot is sealed to the key of the shares berthctl wrote before it
  // asked: they are kept, and the operator is told so.
  EXPECT_THAT(init.output, HasSubstr(" are kept: the node may have sealed its disk to them"));
  EXPECT_TRUE(std::filesystem::exists(bed.dir().Join("cluster/recovery-key.txt")));
  EXPECT_FALSE(std::filesystem::exists(bed.dir().Join("cluster/admin.conf")));
  EXPECT_EQ(booted.status.code(), Code::kFailedPrecondition) << booted.status.ToString();
  EXPECT_THAT(booted.status.message(), HasSubstr(" was formatted, then: "));
  EXPECT_THAT(booted.status.message(),
              HasSubstr("it is not formatted again: wipe it and run berthctl cluster init again"));
  EXPECT_THAT(booted.notifications, Not(Contains("READY=1")));
  ASSERT_TRUE(std::filesystem::exists(cp.disk.image));

  // Power goes; the node boots again. Its disk opens (by cold start: it names no berthd), and
  // it stops there.
  bed.KillServices(cp);
  bed.etcd().StopExtra("cp-1");
  const std::string before = HexEncode(Sha256(AsBytes(MustRead(cp.disk.image))));
  AgentOutcome again = bed.RunAgent(cp, true, {});
  EXPECT_EQ(again.status.code(), Code::kFailedPrecondition) << again.status.ToString();
  EXPECT_THAT(again.status.message(),
              HasSubstr(" holds a bootstrap that did not finish (it stopped before the control "
                        "plane was configured): it is not formatted again; wipe it and run "
                        "berthctl cluster init again"));
  EXPECT_THAT(again.notifications, Not(Contains("READY=1")));
  EXPECT_EQ(HexEncode(Sha256(AsBytes(MustRead(cp.disk.image)))), before);
  EXPECT_FALSE(bed.NodeEtcdRunning("cp-1"));
  EXPECT_FALSE(bed.ServiceRunning(cp, "kube-apiserver"));
  EXPECT_FALSE(bed.ServiceRunning(cp, "berthd"));
}

// A control plane joins and its API server is not ready within the agent's wait (here its port
// is taken, so it exits at once). Its etcd member is a voter by then, so the agent does not
// fail the join, which would leave that member on a node with its services half started until
// a reboot: the other services start, the node is recorded joined, and its status says why its
// API server was not ready. Once the port is free, the node's next boot starts everything from
// its files as a joined control plane's does, and its API server serves; a boot after that
// with the port taken again says the same in its status.
TEST(EtcdJoinTest, AJoiningControlPlaneWhoseApiServerIsNotReadyFinishesItsJoinAndSaysWhy) {
  EtcdTestbed bed;
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& cp = bed.AddNode("cp-1", /*control_plane=*/true);
  TestNode& cp2 = bed.AddNode("cp-2", /*control_plane=*/true);
  const std::string ip = HostAddress();
  ASSERT_FALSE(ip.empty());
  RunsItsControlPlane(bed, cp, ip);
  RunsItsControlPlane(bed, cp2, ip);
  cp2.control_plane_units = true;
  cp2.control_plane_wait = std::chrono::seconds(20);
  int operator_port = 0;
  const std::string op = AwaitsBootstrap(bed, cp, &operator_port);
  ASSERT_FALSE(op.empty());
  const std::string policy = bed.dir().Join("reference.yaml");
  MustWrite(policy, "tpm:\n  trusted_aks:\n    - name: cp-1\n      sha256: " + cp.ak_sha256 +
                        "\n    - name: cp-2\n      sha256: " + cp2.ak_sha256 +
                        "\n  pcrs:\n    sha256:\n      0: " + Extended({std::string(64, 'a')}) +
                        "\n      4: " + Extended({std::string(64, 'b')}) +
                        "\nroles:\n  control_plane:\n    - ak: cp-2\n");
  AgentOutcome booted;
  std::thread node([&] { booted = bed.RunAgent(cp, true, {}); });
  ASSERT_TRUE(WaitFor([&] { return Listening(operator_port); }, std::chrono::seconds(60)));
  const std::string out = bed.dir().Join("cluster");
  ProcessResult init =
      RunAsOperator({"cluster", "init"}, operator_port, op,
                    {"--policy", policy, "--cluster-id", "prod-eu1", "--out", out});
  node.join();
  ASSERT_EQ(init.exit_code, 0) << init.output;
  ASSERT_TRUE(booted.status.ok()) << booted.status.ToString();
  ASSERT_TRUE(WaitFor([&] { return Listening(cp.berthd_port); }, std::chrono::seconds(60)))
      << MustRead(bed.ServiceLog(cp, "berthd"));
  const std::string berthd_endpoint = ip + ":" + std::to_string(cp.berthd_port);

  cp2.cluster_ca_pem = MustRead(out + "/join-ca.pem");
  const int held = HoldPort(cp2.api_server_port);
  ASSERT_GE(held, 0);
  AgentOutcome joined = bed.RunAgent(cp2, true, {berthd_endpoint});
  close(held);
  ASSERT_TRUE(joined.status.ok()) << joined.status.ToString();
  EXPECT_THAT(joined.notifications, Contains("READY=1"));
  const std::string api2 = "https://" + ip + ":" + std::to_string(cp2.api_server_port);
  ASSERT_FALSE(joined.notifications.empty());
  // The status of a node whose API server was not ready in its 20 s: one line, naming why.
  const auto says_api_server_not_ready =
      AllOf(StartsWith("STATUS=node joined; its Kubernetes API server was not ready: the "
                       "Kubernetes API server did not become ready in 20 s: kubectl --server " +
                       api2 + " failed ("),
            EndsWith(" (journalctl -u kube-apiserver)"), Not(HasSubstr("\n")));
  EXPECT_THAT(joined.notifications.back(), says_api_server_not_ready);
  // With READY=1, in the same message: no moment says only "node joined".
  EXPECT_EQ(joined.notifications.end()[-2], "READY=1");
  EXPECT_THAT(MustRead(bed.ServiceLog(cp2, "kube-apiserver")),
              HasSubstr("bind: address already in use"));
  EXPECT_THAT(cp2.started,
              ElementsAre("kube-apiserver", "kube-controller-manager (API server not ready)",
                          "kube-scheduler (API server not ready)", "berthd"));
  EXPECT_FALSE(bed.ServiceRunning(cp2, "kube-apiserver"));
  EXPECT_TRUE(bed.ServiceRunning(cp2, "kube-controller-manager"));
  EXPECT_TRUE(bed.ServiceRunning(cp2, "berthd"));
  auto options = agent::LocalEtcdClientOptions(cp.root, cp.ClientUrl());
  ASSERT_TRUE(options.ok()) << options.status().ToString();
  auto client = etcd::MakeGrpcClient(std::move(*options));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto voters = (*client)->MemberList();
  ASSERT_TRUE(voters.ok()) << voters.status().ToString();
  ASSERT_EQ(voters->members_size(), 2);
  for (const auto& m : voters->members()) EXPECT_FALSE(m.islearner()) << m.name();

  // The port is free; cp-2 loses power and boots again (with the wait the other tests give an
  // API server on a loaded host). With its member down etcd has no quorum, so no berthd can
  // answer, and cp-2 opens its disk by cold start, which only a disk recorded as joined allows.
  // berthd and the API server start first, the others once the API server is ready, and there
  // is nothing left to say.
  bed.KillServices(cp2);
  bed.etcd().StopExtra("cp-2");
  cp2.control_plane_wait = kControlPlaneWait;
  AgentOutcome rebooted = bed.RunAgent(cp2, true, {berthd_endpoint});
  ASSERT_TRUE(rebooted.status.ok()) << rebooted.status.ToString();
  EXPECT_THAT(rebooted.notifications,
              Contains("STATUS=no berthd answers: unsealing the cold-start key"));
  EXPECT_THAT(rebooted.notifications, Contains("READY=1"));
  EXPECT_THAT(rebooted.notifications, Not(Contains(HasSubstr("was not ready"))));
  EXPECT_THAT(cp2.started,
              ElementsAre("berthd", "kube-apiserver", "kube-controller-manager (API server ready)",
                          "kube-scheduler (API server ready)"));
  EXPECT_TRUE(WaitFor(
      [&] {
        return Kubectl(bed, out + "/admin.conf", {"--server", api2, "get", "--raw", "/readyz"})
                   .output == "ok";
      },
      std::chrono::seconds(60)));

  // A later boot whose API server is not ready within the wait starts the others anyway (as
  // always), and its status now says why.
  bed.KillServices(cp2);
  bed.etcd().StopExtra("cp-2");
  cp2.control_plane_wait = std::chrono::seconds(20);
  const int held_again = HoldPort(cp2.api_server_port);
  ASSERT_GE(held_again, 0);
  AgentOutcome late = bed.RunAgent(cp2, true, {berthd_endpoint});
  close(held_again);
  ASSERT_TRUE(late.status.ok()) << late.status.ToString();
  EXPECT_THAT(late.notifications, Contains("READY=1"));
  ASSERT_FALSE(late.notifications.empty());
  EXPECT_THAT(late.notifications.back(), says_api_server_not_ready);
  EXPECT_THAT(cp2.started, ElementsAre("berthd", "kube-apiserver",
                                       "kube-controller-manager (API server not ready)",
                                       "kube-scheduler (API server not ready)"));
}

}  // namespace
}  // namespace berth::testing
