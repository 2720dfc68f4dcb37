// A cluster from nothing in QEMU guests, and back after a power loss (ctest label e2e, in CI;
// docs/cluster-lifecycle.md). Both nodes boot the node image with OVMF and a swtpm:
//
//   - cp-1's ESP says bootstrap and pins the operator's key. Its berth-agent waits; the
//     operator (`berthctl cluster init` on the host) attests it against a policy made from its
//     own reference boot and pinning its AK, and the node makes the cluster: its disk, the
//     PKI, etcd, the real kube-apiserver, kube-controller-manager and kube-scheduler as the
//     image's units with kubeadm's flags, berthd, and its own kubelet: cp-1 is a node of the
//     cluster, marked a control plane (label, NoSchedule taint).
//   - A worker whose ESP names cp-1's berthd and pins the join CA that `cluster init` wrote
//     attests to that berthd, joins with the real kubeadm and turns Ready; the scheduler puts a
//     Pod on it (not on the tainted control plane).
//   - Both VMs are killed at once (no shutdown) and booted again: cp-1 opens its disk by cold
//     start, with no berthd and no operator, and restarts its control plane; the worker gets
//     its disk key from cp-1's berthd; both nodes are Ready again in their new boots, and what
//     was written to the cluster before the power loss is still there.
//   - cp-1 boots on another firmware (Debian's other OVMF build: another PCR 0). Its TPM does
//     not release the cold-start key, no berthd answers, and it waits for its operators.
//     `berthctl recover` refuses with the old policy (attestation), one share of the two
//     needed, or a wrong share, and the disk stays byte for byte the same; with a policy for
//     the new firmware and two shares it opens, and cp-1 is back with the cluster's data.
//
// The guests reach each other only through the host (QEMU's user network): cp-1's operator
// endpoint, API server and berthd are forwarded from 127.0.0.1 ports, which guests reach at
// 10.0.2.2. The operator says so at bootstrap (--control-plane-endpoint 10.0.2.2:PORT,
// --api-server-address 10.0.2.2), as they would name a load balancer.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <thread>

#include "cli/recovery_shares.h"
#include "common/bytes.h"
#include "common/subprocess.h"
#include "tests/e2e/image_cluster.h"
#include "tests/e2e/image_fixture.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

// kubectl from the host against the cluster cp-1 made, as its operator: admin.conf names the
// control plane endpoint (10.0.2.2:<port>, the guests' name for this host), which the host
// reaches at 127.0.0.1:<port>; the API server's certificate names 10.0.2.2.
class OperatorKubectl : public KubectlAs {
 public:
  OperatorKubectl(const std::string& kubectl, const std::string& kubeconfig, int port)
      : KubectlAs({kubectl, "--kubeconfig", kubeconfig, "--server",
                   "https://127.0.0.1:" + std::to_string(port), "--tls-server-name",
                   kGuestHostAddress}) {}
};

void Narrate(const std::string& step, const std::string& seen = "") {
  berth::testing::Narrate("image bootstrap e2e", step, seen);
}

