// SEV-SNP node identity end to end on the server (issue 22, section 4): guests on one host
// (reports signed by one VCEK) with their own sealed identity keys, the agent's evidence
// (agent/snp_attester.h with a fake guest device), berthd's real SnpVerifier, JoinLogic and
// node records in an in-memory etcd. What used to be the node's identity, the VCEK, is shared
// by every guest on the host; what names a node now is the key it sealed at its first boot.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <optional>

#include "agent/etcd_join.h"
#include "agent/snp_attester.h"
#include "agent/snp_identity.h"
#include "common/binding.h"
#include "server/join/join_logic.h"
#include "server/nodes/records.h"
#include "server/nodes/registry.h"
#include "verify/snp_verifier.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_etcd.h"
#include "tests/fakes/fake_sev_guest.h"
#include "tests/testing/testing.h"
#include "tests/unit/server/nodes/lifecycle_fixture.h"

namespace berth::server {
namespace {

using ::testing::HasSubstr;
using testing::FakeSevGuest;
using testing::SnpIssued;
using testing::SnpTestChain;

const std::string kDisk = "0b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c";
const std::string kDisk2 = "1b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c";

class LocalTokens : public TokenIssuer {
 public:
  int issued = 0;
  Result<BootstrapToken> Issue(const std::string&) override {
    ++issued;
    return GenerateBootstrapToken(2'000'000'000);
  }
};

class SnpIdentityJoinTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { chain_ = new SnpTestChain(snp::Product::kMilan); }
  static void TearDownTestSuite() { delete chain_; }

  void SetUp() override {
    AddThreeVoters(etcd_);
    ca_ = MakeTestEtcdCa();
    ASSERT_NE(ca_, nullptr);
    ASSERT_TRUE(anchors_.PinArk(snp::Product::kMilan, X509Ptr(X509_dup(chain_->ark()))).ok());
    spec_.reported_tcb = snp::EncodeTcb(tcb_, snp::Product::kMilan);
    vcek_ = chain_->IssueVcek({.hwid = spec_.chip_id, .tcb = tcb_});
    snp_policy_.measurements = {spec_.measurement};
    verifier_ = std::make_unique<verify::SnpVerifier>(snp_policy_, &anchors_, nullptr,
                                              verify::SnpVerifierOptions{.clock = &real_clock_});
    nonces_.emplace(
        std::move(NonceIssuer::Create(master_, &clock_, std::chrono::seconds(60))).value());
  }

  // berthd's policy: guest A's identity may be a control plane (written once A exists).
  void StartBerthd(const std::string& control_plane_identity) {
    verify::Policy policy;
    policy.sev_snp = snp_policy_;
    policy.roles.control_plane.push_back({.ak_sha256_hex = control_plane_identity,
                                          .node = "cp-1",
                                          .where = "roles.control_plane[0]"});
    holder_ = std::make_unique<verify::PolicyHolder>(std::move(policy));
    registry_ = std::make_unique<NodeRegistry>(&store_, &membership_, ca_.get(), holder_.get(),
                                               &clock_);
    logic_ = std::make_unique<JoinLogic>(
        JoinOptions{.cluster_id = "c",
                    .api_server_endpoint = "10.0.0.1:6443",
                    .ca_cert_hashes = {"sha256:" + std::string(64, 'b')}},
        master_.Clone(), &*nonces_, verifier_.get(), &tokens_, registry_.get());
  }

  // A guest on this host (signed by `vcek`), with its identity sealed in `dir`.
  struct Guest {
    std::unique_ptr<FakeSevGuest> device;
    std::unique_ptr<agent::SnpIdentity> identity;
  };
  Guest Boot(const testing::TempDir& dir, const testing::SnpReportSpec& spec, const SnpIssued& vcek) {
    Guest g;
    g.device = std::make_unique<FakeSevGuest>(
        spec, vcek.key.get(),
        snp::CertTable{.vcek = *CertToDer(vcek.cert.get()), .ask = chain_->AskDer()});
    auto id = agent::SnpIdentity::LoadOrCreate(*g.device, dir.Join("snp-identity.binpb"), 0);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    if (id.ok()) g.identity = std::make_unique<agent::SnpIdentity>(std::move(*id));
    return g;
  }

