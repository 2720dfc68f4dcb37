// Faults during joins, with every part real (etcd, berthd, the agent's join over TLS): berthd
// killed in the middle of a join and restarted, and an etcd member killed while nodes join
// under load. In each case the node ends joined once and berthd's records in etcd agree with
// what the nodes were told. (Power cuts and kills on the node are tested in QEMU:
// tests/e2e/state_disk_e2e_test.cc.)
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <set>
#include <thread>

#include "server/nodes/store.h"
#include "tests/bench/load.h"
#include "tests/bench/soft_ak.h"
#include "tests/integration/etcd_testbed.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;

std::optional<v1::NodeRecord> Record(EtcdTestbed& bed, const std::string& name) {
  auto client = bed.etcd().NewClient();
  server::NodeStore store(client.get());
  auto r = store.Get(name);
  if (!r.ok() || !r->has_value()) return std::nullopt;
  return (*r)->record;
}

// berthd records the node in etcd, then asks the API server for its bootstrap token; the API
// server here (the stand-in: a real one cannot be made slow) answers writes 5 s late, so once
// it has the request the join is in berthd's hands. berthd is killed then (not as soon as the record is in etcd: the kill could come
// before the request is sent), and restarted on its port: the agent's retry gets the ticket,
// kubeadm runs once, and the record is the one join.
TEST(FaultsTest, BerthdKilledMidJoinAndRestartedTheNodeJoinsOnce) {
  EtcdTestbed bed({.api_delay_ms = 5000});
  ASSERT_TRUE(bed.ok()) << bed.error();
  TestNode& node = bed.AddNode("worker-1", false);
  ASSERT_TRUE(bed.StartBerthd());
  const int port = bed.berthd_port();

  AgentOutcome boot;
  std::thread agent([&] { boot = bed.RunAgent(node, false, {bed.BerthdEndpoint()}); });
  bool in_flight =
      WaitForText(bed.dir().Join("apiserver.log"), "delaying POST", std::chrono::seconds(60));
  EXPECT_TRUE(in_flight) << MustRead(bed.BerthdLog());
  EXPECT_TRUE(Record(bed, "worker-1").has_value());  // written before the token was asked for
  bed.KillBerthd();
  EXPECT_EQ(bed.KubeadmJoins().size(), 0u);  // the agent had no ticket yet
  ASSERT_TRUE(bed.StartBerthd(0, port));
  agent.join();
  ASSERT_TRUE(boot.status.ok()) << boot.status.ToString() << "\n" << MustRead(bed.BerthdLog());

  EXPECT_EQ(bed.KubeadmJoins().size(), 1u);
  // Two token Secrets: the killed berthd's request reached the API server but its token was
  // never delivered (it expires with its TTL); the second is the node's.
  EXPECT_EQ(bed.TokenSecrets().size(), 2u);
  auto record = Record(bed, "worker-1");
  ASSERT_TRUE(record.has_value());
  EXPECT_EQ(record->state(), v1::NODE_STATE_JOINED);
  EXPECT_EQ(record->disk_uuid(), node.disk.uuid);
  EXPECT_EQ(record->ak_sha256(), node.ak_sha256);
  // Exactly one granted join in the restarted berthd's log (the first never answered).
  std::string log = MustRead(bed.BerthdLog());
  size_t first = log.find("audit call=IssueJoinTicket decision=granted node=worker-1");
  ASSERT_NE(first, std::string::npos) << log;
  EXPECT_EQ(log.find("audit call=IssueJoinTicket decision=granted node=worker-1", first + 1),
            std::string::npos);

  // The next boot rejoins with the same disk: no second kubeadm join.
  const std::string disk_key = node.disk.key;
  AgentOutcome reboot = bed.RunAgent(node, false, {bed.BerthdEndpoint()});
  ASSERT_TRUE(reboot.status.ok()) << reboot.status.ToString();
  EXPECT_EQ(node.disk.key, disk_key);
  EXPECT_EQ(bed.KubeadmJoins().size(), 1u);
}

