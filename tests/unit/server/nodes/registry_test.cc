// The join path's use of etcd, with an in-memory etcd (tests/fakes/fake_etcd.h): node records
// written in transactions, role authorization, control-plane learners and certificates, the
// promotion loop, quorum-safe removal, and revocation. The same paths run against real etcd
// processes in tests/integration/etcd_join_test.cc.
#include "server/nodes/registry.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "agent/etcd_join.h"
#include "common/binding.h"
#include "common/boot_policy.h"
#include "common/tpm/policy.h"
#include "server/join/join_logic.h"
#include "server/nodes/admin.h"
#include "server/nodes/records.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_etcd.h"
#include "tests/testing/testing.h"
#include "tests/unit/server/nodes/lifecycle_fixture.h"
#include "verify/policy.h"
#include "verify/policy_holder.h"

namespace berth::server {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using ::testing::UnorderedElementsAre;

const std::string kAk(64, 'a');       // authorized for control plane by the policy
const std::string kOtherAk(64, 'b');  // a trusted worker
const std::string kDisk = "0b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c";
const std::string kDisk2 = "1b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c";
constexpr int64_t kNow = 1'800'000'000;

class RegistryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    voters_ = AddThreeVoters(etcd_);
    ca_ = MakeTestEtcdCa();
    ASSERT_NE(ca_, nullptr);
    roles_.control_plane.push_back(
        {.ak_sha256_hex = kAk, .node = "", .where = "roles.control_plane[0]"});
    verify::Policy policy;
    policy.roles = roles_;
    policy_ = std::make_unique<verify::PolicyHolder>(std::move(policy));
    registry_ =
        std::make_unique<NodeRegistry>(&store_, &membership_, ca_.get(), policy_.get(), &clock_);
    admin_ = std::make_unique<NodeAdmin>(&store_, &membership_, ca_.get(), &kube_, &clock_);
  }

  static std::string PeerUrl(int i) { return TestPeerUrl(i); }
  static std::string ClientUrl(int i) { return TestClientUrl(i); }
  static v1::JoinRequest Worker(const std::string& name = "node-1",
                                const std::string& disk = kDisk) {
    return WorkerRequest(name, disk);
  }
  static v1::JoinRequest ControlPlane(const std::string& name, const std::string& address,
                                      const std::string& disk = kDisk) {
    return ControlPlaneRequest(name, address, disk);
  }
  static verify::VerifiedEvidence Evidence(const std::string& ak = kAk) { return TestEvidence(ak); }

  v1::NodeRecord Record(const std::string& name) {
    auto got = store_.Get(name);
    EXPECT_TRUE(got.ok() && got->has_value()) << name;
    return got.ok() && got->has_value() ? (*got)->record : v1::NodeRecord();
  }

  int CallsOf(const std::string& method) {
    auto calls = etcd_.calls();
    return static_cast<int>(std::count(calls.begin(), calls.end(), method));
  }

  std::vector<etcdserverpb::Member> Learners() {
    std::vector<etcdserverpb::Member> out;
    for (const auto& m : etcd_.Members()) {
      if (m.islearner()) out.push_back(m);
    }
    return out;
  }

  berth::testing::FakeEtcd etcd_;
  NodeStore store_{&etcd_};
  Membership membership_{&etcd_};
  FakeClock clock_{kNow};
  FakeKubeSecrets kube_;
  std::unique_ptr<EtcdCa> ca_;
  verify::RolePolicy roles_;
  std::unique_ptr<verify::PolicyHolder> policy_;
  std::unique_ptr<NodeRegistry> registry_;
  std::unique_ptr<NodeAdmin> admin_;
  std::vector<uint64_t> voters_;
};

// ---- workers ----

TEST_F(RegistryTest, WorkerJoinWritesItsRecordAndClaimsItsDisk) {
  auto admitted = registry_->AdmitJoin(Worker(), Evidence(kOtherAk));
  ASSERT_TRUE(admitted.ok()) << admitted.status().ToString();
  EXPECT_FALSE(admitted->etcd.has_value());
  EXPECT_EQ(admitted->audit, "record=joined joins=1");
  auto kv = etcd_.Dump("/berth/v1/");
  ASSERT_EQ(kv.size(), 2u);
  EXPECT_EQ(kv["/berth/v1/disks/" + kDisk], "node-1");
  auto json = nlohmann::json::parse(kv["/berth/v1/nodes/node-1"]);
  EXPECT_EQ(json["version"], 1);
  EXPECT_EQ(json["name"], "node-1");
  EXPECT_EQ(json["role"], "NODE_ROLE_WORKER");
  EXPECT_EQ(json["state"], "NODE_STATE_JOINED");
  EXPECT_EQ(json["disk_uuid"], kDisk);
  EXPECT_EQ(json["ak_sha256"], kOtherAk);
  EXPECT_EQ(json["first_join_unix"], std::to_string(kNow));  // int64 is a JSON string
  EXPECT_EQ(json["policy_rule"], "pcrs sha256:0");
  EXPECT_EQ(CallsOf("MemberAdd"), 0);
  // Two etcd round trips: one transaction reads the record and the disk claim, one writes.
  EXPECT_EQ(CallsOf("Txn"), 2);
  EXPECT_EQ(CallsOf("Range"), 0);
}

// The promotion loop reads every record that may name an etcd member, and decodes no other.
TEST_F(RegistryTest, PromotionReadsOnlyRecordsThatMayNameAnEtcdMember) {
  ASSERT_TRUE(registry_->AdmitJoin(Worker("node-1", kDisk), Evidence(kOtherAk)).ok());
  ASSERT_TRUE(registry_->AdmitJoin(Worker("etcd-9", kDisk2), Evidence(kAk)).ok());
  v1::NodeRecord cp;
  cp.set_name("cp-1");
  cp.set_role(v1::NODE_ROLE_CONTROL_PLANE);
  cp.set_etcd_peer_url(PeerUrl(1));
  ASSERT_TRUE(store_.Commit({.record = cp, .expected_mod_revision = 0}).ok());
  // Written by hand, the field's name escaped: decoded all the same.
  ASSERT_TRUE(store_
                  .PutIfAbsent("nodes/cp-2",
                               "{\"name\":\"cp-2\",\"\\u0065tcd_peer_url\":\"" + PeerUrl(2) + "\"}")
                  .ok());
  // Not decoded, so not refused either: a record without "etcd" names no member.
  ASSERT_TRUE(store_.PutIfAbsent("nodes/w-2", "{not json").ok());

  auto listed = store_.ListMayNameEtcdMembers();
  ASSERT_TRUE(listed.ok()) << listed.status().ToString();
  std::vector<std::string> names;
  for (const auto& n : *listed) names.push_back(n.record.name() + " " + n.record.etcd_peer_url());
  EXPECT_THAT(names, ElementsAre("cp-1 " + PeerUrl(1), "cp-2 " + PeerUrl(2), "etcd-9 "));
  EXPECT_EQ(store_.List().status().code(), Code::kDataLoss);  // List decodes all of them
}