  // The evidence a guest's agent sends on this call (a fresh challenge, a TLS key of its own).
  struct Call {
    v1::Evidence evidence;
    std::string nonce;
    Peer peer;
  };
  Call Attest(const Guest& g) {
    Call c;
    c.peer = Peer{.spki_sha256 = RandomBytes(32), .address = "ipv4:10.0.0.9:1"};
    c.nonce = logic_->Challenge({}, c.peer)->nonce();
    auto e = agent::CollectSnpEvidence(*g.device, ComputeBinding(AsBytes(c.nonce), c.peer.spki_sha256),
                                       0, *g.identity);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    c.evidence = *e;
    return c;
  }

  Result<v1::JoinTicket> JoinControlPlane(const Guest& g, const std::string& name,
                                          const std::string& address, const std::string& disk) {
    Call c = Attest(g);
    auto keys = agent::MakeEtcdKeys(name);
    v1::JoinRequest r;
    *r.mutable_evidence() = c.evidence;
    r.set_nonce(c.nonce);
    r.set_node_name(name);
    r.set_role(v1::NODE_ROLE_CONTROL_PLANE);
    r.set_disk_uuid(disk);
    r.add_node_addresses(address);
    r.set_etcd_csr(ToString(keys->server_csr));
    r.set_etcd_peer_csr(ToString(keys->peer_csr));
    r.set_etcd_peer_url("https://" + address + ":2380");
    r.set_etcd_client_url("https://" + address + ":2379");
    return logic_->IssueJoinTicket(r, c.peer);
  }
  Result<v1::RejoinTicket> Rejoin(const Guest& g, const std::string& name, const std::string& disk) {
    Call c = Attest(g);
    v1::RejoinRequest r;
    *r.mutable_evidence() = c.evidence;
    r.set_nonce(c.nonce);
    r.set_node_name(name);
    r.set_disk_uuid(disk);
    return logic_->IssueRejoinTicket(r, c.peer);
  }
  v1::NodeRecord Record(const std::string& name) {
    auto got = store_.Get(name);
    EXPECT_TRUE(got.ok() && got->has_value());
    return got.ok() && got->has_value() ? (*got)->record : v1::NodeRecord();
  }

