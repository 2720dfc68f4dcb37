// Golden tickets in a debug build (this binary links server_golden_on and agent_golden_on):
// issued to an operator, single-use through the node record's etcd transaction, short-lived,
// bound to a node address, name and role; control planes still send CSRs for keys made on the
// node. The release flavour is tested in golden_ticket_release_test.cc.
#include "server/nodes/golden_ticket.h"

#include <gmock/gmock.h>
#include <google/protobuf/descriptor.h>
#include <gtest/gtest.h>

#include "agent/golden_ticket.h"
#include "common/binding.h"
#include "common/time.h"
#include "server/join/join_logic.h"
#include "tests/unit/server/nodes/lifecycle_fixture.h"

namespace berth::server {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

const std::string kPeer = "ipv4:10.0.0.7:41000";

class GoldenTicketTest : public LifecycleTest {
 protected:
  void SetUp() override {
    LifecycleTest::SetUp();
    ASSERT_TRUE(GoldenTicketsCompiledIn());
    golden_ = MakeGoldenTickets(&store_, &clock_, GoldenTicketOptions{.cluster_id = "cluster-a"});
    ASSERT_NE(golden_, nullptr);
  }

  v1::GoldenTicket Issue(const std::string& name = "w1", v1::NodeRole role = v1::NODE_ROLE_WORKER,
                         int64_t ttl = 0) {
    v1::GoldenTicketIssueRequest r;
    r.set_node_address("10.0.0.7");
    r.set_node_name(name);
    r.set_role(role);
    r.set_ttl_seconds(ttl);
    auto issued = golden_->Issue(r, "CN=alice");
    EXPECT_TRUE(issued.ok()) << issued.status().ToString();
    return issued.ok() ? issued->ticket() : v1::GoldenTicket();
  }

  // Verify and record the join, as JoinLogic does.
  Result<JoinAdmission> Join(v1::JoinRequest request, const v1::GoldenTicket& ticket,
                             const Bytes& tls_key = Bytes(32, 1), const std::string& peer = kPeer) {
    *request.mutable_golden_ticket() = ticket;
    BERTH_ASSIGN_OR_RETURN(verify::VerifiedEvidence v, golden_->Verify(request, peer, tls_key));
    return registry_->AdmitJoin(request, v, peer);
  }

  std::unique_ptr<GoldenTickets> golden_;
};

TEST_F(GoldenTicketTest, IssuedTicketIsStoredAsAHashOfItsSecretOnly) {
  v1::GoldenTicket t = Issue();
  EXPECT_EQ(t.id().size(), 32u);
  EXPECT_EQ(t.secret().size(), 32u);
  EXPECT_EQ(t.node_address(), "10.0.0.7");
  EXPECT_EQ(t.expires_unix(), kLcNow + 900);
  EXPECT_EQ(t.cluster_id(), "cluster-a");
  EXPECT_EQ(t.issued_by(), "CN=alice");
  const auto dump = etcd_.Dump();
  ASSERT_EQ(dump.count("/berth/v1/golden-tickets/" + t.id()), 1u);
  const std::string& stored = dump.at("/berth/v1/golden-tickets/" + t.id());
  EXPECT_THAT(stored, HasSubstr(HexEncode(Sha256(AsBytes(t.secret())))));
  for (const auto& [k, v] : dump) {
    EXPECT_THAT(v, Not(HasSubstr(HexEncode(AsBytes(t.secret()))))) << k;
    EXPECT_EQ(v.find(t.secret()), std::string::npos) << k;
  }
}

TEST_F(GoldenTicketTest, WorksOnceNeverTwice) {
  v1::GoldenTicket t = Issue();
  auto joined = Join(Worker("w1"), t);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  auto r = Record("w1");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->state(), v1::NODE_STATE_JOINED);
  EXPECT_EQ(r->golden_ticket_id(), t.id());
  EXPECT_EQ(r->policy_rule(), "golden ticket " + t.id() + " issued by CN=alice (no attestation)");