TEST_F(RegistryTest, AJoinReadsTheRecordAndTheDiskClaimTogether) {
  auto none = store_.GetForJoin("node-1", kDisk);
  ASSERT_TRUE(none.ok()) << none.status().ToString();
  EXPECT_FALSE(none->node.has_value());
  EXPECT_FALSE(none->disk.has_value());
  ASSERT_TRUE(registry_->AdmitJoin(Worker("node-1"), Evidence(kOtherAk)).ok());

  auto both = store_.GetForJoin("node-1", kDisk);
  ASSERT_TRUE(both.ok()) << both.status().ToString();
  ASSERT_TRUE(both->node.has_value());
  EXPECT_EQ(both->node->record.name(), "node-1");
  EXPECT_EQ(both->node->mod_revision, (*store_.Get("node-1"))->mod_revision);
  ASSERT_TRUE(both->disk.has_value());
  EXPECT_EQ(both->disk->node, "node-1");
  EXPECT_EQ(both->disk->mod_revision, (*store_.GetDiskClaim(kDisk))->mod_revision);

  auto diskless = store_.GetForJoin("node-1", "");
  ASSERT_TRUE(diskless.ok());
  EXPECT_TRUE(diskless->node.has_value());
  EXPECT_FALSE(diskless->disk.has_value());
  auto other = store_.GetForJoin("node-2", kDisk);  // another node, this disk
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->node.has_value());
  EXPECT_EQ(other->disk->node, "node-1");

  etcd_.Fail("Txn", grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: request timed out"));
  EXPECT_EQ(store_.GetForJoin("node-1", kDisk).status().code(), Code::kUnavailable);
}

TEST_F(RegistryTest, DiskOfAnotherNodeIsRefused) {
  ASSERT_TRUE(registry_->AdmitJoin(Worker("node-1"), Evidence(kOtherAk)).ok());
  auto thief = registry_->AdmitJoin(Worker("node-2"), Evidence(kAk));
  EXPECT_EQ(thief.status().ToString(),
            "PERMISSION_DENIED: disk " + kDisk + " joined the cluster as node node-1, not node-2");
  auto found = store_.Get("node-2");
  ASSERT_TRUE(found.ok());
  EXPECT_FALSE(found->has_value());
}

TEST_F(RegistryTest, RejoinNeedsAJoinFirstAndIsRecorded) {
  v1::RejoinRequest rejoin;
  rejoin.set_node_name("node-1");
  rejoin.set_disk_uuid(kDisk);
  EXPECT_EQ(registry_->AdmitRejoin(rejoin, Evidence(kOtherAk)).status().code(),
            Code::kFailedPrecondition);
  ASSERT_TRUE(registry_->AdmitJoin(Worker(), Evidence(kOtherAk)).ok());
  clock_.Advance(std::chrono::seconds(60));
  auto ok = registry_->AdmitRejoin(rejoin, Evidence(kOtherAk));
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_TRUE(ok->etcd_crl.empty());  // a worker gets no CRL
  EXPECT_EQ(Record("node-1").last_rejoin_unix(), kNow + 60);
  EXPECT_EQ(registry_->AdmitRejoin(rejoin, Evidence(kAk)).status().code(), Code::kPermissionDenied);
}

TEST_F(RegistryTest, StaleWriteIsAbortedNotClobbered) {
  ASSERT_TRUE(registry_->AdmitJoin(Worker(), Evidence(kOtherAk)).ok());
  auto read = store_.Get("node-1");
  ASSERT_TRUE(read.ok() && read->has_value());
  // Another replica writes the record in between.
  v1::NodeRecord other = (*read)->record;
  other.set_joins(99);
  ASSERT_TRUE(
      store_.Commit({.record = other, .expected_mod_revision = (*read)->mod_revision}).ok());
  v1::NodeRecord mine = (*read)->record;
  mine.set_joins(2);
  Status st = store_.Commit({.record = mine, .expected_mod_revision = (*read)->mod_revision});
  EXPECT_EQ(st.code(), Code::kAborted);
  EXPECT_EQ(Record("node-1").joins(), 99u);
  // "Create" of an existing record is a conflict too.
  EXPECT_EQ(store_.Commit({.record = mine, .expected_mod_revision = 0}).code(), Code::kAborted);
}

// ---- control planes ----

