// Shared pieces of the node-record unit tests: three etcd voters and an etcd CA for an
// in-memory etcd (tests/fakes/fake_etcd.h), join requests as the agent makes them, a fake
// Kubernetes API (registry, SNP identity and lifecycle tests); and the fixture of the
// node-lifecycle tests (approval, EC2 pre-authorization, SNS, golden tickets): a policy holder
// the test can change and a clock that can run a hook while a held call sleeps.
#pragma once

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "agent/etcd_join.h"
#include "common/etcd_pki.h"
#include "server/nodes/admin.h"
#include "server/nodes/records.h"
#include "server/nodes/registry.h"
#include "server/nodes/store.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_etcd.h"
#include "tests/testing/testing.h"
#include "verify/policy_holder.h"

namespace berth::server {

inline const std::string kLcAk(64, 'a');
inline const std::string kLcOtherAk(64, 'b');
inline const std::string kLcDisk = "0b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c";
inline const std::string kLcDisk2 = "1b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c";
inline constexpr int64_t kLcNow = 1'800'000'000;

// Fake time whose Sleep can also do something (an operator approving while a call is held).
class HookClock : public FakeClock {
 public:
  using FakeClock::FakeClock;
  void Sleep(std::chrono::milliseconds d) override {
    FakeClock::Sleep(d);
    ++sleeps;
    if (on_sleep) on_sleep(sleeps);
  }
  std::function<void(int)> on_sleep;
  int sleeps = 0;
};

// Kubernetes API double: a SecretList for GET, `delete_status` for DELETE; records every
// request.
class FakeKubeSecrets : public KubeClient {
 public:
  Result<HttpResponse> Request(const std::string& method, const std::string& path,
                               const std::string&) override {
    requests.push_back(method + " " + path);
    if (method == "GET") return HttpResponse{200, list_body};
    return HttpResponse{delete_status, "{}"};
  }
  std::string list_body = R"({"kind":"SecretList","items":[]})";
  long delete_status = 200;
  std::vector<std::string> requests;
};

inline std::string TestPeerUrl(int i) { return "https://10.0.0." + std::to_string(i + 1) + ":2380"; }
inline std::string TestClientUrl(int i) {
  return "https://10.0.0." + std::to_string(i + 1) + ":2379";
}

// Three voting members etcd-0..2 at 10.0.0.1..3; their member IDs.
inline std::vector<uint64_t> AddThreeVoters(berth::testing::FakeEtcd& etcd) {
  std::vector<uint64_t> ids;
  for (int i = 0; i < 3; ++i) {
    ids.push_back(etcd.AddVoter("etcd-" + std::to_string(i), TestPeerUrl(i), TestClientUrl(i)));
  }
  return ids;
}

// An etcd CA with a fresh key, valid 48 hours, issuing certificates valid 24 hours.
inline std::unique_ptr<EtcdCa> MakeTestEtcdCa() {
  auto ca_key = GenerateP256Key();
  auto ca_cert =
      IssueCert({.common_name = "etcd-ca", .is_ca = true, .validity = std::chrono::hours(48)},
                ca_key->get(), nullptr, ca_key->get());
  auto ca = EtcdCa::FromPem(*CertToPem(ca_cert->get()), *PrivateKeyToPem(ca_key->get()),
                            std::chrono::hours(24));
  EXPECT_TRUE(ca.ok()) << ca.status().ToString();
  return ca.ok() ? std::move(*ca) : nullptr;
}

inline v1::JoinRequest WorkerRequest(const std::string& name, const std::string& disk) {
  v1::JoinRequest r;
  r.set_node_name(name);
  r.set_role(v1::NODE_ROLE_WORKER);
  r.set_disk_uuid(disk);
  return r;
}

// A control plane's request with fresh etcd keys, made as the agent makes them.
inline v1::JoinRequest ControlPlaneRequest(const std::string& name, const std::string& address,
                                           const std::string& disk) {
  auto keys = agent::MakeEtcdKeys(name);
  EXPECT_TRUE(keys.ok());
  v1::JoinRequest r = WorkerRequest(name, disk);
  r.set_role(v1::NODE_ROLE_CONTROL_PLANE);
  r.add_node_addresses(address);
  r.set_etcd_csr(ToString(keys->server_csr));
  r.set_etcd_peer_csr(ToString(keys->peer_csr));
  r.set_etcd_peer_url("https://" + address + ":2380");
  r.set_etcd_client_url("https://" + address + ":2379");
  return r;
}

inline verify::VerifiedEvidence TestEvidence(const std::string& ak) {
  return verify::VerifiedEvidence{.ak_sha256_hex = ak, .ak_name = "a", .rule = "pcrs sha256:0"};
}

class LifecycleTest : public ::testing::Test {
 protected:
  void SetUp() override {
    AddThreeVoters(etcd_);
    ca_ = MakeTestEtcdCa();
    ASSERT_NE(ca_, nullptr);
    SetPolicy(verify::AdmissionPolicy{});
  }

  // A registry over a fixed policy with this admission section (kLcAk may be a control plane).
  void SetPolicy(verify::AdmissionPolicy admission, AdmissionOptions options = {}) {
    verify::Policy policy;
    policy.roles.control_plane.push_back(
        {.ak_sha256_hex = kLcAk, .node = "", .where = "roles.control_plane[0]"});
    policy.admission = admission;
    policy_ = std::make_unique<verify::PolicyHolder>(std::move(policy));
    registry_ = std::make_unique<NodeRegistry>(&store_, &membership_, ca_.get(), policy_.get(),
                                               &clock_, options);
    admin_ = std::make_unique<NodeAdmin>(&store_, &membership_, ca_.get(), &kube_, &clock_);
  }

  static v1::JoinRequest Worker(const std::string& name, const std::string& disk = kLcDisk) {
    return WorkerRequest(name, disk);
  }
  static v1::JoinRequest ControlPlane(const std::string& name, const std::string& address,
                                      const std::string& disk = kLcDisk) {
    return ControlPlaneRequest(name, address, disk);
  }
  static verify::VerifiedEvidence Evidence(const std::string& ak = kLcAk) {
    return TestEvidence(ak);
  }

  std::optional<v1::NodeRecord> Record(const std::string& name) {
    auto got = store_.Get(name);
    EXPECT_TRUE(got.ok()) << got.status().ToString();
    if (!got.ok() || !got->has_value()) return std::nullopt;
    return (*got)->record;
  }

  berth::testing::FakeEtcd etcd_;
  NodeStore store_{&etcd_};
  Membership membership_{&etcd_};
  HookClock clock_{kLcNow};
  FakeKubeSecrets kube_;
  std::unique_ptr<EtcdCa> ca_;
  std::unique_ptr<verify::PolicyHolder> policy_;
  std::unique_ptr<NodeRegistry> registry_;
  std::unique_ptr<NodeAdmin> admin_;
};

}  // namespace berth::server