  // Another boot (another TLS key) presenting the same ticket, under any name: refused.
  auto second = Join(Worker("w1"), t, Bytes(32, 2));
  EXPECT_EQ(second.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(second.status().message(), HasSubstr("was used at " + Rfc3339(kLcNow) +
                                                   " by node w1; a ticket admits one join"));
  EXPECT_EQ(Join(Worker("w2", kLcDisk2), t, Bytes(32, 2)).status().code(), Code::kPermissionDenied);
  EXPECT_EQ(Record("w1")->joins(), 1);
  EXPECT_FALSE(Record("w2").has_value());
}

TEST_F(GoldenTicketTest, TwoJoinsRacingForOneTicketAdmitOnlyOne) {
  v1::GoldenTicket t = Issue("");
  v1::JoinRequest a = Worker("w1");
  v1::JoinRequest b = Worker("w2", kLcDisk2);
  *a.mutable_golden_ticket() = t;
  *b.mutable_golden_ticket() = t;
  // Both verified before either is recorded: the etcd transaction decides.
  auto va = golden_->Verify(a, kPeer, Bytes(32, 1));
  auto vb = golden_->Verify(b, kPeer, Bytes(32, 2));
  ASSERT_TRUE(va.ok() && vb.ok());
  EXPECT_TRUE(registry_->AdmitJoin(a, *va, kPeer).ok());
  EXPECT_EQ(registry_->AdmitJoin(b, *vb, kPeer).status().code(), Code::kAborted);
  EXPECT_FALSE(Record("w2").has_value());
}

TEST_F(GoldenTicketTest, NeverAfterExpiry) {
  v1::GoldenTicket t = Issue("w1", v1::NODE_ROLE_WORKER, 120);
  clock_.Advance(std::chrono::seconds(120));
  auto late = Join(Worker("w1"), t);
  EXPECT_EQ(late.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(late.status().message(), HasSubstr("expired at " + Rfc3339(kLcNow + 120)));
  EXPECT_FALSE(Record("w1").has_value());
}

TEST_F(GoldenTicketTest, BoundToItsSecretAddressNameAndRole) {
  v1::GoldenTicket t = Issue("w1");
  v1::GoldenTicket forged = t;
  forged.set_secret(std::string(32, 'x'));
  EXPECT_THAT(Join(Worker("w1"), forged).status().message(),
              HasSubstr("the secret does not match"));
  EXPECT_THAT(Join(Worker("w1"), t, Bytes(32, 1), "ipv4:10.0.0.8:41000").status().message(),
              HasSubstr("is for a node at 10.0.0.7, and this one calls from 10.0.0.8"));
  EXPECT_THAT(Join(Worker("w9"), t).status().message(), HasSubstr("is for node w1, not w9"));
  EXPECT_THAT(Join(ControlPlane("w1", "10.0.0.7"), t).status().message(),
              HasSubstr("is for a worker, not a control-plane"));
  v1::GoldenTicket unknown = t;
  unknown.set_id(std::string(32, 'f'));
  EXPECT_THAT(Join(Worker("w1"), unknown).status().message(), HasSubstr("is unknown"));
  unknown.set_id("../nodes/w1");
  EXPECT_EQ(Join(Worker("w1"), unknown).status().code(), Code::kInvalidArgument);
  // None of these used it up.
  EXPECT_TRUE(Join(Worker("w1"), t).ok());
}

TEST_F(GoldenTicketTest, IssueRefusesBadRequests) {
  v1::GoldenTicketIssueRequest r;
  r.set_node_address("10.0.0.7; rm -rf /");
  EXPECT_EQ(golden_->Issue(r, "CN=alice").status().code(), Code::kInvalidArgument);
  r.set_node_address("10.0.0.7");
  r.set_ttl_seconds(24 * 3600 + 1);
  EXPECT_EQ(golden_->Issue(r, "CN=alice").status().code(), Code::kInvalidArgument);
  r.set_ttl_seconds(10);
  EXPECT_EQ(golden_->Issue(r, "CN=alice").status().code(), Code::kInvalidArgument);
  r.set_ttl_seconds(0);
  r.set_node_name("Not_A_Node");
  EXPECT_EQ(golden_->Issue(r, "CN=alice").status().code(), Code::kInvalidArgument);
  EXPECT_TRUE(store_.ListValues("golden-tickets/")->empty());
}

TEST_F(GoldenTicketTest, ControlPlaneGetsCertificatesForTheKeysItMadeNotAKey) {
  v1::GoldenTicket t = Issue("cp-g", v1::NODE_ROLE_CONTROL_PLANE);
  // The ticket itself carries no key material of any kind.
  const google::protobuf::Descriptor* d = v1::GoldenTicket::descriptor();
  for (int i = 0; i < d->field_count(); ++i) {
    EXPECT_THAT(d->field(i)->name(), Not(HasSubstr("key"))) << d->field(i)->name();
  }
  v1::JoinRequest cp = ControlPlane("cp-g", "10.0.0.7");
  auto joined = Join(
      cp, t, Bytes(32, 3));  // its AK is not in roles.control_plane: the ticket authorizes the role
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  ASSERT_TRUE(joined->etcd.has_value());
  EXPECT_THAT(joined->audit, HasSubstr("authorized_by=\"golden ticket " + t.id()));
  // The certificates are for the public keys of the node's CSRs.
  auto csr_key = [](const std::string& der) {
    const unsigned char* p = reinterpret_cast<const unsigned char*>(der.data());
    X509_REQ* req = d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size()));
    EXPECT_NE(req, nullptr);
    Bytes spki = *PublicKeyToSpkiDer(X509_REQ_get0_pubkey(req));
    X509_REQ_free(req);
    return spki;
  };
  auto cert = CertFromPem(joined->etcd->server_certificate());
  ASSERT_TRUE(cert.ok());
  EXPECT_EQ(*PublicKeyToSpkiDer(X509_get0_pubkey(cert->get())), csr_key(cp.etcd_csr()));
  EXPECT_EQ(Record("cp-g")->golden_ticket_id(), t.id());
}

TEST(GoldenTicketAgentTest, DebugAgentReadsAValidTicketForThisNodeOnly) {
  v1::EnrolmentConfig c;
  c.set_role(v1::NODE_ROLE_WORKER);
  v1::GoldenTicket* t = c.mutable_golden_ticket();
  t->set_id(std::string(32, 'a'));
  t->set_secret(std::string(32, 's'));
  t->set_node_name("w1");
  t->set_role(v1::NODE_ROLE_WORKER);
  t->set_expires_unix(kLcNow + 60);
  auto read = agent::ReadGoldenTicket(c, "w1", kLcNow);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->id(), std::string(32, 'a'));
  EXPECT_THAT(agent::ReadGoldenTicket(c, "w2", kLcNow).status().message(),
              HasSubstr("is for node w1, and this node is w2"));
  EXPECT_THAT(agent::ReadGoldenTicket(c, "w1", kLcNow + 60).status().message(),
              HasSubstr("has expired"));
  t->set_secret("short");
  EXPECT_EQ(agent::ReadGoldenTicket(c, "w1", kLcNow).status().code(), Code::kInvalidArgument);
}

}  // namespace
}  // namespace berth::server