TEST_F(RegistryTest, UnauthorizedControlPlaneIsDeniedBeforeAnythingChanges) {
  auto denied = registry_->AdmitJoin(ControlPlane("cp-9", "10.0.0.9"), Evidence(kOtherAk));
  EXPECT_EQ(denied.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(denied.status().message(),
              HasSubstr("node cp-9 (attestation key sha256:bbbbbbbbbbbbbbbb...) is not authorized "
                        "to be a control plane"));
  EXPECT_EQ(CallsOf("MemberAdd"), 0);
  EXPECT_EQ(etcd_.Members().size(), 3u);
  EXPECT_THAT(etcd_.Dump("/berth/v1/"), IsEmpty());
}

TEST_F(RegistryTest, AuthorizedControlPlaneBecomesALearnerWithSignedCertificates) {
  auto admitted = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  ASSERT_TRUE(admitted.ok()) << admitted.status().ToString();
  ASSERT_TRUE(admitted->etcd.has_value());
  const v1::EtcdMaterial& m = *admitted->etcd;
  auto learners = Learners();
  ASSERT_EQ(learners.size(), 1u);
  EXPECT_THAT(learners[0].peerurls(), ElementsAre("https://10.0.0.5:2380"));
  EXPECT_EQ(m.member_id(), learners[0].id());
  EXPECT_EQ(m.member_name(), "cp-1");
  EXPECT_THAT(m.initial_cluster(),
              UnorderedElementsAre("etcd-0=" + PeerUrl(0), "etcd-1=" + PeerUrl(1),
                                   "etcd-2=" + PeerUrl(2), "cp-1=https://10.0.0.5:2380"));
  EXPECT_EQ(m.ca_certificate(), ca_->cert_pem());
  EXPECT_THAT(m.crl(), HasSubstr("-----BEGIN X509 CRL-----"));
  auto server = CertFromPem(m.server_certificate());
  auto peer = CertFromPem(m.peer_certificate());
  ASSERT_TRUE(server.ok() && peer.ok());

  v1::NodeRecord r = Record("cp-1");
  EXPECT_EQ(r.state(), v1::NODE_STATE_JOINING);
  EXPECT_EQ(r.role(), v1::NODE_ROLE_CONTROL_PLANE);
  EXPECT_EQ(r.etcd_member_id(), learners[0].id());
  EXPECT_EQ(r.etcd_peer_url(), "https://10.0.0.5:2380");
  EXPECT_EQ(r.role_authorization(), "policy roles.control_plane[0]");
  EXPECT_THAT(r.etcd_cert_serials(), ElementsAre(SerialHex(server->get()), SerialHex(peer->get())));
  // The issued-certificate log has both.
  auto issued = store_.ListIssued();
  ASSERT_TRUE(issued.ok());
  ASSERT_EQ(issued->size(), 2u);
  std::vector<std::string> kinds;
  for (const auto& c : *issued) {
    EXPECT_EQ(c.node(), "cp-1");
    kinds.push_back(c.kind());
  }
  EXPECT_THAT(kinds, UnorderedElementsAre("server", "peer"));
  EXPECT_THAT(admitted->audit, HasSubstr("etcd_learner=added"));
}

TEST_F(RegistryTest, OperatorAuthorizationGrantsTheRoleOptionallyPinnedToAnAk) {
  v1::AdminAuthorizeNodeRequest grant;
  grant.set_name("cp-2");
  grant.set_role(v1::NODE_ROLE_CONTROL_PLANE);
  grant.set_ak_sha256(std::string(64, 'C'));  // another node's AK
  ASSERT_TRUE(admin_->AuthorizeNode(grant, "CN=alice").ok());
  EXPECT_EQ(
      registry_->AdmitJoin(ControlPlane("cp-2", "10.0.0.6"), Evidence(kOtherAk)).status().code(),
      Code::kPermissionDenied);
  grant.set_ak_sha256(kOtherAk);
  ASSERT_TRUE(admin_->AuthorizeNode(grant, "CN=alice").ok());
  auto admitted = registry_->AdmitJoin(ControlPlane("cp-2", "10.0.0.6"), Evidence(kOtherAk));
  ASSERT_TRUE(admitted.ok()) << admitted.status().ToString();
  EXPECT_EQ(Record("cp-2").role_authorization(), "operator CN=alice at 2027-01-15T08:00:00Z");
  // Only the control-plane role is granted, and names must be node names.
  grant.set_role(v1::NODE_ROLE_WORKER);
  EXPECT_EQ(admin_->AuthorizeNode(grant, "CN=alice").status().code(), Code::kInvalidArgument);
  grant.set_role(v1::NODE_ROLE_CONTROL_PLANE);
  grant.set_name("Bad Name");
  EXPECT_EQ(admin_->AuthorizeNode(grant, "CN=alice").status().code(), Code::kInvalidArgument);
}

TEST_F(RegistryTest, SecondControlPlaneWaitsWhileALearnerIsPending) {
  ASSERT_TRUE(registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence()).ok());
  const uint64_t learner = Learners().at(0).id();
  auto second = registry_->AdmitJoin(ControlPlane("cp-2", "10.0.0.6", kDisk2), Evidence());
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_THAT(
      second.status().message(),
      HasSubstr("another control plane is joining: etcd member " + etcd::MemberIdHex(learner) +
                " at https://10.0.0.5:2380 is still an etcd "
                "learner, and etcd takes one learner at a time; retry once it has been "
                "promoted"));
  EXPECT_EQ(etcd_.Members().size(), 4u);
  auto none = store_.Get("cp-2");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->has_value());
}

TEST_F(RegistryTest, RetryAfterALostReplyReusesTheMember) {
  auto first = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  ASSERT_TRUE(first.ok());
  auto again = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->etcd->member_id(), first->etcd->member_id());
  EXPECT_THAT(again->audit, HasSubstr("etcd_learner=reused"));
  EXPECT_EQ(etcd_.Members().size(), 4u);
  EXPECT_EQ(CallsOf("MemberAdd"), 1);
  v1::NodeRecord r = Record("cp-1");
  EXPECT_EQ(r.joins(), 2u);
  EXPECT_EQ(r.etcd_cert_serials_size(), 4);
}