struct Attempt {
  std::string name;
  Status status;
  std::chrono::steady_clock::time_point finished;
};

// Nodes join back to back from six threads while berthd's first etcd endpoint is killed
// (SIGKILL) and later restarted. The two members left are a quorum: joins go on while it is
// down; a call caught by the kill fails with a retryable code, never a refusal; every node
// told it joined has its record.
TEST(FaultsTest, AnEtcdMemberKilledUnderLoadCostsNoJoinAndNoRecord) {
  auto ak = bench::SoftAk::Create({0, 7});
  ASSERT_TRUE(ak.ok());
  auto policy = ak->PolicyYaml();
  ASSERT_TRUE(policy.ok());
  EtcdTestbed bed({.policy = *policy});
  ASSERT_TRUE(bed.ok()) << bed.error();
  ASSERT_TRUE(bed.StartBerthd());
  bench::LoadOptions options;
  options.endpoint = bed.BerthdEndpoint();
  options.ca_pem = bed.JoinCaPem();
  options.server_name = "localhost";

  std::mutex mu;
  std::vector<Attempt> attempts;
  std::atomic<bool> stop{false};
  std::vector<std::thread> nodes;
  for (int t = 0; t < 6; ++t) {
    nodes.emplace_back([&, t] {
      for (int seq = 0; !stop; ++seq) {
        std::string name = "load-" + std::to_string(t) + "-" + std::to_string(seq);
        bench::JoinAttempt a = bench::JoinOnce(options, *ak, name);
        std::lock_guard lock(mu);
        attempts.push_back({name, a.status, a.finished});
      }
    });
  }
  std::this_thread::sleep_for(std::chrono::seconds(4));
  auto killed_at = std::chrono::steady_clock::now();
  bed.etcd().Kill(0);
  std::this_thread::sleep_for(std::chrono::seconds(8));
  auto restarted_at = std::chrono::steady_clock::now();
  ASSERT_TRUE(bed.etcd().Restart(0));
  std::this_thread::sleep_for(std::chrono::seconds(4));
  stop = true;
  for (auto& t : nodes) t.join();
  ASSERT_TRUE(bed.etcd().WaitHealthy(std::chrono::seconds(30)));

  int ok = 0, ok_while_down = 0, retryable = 0;
  std::set<std::string> joined;
  for (const Attempt& a : attempts) {
    if (a.status.ok()) {
      ++ok;
      joined.insert(a.name);
      if (a.finished > killed_at + std::chrono::seconds(1) && a.finished < restarted_at) {
        ++ok_while_down;
      }
    } else {
      EXPECT_TRUE(IsRetryable(a.status)) << a.name << ": " << a.status.ToString();
      ++retryable;
    }
  }
  std::printf("etcd member killed under load: %zu joins attempted, %d granted (%d while the "
              "member was down), %d retryable failures\n",
              attempts.size(), ok, ok_while_down, retryable);
  EXPECT_GT(ok_while_down, 0);

  // Every node told it joined has a record saying so, and every record is of a node that
  // asked: a call that failed after its record was written left a record, never the reverse.
  auto client = bed.etcd().NewClient();
  server::NodeStore store(client.get());
  auto records = store.List();
  ASSERT_TRUE(records.ok()) << records.status().ToString();
  std::set<std::string> recorded;
  for (const auto& r : *records) {
    recorded.insert(r.record.name());
    EXPECT_EQ(r.record.state(), v1::NODE_STATE_JOINED) << r.record.name();
  }
  for (const std::string& name : joined) EXPECT_TRUE(recorded.count(name)) << name;
  std::set<std::string> attempted;
  for (const Attempt& a : attempts) attempted.insert(a.name);
  for (const std::string& name : recorded) EXPECT_TRUE(attempted.count(name)) << name;
  EXPECT_LE(recorded.size() - joined.size(), static_cast<size_t>(retryable));
}

}  // namespace
}  // namespace berth::testing
