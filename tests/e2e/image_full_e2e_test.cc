// The node image with real Kubernetes, the whole life of a worker (ctest label e2e-full, not
// in CI: 365 s measured here; docs/kubernetes-node.md). One test in phases, because each is a
// boot of the same node (its TPM, ESP and state disk) and boots are what costs time:
//
//   1. first boot with the API server unreachable from the node (the endpoint in its tickets
//      refuses connections): the agent formats its state disk, kubeadm join fails, and the
//      agent says so in its unit's status and retries with backoff and a fresh ticket;
//   2. the API server becomes reachable: the retry joins, the kubelet TLS-bootstraps, the node
//      turns Ready; the disk was formatted once;
//   3. a reboot: a rejoin ticket unlocks the same disk, no kubeadm join, no new CSR, the
//      kubelet starts with its own client certificate and the node is Ready again (a new boot
//      ID);
//   4. a tampered boot (another kernel command line) of a new node: berthd refuses it, it never
//      appears in `kubectl get nodes`, and its state disk is untouched.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <thread>

#include "common/bytes.h"
#include "common/subprocess.h"
#include "tests/e2e/image_fixture.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

std::string BootId(const ImageCluster& cluster, const std::string& node) {
  nlohmann::json n = cluster.GetJson({"node", node});
  return n.is_null() ? "" : n["status"]["nodeInfo"].value("bootID", "");
}

int CsrCount(const ImageCluster& cluster) {
  return static_cast<int>(cluster.GetJson({"csr"}).value("items", nlohmann::json::array()).size());
}

