// Node lifecycle on the server, with an in-memory etcd and fake time: operator approval of
// nodes seen for the first time, EC2 pre-authorization, the live policy (PolicyHolder and its
// file watcher) and the Prometheus exposition. The same paths run against real etcd and a real
// berthd in tests/integration/lifecycle_test.cc.
#include "server/nodes/admission.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "server/metrics.h"
#include "server/policy_watcher.h"
#include "tests/unit/server/nodes/lifecycle_fixture.h"

namespace berth::server {
namespace {

using berth::testing::MustWrite;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::string kPeer = "ipv4:10.0.0.9:40000";
const std::string kInstance = "i-0123456789abcdef0";

verify::AdmissionPolicy Approval() { return verify::AdmissionPolicy{.approval_required = true}; }
AdmissionOptions Hold() {
  return AdmissionOptions{.approval_hold = std::chrono::milliseconds(1000),
                          .approval_poll = std::chrono::milliseconds(250)};
}

bool HasKeyWith(const std::map<std::string, std::string>& dump, const std::string& part) {
  for (const auto& [k, v] : dump) {
    if (k.find(part) != std::string::npos) return true;
  }
  return false;
}

// ---- approval ----

TEST_F(LifecycleTest, FirstSeenNodeIsPendingBoundToItsKeyUntilApprovedThenJoins) {
  SetPolicy(Approval(), Hold());
  auto held = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_TRUE(held->pending);
  EXPECT_THAT(held->pending_reason, HasSubstr("node w1 is pending operator approval"));
  EXPECT_THAT(held->pending_reason, HasSubstr("berthctl nodes approve w1"));
  // Held for approval_hold, re-reading the record every approval_poll.
  EXPECT_EQ(clock_.sleeps, 4);
  auto pending = Record("w1");
  ASSERT_TRUE(pending.has_value());
  EXPECT_EQ(pending->state(), v1::NODE_STATE_PENDING);
  EXPECT_EQ(pending->ak_sha256(), kLcOtherAk);
  EXPECT_EQ(pending->pending_peer(), kPeer);
  EXPECT_EQ(pending->pending_since_unix(), kLcNow);
  EXPECT_EQ(pending->approved_unix(), 0);
  EXPECT_EQ(pending->joins(), 0);
  // Nothing else is claimed for a pending node: no disk, no token (no ticket).
  EXPECT_FALSE(HasKeyWith(etcd_.Dump(), "/disks/"));

  auto approved = admin_->ApproveNode(
      [] {
        v1::ApprovalApproveRequest r;
        r.set_name("w1");
        return r;
      }(),
      "CN=alice");
  ASSERT_TRUE(approved.ok()) << approved.status().ToString();
  EXPECT_EQ(approved->node().approved_by(), "CN=alice");

  auto joined = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  EXPECT_FALSE(joined->pending);
  EXPECT_THAT(joined->audit, HasSubstr("record=joined joins=1 approved_by=\"CN=alice\""));
  auto r = Record("w1");
  EXPECT_EQ(r->state(), v1::NODE_STATE_JOINED);
  EXPECT_EQ(r->approved_by(), "CN=alice");
  EXPECT_TRUE(HasKeyWith(etcd_.Dump(), "/disks/" + kLcDisk));
}

TEST_F(LifecycleTest, ApprovalWhileTheCallIsHeldAdmitsItAtTheNextPoll) {
  SetPolicy(Approval(), Hold());
  clock_.on_sleep = [&](int n) {
    if (n != 2) return;
    v1::ApprovalApproveRequest r;
    r.set_name("w1");
    r.set_ak_sha256(kLcOtherAk);
    ASSERT_TRUE(admin_->ApproveNode(r, "CN=alice").ok());
  };
  auto joined = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  EXPECT_FALSE(joined->pending);
  EXPECT_EQ(clock_.sleeps, 2);  // answered at the first poll after the approval
  EXPECT_EQ(Record("w1")->state(), v1::NODE_STATE_JOINED);
}

TEST_F(LifecycleTest, DeniedPendingNodeNeverJoins) {
  SetPolicy(Approval(), Hold());
  ASSERT_TRUE(registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer)->pending);
  auto denied = admin_->DenyNode("w1", "CN=alice");
  ASSERT_TRUE(denied.ok()) << denied.status().ToString();
  EXPECT_EQ(denied->node().state(), v1::NODE_STATE_REVOKED);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto again = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
    EXPECT_EQ(again.status().code(), Code::kPermissionDenied) << again.status().ToString();
  }
  v1::ApprovalApproveRequest approve;
  approve.set_name("w1");
  EXPECT_THAT(admin_->ApproveNode(approve, "CN=bob").status().ToString(),
              HasSubstr("FAILED_PRECONDITION: node w1 is revoked, not pending approval"));
  EXPECT_EQ(Record("w1")->state(), v1::NODE_STATE_REVOKED);
  EXPECT_EQ(Record("w1")->joins(), 0);
}

