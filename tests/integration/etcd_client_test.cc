// The etcd client against a real 3-member etcd cluster (Debian's etcd 3.4) over TLS: KV and
// compare-and-swap transactions, membership calls and how etcd's errors come back, and
// failover when a member is down.
#include "common/etcd_client.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/testing/etcd.h"
#include "tests/testing/testing.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;

class EtcdClientTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    cluster_ = new EtcdCluster(dir_->path(), 3);
  }
  static void TearDownTestSuite() {
    delete cluster_;
    delete dir_;
  }
  void SetUp() override {
    ASSERT_TRUE(cluster_->ok()) << cluster_->error();
    ASSERT_TRUE(cluster_->WaitHealthy(std::chrono::seconds(30)));
    client_ = cluster_->NewClient();
    ASSERT_NE(client_, nullptr);
  }

  static etcdserverpb::PutRequest PutOf(const std::string& k, const std::string& v) {
    etcdserverpb::PutRequest p;
    p.set_key(k);
    p.set_value(v);
    return p;
  }

  static TempDir* dir_;
  static EtcdCluster* cluster_;
  std::unique_ptr<etcd::Client> client_;
};

TempDir* EtcdClientTest::dir_ = nullptr;
EtcdCluster* EtcdClientTest::cluster_ = nullptr;

TEST_F(EtcdClientTest, PutRangePrefixAndDelete) {
  ASSERT_TRUE(client_->Put(PutOf("/t1/a", "1")).ok());
  ASSERT_TRUE(client_->Put(PutOf("/t1/b", "2")).ok());
  ASSERT_TRUE(client_->Put(PutOf("/t10", "other")).ok());
  etcdserverpb::RangeRequest r;
  r.set_key("/t1/");
  r.set_range_end(etcd::PrefixEnd("/t1/"));
  auto got = client_->Range(r);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  ASSERT_EQ(got->kvs_size(), 2);
  EXPECT_EQ(got->kvs(0).key(), "/t1/a");
  EXPECT_EQ(got->kvs(0).value(), "1");
  EXPECT_EQ(got->kvs(1).value(), "2");
  etcdserverpb::DeleteRangeRequest d;
  d.set_key("/t1/");
  d.set_range_end(etcd::PrefixEnd("/t1/"));
  auto deleted = client_->DeleteRange(d);
  ASSERT_TRUE(deleted.ok());
  EXPECT_EQ(deleted->deleted(), 2);
  EXPECT_EQ(client_->Range(r)->kvs_size(), 0);
}

TEST_F(EtcdClientTest, TxnComparesModRevision) {
  auto put = client_->Put(PutOf("/t2/k", "v1"));
  ASSERT_TRUE(put.ok());
  const int64_t rev = put->header().revision();
  auto cas = [&](int64_t expected, const std::string& value) {
    etcdserverpb::TxnRequest t;
    auto* c = t.add_compare();
    c->set_key("/t2/k");
    c->set_target(etcdserverpb::Compare::MOD);
    c->set_result(etcdserverpb::Compare::EQUAL);
    c->set_mod_revision(expected);
    *t.add_success()->mutable_request_put() = PutOf("/t2/k", value);
    return client_->Txn(t);
  };
  auto first = cas(rev, "v2");
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_TRUE(first->succeeded());
  auto stale = cas(rev, "v3");  // a second writer with the old revision loses
  ASSERT_TRUE(stale.ok());
  EXPECT_FALSE(stale->succeeded());
  etcdserverpb::RangeRequest r;
  r.set_key("/t2/k");
  EXPECT_EQ(client_->Range(r)->kvs(0).value(), "v2");
  // A missing key compares as mod_revision 0: "create only if absent".
  etcdserverpb::TxnRequest t;
  auto* c = t.add_compare();
  c->set_key("/t2/new");
  c->set_target(etcdserverpb::Compare::MOD);
  c->set_mod_revision(0);
  *t.add_success()->mutable_request_put() = PutOf("/t2/new", "x");
  EXPECT_TRUE(client_->Txn(t)->succeeded());
  EXPECT_FALSE(client_->Txn(t)->succeeded());
}