  static SnpTestChain* chain_;
  testing::FakeEtcd etcd_;
  NodeStore store_{&etcd_};
  Membership membership_{&etcd_};
  std::unique_ptr<EtcdCa> ca_;
  FakeClock clock_{1'800'000'000};
  RealClock real_clock_;  // certificate validity
  SecretBytes master_ = SecretBytes(Bytes(32, 0x42).data(), 32);
  verify::SnpTrustAnchors anchors_;
  verify::SnpPolicy snp_policy_;
  std::unique_ptr<verify::SnpVerifier> verifier_;
  std::optional<NonceIssuer> nonces_;
  LocalTokens tokens_;
  std::unique_ptr<verify::PolicyHolder> holder_;
  std::unique_ptr<NodeRegistry> registry_;
  std::unique_ptr<JoinLogic> logic_;
  snp::Tcb tcb_{.bootloader = 3, .tee = 0, .snp = 8, .microcode = 115};
  testing::SnpReportSpec spec_;
  SnpIssued vcek_;
  testing::TempDir esp_a_, esp_b_;
};
SnpTestChain* SnpIdentityJoinTest::chain_ = nullptr;

// Issue 22, section 4: a compromised guest on the control plane's host got reports over any
// binding signed by the same VCEK, so it passed the control plane's name binding and its
// grant. Now it is another node.
TEST_F(SnpIdentityJoinTest, ANeighbourOnTheSameHostIsNotTheControlPlane) {
  Guest cp = Boot(esp_a_, spec_, vcek_);
  Guest neighbour = Boot(esp_b_, spec_, vcek_);  // same image, same host, same VCEK
  ASSERT_TRUE(cp.identity && neighbour.identity);
  ASSERT_NE(cp.identity->Fingerprint(), neighbour.identity->Fingerprint());
  StartBerthd(cp.identity->Fingerprint());

  auto joined = JoinControlPlane(cp, "cp-1", "10.0.0.5", kDisk);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  const v1::NodeRecord record = Record("cp-1");
  EXPECT_EQ(record.ak_sha256(), cp.identity->Fingerprint());
  EXPECT_EQ(record.platform_key_sha256(), HexEncode(*CertSpkiSha256(vcek_.cert.get())));

  // The neighbour's evidence verifies (a real guest on a trusted platform) ...
  Call n = Attest(neighbour);
  auto verified = verifier_->Verify(n.evidence, ComputeBinding(AsBytes(n.nonce), n.peer.spki_sha256));
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_EQ(verified->platform_key_sha256_hex, record.platform_key_sha256());
  // ... but the control plane's record is not its.
  const std::string not_it =
      "PERMISSION_DENIED: node name cp-1 is recorded with attestation key sha256:" +
      cp.identity->Fingerprint().substr(0, 16) + "..., not this node's sha256:" +
      neighbour.identity->Fingerprint().substr(0, 16) + "...";
  EXPECT_EQ(CheckMayJoin(&record, "cp-1", verified->ak_sha256_hex, v1::NODE_ROLE_CONTROL_PLANE)
                .ToString(),
            not_it);
  EXPECT_EQ(JoinControlPlane(neighbour, "cp-1", "10.0.0.6", kDisk2).status().ToString(), not_it);
  EXPECT_EQ(Rejoin(neighbour, "cp-1", kDisk).status().ToString(), not_it);
  // Nor does the policy's grant, which names the control plane's identity, cover it.
  auto own_name = JoinControlPlane(neighbour, "cp-2", "10.0.0.6", kDisk2);
  EXPECT_EQ(own_name.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(own_name.status().message(), HasSubstr("is not authorized to be a control plane"));
  EXPECT_EQ(tokens_.issued, 1);
  EXPECT_EQ(etcd_.Members().size(), 4u);  // the three voters and cp-1's learner
}

// The other way round: a TCB update gives the host a new VCEK, and the node is still itself.
TEST_F(SnpIdentityJoinTest, ATcbUpdateKeepsTheNodesIdentityAndItRejoins) {
  Guest before = Boot(esp_a_, spec_, vcek_);
  ASSERT_TRUE(before.identity);
  StartBerthd(before.identity->Fingerprint());
  auto joined = JoinControlPlane(before, "cp-1", "10.0.0.5", kDisk);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();

  // Microcode and firmware updated, the guest rebooted: higher reported and committed TCB, a
  // VCEK for it. The sealed identity on its ESP is unsealed with the TCB it was made at.
  snp::Tcb newer{.bootloader = 4, .tee = 1, .snp = 22, .microcode = 213};
  testing::SnpReportSpec updated = spec_;
  updated.reported_tcb = snp::EncodeTcb(newer, snp::Product::kMilan);
  SnpIssued new_vcek = chain_->IssueVcek({.hwid = spec_.chip_id, .tcb = newer});
  Guest after = Boot(esp_a_, updated, new_vcek);
  ASSERT_TRUE(after.identity);
  EXPECT_FALSE(after.identity->created());
  EXPECT_EQ(after.identity->Fingerprint(), before.identity->Fingerprint());
  auto rejoined = Rejoin(after, "cp-1", kDisk);
  ASSERT_TRUE(rejoined.ok()) << rejoined.status().ToString();
  EXPECT_EQ(rejoined->disk_key(), joined->disk_key());
  EXPECT_EQ(Record("cp-1").platform_key_sha256(), HexEncode(*CertSpkiSha256(new_vcek.cert.get())));

  // Moved to another chip, the node cannot unseal its identity: it is a new machine, and
  // says so before it asks berthd anything.
  testing::TempDir moved_esp;
  std::filesystem::copy_file(esp_a_.Join("snp-identity.binpb"), moved_esp.Join("snp-identity.binpb"));
  FakeSevGuest moved(updated, new_vcek.key.get(), {});
  moved.chip_secret = Bytes(32, 0x99);
  auto lost = agent::SnpIdentity::LoadOrCreate(moved, moved_esp.Join("snp-identity.binpb"), 0);
  EXPECT_EQ(lost.status().code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace berth::server
