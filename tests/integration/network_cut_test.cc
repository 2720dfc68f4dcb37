// The network between a node and berthd cut, and restored, while the node's join is in
// flight. berthd runs in a network namespace the test makes, reached over a veth pair; the
// cut is the host's end of the pair going down (nothing passes either way), for longer than
// the agent's 30 s call timeout. The agent's call times out, it retries once the link is back,
// and the node joins once: one kubeadm run, the ticket berthd's second answer.
#include <gtest/gtest.h>
#include <unistd.h>

#include <thread>

#include "common/subprocess.h"
#include "tests/integration/cluster.h"

namespace berth::testing {
namespace {

bool Ip(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {"/usr/sbin/ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  RealProcessRunner runner;
  auto r = runner.Run(argv);
  EXPECT_TRUE(r.ok() && r->success()) << "ip " << args[0] << ": " << (r.ok() ? r->output : "");
  return r.ok() && r->success();
}

// A network namespace and a veth pair between it and the host, removed on destruction.
class Veth {
 public:
  Veth() {
    const std::string id = std::to_string(getpid() % 100000);
    const int subnet = static_cast<int>(getpid() % 250);
    netns = "berth-cut-" + id;
    host_if = "bch" + id;
    ns_if = "bcn" + id;
    host_ip = "10.231." + std::to_string(subnet) + ".1";
    ns_ip = "10.231." + std::to_string(subnet) + ".2";
    ok = Ip({"netns", "add", netns}) &&
         Ip({"link", "add", host_if, "type", "veth", "peer", "name", ns_if}) &&
         Ip({"link", "set", ns_if, "netns", netns}) &&
         Ip({"addr", "add", host_ip + "/30", "dev", host_if}) &&
         Ip({"link", "set", host_if, "up"}) &&
         Ip({"-n", netns, "addr", "add", ns_ip + "/30", "dev", ns_if}) &&
         Ip({"-n", netns, "link", "set", ns_if, "up"}) &&
         Ip({"-n", netns, "link", "set", "lo", "up"});
  }
  ~Veth() {
    RealProcessRunner runner;
    (void)runner.Run({"/usr/sbin/ip", "link", "del", host_if});
    (void)runner.Run({"/usr/sbin/ip", "netns", "del", netns});
  }
  bool Cut() { return Ip({"link", "set", host_if, "down"}); }
  bool Restore() { return Ip({"link", "set", host_if, "up"}); }

  bool ok = false;
  std::string netns, host_if, ns_if, host_ip, ns_ip;
};

TEST(NetworkCutTest, ANodeWhoseLinkToBerthdIsCutMidJoinJoinsOnceWhenItIsBack) {
  Veth net;
  ASSERT_TRUE(net.ok);
  HostCluster cluster({}, {.netns = net.netns, .berthd_ip = net.ns_ip, .host_ip = net.host_ip});
  // The API server answers writes 3 s late: the token request, so the join is in flight.
  // The stand-in: a real API server cannot be told to answer late, and berthd in its network
  // namespace reaches it at the host's end of the pair (tests/standins/README.md).
  ASSERT_TRUE(cluster.StartStandinApiServer({"--delay-ms", "3000"}));
  ASSERT_TRUE(cluster.WritePolicyFromNode());
  ASSERT_TRUE(cluster.StartBerthd());
  cluster.WriteEnrolment(cluster.BaseEnrolment());

  AgentRun run;
  std::thread agent([&] { run = cluster.RunAgent(); });
  bool in_flight = WaitForText(cluster.dir().Join("apiserver.log"), "delaying POST",
                               std::chrono::seconds(60));
  EXPECT_TRUE(in_flight) << MustRead(cluster.berthd_log());
  ASSERT_TRUE(net.Cut());
  std::this_thread::sleep_for(std::chrono::seconds(35));  // beyond the agent's call timeout
  ASSERT_TRUE(net.Restore());
  agent.join();

  ASSERT_EQ(run.result.exit_code, 0) << run.log << MustRead(cluster.berthd_log());
  EXPECT_NE(run.log.find("retrying"), std::string::npos) << run.log;
  EXPECT_NE(run.log.find("DEADLINE_EXCEEDED"), std::string::npos) << run.log;
  EXPECT_EQ(cluster.KubeadmJoins().size(), 1u);
  // berthd's first call waited on the API server behind the cut link, gave up after its 10 s
  // timeout with UNAVAILABLE (an answer the agent never got), and granted the retry. The API
  // server did create the first token (its answer was lost): never delivered to anyone, it
  // expires with its TTL.
  EXPECT_EQ(cluster.TokenSecrets().size(), 2u);
  std::string log = MustRead(cluster.berthd_log());
  size_t refused = log.find("decision=refused node=node-1");
  ASSERT_NE(refused, std::string::npos) << log;
  EXPECT_NE(log.find("code=UNAVAILABLE reason=\"creating bootstrap token: Kubernetes API https://" +
                         net.host_ip,
                     refused),
            std::string::npos)
      << log;
  size_t granted = log.find("decision=granted node=node-1");
  ASSERT_NE(granted, std::string::npos) << log;
  EXPECT_GT(granted, refused);
  EXPECT_EQ(log.find("decision=granted node=node-1", granted + 1), std::string::npos) << log;
}

}  // namespace
}  // namespace berth::testing