TEST_F(EtcdClientTest, MembershipCallsAndEtcdErrors) {
  auto list = client_->MemberList();
  ASSERT_TRUE(list.ok()) << list.status().ToString();
  ASSERT_EQ(list->members_size(), 3);
  for (const auto& m : list->members()) {
    EXPECT_FALSE(m.islearner());
    EXPECT_THAT(m.name(), ::testing::StartsWith("etcd-"));
  }
  const std::string peer = "https://127.0.0.1:" + std::to_string(UnusedPort());
  // etcd refuses reconfiguration until every member has been connected to every other for
  // 5 s ("unhealthy cluster"), so right after the cluster started the add may have to wait.
  Result<etcdserverpb::MemberAddResponse> added = Unavailable("not tried");
  WaitFor(
      [&] {
        added = client_->MemberAdd({peer}, /*learner=*/true);
        return added.ok() ||
               added.status().message().find("unhealthy cluster") == std::string::npos;
      },
      std::chrono::seconds(15));
  ASSERT_TRUE(added.ok()) << added.status().ToString();
  EXPECT_TRUE(added->member().islearner());
  EXPECT_EQ(added->member().name(), "");  // not started
  const uint64_t id = added->member().id();

  // The same peer URL again: etcd refuses it, so a retried add never makes a second member.
  auto again = client_->MemberAdd({peer}, true);
  EXPECT_EQ(again.status().code(), Code::kAlreadyExists) << again.status().ToString();
  // etcd allows one learner at a time.
  auto second = client_->MemberAdd({"https://127.0.0.1:" + std::to_string(UnusedPort())}, true);
  EXPECT_EQ(second.status().code(), Code::kUnavailable);
  EXPECT_THAT(second.status().message(), HasSubstr("too many learner members"));
  // A learner that never started is not in sync.
  auto promote = client_->MemberPromote(id);
  EXPECT_EQ(promote.status().code(), Code::kUnavailable);
  EXPECT_THAT(promote.status().message(), HasSubstr("in sync with leader"));
  // Promoting a voter is a precondition failure, not a retry. The leader's own ID: etcd 3.4
  // first checks that the member's log has caught up with the leader's (learner or not), and
  // a follower a few entries behind would be answered "not in sync" instead.
  auto status = client_->Status(cluster_->ClientUrl(0));
  ASSERT_TRUE(status.ok()) << status.status().ToString();
  auto voter = client_->MemberPromote(status->leader());
  EXPECT_EQ(voter.status().code(), Code::kFailedPrecondition) << voter.status().ToString();

  ASSERT_TRUE(client_->MemberRemove(id).ok());
  EXPECT_EQ(client_->MemberRemove(id).status().code(), Code::kNotFound);
  EXPECT_EQ(client_->MemberList()->members_size(), 3);
}

TEST_F(EtcdClientTest, StatusNamesTheMemberAsked) {
  auto list = client_->MemberList();
  ASSERT_TRUE(list.ok());
  for (int i = 0; i < 3; ++i) {
    auto st = client_->Status(cluster_->ClientUrl(i));
    ASSERT_TRUE(st.ok()) << st.status().ToString();
    EXPECT_NE(st->leader(), 0u);
    EXPECT_EQ(st->version(), "3.7.0");  // kube/etcd/go.mod's release (EtcdBinary())
    bool found = false;
    for (const auto& m : list->members()) {
      if (m.id() == st->header().member_id()) found = m.name() == cluster_->Name(i);
    }
    EXPECT_TRUE(found) << "member " << i;
  }
  auto nobody = client_->Status("https://127.0.0.1:" + std::to_string(UnusedPort()));
  EXPECT_EQ(nobody.status().code(), Code::kUnavailable);
}