TEST_F(RegistryTest, RecordWriteFailureLeavesOnlyTheLearnerWhichTheRetryReuses) {
  etcd_.Fail("Txn", grpc::Status::OK);  // the reads go through; the write fails
  etcd_.Fail("Txn", grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: request timed out"));
  auto failed = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  EXPECT_EQ(failed.status().code(), Code::kUnavailable);
  EXPECT_EQ(Learners().size(), 1u);
  EXPECT_THAT(etcd_.Dump("/berth/v1/"), IsEmpty());  // no record, no certificate log, no disk claim
  auto retry = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  ASSERT_TRUE(retry.ok()) << retry.status().ToString();
  EXPECT_THAT(retry->audit, HasSubstr("etcd_learner=reused"));
  EXPECT_EQ(etcd_.Members().size(), 4u);
  EXPECT_EQ(Record("cp-1").etcd_member_id(), retry->etcd->member_id());
}

TEST_F(RegistryTest, UnhealthyClusterRefusesTheLearnerAndNothingIsWritten) {
  // etcd refuses reconfiguration while a member is disconnected.
  etcd_.Fail("MemberAdd",
             grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: unhealthy cluster"));
  auto failed = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  EXPECT_EQ(failed.status().code(), Code::kUnavailable);
  EXPECT_THAT(failed.status().message(), HasSubstr("etcdserver: unhealthy cluster"));
  EXPECT_TRUE(Learners().empty());
  EXPECT_THAT(etcd_.Dump("/berth/v1/"), IsEmpty());
}

TEST_F(RegistryTest, PeerUrlOfAnotherMemberIsRefused) {
  v1::JoinRequest r = ControlPlane("cp-1", "10.0.0.1");  // etcd-0's address
  auto refused = registry_->AdmitJoin(r, Evidence());
  EXPECT_EQ(refused.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("is already etcd member"));
  EXPECT_EQ(etcd_.Members().size(), 3u);
}

TEST_F(RegistryTest, BadCsrsAndUrlsAreRefusedBeforeEtcdIsTouched) {
  v1::JoinRequest r = ControlPlane("cp-1", "10.0.0.5");
  auto other = agent::MakeEtcdKeys("cp-7");
  r.set_etcd_peer_csr(ToString(other->peer_csr));
  EXPECT_EQ(registry_->AdmitJoin(r, Evidence()).status().ToString(),
            "INVALID_ARGUMENT: etcd peer CSR: CN \"cp-7\" is not the node name \"cp-1\"");
  r = ControlPlane("cp-1", "10.0.0.5");
  r.clear_etcd_csr();
  EXPECT_EQ(registry_->AdmitJoin(r, Evidence()).status().ToString(),
            "INVALID_ARGUMENT: etcd server CSR is missing");
  r = ControlPlane("cp-1", "10.0.0.5");
  r.set_etcd_peer_url("https://10.9.9.9:2380");
  EXPECT_EQ(registry_->AdmitJoin(r, Evidence()).status().ToString(),
            "INVALID_ARGUMENT: etcd peer URL https://10.9.9.9:2380: host 10.9.9.9 is not among "
            "the node's addresses");
  r = ControlPlane("cp-1", "10.0.0.5");
  r.set_etcd_client_url("http://10.0.0.5:2379");
  EXPECT_EQ(registry_->AdmitJoin(r, Evidence()).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(CallsOf("MemberAdd"), 0);
  EXPECT_THAT(etcd_.Dump("/berth/v1/"), IsEmpty());
}

TEST_F(RegistryTest, WithoutAnEtcdCaControlPlanesAreRefused) {
  NodeRegistry no_ca(&store_, &membership_, nullptr, policy_.get(), &clock_);
  EXPECT_EQ(no_ca.AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence()).status().code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(CallsOf("MemberAdd"), 0);
}

// ---- the promotion loop ----

TEST_F(RegistryTest, PromoterPromotesAStartedLearnerInSyncAndMarksItsRecord) {
  auto admitted = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  const uint64_t id = admitted->etcd->member_id();
  Promoter promoter(&membership_, &store_, &clock_);
  // Not started: pending.
  auto pass = promoter.RunOnce();
  ASSERT_TRUE(pass.ok()) << pass.status().ToString();
  EXPECT_TRUE(pass->learner_pending);
  EXPECT_THAT(pass->promoted, IsEmpty());
  // Started, catching up: still pending.
  etcd_.StartMember(id, "cp-1", "https://10.0.0.5:2379");
  pass = promoter.RunOnce();
  EXPECT_TRUE(pass->learner_pending);
  EXPECT_THAT(pass->promoted, IsEmpty());
  EXPECT_EQ(Record("cp-1").state(), v1::NODE_STATE_JOINING);
  // In sync: promoted, and the record says joined.
  etcd_.SetInSync(id, true);
  pass = promoter.RunOnce();
  ASSERT_TRUE(pass.ok());
  EXPECT_THAT(pass->promoted, ElementsAre(id));
  EXPECT_THAT(pass->marked_joined, ElementsAre("cp-1"));
  EXPECT_FALSE(pass->learner_pending);
  EXPECT_TRUE(Learners().empty());
  EXPECT_EQ(Record("cp-1").state(), v1::NODE_STATE_JOINED);
  // Idempotent: a second pass (another replica) changes nothing.
  pass = promoter.RunOnce();
  EXPECT_THAT(pass->promoted, IsEmpty());
  EXPECT_THAT(pass->marked_joined, IsEmpty());
  // The next control plane can join now.
  EXPECT_TRUE(registry_->AdmitJoin(ControlPlane("cp-2", "10.0.0.6", kDisk2), Evidence()).ok());
}

TEST_F(RegistryTest, PromoterNeverPromotesWithoutAHealthyQuorumOfTheBiggerCluster) {
  auto admitted = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  const uint64_t id = admitted->etcd->member_id();
  etcd_.StartMember(id, "cp-1", "https://10.0.0.5:2379");
  etcd_.SetInSync(id, true);
  etcd_.SetAnswers(voters_[1], false);
  etcd_.SetAnswers(voters_[2], false);
  Status st = membership_.Promote(id);
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("would make 4 voters needing 3 healthy, but only 1 of 3 "
                                      "voters and the learner answer"));
  Promoter promoter(&membership_, &store_, &clock_);
  auto pass = promoter.RunOnce();
  ASSERT_TRUE(pass.ok());
  EXPECT_THAT(pass->promoted, IsEmpty());
  EXPECT_TRUE(pass->learner_pending);
  EXPECT_EQ(CallsOf("MemberPromote"), 0);
  // One voter back: 2 + the learner = 3 of 4.
  etcd_.SetAnswers(voters_[1], true);
  EXPECT_TRUE(promoter.RunOnce().ok());
  EXPECT_TRUE(Learners().empty());
}

TEST_F(RegistryTest, PromoterRemovesALearnerThatNeverStarted) {
  auto admitted = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  const uint64_t id = admitted->etcd->member_id();
  Promoter promoter(&membership_, &store_, &clock_,
                    PromoterOptions{.learner_timeout = std::chrono::seconds(600)});
  clock_.Advance(std::chrono::seconds(599));
  EXPECT_THAT(promoter.RunOnce()->removed, IsEmpty());
  clock_.Advance(std::chrono::seconds(1));
  auto pass = promoter.RunOnce();
  ASSERT_TRUE(pass.ok());
  EXPECT_THAT(pass->removed, ElementsAre(id));
  EXPECT_EQ(etcd_.Members().size(), 3u);
  // The node may come back: its join adds a fresh learner.
  auto again = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  ASSERT_TRUE(again.ok());
  EXPECT_NE(again->etcd->member_id(), id);
}

TEST_F(RegistryTest, PromoterRemovesALearnerWithoutRecordAfterTheTimeoutToo) {
  // A learner whose node's record was never written (the reply and the retry were lost).
  ASSERT_TRUE(etcd_.MemberAdd({"https://10.0.0.9:2380"}, true).ok());
  Promoter promoter(&membership_, &store_, &clock_);
  EXPECT_THAT(promoter.RunOnce()->removed, IsEmpty());  // first seen now
  clock_.Advance(std::chrono::seconds(600));
  EXPECT_EQ(promoter.RunOnce()->removed.size(), 1u);
  EXPECT_TRUE(Learners().empty());
}

// ---- removal and revocation ----

TEST_F(RegistryTest, RemovingAVoterNeverCostsQuorum) {
  etcd_.SetAnswers(voters_[2], false);
  // Removing healthy etcd-0 would leave etcd-1 (healthy) and etcd-2 (down): 1 of 2.
  Status st = membership_.Remove(voters_[0]);
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_THAT(st.message(), HasSubstr("would leave 2 voters needing 2 healthy, but only 1 answer"));
  EXPECT_EQ(etcd_.Members().size(), 3u);
  // Removing the member that is down is what restores health.
  EXPECT_TRUE(membership_.Remove(voters_[2]).ok());
  EXPECT_EQ(membership_.Remove(voters_[2]).code(), Code::kNotFound);
  // Never the last voter.
  ASSERT_TRUE(membership_.Remove(voters_[1]).ok());
  EXPECT_THAT(membership_.Remove(voters_[0]).message(), HasSubstr("is the last voting member"));
}

TEST_F(RegistryTest, RevokeRecordsCrlDeletesTokensAndRemovesTheMember) {
  auto admitted = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  ASSERT_TRUE(admitted.ok());
  const uint64_t id = admitted->etcd->member_id();
  etcd_.StartMember(id, "cp-1", "https://10.0.0.5:2379");
  etcd_.SetInSync(id, true);
  Promoter promoter(&membership_, &store_, &clock_);
  ASSERT_TRUE(promoter.RunOnce().ok());
  ASSERT_EQ(Record("cp-1").state(), v1::NODE_STATE_JOINED);
  kube_.list_body = R"({"kind":"SecretList","items":[
      {"metadata":{"name":"bootstrap-token-abc123"},"type":"bootstrap.kubernetes.io/token"},
      {"metadata":{"name":"cp-1-notes"},"type":"Opaque"}]})";

  auto revoked = admin_->RevokeNode("cp-1", "CN=alice");
  ASSERT_TRUE(revoked.ok()) << revoked.status().ToString();
  const v1::NodeRecord r = Record("cp-1");
  EXPECT_EQ(r.state(), v1::NODE_STATE_REVOKED);
  EXPECT_EQ(r.revoked_by(), "CN=alice");
  EXPECT_EQ(revoked->removed_member_id(), id);
  EXPECT_EQ(etcd_.Members().size(), 3u);
  EXPECT_THAT(revoked->deleted_tokens(), ElementsAre("bootstrap-token-abc123"));
  EXPECT_THAT(
      kube_.requests,
      ElementsAre(
          "GET /api/v1/namespaces/kube-system/secrets?labelSelector=berth.dev%2Fnode%3Dcp-1"
          "%2Capp.kubernetes.io%2Fmanaged-by%3Dberth",
          "DELETE /api/v1/namespaces/kube-system/secrets/bootstrap-token-abc123"));
  EXPECT_THAT(revoked->revoked_serials(),
              ElementsAre(r.etcd_cert_serials(0), r.etcd_cert_serials(1)));
  auto crl = admin_->GetEtcdCrl();
  ASSERT_TRUE(crl.ok());
  ASSERT_EQ(crl->revoked_size(), 2);
  EXPECT_EQ(crl->revoked(0).node(), "cp-1");
  // The node is refused from now on, by every path.
  EXPECT_EQ(registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence()).status().code(),
            Code::kPermissionDenied);
  v1::RejoinRequest rejoin;
  rejoin.set_node_name("cp-1");
  rejoin.set_disk_uuid(kDisk);
  EXPECT_THAT(registry_->AdmitRejoin(rejoin, Evidence()).status().ToString(),
              HasSubstr("PERMISSION_DENIED: node cp-1 was revoked at"));
  EXPECT_EQ(admin_->RevokeNode("cp-9", "CN=alice").status().code(), Code::kNotFound);
}

