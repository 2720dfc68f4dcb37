// Three control planes from nothing in QEMU guests, a worker, and every VM back after all of
// them lost power at once (ctest labels e2e-full and e2e-cluster: not in CI, about an hour
// here; docs/cluster-lifecycle.md). The guests share one Ethernet segment, as a rack does:
// ctest runs this test inside qemu/netns-bridge (a network namespace of its own with a bridge,
// a tap device per guest and DHCP), so each guest has its own address, 192.168.77.11-14, at
// which the others reach its etcd, API server and berthd, and the test reaches them all.
//
//   - Reference boots: cp-1's gives the operator's policy (the image's boot); each control
//     plane's gives its AK, which the policy's roles.control_plane authorizes.
//   - cp-1's ESP says bootstrap; `berthctl cluster init` attests it and cp-1 makes the
//     cluster, with its own API server as the control plane endpoint.
//   - cp-2, then cp-3, each naming the three berthds and pinning the join CA. Each attests to a
//     berthd, gets the cluster's keys as an authorized control plane, becomes an etcd learner
//     and then a voter, runs its own API server, controller manager, scheduler, berthd and
//     kubelet, and registers as a control-plane node.
//   - A worker naming the three berthds joins. `kubectl get nodes` lists all four, Ready.
//   - All four VMs are killed at once and booted at once. No berthd can hand out a key until
//     etcd has a quorum, which needs two control planes' disks open: the control planes open
//     their disks by cold start (any that finds a berthd already up rejoins through it), etcd
//     comes back with what was written through cp-1's and cp-3's API servers, and the worker
//     rejoins through a berthd, with no new kubeadm join and no operator.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "common/bytes.h"
#include "common/subprocess.h"
#include "tests/e2e/image_cluster.h"
#include "tests/e2e/image_fixture.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

void Narrate(const std::string& step, const std::string& seen = "") {
  berth::testing::Narrate("image cluster e2e", step, seen);
}

// The AK fingerprint in a node's `berth-agent --print-identity` ("" if there is none).
std::string AkSha256(const std::string& identity) {
  try {
    return YAML::Load(identity)["tpm"]["trusted_aks"][0]["sha256"].as<std::string>();
  } catch (const YAML::Exception&) {
    return "";
  }
}

struct ControlPlane {
  std::string name;
  int slot = 0;
  std::unique_ptr<ImageNode> node;
  std::string ak_sha256;
  v1::EnrolmentConfig config;
  ImageBootOptions boot;
  std::unique_ptr<RunningBoot> running;
  std::string boot_id, disk_uuid;
};