TEST_F(EtcdClientTest, FailsOverWhenAMemberIsDown) {
  cluster_->Stop(0);  // the first endpoint: every call starts there
  auto put = client_->Put(PutOf("/t3/k", "written while etcd-0 is down"));
  EXPECT_TRUE(put.ok()) << put.status().ToString();
  etcdserverpb::RangeRequest r;
  r.set_key("/t3/k");
  auto got = client_->Range(r);
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_EQ(got->kvs(0).value(), "written while etcd-0 is down");
  ASSERT_TRUE(cluster_->Restart(0));
  EXPECT_TRUE(cluster_->WaitHealthy(std::chrono::seconds(30)));
}

TEST(EtcdClientOptionsTest, RefusesPlainHttpAndBadEndpoints) {
  EXPECT_EQ(etcd::EndpointTarget("https://10.0.0.1:2379/").value(), "10.0.0.1:2379");
  EXPECT_EQ(etcd::EndpointTarget("10.0.0.1:2379").value(), "10.0.0.1:2379");
  EXPECT_EQ(etcd::EndpointTarget("http://10.0.0.1:2379").status().ToString(),
            "INVALID_ARGUMENT: etcd endpoint http://10.0.0.1:2379 is plain http; berth talks to "
            "etcd over TLS only");
  EXPECT_EQ(etcd::EndpointTarget("https://10.0.0.1").status().code(), Code::kInvalidArgument);
  EXPECT_EQ(etcd::MakeGrpcClient({}).status().ToString(),
            "INVALID_ARGUMENT: no etcd endpoints given");
  EXPECT_EQ(etcd::PrefixEnd("/a/"), "/a0");
  EXPECT_EQ(etcd::PrefixEnd(std::string("a\xff", 2)), "b");
  EXPECT_EQ(etcd::MemberIdHex(0x8e9e05c52164694dull), "8e9e05c52164694d");
}

TEST(EtcdErrorTest, MapsEtcdsErrorsToRetryClasses) {
  auto map = [](grpc::StatusCode code, const char* msg) {
    return etcd::EtcdError(grpc::Status(code, msg), "etcd X");
  };
  EXPECT_EQ(map(grpc::StatusCode::UNAVAILABLE, "etcdserver: no leader").code(), Code::kUnavailable);
  EXPECT_EQ(map(grpc::StatusCode::UNAVAILABLE, "etcdserver: request timed out").code(),
            Code::kUnavailable);
  EXPECT_EQ(map(grpc::StatusCode::DEADLINE_EXCEEDED, "context deadline exceeded").code(),
            Code::kDeadlineExceeded);
  EXPECT_EQ(map(grpc::StatusCode::FAILED_PRECONDITION,
                "etcdserver: re-configuration failed due to not enough started members")
                .code(),
            Code::kFailedPrecondition);
  EXPECT_EQ(
      map(grpc::StatusCode::RESOURCE_EXHAUSTED, "etcdserver: mvcc: database space exceeded").code(),
      Code::kResourceExhausted);
  EXPECT_EQ(map(grpc::StatusCode::PERMISSION_DENIED, "etcdserver: permission denied").code(),
            Code::kUnavailable);
  EXPECT_EQ(map(grpc::StatusCode::INVALID_ARGUMENT, "etcdserver: key is not provided").ToString(),
            "INTERNAL: etcd X: etcdserver: key is not provided");
  EXPECT_TRUE(etcd::TryNextEndpoint(grpc::Status(grpc::StatusCode::UNAVAILABLE, "x")));
  EXPECT_TRUE(etcd::TryNextEndpoint(
      grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, "etcdserver: not leader")));
  EXPECT_FALSE(etcd::TryNextEndpoint(grpc::Status(
      grpc::StatusCode::FAILED_PRECONDITION, "etcdserver: too many learner members in cluster")));
}

}  // namespace
}  // namespace berth::testing