TEST_F(RegistryTest, RevokeThatWouldCostQuorumRevokesButKeepsTheMemberUntilItIsSafe) {
  auto admitted = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  const uint64_t id = admitted->etcd->member_id();
  etcd_.StartMember(id, "cp-1", "https://10.0.0.5:2379");
  etcd_.SetInSync(id, true);
  Promoter promoter(&membership_, &store_, &clock_);
  ASSERT_TRUE(promoter.RunOnce().ok());
  // 4 voters; removing cp-1 leaves 3 needing 2 healthy; only etcd-0 answers.
  etcd_.SetAnswers(voters_[1], false);
  etcd_.SetAnswers(voters_[2], false);
  auto revoked = admin_->RevokeNode("cp-1", "CN=alice");
  EXPECT_EQ(revoked.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(revoked.status().message(),
              HasSubstr("node cp-1 is revoked (record, CRL, tokens), but its etcd member was not "
                        "removed; revoke again when the cluster allows it"));
  EXPECT_EQ(Record("cp-1").state(), v1::NODE_STATE_REVOKED);
  EXPECT_EQ(etcd_.Members().size(), 4u);
  EXPECT_EQ(admin_->GetEtcdCrl()->revoked_size(), 2);
  etcd_.SetAnswers(voters_[1], true);
  auto again = admin_->RevokeNode("cp-1", "CN=bob");
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->removed_member_id(), id);
  EXPECT_EQ(Record("cp-1").revoked_by(), "CN=alice");
}

TEST_F(RegistryTest, RevokedLearnerIsRemovedNotPromoted) {
  auto admitted = registry_->AdmitJoin(ControlPlane("cp-1", "10.0.0.5"), Evidence());
  const uint64_t id = admitted->etcd->member_id();
  // The member lookup fails, so revoke stops after the record; the Promoter must not promote.
  etcd_.Fail("MemberList", grpc::Status(grpc::StatusCode::UNAVAILABLE, "etcdserver: no leader"));
  EXPECT_EQ(admin_->RevokeNode("cp-1", "CN=alice").status().code(), Code::kUnavailable);
  etcd_.StartMember(id, "cp-1", "https://10.0.0.5:2379");
  etcd_.SetInSync(id, true);
  Promoter promoter(&membership_, &store_, &clock_);
  auto pass = promoter.RunOnce();
  ASSERT_TRUE(pass.ok()) << pass.status().ToString();
  EXPECT_THAT(pass->promoted, IsEmpty());
  EXPECT_THAT(pass->removed, ElementsAre(id));
  EXPECT_EQ(etcd_.Members().size(), 3u);
}

// ---- JoinLogic with node records ----

class AcceptingVerifier : public verify::EvidenceVerifier {
 public:
  std::string ak = kAk;
  tpm::PcrValues quoted;  // what the verified quote covered (none: evidence without a TPM)
  verify::ColdStartPolicy cold_start;  // the policy's roles.cold_start
  Result<verify::VerifiedEvidence> Verify(const v1::Evidence&, std::span<const uint8_t>) override {
    return verify::VerifiedEvidence{.ak_sha256_hex = ak,
                                    .ak_name = "a",
                                    .rule = "pcrs sha256:0",
                                    .quoted_pcrs = quoted,
                                    .cold_start = cold_start};
  }
};

class CountingTokens : public TokenIssuer {
 public:
  int issued = 0;
  Result<BootstrapToken> Issue(const std::string&) override {
    ++issued;
    BootstrapToken t;
    t.id = "abc123";
    std::string s = "0123456789abcdef";
    t.secret = SecretBytes::TakeFrom(s);
    t.expires_unix = kNow + 900;
    return t;
  }
};

const Peer kPeer{.spki_sha256 = Bytes(32, 0x5a), .address = "ipv4:127.0.0.1:1"};

JoinOptions TestJoinOptions() {
  return JoinOptions{.cluster_id = "c",
                     .api_server_endpoint = "10.0.0.1:6443",
                     .ca_cert_hashes = {"sha256:" + std::string(64, 'b')}};
}

// berthd's JoinLogic over the fixture's registry: a verifier that accepts whatever AK and
// quote the test sets, a token issuer that counts, and the calls a node makes.
class JoinHarness {
 public:
  JoinHarness(const SecretBytes& master, FakeClock* clock, NodeRegistry* registry,
              JoinOptions options = TestJoinOptions())
      : nonces_(NonceIssuer::Create(master, clock, std::chrono::seconds(60)).value()),
        logic(std::move(options), master.Clone(), &nonces_, &verifier, &tokens, registry) {}