TEST_F(LifecycleTest, RevokedWhileTheCallIsHeldIsRefusedInThatCall) {
  SetPolicy(Approval(), Hold());
  clock_.on_sleep = [&](int n) {
    if (n == 1) {
      ASSERT_TRUE(admin_->RevokeNode("w1", "CN=alice").ok());
    }
  };
  auto refused = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied) << refused.status().ToString();
  EXPECT_EQ(clock_.sleeps, 1);
  EXPECT_EQ(Record("w1")->state(), v1::NODE_STATE_REVOKED);
}

TEST_F(LifecycleTest, ApprovalIsForTheKeyTheNodeWasSeenWith) {
  SetPolicy(Approval(), Hold());
  ASSERT_TRUE(registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer)->pending);
  v1::ApprovalApproveRequest wrong;
  wrong.set_name("w1");
  wrong.set_ak_sha256(kLcAk);
  EXPECT_THAT(admin_->ApproveNode(wrong, "CN=alice").status().message(),
              HasSubstr("is pending with attestation key sha256:" + kLcOtherAk));
  EXPECT_EQ(Record("w1")->approved_unix(), 0);
  // Another machine claiming the pending name is refused outright.
  auto impostor = registry_->AdmitJoin(Worker("w1", kLcDisk2), Evidence(kLcAk), kPeer);
  EXPECT_EQ(impostor.status().code(), Code::kPermissionDenied);
  wrong.set_ak_sha256("xyz");
  EXPECT_EQ(admin_->ApproveNode(wrong, "CN=alice").status().code(), Code::kInvalidArgument);
  wrong.set_name("w9");
  wrong.clear_ak_sha256();
  EXPECT_EQ(admin_->ApproveNode(wrong, "CN=alice").status().code(), Code::kNotFound);
}

TEST_F(LifecycleTest, NodesThatJoinedBeforeApprovalWasRequiredAreNotAskedAgain) {
  ASSERT_TRUE(registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer).ok());
  SetPolicy(Approval(), Hold());
  auto again = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->pending);
  EXPECT_EQ(clock_.sleeps, 0);
  EXPECT_EQ(Record("w1")->joins(), 2);
}

TEST_F(LifecycleTest, UnauthorizedControlPlaneIsRefusedBeforeItWaitsForApproval) {
  SetPolicy(Approval(), Hold());
  auto refused =
      registry_->AdmitJoin(ControlPlane("cp-x", "10.0.0.7"), Evidence(kLcOtherAk), kPeer);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_FALSE(Record("cp-x").has_value());
  EXPECT_EQ(clock_.sleeps, 0);
}

// ---- EC2 pre-authorization ----

void Preauthorize(NodeStore& store, const std::string& id, int64_t expires) {
  v1::SnsEc2Preauthorization p;
  p.set_version(1);
  p.set_instance_id(id);
  p.set_message_id("msg-" + id);
  p.set_authorized_unix(kLcNow);
  p.set_expires_unix(expires);
  ASSERT_TRUE(store.PutIfAbsent(Ec2PreauthorizationKey(id), RecordToJson(p)).ok());
}

