// The node image end to end with real Kubernetes, the smallest real test (ctest label e2e, in
// CI; docs/kubernetes-node.md): OVMF measures the UKI into a swtpm, systemd starts
// berth-agent, which attests with the real measured-boot PCRs and event log to a real berthd
// on the host, formats and unlocks the state disk and runs the real `kubeadm join` (v1.37.2,
// kube/build) against a real control plane on the host (kube/control-plane: etcd,
// kube-apiserver, kube-controller-manager, set up by kubeadm's phases). The node's kubelet
// TLS-bootstraps with the token berthd minted, its CSR is approved and signed by the
// controller-manager, and the node registers and turns Ready, as `kubectl get nodes` against
// the real API server shows. The policy comes from a reference boot of the same image
// (`berthctl policy from --eventlog`), and the node's TPM is trusted through its EK
// certificate (swtpm manufactured by a test CA, with credential activation). The image is
// built by the image_build test. The rest of a node's life is image_full_e2e_test.cc.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/e2e/image_fixture.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

TEST_F(ImageE2eTest, AWorkerAttestsJoinsARealApiServerAndTurnsReady) {
  const std::string policy = ReferencePolicy();
  ASSERT_FALSE(policy.empty());
  ImageCluster cluster(dir_.Join("cluster"));
  ASSERT_TRUE(cluster.ok()) << cluster.error();
  // Short-lived tokens, so the test sees the token cleaner delete this one.
  constexpr int kTokenTtl = 120;
  ASSERT_TRUE(cluster.StartBerthd(policy, 0, "", std::chrono::seconds(kTokenTtl)));
  const v1::EnrolmentConfig config = cluster.Enrolment("image-worker-1");
  auto node = NewNode("worker-1");
  EXPECT_EQ(cluster.NodeReady("image-worker-1"), "");  // no such node yet

  // The node keeps running after its report (HOLD=1) until the API server says Ready.
  auto running = node->Start({.enrolment = &config, .options = {"HOLD=1"}});
  ASSERT_NE(running, nullptr);
  ASSERT_TRUE(WaitForReady(cluster, "image-worker-1", *running));
  const std::vector<std::string> tokens = TokenIds(cluster, "image-worker-1");
  ASSERT_EQ(tokens.size(), 1u);
  const std::string token_secret = TokenSecret(cluster, tokens[0]);
  const std::string cert_sha256 =
      ExpectJoinedThroughAnApprovedCsr(cluster, "image-worker-1", tokens[0]);
  ASSERT_TRUE(running->WaitForSerial("berth-test: holding=1", std::chrono::seconds(300)));
  running->PressPowerButton();
  ImageBoot first = running->Finish();

  ExpectJoinedNodeReport(first, cluster);
  EXPECT_EQ(first.Count("step=format result=ok"), 1) << first.Describe();
  EXPECT_EQ(first.Count("step=kubeadm-join result=ok"), 1);
  EXPECT_EQ(first.Count("step=kubeadm-join result=failed"), 0);
  EXPECT_EQ(first.Count("step=start-kubelet result=ok"), 1);
  // The client certificate the node keeps on its state disk is the one its CSR was signed with.
  EXPECT_EQ(first.Report("kubelet-client-cert-sha256"), cert_sha256);
  EXPECT_EQ(DiskUuid(node->disk()).size(), 36u);
  ExpectTokenExpiresAndIsCleanedUp(cluster, tokens[0], kTokenTtl);
  // The token's secret half is on no console and in no log of berthd's.
  EXPECT_EQ(token_secret.size(), 16u);
  if (token_secret.size() == 16) {
    EXPECT_THAT(first.serial, Not(HasSubstr(token_secret)));
    EXPECT_THAT(MustRead(cluster.berthd_log()), Not(HasSubstr(token_secret)));
  }
  std::printf(
      "image e2e: reference boot %.1f s; first boot: power button pressed after %.1f s "
      "(node Ready), powered off after %.1f s\n",
      reference_seconds_, first.power_button, first.seconds);
}

}  // namespace
}  // namespace berth::testing