TEST_F(ImageE2eTest, AControlPlaneBootstrapsInAVmAWorkerJoinsItAndBothComeBackAfterPowerLoss) {
  RealProcessRunner runner;
  auto kube_bin = runner.Run({SourceDir() + "/kube/build"});
  ASSERT_TRUE(kube_bin.ok() && kube_bin->success());
  const std::string kubectl_bin = TrimWhitespace(kube_bin->output) + "/kubectl";

  // cp-1's reference boot: the policy of the image's boot (its event log) and cp-1's AK,
  // which the operator pins; workers are trusted through their EK certificates.
  Narrate("a reference boot of cp-1's image, for the operator's policy");
  auto cp = NewNode("cp-1", 1024);
  std::string identity;
  std::string policy = ReferencePolicy(*cp, &identity);
  ASSERT_FALSE(policy.empty());
  std::string ak_sha256;
  try {
    ak_sha256 = YAML::Load(identity)["tpm"]["trusted_aks"][0]["sha256"].as<std::string>();
  } catch (const YAML::Exception& e) {
    FAIL() << "no AK in cp-1's identity (" << e.what() << "):\n" << identity;
  }
  ASSERT_EQ(ak_sha256.size(), 64u) << identity;
  policy += "  trusted_aks:\n    - name: cp-1\n      sha256: " + ak_sha256 + "\n";
  const std::string policy_file = dir_.Join("policy.yaml");
  MustWrite(policy_file, policy);
  EXPECT_EQ(DiskUuid(cp->disk()), "");  // the reference boot left it blank

  // The operator's key, pinned on cp-1's ESP, which holds nothing secret.
  const ImageOperator op(dir_.Join("operator"));
  ASSERT_EQ(op.spki().size(), 64u);

  v1::EnrolmentConfig cp_config;
  cp_config.set_version(1);
  cp_config.set_cluster_id("berth-vm");
  cp_config.set_role(v1::NODE_ROLE_CONTROL_PLANE);
  cp_config.set_attestation(v1::ATTESTATION_KIND_TPM);
  cp_config.set_node_name("cp-1");
  cp_config.mutable_operator_access()->set_bootstrap(true);
  cp_config.mutable_operator_access()->add_operator_spki_sha256(op.spki());
  cp_config = ImageEnrolment(cp_config);

  const int operator_port = UnusedPort(), api_port = UnusedPort(), berthd_port = UnusedPort();
  auto fwd = [](int host, int guest) {
    return "tcp:127.0.0.1:" + std::to_string(host) + "-:" + std::to_string(guest);
  };
  const ImageBootOptions cp_boot{
      .enrolment = &cp_config,
      .options = {"HOLD=1"},
      .hostfwds = {fwd(operator_port, 7443), fwd(api_port, 6443), fwd(berthd_port, 7400)},
      .memory_mib = 3072,
      .timeout = std::chrono::seconds(2400)};
  Narrate("cp-1 boots with a bootstrap EnrolmentConfig and waits for its operator");
  auto cp_running = cp->Start(cp_boot);
  ASSERT_NE(cp_running, nullptr);
  ASSERT_TRUE(
      cp_running->WaitForSerial("waiting for an operator's bootstrap", std::chrono::seconds(600)))
      << Tail(cp_running->Serial());

  Narrate("berthctl cluster init: attest cp-1, then it makes the cluster (minutes under TCG)");
  const std::string out = dir_.Join("cluster");
  const std::string endpoint = std::string(kGuestHostAddress) + ":" + std::to_string(api_port);
  const ProcessResult init =
      op.Run({"cluster", "init"}, "127.0.0.1:" + std::to_string(operator_port),
             {"--policy", policy_file, "--cluster-id", "berth-vm", "--out", out,
              "--recovery-shares", "3", "--recovery-threshold", "2", "--api-server-address",
              kGuestHostAddress, "--control-plane-endpoint", endpoint});
  ASSERT_EQ(init.exit_code, 0) << init.output << "\ncp-1's console (end):\n"
                               << Tail(cp_running->Serial());
  EXPECT_THAT(init.output,
              HasSubstr("node cp-1 at 127.0.0.1:" + std::to_string(operator_port) + " attested"));
  EXPECT_THAT(init.output, HasSubstr("Kubernetes API:  " + endpoint + "\n"));
  EXPECT_THAT(init.output, HasSubstr("cluster berth-vm is up"));
  Narrate("berthctl cluster init said:", init.output);
  const std::string cp_uuid = DiskUuid(cp->disk());
  EXPECT_EQ(cp_uuid.size(), 36u);

  // The operator's kubeconfig reaches the API server at the endpoint it named; cp-1's kubelet
  // has registered it as a node, which kubeadm marked a control plane; the cluster keeps what
  // is written to it.
  OperatorKubectl kubectl(kubectl_bin, out + "/admin.conf", api_port);
  EXPECT_EQ(kubectl.Nodes(), std::vector<std::string>{"cp-1"});
  nlohmann::json cp_node = kubectl.Get({"node", "cp-1"});
  ASSERT_FALSE(cp_node.is_null());
  EXPECT_TRUE(cp_node["metadata"]["labels"].contains("node-role.kubernetes.io/control-plane"))
      << cp_node["metadata"].dump();
  // kubeadm's taint; the node controller's not-ready one may still be there beside it.
  EXPECT_THAT(cp_node["spec"]["taints"].dump(),
              HasSubstr(R"({"effect":"NoSchedule","key":"node-role.kubernetes.io/control-plane"})"))
      << cp_node["spec"].dump();
  auto made = kubectl.Run({"create", "configmap", "before-power-loss", "-n", "default",
                           "--from-literal=written=by-the-operator"});
  ASSERT_TRUE(made.ok() && made->success()) << (made.ok() ? made->output : "");
  auto admin = YAML::LoadFile(out + "/admin.conf");
  EXPECT_EQ(admin["clusters"][0]["cluster"]["server"].as<std::string>(), "https://" + endpoint);

  // A worker that names only cp-1's berthd, pinning the join CA `cluster init` wrote.
  const v1::EnrolmentConfig worker_config = ImageWorkerEnrolment(
      "berth-vm", {std::string(kGuestHostAddress) + ":" + std::to_string(berthd_port)},
      MustRead(out + "/join-ca.pem"), "vm-worker-1");
  Narrate("a worker boots, naming cp-1's berthd and pinning the join CA cluster init wrote");
  auto worker = NewNode("worker-1");
  const ImageBootOptions worker_boot{.enrolment = &worker_config, .options = {"HOLD=1"}};
  auto worker_running = worker->Start(worker_boot);
  ASSERT_NE(worker_running, nullptr);
  const std::string first_boot_id =
      WaitForReadyBoot(kubectl, "vm-worker-1", *worker_running, "", std::chrono::seconds(1200));
  ASSERT_FALSE(first_boot_id.empty()) << "cp-1's console (end):\n" << Tail(cp_running->Serial());
  EXPECT_EQ(kubectl.Nodes(), (std::vector<std::string>{"cp-1", "vm-worker-1"}));
  const std::string cp_first_boot_id =
      WaitForReadyBoot(kubectl, "cp-1", *cp_running, "", std::chrono::seconds(600));
  EXPECT_FALSE(cp_first_boot_id.empty());
  // The scheduler runs: a Pod goes to the worker, the one node without the control plane's
  // taint (its image exists nowhere: only where it is scheduled is checked).
  auto pod = kubectl.Run({"run", "scheduled", "-n", "default", "--restart=Never",
                          "--image=registry.invalid/berth/none:1"});
  ASSERT_TRUE(pod.ok() && pod->success()) << (pod.ok() ? pod->output : "");
  std::string scheduled_on;
  WaitFor(
      [&] {
        nlohmann::json p = kubectl.Get({"pod", "scheduled", "-n", "default"});
        if (!p.is_null()) scheduled_on = p["spec"].value("nodeName", "");
        return !scheduled_on.empty();
      },
      std::chrono::seconds(300));
  EXPECT_EQ(scheduled_on, "vm-worker-1");
  ASSERT_TRUE(worker_running->WaitForSerial("berth-test: holding=1", std::chrono::seconds(300)));
  const std::string worker_uuid = DiskUuid(worker->disk());
  EXPECT_EQ(worker_uuid.size(), 36u);

  auto wide = kubectl.Run({"get", "nodes", "-o", "wide"});
  Narrate("kubectl get nodes -o wide", wide.ok() ? wide->output : "");
  // Power loss: both VMs at once, no shutdown.
  Narrate("power loss: both VMs killed at once, then booted again; nobody is asked anything");
  ImageBoot cp_first = cp_running->PullThePlug();
  ImageBoot worker_first = worker_running->PullThePlug();
  EXPECT_EQ(cp_first.outcome, "interrupted") << cp_first.Describe();
  EXPECT_EQ(worker_first.outcome, "interrupted") << worker_first.Describe();
  EXPECT_EQ(cp_first.Count("step=format result=ok"), 1) << cp_first.Describe();
  EXPECT_EQ(cp_first.Count("step=configure-cluster result=ok"), 1);
  EXPECT_EQ(cp_first.Count("step=register-kubelet result=ok"), 1);
  EXPECT_EQ(cp_first.Count("is not a node of its cluster"), 0);
  // The node's audit lines of its operator's calls: one attestation, one bootstrap.
  EXPECT_EQ(cp_first.Count("audit call=OperatorAttest decision=answered operator=sha256:"), 1);
  EXPECT_EQ(cp_first.Count("audit call=OperatorBootstrap decision=done operator=sha256:"), 1);
  EXPECT_EQ(cp_first.Report("agent-StatusText"), "node joined");
  EXPECT_EQ(cp_first.Count("node cp-1 bootstrapped cluster berth-vm: state disk " + cp_uuid +
                           " formatted and mounted"),
            1);
  EXPECT_EQ(worker_first.Count("step=kubeadm-join result=ok"), 1) << worker_first.Describe();

  // Both boot again. Nobody is asked anything.
  cp_running = cp->Start(cp_boot);
  ASSERT_NE(cp_running, nullptr);
  worker_running = worker->Start(worker_boot);
  ASSERT_NE(worker_running, nullptr);
  const std::string second_boot_id = WaitForReadyBoot(kubectl, "vm-worker-1", *worker_running,
                                                      first_boot_id, std::chrono::seconds(1500));
  EXPECT_FALSE(second_boot_id.empty()) << "cp-1's console (end):\n" << Tail(cp_running->Serial());
  auto kept = kubectl.Get({"configmap", "before-power-loss", "-n", "default"});
  ASSERT_FALSE(kept.is_null());
  EXPECT_EQ(kept["data"].value("written", ""), "by-the-operator");
  Narrate("the worker is Ready in its new boot, and the cluster kept what was written to it");
  EXPECT_EQ(kubectl.Nodes(), (std::vector<std::string>{"cp-1", "vm-worker-1"}));
  const std::string cp_second_boot_id =
      WaitForReadyBoot(kubectl, "cp-1", *cp_running, cp_first_boot_id, std::chrono::seconds(600));
  EXPECT_FALSE(cp_second_boot_id.empty());

  wide = kubectl.Run({"get", "nodes", "-o", "wide"});
  Narrate("kubectl get nodes -o wide", wide.ok() ? wide->output : "");
  ASSERT_TRUE(cp_running->WaitForSerial("berth-test: holding=1", std::chrono::seconds(300)));
  ASSERT_TRUE(worker_running->WaitForSerial("berth-test: holding=1", std::chrono::seconds(300)));
  worker_running->PressPowerButton();
  cp_running->PressPowerButton();
  ImageBoot worker_second = worker_running->Finish();
  ImageBoot cp_second = cp_running->Finish();

  // cp-1 opened its disk by cold start: not formatted, no berthd asked, no operator.
  EXPECT_EQ(cp_second.outcome, "poweroff") << cp_second.Describe();
  EXPECT_EQ(cp_second.Count("step=cold-start-key result=ok"), 1) << cp_second.Describe();
  EXPECT_EQ(cp_second.Count("step=format "), 0);
  EXPECT_EQ(cp_second.Count("waiting for an operator"), 0);
  EXPECT_EQ(cp_second.Report("agent-ActiveState"), "active");
  EXPECT_EQ(cp_second.Report("mount /var/lib/berth/state"), "/dev/mapper/berth-state ext4");
  EXPECT_EQ(cp_second.Count("step=start-kubelet result=ok"), 1);
  EXPECT_EQ(cp_second.Count("step=register-kubelet"), 0);
  EXPECT_EQ(cp_second.Report("kubelet-ActiveState"), "active");
  EXPECT_EQ(cp_second.Report("kubelet-NRestarts"), "0");
  EXPECT_EQ(DiskUuid(cp->disk()), cp_uuid);
  // The worker rejoined with the same disk and no second kubeadm join.
  EXPECT_EQ(worker_second.outcome, "poweroff") << worker_second.Describe();
  EXPECT_EQ(worker_second.Count("step=format "), 0) << worker_second.Describe();
  EXPECT_EQ(worker_second.Count("step=kubeadm-join "), 0);
  EXPECT_EQ(worker_second.Count("step=start-kubelet result=ok"), 1);
  EXPECT_EQ(worker_second.Report("agent-StatusText"), "node joined");
  EXPECT_EQ(DiskUuid(worker->disk()), worker_uuid);

  // Another firmware. The operators' policy for it comes from a reference boot of it.
  Narrate("cp-1 boots on another firmware: its TPM keeps the cold-start key, it waits");
  auto reference = NewNode("reference-other-firmware");
  std::string new_policy = ReferencePolicy(*reference, nullptr, /*other_firmware=*/true);
  ASSERT_FALSE(new_policy.empty());
  const std::string new_policy_file = dir_.Join("policy-other-firmware.yaml");
  MustWrite(new_policy_file,
            new_policy + "  trusted_aks:\n    - name: cp-1\n      sha256: " + ak_sha256 + "\n");
  ImageBootOptions changed = cp_boot;
  changed.other_firmware = true;
  cp_running = cp->Start(changed);
  ASSERT_NE(cp_running, nullptr);
  ASSERT_TRUE(cp_running->WaitForSerial("waiting for berthd or an operator's recovery",
                                        std::chrono::seconds(900)))
      << Tail(cp_running->Serial());
  const std::string before = DiskSha256(cp->disk());
  auto recover = [&](const std::string& policy, const std::vector<std::string>& shares) {
    std::vector<std::string> args = {"--policy", policy};
    for (const auto& f : shares) args.insert(args.end(), {"--share", f});
    return op.Run({"recover"}, "127.0.0.1:" + std::to_string(operator_port), args);
  };
  const std::string share1 = out + "/recovery-share-1-of-3",
                    share2 = out + "/recovery-share-2-of-3",
                    share3 = out + "/recovery-share-3-of-3";
  // A well-formed share with one bit of its secret changed.
  auto parsed = cli::ParseShare(MustRead(share2), share2);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  parsed->share.data()[0] ^= 0x01;
  const std::string wrong2 = dir_.Join("recovery-share-2-wrong");
  MustWrite(wrong2, std::string(cli::FormatShare(*parsed).view()), 0600);

  ProcessResult stale = recover(policy_file, {share1, share2});
  EXPECT_EQ(stale.exit_code, 1) << stale.output;
  EXPECT_THAT(stale.output, HasSubstr("the node 127.0.0.1:" + std::to_string(operator_port) +
                                      " failed attestation: "));
  ProcessResult too_few = recover(new_policy_file, {share1});
  EXPECT_EQ(too_few.exit_code, 1) << too_few.output;
  EXPECT_THAT(too_few.output, HasSubstr("1 recovery share given, 2 needed"));
  ProcessResult wrong = recover(new_policy_file, {share1, wrong2});
  EXPECT_EQ(wrong.exit_code, 1) << wrong.output;
  EXPECT_THAT(wrong.output, HasSubstr("at least one share is wrong"));
  for (const ProcessResult* refused : {&stale, &too_few, &wrong}) {
    EXPECT_THAT(refused->output, HasSubstr("audit call=Recover decision=refused node=127.0.0.1:" +
                                           std::to_string(operator_port)));
  }
  EXPECT_EQ(DiskSha256(cp->disk()), before);
  EXPECT_TRUE(cp_running->running());
  EXPECT_THAT(cp_running->Serial(), Not(HasSubstr("step=operator-recovery result=ok")));

  Narrate("berthctl recover with a policy for the new firmware and 2 of the 3 shares");
  ProcessResult recovered = recover(new_policy_file, {share1, share3});
  ASSERT_EQ(recovered.exit_code, 0) << recovered.output;
  EXPECT_THAT(recovered.output,
              HasSubstr("node cp-1 opened its state disk with the recovery keyslot"));
  Narrate("berthctl recover said:", recovered.output);
  EXPECT_FALSE(
      WaitForReadyBoot(kubectl, "cp-1", *cp_running, cp_second_boot_id, std::chrono::seconds(900))
          .empty());
  kept = kubectl.Get({"configmap", "before-power-loss", "-n", "default"});
  ASSERT_FALSE(kept.is_null());
  EXPECT_EQ(kept["data"].value("written", ""), "by-the-operator");
  ASSERT_TRUE(cp_running->WaitForSerial("berth-test: holding=1", std::chrono::seconds(300)));
  cp_running->PressPowerButton();
  ImageBoot cp_third = cp_running->Finish();
  EXPECT_EQ(cp_third.outcome, "poweroff") << cp_third.Describe();
  EXPECT_EQ(cp_third.Count("step=cold-start-key result=ok"), 0) << cp_third.Describe();
  EXPECT_EQ(cp_third.Count("step=operator-recovery result=ok"), 1);
  // The node answered each operator's attestation (berthctl refused three times on its own
  // machine, sending nothing more) and audited the one recovery.
  EXPECT_EQ(cp_third.Count("audit call=OperatorAttest decision=answered"), 4);
  EXPECT_EQ(cp_third.Count("audit call=OperatorRecover decision=opened operator=sha256:"), 1);
  EXPECT_EQ(cp_third.Count("step=format "), 0);
  EXPECT_EQ(cp_third.Report("agent-ActiveState"), "active");
  EXPECT_EQ(DiskUuid(cp->disk()), cp_uuid);
  std::printf(
      "image bootstrap e2e: cp-1 %.0f s + %.0f s + %.0f s (recovered), worker %.0f s + %.0f s\n",
      cp_first.seconds, cp_second.seconds, cp_third.seconds, worker_first.seconds,
      worker_second.seconds);
}

}  // namespace
}  // namespace berth::testing