TEST_F(LifecycleTest, OnlyPreauthorizedInstancesJoinEachOnce) {
  SetPolicy(verify::AdmissionPolicy{.ec2_preauthorized_only = true});
  auto none = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
  EXPECT_THAT(none.status().ToString(),
              HasSubstr("PERMISSION_DENIED: this cluster admits only EC2 instances"));
  v1::JoinRequest w1 = Worker("w1");
  w1.set_ec2_instance_id("i-xyz");
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().code(),
            Code::kInvalidArgument);
  w1.set_ec2_instance_id(kInstance);
  // Booted before its "running" event arrived: retryable.
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().code(),
            Code::kUnavailable);
  EXPECT_FALSE(Record("w1").has_value());

  Preauthorize(store_, kInstance, kLcNow + 3600);
  auto joined = registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  EXPECT_THAT(joined->audit,
              HasSubstr("ec2_instance=" + kInstance + " ec2_event=msg-" + kInstance));
  EXPECT_EQ(Record("w1")->ec2_instance_id(), kInstance);
  auto stored = store_.GetValue(Ec2PreauthorizationKey(kInstance));
  ASSERT_TRUE(stored.ok() && stored->has_value());
  v1::SnsEc2Preauthorization used;
  ASSERT_TRUE(RecordFromJson((*stored)->key, (*stored)->value, &used).ok());
  EXPECT_EQ(used.used_unix(), kLcNow);
  EXPECT_EQ(used.used_by_node(), "w1");

  // The same instance cannot admit a second node.
  v1::JoinRequest w2 = Worker("w2", kLcDisk2);
  w2.set_ec2_instance_id(kInstance);
  EXPECT_THAT(registry_->AdmitJoin(w2, Evidence(kLcAk), kPeer).status().message(),
              HasSubstr("was used at"));
  EXPECT_FALSE(Record("w2").has_value());
  // The node that joined rejoins and joins again without a new pre-authorization.
  EXPECT_TRUE(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).ok());
}

TEST_F(LifecycleTest, ExpiredPreauthorizationIsRefused) {
  SetPolicy(verify::AdmissionPolicy{.ec2_preauthorized_only = true});
  Preauthorize(store_, kInstance, kLcNow + 10);
  clock_.Advance(std::chrono::seconds(10));
  v1::JoinRequest w1 = Worker("w1");
  w1.set_ec2_instance_id(kInstance);
  EXPECT_THAT(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().ToString(),
              HasSubstr("PERMISSION_DENIED: the pre-authorization of EC2 instance " + kInstance +
                        " expired"));
}

// ---- the policy's admission section ----

TEST(AdmissionPolicyTest, ParsesAndRefusesUnknownValues) {
  verify::AdmissionPolicy p;
  ASSERT_TRUE(verify::ParseAdmissionPolicy(
                  YAML::Load("{approval: required, ec2_preauthorized_only: true}"), p)
                  .ok());
  EXPECT_TRUE(p.approval_required);
  EXPECT_TRUE(p.ec2_preauthorized_only);
  ASSERT_TRUE(
      verify::ParseAdmissionPolicy(YAML::Load("{tpm: {}}")["admission"], p).ok());  // absent
  EXPECT_FALSE(p.approval_required);
  EXPECT_FALSE(p.ec2_preauthorized_only);
  EXPECT_EQ(verify::ParseAdmissionPolicy(YAML::Load("{approval: maybe}"), p).message(),
            "admission.approval: expected \"required\" or \"none\", not \"maybe\"");
  EXPECT_EQ(
      verify::ParseAdmissionPolicy(YAML::Load("{ec2_preauthorized_only: often}"), p).message(),
      "admission.ec2_preauthorized_only: expected true or false");
  EXPECT_EQ(verify::ParseAdmissionPolicy(YAML::Load("{aproval: required}"), p).message(),
            "policy: unknown key \"admission.aproval\"");
}

// ---- the live policy ----

std::string PolicyText(const std::string& admission) {
  return "tpm:\n  trusted_aks:\n    - name: node-a\n      sha256: " + kLcAk +
         "\n  pcrs:\n    sha256:\n      0: " + std::string(64, '0') + "\n" + admission;
}

