// The etcd client against a real 3-member etcd cluster (EtcdBinary(): the control planes'
// etcd) over TLS: KV and compare-and-swap transactions, membership calls and how etcd's errors
// come back, failover when a member is down, and a member whose handshakes outlast a call.
#include "common/etcd_client.h"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <thread>

#include "tests/testing/etcd.h"
#include "tests/testing/testing.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;

// A TCP proxy on loopback that holds every new connection for `delay` before it connects it to
// 127.0.0.1:`target_port`, then copies bytes both ways: a member whose TLS handshakes take that
// long, as a loaded machine's do (11 s seen under QEMU's emulation). A stand-in for a fault a
// real etcd does not produce on demand (tests/standins/README.md).
class SlowHandshakeProxy {
 public:
  SlowHandshakeProxy(int target_port, std::chrono::milliseconds delay)
      : target_port_(target_port), delay_(delay) {
    listener_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (bind(listener_, reinterpret_cast<sockaddr*>(&a), len) != 0 || listen(listener_, 16) != 0 ||
        getsockname(listener_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      ADD_FAILURE() << "the proxy could not listen";
      return;
    }
    port_ = ntohs(a.sin_port);
    accept_ = std::thread([this] { AcceptLoop(); });
  }
  ~SlowHandshakeProxy() {
    stop_ = true;
    if (accept_.joinable()) accept_.join();  // then nothing adds to connections_
    for (auto& t : serving_) t.join();
    close(listener_);
  }
  int port() const { return port_; }
  int connections() const { return connections_; }

 private:
  void AcceptLoop() {
    while (!stop_) {
      pollfd p{listener_, POLLIN, 0};
      if (poll(&p, 1, 100) <= 0) continue;
      const int down = accept(listener_, nullptr, nullptr);
      if (down < 0) continue;
      ++connections_;
      serving_.emplace_back([this, down] { Serve(down); });
    }
  }
  void Serve(int down) {
    for (auto until = std::chrono::steady_clock::now() + delay_;
         !stop_ && std::chrono::steady_clock::now() < until;) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    const int up = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(static_cast<uint16_t>(target_port_));
    if (!stop_ && connect(up, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      char buf[16384];
      pollfd fds[2] = {{down, POLLIN, 0}, {up, POLLIN, 0}};
      while (!stop_) {
        if (poll(fds, 2, 100) <= 0) continue;
        bool closed = false;
        for (int i = 0; i < 2 && !closed; ++i) {
          if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
          const ssize_t n = read(fds[i].fd, buf, sizeof buf);
          closed = n <= 0 || write(fds[1 - i].fd, buf, static_cast<size_t>(n)) != n;
        }
        if (closed) break;
      }
    }
    close(up);
    close(down);
  }

  const int target_port_;
  const std::chrono::milliseconds delay_;
  int listener_ = -1;
  int port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> connections_{0};
  std::thread accept_;
  std::vector<std::thread> serving_;  // one per connection, added by accept_ only
};

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

// Every new connection to the member takes 4 s, a call 1 s (and a connection attempt 3 s
// before the fix): the first calls end at their deadline while the handshake goes on, and a
// later call uses the connection it made. Before, each failed call dropped the connecting
// channel and the next one started another handshake, so no call ever got through.
TEST_F(EtcdClientTest, AMemberWhoseHandshakesOutlastACallIsReachedAllTheSame) {
  const std::string url = cluster_->ClientUrl(0);
  SlowHandshakeProxy proxy(std::stoi(url.substr(url.rfind(':') + 1)), std::chrono::seconds(4));
  auto client = cluster_->NewClient({"https://127.0.0.1:" + std::to_string(proxy.port())},
                                    std::chrono::seconds(1));
  ASSERT_NE(client, nullptr);
  etcdserverpb::RangeRequest r;
  r.set_key("/t5/none");
  int failed = 0;
  Status last;
  const bool reached = WaitFor(
      [&] {
        auto got = client->Range(r);
        if (got.ok()) return true;
        last = got.status();
        EXPECT_THAT(last.code(), ::testing::AnyOf(Code::kDeadlineExceeded, Code::kUnavailable))
            << last.ToString();
        ++failed;
        return false;
      },
      std::chrono::seconds(30), std::chrono::milliseconds(200));
  EXPECT_TRUE(reached) << failed << " calls failed, the last: " << last.ToString();
  EXPECT_GE(failed, 1);  // the delay did outlast a call
  EXPECT_EQ(proxy.connections(), 1);
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