  Result<v1::JoinTicket> Join(v1::JoinRequest r, const Peer& peer = kPeer) {
    r.set_nonce(logic.Challenge({}, peer)->nonce());
    r.mutable_evidence()->mutable_tpm();
    return logic.IssueJoinTicket(r, peer);
  }
  Result<v1::RejoinTicket> Rejoin(const std::string& name, const std::string& disk,
                                  const Peer& peer = kPeer) {
    v1::RejoinRequest r;
    r.set_node_name(name);
    r.set_disk_uuid(disk);
    r.set_nonce(logic.Challenge({}, peer)->nonce());
    r.mutable_evidence()->mutable_tpm();
    return logic.IssueRejoinTicket(r, peer);
  }

  AcceptingVerifier verifier;
  CountingTokens tokens;

 private:
  NonceIssuer nonces_;

 public:
  JoinLogic logic;
};

TEST_F(RegistryTest, JoinLogicMintsNoTokenAndNoKeyForRefusedNodes) {
  JoinHarness h(SecretBytes(32), &clock_, registry_.get());
  // An authorized control plane gets a ticket with its etcd section and a token.
  auto ticket = h.Join(ControlPlane("cp-1", "10.0.0.5"));
  ASSERT_TRUE(ticket.ok()) << ticket.status().ToString();
  EXPECT_TRUE(ticket->has_etcd());
  EXPECT_EQ(ticket->disk_key().size(), 32u);
  EXPECT_EQ(h.tokens.issued, 1);
  // Another AK asking for control plane: no token, no key, no member.
  h.verifier.ak = kOtherAk;
  auto denied = h.Join(ControlPlane("cp-2", "10.0.0.6", kDisk2));
  EXPECT_EQ(denied.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(h.tokens.issued, 1);
  EXPECT_EQ(etcd_.Members().size(), 4u);
  // Revoked: rejoin gets no disk key.
  h.verifier.ak = kAk;
  ASSERT_TRUE(store_.Get("cp-1").ok());
  auto stored = *store_.Get("cp-1");
  ASSERT_TRUE(store_
                  .Commit({.record = ApplyRevoke(stored->record, "CN=alice", kNow),
                           .expected_mod_revision = stored->mod_revision})
                  .ok());
  EXPECT_EQ(h.Rejoin("cp-1", kDisk).status().code(), Code::kPermissionDenied);
  // A worker join writes a record too.
  auto worker = h.Join(Worker("node-5", kDisk2));
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();
  EXPECT_EQ(Record("node-5").state(), v1::NODE_STATE_JOINED);
  EXPECT_EQ(h.tokens.issued, 2);
}

// Issue 22, section 2, with records: the disk key goes to the node whose record claims the
// disk, and to no other attested node, whatever name it gives.
TEST_F(RegistryTest, ASecondNodeAskingForTheFirstNodesDiskGetsNothing) {
  SecretBytes master(32);
  JoinHarness h(master, &clock_, registry_.get());
  const Peer& first = kPeer;
  Peer second{.spki_sha256 = Bytes(32, 0x7b), .address = "ipv4:127.0.0.1:2"};
  auto ticket = h.Join(Worker("node-1", kDisk), first);
  ASSERT_TRUE(ticket.ok()) << ticket.status().ToString();
  auto key = DeriveDiskKey(master, "c", kDisk);
  EXPECT_EQ(ticket->disk_key(), std::string(key->view()));
  auto again = h.Rejoin("node-1", kDisk, first);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->disk_key(), ticket->disk_key());

  h.verifier.ak = kOtherAk;  // another attested node, with its own TLS key
  auto own_name = h.Rejoin("node-2", kDisk, second);
  EXPECT_EQ(own_name.status().ToString(),
            "FAILED_PRECONDITION: node node-2 has no record in this cluster: a node joins "
            "before it rejoins");
  auto victim_name = h.Rejoin("node-1", kDisk, second);
  EXPECT_EQ(victim_name.status().ToString(),
            "PERMISSION_DENIED: node name node-1 is recorded with attestation key sha256:" +
                kAk.substr(0, 16) + "..., not this node's sha256:" + kOtherAk.substr(0, 16) +
                "...");
  auto as_join = h.Join(Worker("node-2", kDisk), second);
  EXPECT_EQ(as_join.status().ToString(),
            "PERMISSION_DENIED: disk " + kDisk + " joined the cluster as node node-1, not node-2");
  EXPECT_EQ(h.tokens.issued, 1);
}

// Issue 22, section 6: two replicas share the master secret, so each accepts the other's
// nonces; a request replayed to the other replica is refused by the nonce recorded with the
// grant in etcd (no extra etcd write: it goes into the record's transaction).
TEST_F(RegistryTest, NonceIsSingleUseAcrossReplicas) {
  SecretBytes master(32);
  auto nonces_a = NonceIssuer::Create(master, &clock_, std::chrono::seconds(60));
  auto nonces_b = NonceIssuer::Create(master, &clock_, std::chrono::seconds(60));
  AcceptingVerifier verifier;
  CountingTokens tokens;
  JoinLogic a(TestJoinOptions(), master.Clone(), &*nonces_a, &verifier, &tokens, registry_.get());
  JoinLogic b(TestJoinOptions(), master.Clone(), &*nonces_b, &verifier, &tokens, registry_.get());
  const Peer& peer = kPeer;
  const std::string reused =
      "PERMISSION_DENIED: nonce was already used: a challenge admits one ticket call (a "
      "replayed request?); ask for a fresh challenge";

  v1::JoinRequest join = Worker("node-1", kDisk);
  join.set_nonce(a.Challenge({}, peer)->nonce());
  join.mutable_evidence()->mutable_tpm();
  ASSERT_TRUE(a.IssueJoinTicket(join, peer).ok());
  EXPECT_EQ(b.IssueJoinTicket(join, peer).status().ToString(), reused);
  v1::JoinRequest renamed = join;  // the same evidence under a fresh name
  renamed.set_node_name("node-9");
  renamed.set_disk_uuid(kDisk2);
  EXPECT_EQ(b.IssueJoinTicket(renamed, peer).status().ToString(), reused);
  EXPECT_FALSE(store_.Get("node-9")->has_value());

  v1::RejoinRequest rejoin;
  rejoin.set_node_name("node-1");
  rejoin.set_disk_uuid(kDisk);
  rejoin.set_nonce(b.Challenge({}, peer)->nonce());
  rejoin.mutable_evidence()->mutable_tpm();
  ASSERT_TRUE(b.IssueRejoinTicket(rejoin, peer).ok());
  EXPECT_EQ(a.IssueRejoinTicket(rejoin, peer).status().ToString(), reused);
  EXPECT_EQ(tokens.issued, 1);

  // One key per spent nonce, named by its expiry; a later record write deletes the expired.
  auto spent = [&] {
    std::vector<std::string> keys;
    auto values = store_.ListValues("nonces/");
    EXPECT_TRUE(values.ok());
    for (const auto& v : *values) keys.push_back(v.key);
    return keys;
  };
  std::vector<std::string> both = {
      SpentNonceKey(kNow + 60, HexEncode(Sha256(AsBytes(join.nonce())))),
      SpentNonceKey(kNow + 60, HexEncode(Sha256(AsBytes(rejoin.nonce()))))};
  std::sort(both.begin(), both.end());  // etcd lists keys in order
  EXPECT_EQ(spent(), both);
  EXPECT_EQ(SpentNonceKey(kNow + 60, "ab"), "nonces/001800000060/ab");
  clock_.Advance(std::chrono::seconds(61));
  rejoin.set_nonce(a.Challenge({}, peer)->nonce());
  ASSERT_TRUE(a.IssueRejoinTicket(rejoin, peer).ok());
  EXPECT_EQ(spent(), std::vector<std::string>{SpentNonceKey(
                         kNow + 121, HexEncode(Sha256(AsBytes(rejoin.nonce()))))});
}