TEST_F(ImageE2eTest, ThreeControlPlanesFromNothingAWorkerAndAllBackAfterEveryVmLostPower) {
  ASSERT_TRUE(OnBridge()) << "this test runs inside qemu/netns-bridge (ctest -L e2e-cluster)";
  RealProcessRunner runner;
  auto kube_bin = runner.Run({SourceDir() + "/kube/build"});
  ASSERT_TRUE(kube_bin.ok() && kube_bin->success());
  const std::string kubectl_bin = TrimWhitespace(kube_bin->output) + "/kubectl";

  std::array<ControlPlane, 3> cps;
  for (int i = 0; i < 3; ++i) {
    cps[i].name = "cp-" + std::to_string(i + 1);
    cps[i].slot = i + 1;
    cps[i].node = NewNode(cps[i].name, 1024);
  }
  const std::string cp1_address = BridgeAddress(1);

  // Reference boots, all three at once: cp-1's boot gives the policy (every node boots the
  // same image on the same firmware), each one its AK.
  Narrate("reference boots of the three control planes, for the operator's policy and AKs");
  std::string policy;
  std::array<std::string, 3> identities;
  {
    std::vector<std::thread> others;
    for (int i = 1; i < 3; ++i) {
      others.emplace_back([&, i] {
        ImageBoot b = cps[i].node->Boot({.options = {"IDENTITY=1"}});
        EXPECT_EQ(b.outcome, "poweroff") << b.Describe();
        identities[i] = b.blocks["identity"];
      });
    }
    policy = ReferencePolicy(*cps[0].node, &identities[0]);
    for (auto& t : others) t.join();
  }
  ASSERT_FALSE(policy.empty());
  policy += "  trusted_aks:\n";
  for (int i = 0; i < 3; ++i) {
    cps[i].ak_sha256 = AkSha256(identities[i]);
    ASSERT_EQ(cps[i].ak_sha256.size(), 64u) << cps[i].name << ":\n" << identities[i];
    policy += "    - name: " + cps[i].name + "\n      sha256: " + cps[i].ak_sha256 + "\n";
  }
  // The three machines, and only they, may be control planes, each under its own name.
  policy += "roles:\n  control_plane:\n";
  for (const auto& cp : cps) policy += "    - ak: " + cp.name + "\n      node: " + cp.name + "\n";
  const std::string policy_file = dir_.Join("policy.yaml");
  MustWrite(policy_file, policy);

  const ImageOperator op(dir_.Join("operator"));
  ASSERT_EQ(op.spki().size(), 64u);

  // Every control plane pins the operator (for a recovery); cp-1's ESP says bootstrap, the
  // others' name the three berthds. The berthds' addresses are the machines' own: no load
  // balancer on this segment.
  std::vector<std::string> berthds;
  for (int i = 1; i <= 3; ++i) berthds.push_back(BridgeAddress(i) + ":7400");
  for (auto& cp : cps) {
    v1::EnrolmentConfig c;
    c.set_version(1);
    c.set_cluster_id("berth-vm3");
    c.set_role(v1::NODE_ROLE_CONTROL_PLANE);
    c.set_attestation(v1::ATTESTATION_KIND_TPM);
    c.set_node_name(cp.name);
    c.mutable_operator_access()->add_operator_spki_sha256(op.spki());
    cp.config = c;
    cp.boot = {.options = {"HOLD=1"},
               .bridge_slot = cp.slot,
               .memory_mib = 3072,
               .timeout = std::chrono::seconds(7200)};
  }
  cps[0].config.mutable_operator_access()->set_bootstrap(true);
  cps[0].config = ImageEnrolment(cps[0].config);
  cps[0].boot.enrolment = &cps[0].config;

  Narrate("cp-1 boots with a bootstrap EnrolmentConfig and waits for its operator");
  cps[0].running = cps[0].node->Start(cps[0].boot);
  ASSERT_NE(cps[0].running, nullptr);
  ASSERT_TRUE(cps[0].running->WaitForSerial("waiting for an operator's bootstrap",
                                            std::chrono::seconds(900)))
      << Tail(cps[0].running->Serial());

  Narrate("berthctl cluster init: attest cp-1, then it makes the cluster (minutes under TCG)");
  const std::string out = dir_.Join("cluster");
  const std::string endpoint = cp1_address + ":6443";
  const ProcessResult init = op.Run(
      {"cluster", "init"}, cp1_address + ":7443",
      {"--policy", policy_file, "--cluster-id", "berth-vm3", "--out", out, "--recovery-shares", "3",
       "--recovery-threshold", "2", "--control-plane-endpoint", endpoint});
  ASSERT_EQ(init.exit_code, 0) << init.output << "\ncp-1's console (end):\n"
                               << Tail(cps[0].running->Serial());
  EXPECT_THAT(init.output, HasSubstr("node cp-1 at " + cp1_address + ":7443 attested"));
  EXPECT_THAT(init.output, HasSubstr("cluster berth-vm3 is up"));
  Narrate("berthctl cluster init said:", init.output);
  cps[0].disk_uuid = DiskUuid(cps[0].node->disk());
  EXPECT_EQ(cps[0].disk_uuid.size(), 36u);
  KubectlAs kubectl({kubectl_bin, "--kubeconfig", out + "/admin.conf"});
  auto written = kubectl.Run({"create", "configmap", "through-cp-1", "-n", "default",
                              "--from-literal=written=before-the-power-loss"});
  ASSERT_TRUE(written.ok() && written->success()) << (written.ok() ? written->output : "");

  // cp-2, then cp-3.
  const std::string join_ca = MustRead(out + "/join-ca.pem");
  for (int i = 1; i < 3; ++i) {
    for (const auto& b : berthds) cps[i].config.add_endpoints(b);
    cps[i].config.set_cluster_ca_pem(join_ca);
    cps[i].config = ImageEnrolment(cps[i].config);
    cps[i].boot.enrolment = &cps[i].config;
  }
  cps[0].boot_id =
      WaitForReadyBoot(kubectl, "cp-1", *cps[0].running, "", std::chrono::seconds(600));
  ASSERT_FALSE(cps[0].boot_id.empty());
  for (int i = 1; i < 3; ++i) {
    Narrate(cps[i].name + " boots, naming the three berthds");
    cps[i].running = cps[i].node->Start(cps[i].boot);
    ASSERT_NE(cps[i].running, nullptr);
    cps[i].boot_id =
        WaitForReadyBoot(kubectl, cps[i].name, *cps[i].running, "", std::chrono::seconds(2400));
    ASSERT_FALSE(cps[i].boot_id.empty()) << "cp-1's console (end):\n"
                                         << Tail(cps[0].running->Serial());
  }
  for (int i = 1; i < 3; ++i) {
    // The agent's own record: its etcd member turned voter, its control plane and berthd
    // started, its kubelet registered the node.
    ASSERT_TRUE(cps[i].running->WaitForSerial("berth-test: holding=1", std::chrono::seconds(600)))
        << Tail(cps[i].running->Serial());
    const std::string serial = cps[i].running->Serial();
    EXPECT_THAT(serial, HasSubstr("etcd member at https://" + BridgeAddress(cps[i].slot) +
                                  ":2379: voting member"))
        << cps[i].name;
    for (const char* step :
         {"step=request-ticket", "step=format", "step=start-etcd", "step=write-berthd-files",
          "step=start-control-plane", "step=register-kubelet", "step=start-berthd"}) {
      EXPECT_THAT(serial, HasSubstr(std::string(step) + " result=ok")) << cps[i].name;
    }
    EXPECT_THAT(serial, Not(HasSubstr("is not a node of its cluster"))) << cps[i].name;
    cps[i].disk_uuid = DiskUuid(cps[i].node->disk());
    EXPECT_EQ(cps[i].disk_uuid.size(), 36u);
  }
  // Every control plane is a node that kubeadm marked a control plane, and every API server
  // serves the cluster: each one's address is among the kubernetes Service's endpoints.
  for (const auto& cp : cps) {
    nlohmann::json n = kubectl.Get({"node", cp.name});
    ASSERT_FALSE(n.is_null()) << cp.name;
    EXPECT_TRUE(n["metadata"]["labels"].contains("node-role.kubernetes.io/control-plane"))
        << n["metadata"].dump();
  }
  // Every API server answers for itself, and each one puts its address into the kubernetes
  // Service's EndpointSlice. On emulated CPUs both come and go, so each is asked for three
  // minutes at most: an API server's /readyz fails now and then (its etcd check allows 2 s), and
  // its lease in the slice, renewed every 10 s, lapses after 15 s (kube-apiserver's endpoint
  // reconciler, not configurable), so the slice lists whichever API servers renewed in time and
  // the test gathers what it lists. (Not v1 Endpoints: kubectl warns that they are deprecated,
  // on the output it parses.)
  for (const auto& cp : cps) {
    std::string said;
    WaitFor(
        [&] {
          auto ready = kubectl.Run({"--server", "https://" + BridgeAddress(cp.slot) + ":6443",
                                    "get", "--raw", "/readyz"});
          said = ready.ok() ? ready->output : ready.status().ToString();
          return said == "ok";
        },
        std::chrono::minutes(3), std::chrono::seconds(2));
    EXPECT_EQ(said, "ok") << cp.name;
  }
  std::set<std::string> api_addresses;
  const std::set<std::string> every_api_server = {BridgeAddress(1), BridgeAddress(2),
                                                  BridgeAddress(3)};
  WaitFor(
      [&] {
        nlohmann::json slices = kubectl.Get(
            {"endpointslices", "-n", "default", "-l", "kubernetes.io/service-name=kubernetes"});
        if (slices.is_null()) return false;
        for (const auto& slice : slices["items"]) {
          for (const auto& e : slice["endpoints"]) api_addresses.insert(e["addresses"][0]);
        }
        return api_addresses == every_api_server;
      },
      std::chrono::minutes(3), std::chrono::seconds(2));
  EXPECT_EQ(api_addresses, every_api_server);
  // Written through cp-3's own API server (its certificate names its address).
  KubectlAs through_cp3({kubectl_bin, "--kubeconfig", out + "/admin.conf", "--server",
                         "https://" + BridgeAddress(3) + ":6443"});
  written = through_cp3.Run({"create", "configmap", "through-cp-3", "-n", "default",
                             "--from-literal=written=before-the-power-loss"});
  ASSERT_TRUE(written.ok() && written->success()) << (written.ok() ? written->output : "");

  // The worker.
  const v1::EnrolmentConfig worker_config =
      ImageWorkerEnrolment("berth-vm3", berthds, join_ca, "vm-worker-1");
  Narrate("a worker boots, naming the three berthds");
  auto worker = NewNode("worker-1");
  const ImageBootOptions worker_boot{.enrolment = &worker_config,
                                     .options = {"HOLD=1"},
                                     .bridge_slot = 4,
                                     .timeout = std::chrono::seconds(7200)};
  auto worker_running = worker->Start(worker_boot);
  ASSERT_NE(worker_running, nullptr);
  const std::string worker_boot_id =
      WaitForReadyBoot(kubectl, "vm-worker-1", *worker_running, "", std::chrono::seconds(1800));
  ASSERT_FALSE(worker_boot_id.empty());
  EXPECT_EQ(kubectl.Nodes(), (std::vector<std::string>{"cp-1", "cp-2", "cp-3", "vm-worker-1"}));
  ASSERT_TRUE(worker_running->WaitForSerial("berth-test: holding=1", std::chrono::seconds(300)));
  const std::string worker_uuid = DiskUuid(worker->disk());
  EXPECT_EQ(worker_uuid.size(), 36u);
  auto wide = kubectl.Run({"get", "nodes", "-o", "wide"});
  ASSERT_TRUE(wide.ok() && wide->success());
  Narrate("kubectl get nodes -o wide", wide->output);
  for (int i = 1; i <= 4; ++i) EXPECT_THAT(wide->output, HasSubstr(" " + BridgeAddress(i) + " "));

  Narrate("power loss: all four VMs killed at once, then booted at once; nobody is asked anything");
  std::array<ImageBoot, 3> first;
  for (int i = 0; i < 3; ++i) first[i] = cps[i].running->PullThePlug();
  ImageBoot worker_first = worker_running->PullThePlug();
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(first[i].outcome, "interrupted") << first[i].Describe();
    EXPECT_EQ(first[i].Count("step=format result=ok"), 1) << cps[i].name;
  }
  EXPECT_EQ(worker_first.Count("step=kubeadm-join result=ok"), 1) << worker_first.Describe();

  for (auto& cp : cps) {
    cp.running = cp.node->Start(cp.boot);
    ASSERT_NE(cp.running, nullptr);
  }
  worker_running = worker->Start(worker_boot);
  ASSERT_NE(worker_running, nullptr);
  for (auto& cp : cps) {
    EXPECT_FALSE(
        WaitForReadyBoot(kubectl, cp.name, *cp.running, cp.boot_id, std::chrono::seconds(3600))
            .empty());
  }
  EXPECT_FALSE(WaitForReadyBoot(kubectl, "vm-worker-1", *worker_running, worker_boot_id,
                                std::chrono::seconds(1800))
                   .empty());
  for (const char* name : {"through-cp-1", "through-cp-3"}) {
    nlohmann::json kept = kubectl.Get({"configmap", name, "-n", "default"});
    ASSERT_FALSE(kept.is_null()) << name;
    EXPECT_EQ(kept["data"].value("written", ""), "before-the-power-loss");
  }
  EXPECT_EQ(kubectl.Nodes(), (std::vector<std::string>{"cp-1", "cp-2", "cp-3", "vm-worker-1"}));
  wide = kubectl.Run({"get", "nodes", "-o", "wide"});
  Narrate("every node Ready again in its new boot; kubectl get nodes -o wide",
          wide.ok() ? wide->output : "");

  for (auto& cp : cps) {
    ASSERT_TRUE(cp.running->WaitForSerial("berth-test: holding=1", std::chrono::seconds(600)));
  }
  ASSERT_TRUE(worker_running->WaitForSerial("berth-test: holding=1", std::chrono::seconds(600)));
  worker_running->PressPowerButton();
  for (auto& cp : cps) cp.running->PressPowerButton();
  ImageBoot worker_second = worker_running->Finish();
  // Each control plane opened its own disk with no operator and no format: by cold start, or
  // with a key from a berthd that was already back. Two of them at least by cold start: no
  // berthd answers before etcd has a quorum, which needs two disks open.
  int cold_starts = 0;
  for (auto& cp : cps) {
    ImageBoot second = cp.running->Finish();
    EXPECT_EQ(second.outcome, "poweroff") << second.Describe();
    const int cold = second.Count("step=cold-start-key result=ok");
    const int rejoined = second.Count("step=request-rejoin-ticket result=ok");
    EXPECT_EQ(cold + rejoined, 1) << cp.name << ": " << second.Describe();
    cold_starts += cold;
    EXPECT_EQ(second.Count("step=format "), 0) << cp.name;
    EXPECT_EQ(second.Count("waiting for an operator"), 0) << cp.name;
    EXPECT_EQ(second.Count("step=kubeadm-join "), 0) << cp.name;
    EXPECT_EQ(second.Report("agent-ActiveState"), "active") << cp.name;
    EXPECT_EQ(second.Report("etcd-ActiveState"), "active") << cp.name;
    EXPECT_EQ(second.Report("kubelet-ActiveState"), "active") << cp.name;
    EXPECT_EQ(DiskUuid(cp.node->disk()), cp.disk_uuid) << cp.name;
  }
  EXPECT_GE(cold_starts, 2);
  EXPECT_EQ(worker_second.outcome, "poweroff") << worker_second.Describe();
  EXPECT_EQ(worker_second.Count("step=format "), 0) << worker_second.Describe();
  EXPECT_EQ(worker_second.Count("step=kubeadm-join "), 0);
  EXPECT_EQ(worker_second.Count("step=start-kubelet result=ok"), 1);
  EXPECT_EQ(worker_second.Report("agent-StatusText"), "node joined");
  EXPECT_EQ(DiskUuid(worker->disk()), worker_uuid);
  std::printf("image cluster e2e: %d of 3 control planes came back by cold start\n", cold_starts);
}

}  // namespace
}  // namespace berth::testing