// As an editor does: a new file renamed over the old one.
void Replace(const std::string& path, const std::string& text) {
  MustWrite(path + ".tmp", text);
  std::filesystem::rename(path + ".tmp", path);
}

TEST(PolicyHolderTest, ReloadReplacesThePolicyAndABrokenFileLeavesTheOldOneInForce) {
  berth::testing::TempDir dir;
  const std::string path = dir.Join("policy.yaml");
  MustWrite(path, PolicyText(""));
  auto initial = verify::ParsePolicy(PolicyText(""));
  ASSERT_TRUE(initial.ok());
  verify::PolicyHolder holder(std::move(*initial), path);
  Metrics metrics;
  holder.SetObserver([&](bool ok) { metrics.CountPolicyReload(ok); });
  std::shared_ptr<const verify::Policy> before = holder.Current();

  Replace(path, PolicyText("admission:\n  approval: required\n"));
  ASSERT_TRUE(holder.Reload("SIGHUP").ok());
  EXPECT_TRUE(holder.Current()->admission.approval_required);
  EXPECT_FALSE(before->admission.approval_required);  // a snapshot never changes
  EXPECT_EQ(holder.generation(), 1u);

  for (const std::string& broken : {PolicyText("admission:\n  approval: maybe\n"),
                                    std::string("tpm: [\n"), PolicyText("surprise: 1\n")}) {
    Replace(path, broken);
    Status st = holder.Reload("SIGHUP");
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << broken;
    EXPECT_TRUE(holder.Current()->admission.approval_required);
    EXPECT_EQ(holder.generation(), 1u);
  }
  std::filesystem::remove(path);
  EXPECT_FALSE(holder.Reload("SIGHUP").ok());
  EXPECT_TRUE(holder.Current()->admission.approval_required);

  // What this berthd cannot honour is rejected like a policy that does not parse.
  holder.SetValidator([](const verify::Policy& p) {
    return p.admission.ec2_preauthorized_only ? FailedPrecondition("no etcd") : OkStatus();
  });
  Replace(path, PolicyText("admission:\n  ec2_preauthorized_only: true\n"));
  EXPECT_EQ(holder.Reload("SIGHUP").message(), "no etcd");
  EXPECT_FALSE(holder.Current()->admission.ec2_preauthorized_only);

  const std::string text = metrics.Exposition();
  EXPECT_THAT(text, HasSubstr("berth_policy_reloads_total{result=\"ok\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_policy_reloads_total{result=\"rejected\"} 5\n"));
}

TEST(PolicyHolderTest, WatcherReloadsWhenTheFileIsReplacedOrRewritten) {
  berth::testing::TempDir dir;
  const std::string path = dir.Join("policy.yaml");
  MustWrite(path, PolicyText(""));
  verify::PolicyHolder holder(*verify::ParsePolicy(PolicyText("")), path);
  std::atomic<int> rejected{0};
  holder.SetObserver([&](bool ok) {
    if (!ok) rejected++;
  });
  PolicyWatcher watcher(&holder, std::chrono::milliseconds(50));
  ASSERT_TRUE(watcher.Start().ok());

  Replace(path, PolicyText("admission:\n  approval: required\n"));
  ASSERT_TRUE(
      berth::testing::WaitFor([&] { return holder.generation() == 1; }, std::chrono::seconds(10)));
  EXPECT_TRUE(holder.Current()->admission.approval_required);

  MustWrite(path, PolicyText("admission:\n  approval: nope\n"));  // written in place
  ASSERT_TRUE(berth::testing::WaitFor([&] { return rejected > 0; }, std::chrono::seconds(10)));
  EXPECT_TRUE(holder.Current()->admission.approval_required);
  EXPECT_EQ(holder.generation(), 1u);

  MustWrite(dir.Join("other.yaml"), "not a policy");  // other files in the directory: ignored
  MustWrite(path, PolicyText(""));
  ASSERT_TRUE(
      berth::testing::WaitFor([&] { return holder.generation() == 2; }, std::chrono::seconds(10)));
  EXPECT_FALSE(holder.Current()->admission.approval_required);
  watcher.Stop();
}