// Issue 26, cold start: a control plane's tickets carry the cluster's boot-policy key and its
// signature over the PCRs of the boot berthd has just verified, which lets that node's TPM
// release its cold-start key in that boot when no berthd answers. Workers get none. What is
// signed is berthd's choice, the policy's roles.cold_start (default sha256 PCRs 0-7), with the
// verified quote's values: never the other PCRs the node quoted (9, 15), never SHA-1.
TEST_F(RegistryTest, ControlPlaneTicketsCarryASignedPolicyOfTheVerifiedBoot) {
  SecretBytes master(32);
  master.data()[0] = 7;
  JoinOptions options = TestJoinOptions();
  options.recovery_public_key = Bytes(32, 0x3c);
  JoinHarness h(master, &clock_, registry_.get(), std::move(options));
  AcceptingVerifier& verifier = h.verifier;
  verifier.quoted[DigestAlg::kSha1][0] = Bytes(20, 0x01);
  for (uint32_t p : {0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u, 9u, 15u}) {
    verifier.quoted[DigestAlg::kSha256][p] = Bytes(32, static_cast<uint8_t>(0x10 + p));
  }
  const tpm::PcrValues full_quote = verifier.quoted;
  auto signer = BootPolicySigner::Create(master, "c");
  ASSERT_TRUE(signer.ok());
  auto key = tpm::ParsePublic(signer->public_area());
  ASSERT_TRUE(key.ok());
  auto expect_signed_boot = [&](const v1::ColdStart& c) {
    EXPECT_EQ(c.boot_policy_key(), ToString(signer->public_area()));
    const v1::SignedBootPolicy& p = c.policy();
    EXPECT_EQ(p.bank(), v1::HASH_ALGORITHM_SHA256);
    EXPECT_THAT(p.pcrs(), ElementsAre(0u, 1u, 2u, 3u, 4u, 5u, 6u, 7u));
    auto approved = tpm::PolicyPcrDigest(DigestAlg::kSha256, {0, 1, 2, 3, 4, 5, 6, 7}, full_quote);
    ASSERT_TRUE(approved.ok());
    EXPECT_EQ(p.approved_policy(), ToString(*approved));
    EXPECT_EQ(p.signed_unix(), kNow);
    auto sig = tpm::ParseSignature(AsBytes(p.signature()));
    ASSERT_TRUE(sig.ok()) << sig.status().ToString();
    EXPECT_TRUE(
        tpm::VerifyPolicySignature(*key, *approved, AsBytes(tpm::kColdStartPolicyRef), *sig).ok());
  };

  auto cp = h.Join(ControlPlane("cp-1", "10.0.0.5"));
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  ASSERT_TRUE(cp->has_cold_start());
  expect_signed_boot(cp->cold_start());
  auto cp_again = h.Rejoin("cp-1", kDisk);
  ASSERT_TRUE(cp_again.ok()) << cp_again.status().ToString();
  ASSERT_TRUE(cp_again->has_cold_start());
  expect_signed_boot(cp_again->cold_start());
  // And the cluster's recovery key, which its recovery keyslot is sealed to.
  EXPECT_EQ(cp->recovery_public_key(), std::string(32, 0x3c));
  EXPECT_EQ(cp_again->recovery_public_key(), std::string(32, 0x3c));

  verifier.ak = kOtherAk;
  auto worker = h.Join(Worker("node-5", kDisk2));
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();
  EXPECT_FALSE(worker->has_cold_start());
  EXPECT_EQ(worker->recovery_public_key(), "");
  auto worker_again = h.Rejoin("node-5", kDisk2);
  ASSERT_TRUE(worker_again.ok()) << worker_again.status().ToString();
  EXPECT_FALSE(worker_again->has_cold_start());
  EXPECT_EQ(worker_again->recovery_public_key(), "");

  // The attacker's way around it: quote less. A control plane that leaves PCR 4 (its boot
  // loader) out of its quote would get a policy its TPM satisfies whatever PCR 4 holds, so it
  // gets no ticket: no token, and on a first join no record and no etcd learner either.
  verifier.ak = kAk;
  verifier.quoted[DigestAlg::kSha256].erase(4);
  const int minted = h.tokens.issued;
  const std::string refusal =
      "PERMISSION_DENIED: the quote leaves out PCR 4 of sha256, which the policy's "
      "roles.cold_start requires of a control plane (its TPM would release the disk key "
      "whatever that PCR holds)";
  EXPECT_EQ(h.Rejoin("cp-1", kDisk).status().ToString(), refusal);
  const size_t learners = Learners().size();
  EXPECT_EQ(h.Join(ControlPlane("cp-2", "10.0.0.6", "3c2f8d3b-6a4e-4f9b-8d2c-3e4f5a6b7c8d"))
                .status()
                .ToString(),
            refusal);
  EXPECT_EQ(h.tokens.issued, minted);
  auto cp2 = store_.Get("cp-2");
  ASSERT_TRUE(cp2.ok());
  EXPECT_FALSE(cp2->has_value());
  EXPECT_EQ(Learners().size(), learners);
  // Nor can it pick the bank: a quote of SHA-1 alone has none of the sha256 PCRs.
  verifier.quoted = {{DigestAlg::kSha1, {{0, Bytes(20, 0x01)}}}};
  EXPECT_EQ(h.Rejoin("cp-1", kDisk).status().ToString(),
            "PERMISSION_DENIED: the quote leaves out PCR 0 of sha256, which the policy's "
            "roles.cold_start requires of a control plane (its TPM would release the disk key "
            "whatever that PCR holds)");
  EXPECT_EQ(h.tokens.issued, minted);
  // A policy asking for other PCRs gets those signed, with the quote's values.
  verifier.quoted = full_quote;
  verifier.cold_start = {.bank = DigestAlg::kSha256, .pcrs = {4, 9}};
  auto narrower = h.Rejoin("cp-1", kDisk);
  ASSERT_TRUE(narrower.ok()) << narrower.status().ToString();
  EXPECT_THAT(narrower->cold_start().policy().pcrs(), ElementsAre(4u, 9u));
  EXPECT_EQ(narrower->cold_start().policy().approved_policy(),
            ToString(*tpm::PolicyPcrDigest(DigestAlg::kSha256, {4, 9}, full_quote)));
  // No TPM quote at all (SEV-SNP): nothing to seal to, so none, and the ticket says so.
  verifier.quoted.clear();
  auto snp = h.Rejoin("cp-1", kDisk);
  ASSERT_TRUE(snp.ok()) << snp.status().ToString();
  EXPECT_FALSE(snp->has_cold_start());
}