TEST_F(ImageE2eTest,
       AWorkerJoinsOnceTheApiServerIsReachableRejoinsWithoutKubeadmAndATamperedBootIsRefused) {
  const std::string policy = ReferencePolicy();
  ASSERT_FALSE(policy.empty());
  ImageCluster cluster(dir_.Join("cluster"));
  ASSERT_TRUE(cluster.ok()) << cluster.error();
  // Tickets name an endpoint where nothing listens yet: from the node, the API server is down.
  const int api_port = UnusedPort();
  ASSERT_TRUE(cluster.StartBerthd(policy, 0,
                                  std::string(kGuestHostAddress) + ":" + std::to_string(api_port)));
  const std::string node_name = "image-worker-1";
  const v1::EnrolmentConfig config = cluster.Enrolment(node_name);
  auto node = NewNode("worker-1");

  // ---- 1. the API server unreachable: kubeadm join fails, the agent retries ----
  auto running =
      node->Start({.enrolment = &config, .options = {"HOLD=1", "WRITE=written-on-first-boot"}});
  ASSERT_NE(running, nullptr);
  // The status of the first failed attempt the console shows: the agent's retry can be quicker
  // than the status script's polling (a backoff under a second, a fresh ticket), so which
  // attempt that is is not fixed.
  const std::string waiting =
      "berth-test: agent-status=activating: waiting: kubeadm join failed (attempt ";
  ASSERT_TRUE(running->WaitForSerial(waiting, std::chrono::seconds(900)))
      << running->Serial().substr(running->Serial().size() > 6000 ? running->Serial().size() - 6000
                                                                  : 0);
  {
    const std::string serial = running->Serial();
    // What `systemctl status berth-agent` says meanwhile: kubeadm's own error.
    const std::string status = serial.substr(serial.find(waiting));
    const std::string line = status.substr(0, status.find('\n'));
    EXPECT_THAT(line, HasSubstr("error execution phase preflight: couldn't validate the identity "
                                "of the API Server"));
    EXPECT_THAT(line, HasSubstr("connection refused"));
    EXPECT_THAT(line, HasSubstr("; retrying in "));
    // The state disk was formatted and mounted before the join, once; the journal has the
    // attempt.
    EXPECT_THAT(serial, HasSubstr("step=mount result=ok"));
    EXPECT_THAT(serial, HasSubstr("step=kubeadm-join result=failed"));
    EXPECT_THAT(serial, HasSubstr("kubeadm join attempt 1 failed; clearing what it left and "
                                  "joining again with a new ticket"));
  }
  EXPECT_EQ(cluster.NodeReady(node_name), "");  // not registered

  // ---- 2. the API server reachable: the retry joins and the node turns Ready ----
  ASSERT_TRUE(cluster.StartApiForwarder(api_port));
  ASSERT_TRUE(WaitForReady(cluster, node_name, *running));
  const std::vector<std::string> tokens = TokenIds(cluster, node_name);
  ASSERT_GE(tokens.size(), 2u);  // a fresh ticket, so a fresh token, per attempt
  for (size_t i = 1; i < tokens.size(); ++i) EXPECT_NE(tokens[i], tokens[i - 1]);
  const std::string token_secret = TokenSecret(cluster, tokens.back());
  const std::string cert_sha256 =
      ExpectJoinedThroughAnApprovedCsr(cluster, node_name, tokens.back());
  const std::string first_boot_id = BootId(cluster, node_name);
  EXPECT_EQ(first_boot_id.size(), 36u);
  const int csrs = CsrCount(cluster);
  ASSERT_TRUE(running->WaitForSerial("berth-test: holding=1", std::chrono::seconds(300)));
  running->PressPowerButton();
  ImageBoot first = running->Finish();
  ExpectJoinedNodeReport(first, cluster);
  EXPECT_EQ(first.Count("step=format result=ok"), 1) << first.Describe();
  EXPECT_EQ(first.Count("step=kubeadm-join result=ok"), 1);
  EXPECT_EQ(first.Count("step=kubeadm-join result=failed"), static_cast<int>(tokens.size()) - 1);
  EXPECT_EQ(first.Report("kubelet-client-cert-sha256"), cert_sha256);
  EXPECT_EQ(first.Report("wrote"), "written-on-first-boot");
  const std::string uuid = DiskUuid(node->disk());
  EXPECT_EQ(uuid.size(), 36u);

  // ---- 3. a reboot: the same disk, no kubeadm, the kubelet's own certificate ----
  auto rebooted = node->Start({.enrolment = &config, .options = {"HOLD=1"}});
  ASSERT_NE(rebooted, nullptr);
  // Ready again, reported by the kubelet of this boot (a new boot ID), not a stale condition.
  ASSERT_TRUE(WaitFor(
      [&] {
        return (!rebooted->running()) || (cluster.NodeReady(node_name) == "True" &&
                                          BootId(cluster, node_name) != first_boot_id);
      },
      std::chrono::seconds(900)));
  ASSERT_TRUE(rebooted->running()) << rebooted->Serial();
  EXPECT_EQ(CsrCount(cluster), csrs);                             // no second TLS bootstrap
  EXPECT_EQ(TokenIds(cluster, node_name).size(), tokens.size());  // no new token
  ASSERT_TRUE(rebooted->WaitForSerial("berth-test: holding=1", std::chrono::seconds(300)));
  rebooted->PressPowerButton();
  ImageBoot second = rebooted->Finish();
  ExpectJoinedNodeReport(second, cluster);
  EXPECT_EQ(second.Count("step=request-rejoin-ticket result=ok"), 1) << second.Describe();
  EXPECT_EQ(second.Count("step=format"), 0);
  EXPECT_EQ(second.Count("step=request-ticket"), 0);
  EXPECT_EQ(second.Count("step=kubeadm-join"), 0);
  EXPECT_EQ(second.Count("step=start-kubelet result=ok"), 1);
  EXPECT_EQ(second.Report("data"), "written-on-first-boot");
  EXPECT_EQ(second.Report("kubelet-client-cert-sha256"), cert_sha256);
  EXPECT_EQ(DiskUuid(node->disk()), uuid);
  bool rejoined = false;
  for (const auto& line : cluster.AuditLines()) {
    rejoined |=
        line.rfind("audit call=IssueRejoinTicket decision=granted node=" + node_name + " ", 0) == 0;
  }
  EXPECT_TRUE(rejoined);

  // ---- 4. a tampered boot of a new node: refused, never a node, its disk untouched ----
  const std::string image = ImageDir();
  const std::string tampered_uki = dir_.Join("tampered.efi");
  RealProcessRunner runner;
  auto made = runner.Run({SourceDir() + "/image/mkuki", "--linux", image + "/vmlinuz", "--initrd",
                          image + "/initrd.cpio", "--osrel", image + "/os-release", "--cmdline",
                          TrimWhitespace(MustRead(image + "/cmdline")) + " berth.tampered=1",
                          "--out", tampered_uki});
  ASSERT_TRUE(made.ok() && made->success()) << (made.ok() ? made->output : "");
  const v1::EnrolmentConfig tampered_config = cluster.Enrolment("image-tampered-1");
  auto tampered = NewNode("tampered-1");
  const std::string disk_before = DiskSha256(tampered->disk());
  ImageBoot third = tampered->Boot({.enrolment = &tampered_config, .uki = tampered_uki});
  ASSERT_EQ(third.outcome, "poweroff") << third.Describe();
  EXPECT_THAT(third.Report("cmdline"), HasSubstr("berth.tampered=1"));
  EXPECT_EQ(third.Report("agent-ActiveState"), "failed") << third.Describe();
  const std::string status = third.Report("agent-StatusText");
  EXPECT_THAT(status, HasSubstr("PERMISSION_DENIED")) << third.Describe();
  EXPECT_THAT(status, HasSubstr("event")) << status;
  EXPECT_THAT(third.serial, Not(HasSubstr("step=format")));
  EXPECT_EQ(third.Report("kubelet-ActiveState"), "inactive");
  EXPECT_EQ(third.Report("mount /var/lib/berth/state"), "");
  EXPECT_EQ(DiskSha256(tampered->disk()), disk_before);
  EXPECT_EQ(cluster.NodeReady("image-tampered-1"), "");
  EXPECT_TRUE(TokenIds(cluster, "image-tampered-1").empty());
  bool refused = false;
  for (const auto& line : cluster.AuditLines()) {
    refused |=
        line.rfind("audit call=IssueJoinTicket decision=refused node=image-tampered-1 ", 0) == 0;
  }
  EXPECT_TRUE(refused);
  auto nodes = cluster.Kubectl({"get", "nodes", "-o", "wide"});
  ASSERT_TRUE(nodes.ok() && nodes->success());
  EXPECT_THAT(nodes->output, HasSubstr(node_name));
  EXPECT_THAT(nodes->output, Not(HasSubstr("image-tampered-1")));
  std::printf("image full e2e: kubectl get nodes -o wide (the worker is off by now)\n%s",
              nodes->output.c_str());

  if (token_secret.size() == 16) {
    for (const ImageBoot* b : {&first, &second, &third}) {
      EXPECT_THAT(b->serial, Not(HasSubstr(token_secret)));
    }
    EXPECT_THAT(MustRead(cluster.berthd_log()), Not(HasSubstr(token_secret)));
  }
  std::printf(
      "image full e2e: boots (VM start to power-off): reference %.1f s, first %.1f s "
      "(with the API server unreachable at first), reboot %.1f s, tampered %.1f s\n",
      reference_seconds_, first.seconds, second.seconds, third.seconds);
}

}  // namespace
}  // namespace berth::testing