TEST(PolicyHolderTest, FixedPolicyHasNothingToReloadOrWatch) {
  verify::PolicyHolder holder(verify::Policy{});
  EXPECT_EQ(holder.Reload("SIGHUP").code(), Code::kFailedPrecondition);
  PolicyWatcher watcher(&holder);
  EXPECT_EQ(watcher.Start().code(), Code::kFailedPrecondition);
}

// ---- metrics ----

TEST(MetricsTest, ExpositionIsThePrometheusTextFormat) {
  Metrics m;
  m.CountRequest("IssueJoinTicket", "granted");
  m.CountRequest("IssueJoinTicket", "granted");
  m.CountRequest("IssueJoinTicket", RequestOutcome(PermissionDenied("x"), false));
  m.CountRequest("IssueJoinTicket", RequestOutcome(Unavailable("x"), true));
  m.ObserveRequestSeconds("IssueJoinTicket", 0.003);
  m.ObserveRequestSeconds("IssueJoinTicket", 0.7);
  m.CountEtcdError("Txn", Code::kUnavailable);
  m.CountKubeApiError("POST", "403");
  m.CountSnsMessage("Notification", "refused_signature");
  m.CountEc2Event("running", "preauthorized");
  const std::string text = m.Exposition();
  EXPECT_THAT(
      text,
      HasSubstr("# TYPE berth_requests_total counter\n"
                "berth_requests_total{call=\"IssueJoinTicket\",outcome=\"granted\"} 2\n"
                "berth_requests_total{call=\"IssueJoinTicket\",outcome=\"pending\"} 1\n"
                "berth_requests_total{call=\"IssueJoinTicket\",outcome=\"refused_policy\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr(
          "# TYPE berth_request_duration_seconds histogram\n"
          "berth_request_duration_seconds_bucket{call=\"IssueJoinTicket\",le=\"0.005\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr("berth_request_duration_seconds_bucket{call=\"IssueJoinTicket\",le=\"0.5\"} 1\n"
                "berth_request_duration_seconds_bucket{call=\"IssueJoinTicket\",le=\"1\"} 2\n"));
  EXPECT_THAT(
      text,
      HasSubstr("berth_request_duration_seconds_bucket{call=\"IssueJoinTicket\",le=\"+Inf\"} 2\n"
                "berth_request_duration_seconds_sum{call=\"IssueJoinTicket\"} 0.703\n"
                "berth_request_duration_seconds_count{call=\"IssueJoinTicket\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("berth_etcd_errors_total{method=\"Txn\",code=\"UNAVAILABLE\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_kube_api_errors_total{method=\"POST\",code=\"403\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr(
          "berth_sns_messages_total{type=\"Notification\",outcome=\"refused_signature\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("berth_ec2_events_total{state=\"running\",action=\"preauthorized\"} 1\n"));
  EXPECT_EQ(Labels({{"a", "x\"y\\z\n"}}), "{a=\"x\\\"y\\\\z\\n\"}");
}

TEST(MetricsTest, MeteredClientsCountFailuresOnly) {
  Metrics m;
  berth::testing::FakeEtcd etcd;
  auto metered = MeteredEtcdClient(&etcd, &m);
  etcd.Fail("Range", grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
  etcdserverpb::RangeRequest range;
  range.set_key("k");
  EXPECT_FALSE(metered->Range(range).ok());
  EXPECT_TRUE(metered->Range(range).ok());
  LcFakeKube kube;
  auto kube_metered = MeteredKubeClient(&kube, &m);
  EXPECT_TRUE(kube_metered->Request("GET", "/x", "").ok());
  const std::string text = m.Exposition();
  EXPECT_THAT(text,
              HasSubstr("berth_etcd_errors_total{method=\"Range\",code=\"UNAVAILABLE\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("berth_kube_api_errors_total{")));
}

}  // namespace
}  // namespace berth::server