// kubeadm's shared PKI files, each "PEM of <name>".
std::vector<SharedPki> StandInPki() {
  std::vector<SharedPki> pki;
  for (const auto& f : kSharedPkiFiles) {
    std::string content = "PEM of " + std::string(f.name);
    pki.push_back({std::string(f.name), SecretBytes::TakeFrom(content)});
  }
  return pki;
}

// Issue 26: with --control-plane-pki, a control plane admitted by its attestation and its
// authorization gets the master secret and kubeadm's CA keys in its ticket; a worker, and a
// node not authorized as a control plane, get none of it.
TEST_F(RegistryTest, OnlyAnAuthorizedControlPlaneGetsTheClusterKeys) {
  SecretBytes master(32);
  master.data()[0] = 9;
  JoinHarness h(master, &clock_, registry_.get());
  h.logic.ShareClusterKeys(StandInPki());

  auto cp = h.Join(ControlPlane("cp-1", "10.0.0.5"));
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  ASSERT_TRUE(cp->has_cluster_keys());
  EXPECT_EQ(cp->cluster_keys().master_secret(), std::string(master.view()));
  std::vector<std::string> files;
  for (const auto& f : cp->cluster_keys().kubernetes_pki()) {
    EXPECT_EQ(f.content(), "PEM of " + f.name());
    files.push_back(f.name());
  }
  EXPECT_THAT(files, ElementsAre("ca.crt", "ca.key", "front-proxy-ca.crt", "front-proxy-ca.key",
                                 "sa.key", "sa.pub"));
  EXPECT_TRUE(CheckClusterKeys(cp->cluster_keys()).ok());

  h.verifier.ak = kOtherAk;  // trusted, but only as a worker
  auto worker = h.Join(Worker("node-5", kDisk2));
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();
  EXPECT_FALSE(worker->has_cluster_keys());
  auto posing = h.Join(ControlPlane("cp-2", "10.0.0.6", "2b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c"));
  EXPECT_EQ(posing.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(h.tokens.issued, 2);
  // No control plane endpoint was named (berthd --control-plane-endpoint): none is handed out.
  EXPECT_EQ(cp->cluster_keys().control_plane_endpoint(), "");
}

// The cluster's control plane endpoint (a load balancer's) goes with the cluster keys, so the
// control planes berthd admits serve it too; a worker learns only the API server to join.
TEST_F(RegistryTest, AControlPlaneGetsTheClustersControlPlaneEndpointWithTheKeys) {
  SecretBytes master(32);
  JoinOptions options = TestJoinOptions();
  options.api_server_endpoint = "lb.prod-eu1.example:6443";
  options.control_plane_endpoint = "lb.prod-eu1.example:6443";
  JoinHarness h(master, &clock_, registry_.get(), std::move(options));
  h.logic.ShareClusterKeys(StandInPki());
  auto cp = h.Join(ControlPlane("cp-1", "10.0.0.5"));
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  EXPECT_EQ(cp->cluster_keys().control_plane_endpoint(), "lb.prod-eu1.example:6443");
  EXPECT_TRUE(CheckClusterKeys(cp->cluster_keys()).ok());
  h.verifier.ak = kOtherAk;
  auto worker = h.Join(Worker("node-5", kDisk2));
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();
  EXPECT_FALSE(worker->has_cluster_keys());
  EXPECT_EQ(worker->kubeadm().api_server_endpoint(), "lb.prod-eu1.example:6443");
}

// With --join-ca-key as well, an admitted control plane also gets what its own berthd serves
// with: the join and etcd CAs' keys and the text of the policy in force (a reload berthd
// rejected is not shared; one it took is). A worker gets none of it.
TEST_F(RegistryTest, AControlPlaneGetsBerthdsKeysAndThePolicyInForceAndAWorkerNothing) {
  JoinHarness h(SecretBytes(Bytes(32, 7).data(), 32), &clock_, registry_.get());
  testing::TempDir dir;
  const std::string path = dir.Join("policy.yaml");
  auto policy_text = [](char pcr0) {
    return "tpm:\n  trusted_aks:\n    - name: cp-1\n      sha256: " + std::string(64, 'a') +
           "\n  pcrs:\n    sha256:\n      0: " + std::string(64, pcr0) + "\n";
  };
  testing::MustWrite(path, policy_text('b'));
  auto first = verify::ParsePolicy(policy_text('b'));
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  verify::PolicyHolder holder(std::move(*first), path);
  std::vector<SharedPki> pki;
  for (const auto& f : kSharedPkiFiles) {
    std::string content = "PEM of " + std::string(f.name);
    pki.push_back({std::string(f.name), SecretBytes::TakeFrom(content)});
  }
  h.logic.ShareClusterKeys(std::move(pki),
                           JoinLogic::BerthdShare{.join_ca_key_pem = SecretBytes("join key", 8),
                                                  .etcd_ca_key_pem = SecretBytes("etcd key", 8),
                                                  .policy = &holder});
  // An edit that does not parse is refused by the reload, and not shared.
  testing::MustWrite(path, "tpm: {not: a policy}\n");
  EXPECT_FALSE(holder.Reload("test").ok());

  auto cp = h.Join(ControlPlane("cp-1", "10.0.0.5"));
  ASSERT_TRUE(cp.ok()) << cp.status().ToString();
  ASSERT_TRUE(cp->cluster_keys().has_berthd());
  EXPECT_EQ(cp->cluster_keys().berthd().join_ca_key(), "join key");
  EXPECT_EQ(cp->cluster_keys().berthd().etcd_ca_key(), "etcd key");
  EXPECT_EQ(cp->cluster_keys().berthd().policy(), policy_text('b'));

  // One the reload took is what the next control plane's ticket carries (here cp-1's retry).
  testing::MustWrite(path, policy_text('c'));
  ASSERT_TRUE(holder.Reload("test").ok());
  auto again = h.Join(ControlPlane("cp-1", "10.0.0.5"));
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->cluster_keys().berthd().policy(), policy_text('c'));

  h.verifier.ak = kOtherAk;  // trusted, but only as a worker
  auto worker = h.Join(Worker("node-5", kDisk2));
  ASSERT_TRUE(worker.ok()) << worker.status().ToString();
  EXPECT_FALSE(worker->has_cluster_keys());
  EXPECT_EQ(h.tokens.issued, 3);
}

}  // namespace
}  // namespace berth::server
