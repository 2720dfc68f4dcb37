// Node lifecycle on the server, with an in-memory etcd and fake time: operator approval of
// nodes seen for the first time, EC2 pre-authorization, the live policy (PolicyHolder and its
// file watcher) and the Prometheus exposition. The same paths run against real etcd and a real
// berthd in tests/integration/lifecycle_test.cc.
#include "server/nodes/admission.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>

#include "server/cloud/ec2_identity.h"
#include "server/metrics.h"
#include "server/policy_watcher.h"
#include "tests/testing/ec2_documents.h"
#include "tests/unit/server/nodes/lifecycle_fixture.h"

namespace berth::server {
namespace {

using berth::testing::MustWrite;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::string kPeer = "ipv4:10.0.0.9:40000";
const std::string kInstance = "i-0123456789abcdef0";

verify::AdmissionPolicy Approval() { return verify::AdmissionPolicy{.approval_required = true}; }
AdmissionOptions Hold() {
  return AdmissionOptions{.approval_hold = std::chrono::milliseconds(1000),
                          .approval_poll = std::chrono::milliseconds(250)};
}

bool HasKeyWith(const std::map<std::string, std::string>& dump, const std::string& part) {
  for (const auto& [k, v] : dump) {
    if (k.find(part) != std::string::npos) return true;
  }
  return false;
}

// ---- approval ----

TEST_F(LifecycleTest, FirstSeenNodeIsPendingBoundToItsKeyUntilApprovedThenJoins) {
  SetPolicy(Approval(), Hold());
  auto held = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
  ASSERT_TRUE(held.ok()) << held.status().ToString();
  EXPECT_TRUE(held->pending);
  EXPECT_THAT(held->pending_reason, HasSubstr("node w1 is pending operator approval"));
  EXPECT_THAT(held->pending_reason, HasSubstr("berthctl nodes approve w1"));
  // Held for approval_hold, re-reading the record every approval_poll.
  EXPECT_EQ(clock_.sleeps, 4);
  auto pending = Record("w1");
  ASSERT_TRUE(pending.has_value());
  EXPECT_EQ(pending->state(), v1::NODE_STATE_PENDING);
  EXPECT_EQ(pending->ak_sha256(), kLcOtherAk);
  EXPECT_EQ(pending->pending_peer(), kPeer);
  EXPECT_EQ(pending->pending_since_unix(), kLcNow);
  EXPECT_EQ(pending->approved_unix(), 0);
  EXPECT_EQ(pending->joins(), 0);
  // Nothing else is claimed for a pending node: no disk, no token (no ticket).
  EXPECT_FALSE(HasKeyWith(etcd_.Dump(), "/disks/"));

  auto approved = admin_->ApproveNode(
      [] {
        v1::ApprovalApproveRequest r;
        r.set_name("w1");
        return r;
      }(),
      "CN=alice");
  ASSERT_TRUE(approved.ok()) << approved.status().ToString();
  EXPECT_EQ(approved->node().approved_by(), "CN=alice");

  auto joined = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  EXPECT_FALSE(joined->pending);
  EXPECT_THAT(joined->audit, HasSubstr("record=joined joins=1 approved_by=\"CN=alice\""));
  auto r = Record("w1");
  EXPECT_EQ(r->state(), v1::NODE_STATE_JOINED);
  EXPECT_EQ(r->approved_by(), "CN=alice");
  EXPECT_TRUE(HasKeyWith(etcd_.Dump(), "/disks/" + kLcDisk));
}

TEST_F(LifecycleTest, ApprovalWhileTheCallIsHeldAdmitsItAtTheNextPoll) {
  SetPolicy(Approval(), Hold());
  clock_.on_sleep = [&](int n) {
    if (n != 2) return;
    v1::ApprovalApproveRequest r;
    r.set_name("w1");
    r.set_ak_sha256(kLcOtherAk);
    ASSERT_TRUE(admin_->ApproveNode(r, "CN=alice").ok());
  };
  auto joined = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  EXPECT_FALSE(joined->pending);
  EXPECT_EQ(clock_.sleeps, 2);  // answered at the first poll after the approval
  EXPECT_EQ(Record("w1")->state(), v1::NODE_STATE_JOINED);
}

TEST_F(LifecycleTest, DeniedPendingNodeNeverJoins) {
  SetPolicy(Approval(), Hold());
  ASSERT_TRUE(registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer)->pending);
  auto denied = admin_->DenyNode("w1", "CN=alice");
  ASSERT_TRUE(denied.ok()) << denied.status().ToString();
  EXPECT_EQ(denied->node().state(), v1::NODE_STATE_REVOKED);
  for (int attempt = 0; attempt < 3; ++attempt) {
    auto again = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
    EXPECT_EQ(again.status().code(), Code::kPermissionDenied) << again.status().ToString();
  }
  v1::ApprovalApproveRequest approve;
  approve.set_name("w1");
  EXPECT_THAT(admin_->ApproveNode(approve, "CN=bob").status().ToString(),
              HasSubstr("FAILED_PRECONDITION: node w1 is revoked, not pending approval"));
  EXPECT_EQ(Record("w1")->state(), v1::NODE_STATE_REVOKED);
  EXPECT_EQ(Record("w1")->joins(), 0);
}

TEST_F(LifecycleTest, RevokedWhileTheCallIsHeldIsRefusedInThatCall) {
  SetPolicy(Approval(), Hold());
  clock_.on_sleep = [&](int n) {
    if (n == 1) {
      ASSERT_TRUE(admin_->RevokeNode("w1", "CN=alice").ok());
    }
  };
  auto refused = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied) << refused.status().ToString();
  EXPECT_EQ(clock_.sleeps, 1);
  EXPECT_EQ(Record("w1")->state(), v1::NODE_STATE_REVOKED);
}

TEST_F(LifecycleTest, ApprovalIsForTheKeyTheNodeWasSeenWith) {
  SetPolicy(Approval(), Hold());
  ASSERT_TRUE(registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer)->pending);
  v1::ApprovalApproveRequest wrong;
  wrong.set_name("w1");
  wrong.set_ak_sha256(kLcAk);
  EXPECT_THAT(admin_->ApproveNode(wrong, "CN=alice").status().message(),
              HasSubstr("is pending with attestation key sha256:" + kLcOtherAk));
  EXPECT_EQ(Record("w1")->approved_unix(), 0);
  // Another machine claiming the pending name is refused outright.
  auto impostor = registry_->AdmitJoin(Worker("w1", kLcDisk2), Evidence(kLcAk), kPeer);
  EXPECT_EQ(impostor.status().code(), Code::kPermissionDenied);
  wrong.set_ak_sha256("xyz");
  EXPECT_EQ(admin_->ApproveNode(wrong, "CN=alice").status().code(), Code::kInvalidArgument);
  wrong.set_name("w9");
  wrong.clear_ak_sha256();
  EXPECT_EQ(admin_->ApproveNode(wrong, "CN=alice").status().code(), Code::kNotFound);
}

TEST_F(LifecycleTest, NodesThatJoinedBeforeApprovalWasRequiredAreNotAskedAgain) {
  ASSERT_TRUE(registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer).ok());
  SetPolicy(Approval(), Hold());
  auto again = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_FALSE(again->pending);
  EXPECT_EQ(clock_.sleeps, 0);
  EXPECT_EQ(Record("w1")->joins(), 2);
}

TEST_F(LifecycleTest, UnauthorizedControlPlaneIsRefusedBeforeItWaitsForApproval) {
  SetPolicy(Approval(), Hold());
  auto refused =
      registry_->AdmitJoin(ControlPlane("cp-x", "10.0.0.7"), Evidence(kLcOtherAk), kPeer);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_FALSE(Record("cp-x").has_value());
  EXPECT_EQ(clock_.sleeps, 0);
}

// ---- EC2 pre-authorization ----

const std::string kAccount = "123456789012";
const std::string kRegion = "eu-west-1";

void Preauthorize(NodeStore& store, const std::string& id, int64_t expires,
                  const std::string& account = kAccount, const std::string& region = kRegion) {
  v1::SnsEc2Preauthorization p;
  p.set_version(1);
  p.set_instance_id(id);
  p.set_message_id("msg-" + id);
  p.set_account(account);
  p.set_region(region);
  p.set_authorized_unix(kLcNow);
  p.set_expires_unix(expires);
  ASSERT_TRUE(store.PutIfAbsent(Ec2PreauthorizationKey(id), RecordToJson(p)).ok());
}

// A test key stands in for AWS's in eu-west-1 (the policy's certificate for that region).
class Ec2Test : public LifecycleTest {
 protected:
  void SetUp() override {
    LifecycleTest::SetUp();
    SetPolicy(Ec2Only());
  }
  verify::AdmissionPolicy Ec2Only() {
    verify::AdmissionPolicy p{.ec2_preauthorized_only = true};
    p.ec2_identity.certificates[kRegion] = aws_.cert_pem;
    return p;
  }
  v1::JoinRequest Claiming(const std::string& name, const std::string& instance,
                           const std::string& disk = kLcDisk) {
    v1::JoinRequest r = Worker(name, disk);
    r.set_ec2_instance_id(instance);
    return r;
  }
  v1::Ec2InstanceIdentity Document(const std::string& instance,
                                   const std::string& account = kAccount,
                                   const std::string& region = kRegion) {
    return testing::MakeEc2Identity(instance, account, region, aws_);
  }
  testing::TestAwsSigner aws_ = testing::MakeTestAwsSigner();
};

// Issue 22, section 3: the instance ID was what the agent said, so any attested node redeemed
// a just-started instance's pre-authorization and the real instance was refused. Now a claim
// without the instance's signed identity document is refused, and the document must be the
// claimed instance's.
TEST_F(Ec2Test, OnlyPreauthorizedInstancesJoinEachOnce) {
  auto none = registry_->AdmitJoin(Worker("w1"), Evidence(kLcOtherAk), kPeer);
  EXPECT_THAT(none.status().ToString(),
              HasSubstr("PERMISSION_DENIED: this cluster admits only EC2 instances"));
  v1::JoinRequest w1 = Claiming("w1", "i-xyz");
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().code(),
            Code::kInvalidArgument);
  Preauthorize(store_, kInstance, kLcNow + 3600);
  // An arbitrary attested node claiming the instance, as the agent's flag or DMI tag says:
  // no proof, no join, and the pre-authorization is still there for the real instance.
  v1::JoinRequest claim_only = Claiming("w-impostor", kInstance, kLcDisk2);
  EXPECT_EQ(registry_->AdmitJoin(claim_only, Evidence(kLcAk), kPeer).status().ToString(),
            "PERMISSION_DENIED: node w-impostor claims EC2 instance " + kInstance +
                " without its signed instance identity document (the agent reads it from the "
                "instance metadata service); a claim alone is refused");
  EXPECT_FALSE(Record("w-impostor").has_value());

  w1 = Claiming("w1", kInstance);
  *w1.mutable_ec2_identity() = Document(kInstance);
  auto joined = registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer);
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  EXPECT_THAT(joined->audit, HasSubstr("ec2_instance=" + kInstance + " ec2_event=msg-" +
                                       kInstance + " ec2_account=" + kAccount +
                                       " ec2_region=" + kRegion));
  EXPECT_EQ(Record("w1")->ec2_instance_id(), kInstance);
  auto stored = store_.GetValue(Ec2PreauthorizationKey(kInstance));
  ASSERT_TRUE(stored.ok() && stored->has_value());
  v1::SnsEc2Preauthorization used;
  ASSERT_TRUE(RecordFromJson((*stored)->key, (*stored)->value, &used).ok());
  EXPECT_EQ(used.used_unix(), kLcNow);
  EXPECT_EQ(used.used_by_node(), "w1");

  // The same instance cannot admit a second node, even with its (replayed) document.
  v1::JoinRequest w2 = Claiming("w2", kInstance, kLcDisk2);
  *w2.mutable_ec2_identity() = w1.ec2_identity();
  EXPECT_EQ(registry_->AdmitJoin(w2, Evidence(kLcAk), kPeer).status().ToString(),
            "PERMISSION_DENIED: the pre-authorization of EC2 instance " + kInstance +
                " was used at 2027-01-15T08:00:00Z by node w1");
  EXPECT_FALSE(Record("w2").has_value());
  // The node that joined rejoins and joins again without a new pre-authorization.
  EXPECT_TRUE(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).ok());
}

TEST_F(Ec2Test, ADocumentSignedByAnotherKeyIsRefused) {
  Preauthorize(store_, kInstance, kLcNow + 3600);
  // A forger's key, its certificate inside the PKCS#7 (as AWS's is): only the policy's
  // certificate for the region may have signed.
  testing::TestAwsSigner forger = testing::MakeTestAwsSigner();
  v1::JoinRequest w1 = Claiming("w1", kInstance);
  *w1.mutable_ec2_identity() = testing::MakeEc2Identity(kInstance, kAccount, kRegion, forger);
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().ToString(),
            "PERMISSION_DENIED: EC2 instance identity document: its signature does not verify "
            "with AWS's certificate for region eu-west-1");
  // A region with no certificate at all: the compiled-in ones are AWS's, which a test key
  // cannot satisfy either.
  *w1.mutable_ec2_identity() = Document(kInstance, kAccount, "us-east-1");
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().ToString(),
            "PERMISSION_DENIED: EC2 instance identity document: its signature does not verify "
            "with AWS's certificate for region us-east-1");
  *w1.mutable_ec2_identity() = Document(kInstance, kAccount, "eu-south-9");
  EXPECT_THAT(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().ToString(),
              HasSubstr("PERMISSION_DENIED: EC2 instance identity document: no signing "
                        "certificate is known for region eu-south-9"));
  // The right signature over another document than the one sent.
  v1::Ec2InstanceIdentity swapped = Document(kInstance);
  swapped.set_document(testing::Ec2DocumentJson("i-0fedcba9876543210", kAccount, kRegion));
  *w1.mutable_ec2_identity() = swapped;
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().ToString(),
            "PERMISSION_DENIED: EC2 instance identity document: the document sent is not the "
            "one its signature covers");
  // A detached signature over another document.
  v1::Ec2InstanceIdentity detached;
  detached.set_document(testing::Ec2DocumentJson(kInstance, kAccount, kRegion));
  detached.set_pkcs7(testing::SignEc2Document(
      testing::Ec2DocumentJson("i-0fedcba9876543210", kAccount, kRegion), aws_, true));
  *w1.mutable_ec2_identity() = detached;
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().ToString(),
            "PERMISSION_DENIED: EC2 instance identity document: its signature does not verify "
            "with AWS's certificate for region eu-west-1");
  v1::Ec2InstanceIdentity garbage;
  garbage.set_pkcs7("not a pkcs7");
  *w1.mutable_ec2_identity() = garbage;
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().code(),
            Code::kInvalidArgument);
  EXPECT_FALSE(Record("w1").has_value());
  // None of it used the pre-authorization up.
  detached.set_pkcs7(testing::SignEc2Document(detached.document(), aws_, true));
  *w1.mutable_ec2_identity() = detached;
  EXPECT_TRUE(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).ok());
}

TEST_F(Ec2Test, AValidDocumentForAnotherInstanceIsRefused) {
  Preauthorize(store_, kInstance, kLcNow + 3600);
  v1::JoinRequest w1 = Claiming("w1", kInstance);
  *w1.mutable_ec2_identity() = Document("i-0fedcba9876543210");  // signed, but not this one's
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().ToString(),
            "PERMISSION_DENIED: the EC2 instance identity document is for instance "
            "i-0fedcba9876543210, not the claimed " + kInstance);
  EXPECT_FALSE(Record("w1").has_value());
}

TEST_F(Ec2Test, TheDocumentsAccountAndRegionMustBeThePolicysAndTheEventsOnes) {
  Preauthorize(store_, kInstance, kLcNow + 3600);
  v1::JoinRequest w1 = Claiming("w1", kInstance);
  *w1.mutable_ec2_identity() = Document(kInstance, "999999999999");
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().ToString(),
            "PERMISSION_DENIED: EC2 instance " + kInstance +
                " was announced for account 123456789012, its identity document says "
                "999999999999");
  verify::AdmissionPolicy p = Ec2Only();
  p.ec2_identity.certificates["eu-north-1"] = aws_.cert_pem;
  SetPolicy(p);
  *w1.mutable_ec2_identity() = Document(kInstance, kAccount, "eu-north-1");
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().ToString(),
            "PERMISSION_DENIED: EC2 instance " + kInstance +
                " was announced in region eu-west-1, its identity document says eu-north-1");
  p.ec2_identity.account_ids = {"210987654321"};
  SetPolicy(p);
  *w1.mutable_ec2_identity() = Document(kInstance);
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().ToString(),
            "PERMISSION_DENIED: EC2 instance identity document: account 123456789012 is not in "
            "admission.ec2_identity.account_ids");
  p.ec2_identity.account_ids = {kAccount};
  p.ec2_identity.regions = {"us-east-1"};
  SetPolicy(p);
  EXPECT_EQ(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().ToString(),
            "PERMISSION_DENIED: EC2 instance identity document: region eu-west-1 is not in "
            "admission.ec2_identity.regions");
  p.ec2_identity.regions = {kRegion};
  SetPolicy(p);
  EXPECT_TRUE(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).ok());
}

TEST_F(Ec2Test, ExpiredPreauthorizationIsRefused) {
  Preauthorize(store_, kInstance, kLcNow + 10);
  clock_.Advance(std::chrono::seconds(10));
  v1::JoinRequest w1 = Claiming("w1", kInstance);
  *w1.mutable_ec2_identity() = Document(kInstance);
  EXPECT_THAT(registry_->AdmitJoin(w1, Evidence(kLcOtherAk), kPeer).status().ToString(),
              HasSubstr("PERMISSION_DENIED: the pre-authorization of EC2 instance " + kInstance +
                        " expired"));
}

TEST(Ec2IdentityTest, CompiledInCertificatesAreAwsRsa2048Ones) {
  // DER SHA-256 of each, as taken from AWS's published list (ec2_identity_certs.cc).
  const std::map<std::string, std::string> pinned = {
      {"ap-northeast-1", "b325c09f762291bfb8a149a3d8045eecda8152e79a7f4c83974a3703a2a7bb6d"},
      {"ap-southeast-1", "df7aad409dad94ffb0b45a677051291855c328945379ba05f4aa4983baa2b5b1"},
      {"ap-southeast-2", "3c2fa3fa70c80bc64e5e934b30e2d0af1733cfd32584f68f86804c43a934833d"},
      {"eu-central-1", "40e59f0c3924d32f53b9f66145fc18c4dfa1192dec7c74ad84d719826e9c7ba1"},
      {"eu-west-1", "7963eae83b58ab14bbd0715947015dd6866d7623df85eca742cabb8898281f30"},
      {"sa-east-1", "940ffcb9b2e5d1ef928c8832d804ff50a54eb231b19c683f9010225231ae6481"},
      {"us-east-1", "70923c22dd074172d0e5d27ea1ca865412525fccd8bc2cd0ff40660e275f0b30"},
      {"us-west-1", "abdc625e6600af52d4d3b88415bc092843e2d268f7136e62ebc2d9de94ae8232"},
      {"us-west-2", "4e3569f2925a867a0c2f1b64efe101d4b4853d11c4f81c1e72aae201a92020b4"}};
  std::map<std::string, std::string> compiled;
  for (const auto& c : CompiledInEc2Certificates()) {
    auto cert = CertFromPem(c.pem);
    ASSERT_TRUE(cert.ok()) << c.region;
    compiled[c.region] = HexEncode(Sha256(*CertToDer(cert->get())));
    EVP_PKEY* key = X509_get0_pubkey(cert->get());
    EXPECT_EQ(EVP_PKEY_get_base_id(key), EVP_PKEY_RSA) << c.region;
    EXPECT_EQ(EVP_PKEY_get_bits(key), 2048) << c.region;
    EXPECT_EQ(X509_verify(cert->get(), key), 1) << c.region << " is not self-signed";
  }
  EXPECT_EQ(compiled, pinned);
}

TEST(Ec2IdentityTest, PolicySectionParsesAndRefusesMalformedEntries) {
  verify::Ec2IdentityPolicy p;
  testing::TestAwsSigner aws = testing::MakeTestAwsSigner();
  auto yaml = YAML::Load(testing::Ec2AdmissionPolicyYaml("eu-west-1", aws));
  ASSERT_TRUE(verify::ParseEc2IdentityPolicy(yaml["admission"]["ec2_identity"], p).ok());
  EXPECT_EQ(p.certificates.at("eu-west-1"), aws.cert_pem);
  ASSERT_TRUE(verify::ParseEc2IdentityPolicy(
                  YAML::Load("{account_ids: ['123456789012'], regions: [us-east-1]}"), p)
                  .ok());
  EXPECT_EQ(p.account_ids, std::vector<std::string>{"123456789012"});
  EXPECT_EQ(p.regions, std::vector<std::string>{"us-east-1"});
  EXPECT_EQ(verify::ParseEc2IdentityPolicy(YAML::Load("{account_ids: ['12345']}"), p).message(),
            "admission.ec2_identity.account_ids: \"12345\" is not a 12-digit AWS account ID");
  EXPECT_EQ(verify::ParseEc2IdentityPolicy(YAML::Load("{regions: [Europe]}"), p).message(),
            "admission.ec2_identity.regions: \"Europe\" is not an AWS region name");
  EXPECT_EQ(verify::ParseEc2IdentityPolicy(YAML::Load("{certificates: {eu-west-1: nope}}"), p).message(),
            "admission.ec2_identity.certificates.eu-west-1: expected PEM certificates");
  EXPECT_EQ(verify::ParseEc2IdentityPolicy(YAML::Load("{certs: {}}"), p).message(),
            "policy: unknown key \"admission.ec2_identity.certs\"");
}

// ---- the policy's admission section ----

TEST(AdmissionPolicyTest, ParsesAndRefusesUnknownValues) {
  verify::AdmissionPolicy p;
  ASSERT_TRUE(verify::ParseAdmissionPolicy(
                  YAML::Load("{approval: required, ec2_preauthorized_only: true}"), p)
                  .ok());
  EXPECT_TRUE(p.approval_required);
  EXPECT_TRUE(p.ec2_preauthorized_only);
  ASSERT_TRUE(
      verify::ParseAdmissionPolicy(YAML::Load("{tpm: {}}")["admission"], p).ok());  // absent
  EXPECT_FALSE(p.approval_required);
  EXPECT_FALSE(p.ec2_preauthorized_only);
  EXPECT_EQ(verify::ParseAdmissionPolicy(YAML::Load("{approval: maybe}"), p).message(),
            "admission.approval: expected \"required\" or \"none\", not \"maybe\"");
  EXPECT_EQ(
      verify::ParseAdmissionPolicy(YAML::Load("{ec2_preauthorized_only: often}"), p).message(),
      "admission.ec2_preauthorized_only: expected true or false");
  EXPECT_EQ(verify::ParseAdmissionPolicy(YAML::Load("{aproval: required}"), p).message(),
            "policy: unknown key \"admission.aproval\"");
}

// ---- the live policy ----

std::string PolicyText(const std::string& admission) {
  return "tpm:\n  trusted_aks:\n    - name: node-a\n      sha256: " + kLcAk +
         "\n  pcrs:\n    sha256:\n      0: " + std::string(64, '0') + "\n" + admission;
}

// As an editor does: a new file renamed over the old one.
void Replace(const std::string& path, const std::string& text) {
  MustWrite(path + ".tmp", text);
  std::filesystem::rename(path + ".tmp", path);
}

TEST(PolicyHolderTest, ReloadReplacesThePolicyAndABrokenFileLeavesTheOldOneInForce) {
  berth::testing::TempDir dir;
  const std::string path = dir.Join("policy.yaml");
  MustWrite(path, PolicyText(""));
  auto initial = verify::ParsePolicy(PolicyText(""));
  ASSERT_TRUE(initial.ok());
  verify::PolicyHolder holder(std::move(*initial), path);
  Metrics metrics;
  holder.SetObserver([&](bool ok) { metrics.CountPolicyReload(ok); });
  std::shared_ptr<const verify::Policy> before = holder.Current();

  Replace(path, PolicyText("admission:\n  approval: required\n"));
  ASSERT_TRUE(holder.Reload("SIGHUP").ok());
  EXPECT_TRUE(holder.Current()->admission.approval_required);
  EXPECT_FALSE(before->admission.approval_required);  // a snapshot never changes
  EXPECT_EQ(holder.generation(), 1u);

  for (const std::string& broken : {PolicyText("admission:\n  approval: maybe\n"),
                                    std::string("tpm: [\n"), PolicyText("surprise: 1\n")}) {
    Replace(path, broken);
    Status st = holder.Reload("SIGHUP");
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << broken;
    EXPECT_TRUE(holder.Current()->admission.approval_required);
    EXPECT_EQ(holder.generation(), 1u);
  }
  std::filesystem::remove(path);
  EXPECT_FALSE(holder.Reload("SIGHUP").ok());
  EXPECT_TRUE(holder.Current()->admission.approval_required);

  // What this berthd cannot honour is rejected like a policy that does not parse.
  holder.SetValidator([](const verify::Policy& p) {
    return p.admission.ec2_preauthorized_only ? FailedPrecondition("no etcd") : OkStatus();
  });
  Replace(path, PolicyText("admission:\n  ec2_preauthorized_only: true\n"));
  EXPECT_EQ(holder.Reload("SIGHUP").message(), "no etcd");
  EXPECT_FALSE(holder.Current()->admission.ec2_preauthorized_only);

  const std::string text = metrics.Exposition();
  EXPECT_THAT(text, HasSubstr("berth_policy_reloads_total{result=\"ok\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_policy_reloads_total{result=\"rejected\"} 5\n"));
}

TEST(PolicyHolderTest, WatcherReloadsWhenTheFileIsReplacedOrRewritten) {
  berth::testing::TempDir dir;
  const std::string path = dir.Join("policy.yaml");
  MustWrite(path, PolicyText(""));
  verify::PolicyHolder holder(*verify::ParsePolicy(PolicyText("")), path);
  std::atomic<int> rejected{0};
  holder.SetObserver([&](bool ok) {
    if (!ok) rejected++;
  });
  PolicyWatcher watcher(&holder, std::chrono::milliseconds(50));
  ASSERT_TRUE(watcher.Start().ok());

  Replace(path, PolicyText("admission:\n  approval: required\n"));
  ASSERT_TRUE(
      berth::testing::WaitFor([&] { return holder.generation() == 1; }, std::chrono::seconds(10)));
  EXPECT_TRUE(holder.Current()->admission.approval_required);

  MustWrite(path, PolicyText("admission:\n  approval: nope\n"));  // written in place
  ASSERT_TRUE(berth::testing::WaitFor([&] { return rejected > 0; }, std::chrono::seconds(10)));
  EXPECT_TRUE(holder.Current()->admission.approval_required);
  EXPECT_EQ(holder.generation(), 1u);

  MustWrite(dir.Join("other.yaml"), "not a policy");  // other files in the directory: ignored
  MustWrite(path, PolicyText(""));
  ASSERT_TRUE(
      berth::testing::WaitFor([&] { return holder.generation() == 2; }, std::chrono::seconds(10)));
  EXPECT_FALSE(holder.Current()->admission.approval_required);
  watcher.Stop();
}

TEST(PolicyHolderTest, FixedPolicyHasNothingToReloadOrWatch) {
  verify::PolicyHolder holder(verify::Policy{});
  EXPECT_EQ(holder.Reload("SIGHUP").code(), Code::kFailedPrecondition);
  PolicyWatcher watcher(&holder);
  EXPECT_EQ(watcher.Start().code(), Code::kFailedPrecondition);
}

// ---- metrics ----

TEST(MetricsTest, ExpositionIsThePrometheusTextFormat) {
  Metrics m;
  m.CountRequest("IssueJoinTicket", "granted");
  m.CountRequest("IssueJoinTicket", "granted");
  m.CountRequest("IssueJoinTicket", RequestOutcome(PermissionDenied("x"), false));
  m.CountRequest("IssueJoinTicket", RequestOutcome(Unavailable("x"), true));
  m.ObserveRequestSeconds("IssueJoinTicket", 0.003);
  m.ObserveRequestSeconds("IssueJoinTicket", 0.7);
  m.CountEtcdError("Txn", Code::kUnavailable);
  m.CountKubeApiError("POST", "403");
  m.CountSnsMessage("Notification", "refused_signature");
  m.CountEc2Event("running", "preauthorized");
  const std::string text = m.Exposition();
  EXPECT_THAT(
      text,
      HasSubstr("# TYPE berth_requests_total counter\n"
                "berth_requests_total{call=\"IssueJoinTicket\",outcome=\"granted\"} 2\n"
                "berth_requests_total{call=\"IssueJoinTicket\",outcome=\"pending\"} 1\n"
                "berth_requests_total{call=\"IssueJoinTicket\",outcome=\"refused_policy\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr(
          "# TYPE berth_request_duration_seconds histogram\n"
          "berth_request_duration_seconds_bucket{call=\"IssueJoinTicket\",le=\"0.005\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr("berth_request_duration_seconds_bucket{call=\"IssueJoinTicket\",le=\"0.5\"} 1\n"
                "berth_request_duration_seconds_bucket{call=\"IssueJoinTicket\",le=\"1\"} 2\n"));
  EXPECT_THAT(
      text,
      HasSubstr("berth_request_duration_seconds_bucket{call=\"IssueJoinTicket\",le=\"+Inf\"} 2\n"
                "berth_request_duration_seconds_sum{call=\"IssueJoinTicket\"} 0.703\n"
                "berth_request_duration_seconds_count{call=\"IssueJoinTicket\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("berth_etcd_errors_total{method=\"Txn\",code=\"UNAVAILABLE\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("berth_kube_api_errors_total{method=\"POST\",code=\"403\"} 1\n"));
  EXPECT_THAT(
      text,
      HasSubstr(
          "berth_sns_messages_total{type=\"Notification\",outcome=\"refused_signature\"} 1\n"));
  EXPECT_THAT(text,
              HasSubstr("berth_ec2_events_total{state=\"running\",action=\"preauthorized\"} 1\n"));
  EXPECT_EQ(Labels({{"a", "x\"y\\z\n"}}), "{a=\"x\\\"y\\\\z\\n\"}");
}

TEST(MetricsTest, MeteredClientsCountFailuresOnly) {
  Metrics m;
  berth::testing::FakeEtcd etcd;
  auto metered = MeteredEtcdClient(&etcd, &m);
  etcd.Fail("Range", grpc::Status(grpc::StatusCode::UNAVAILABLE, "down"));
  etcdserverpb::RangeRequest range;
  range.set_key("k");
  EXPECT_FALSE(metered->Range(range).ok());
  EXPECT_TRUE(metered->Range(range).ok());
  FakeKubeSecrets kube;
  auto kube_metered = MeteredKubeClient(&kube, &m);
  EXPECT_TRUE(kube_metered->Request("GET", "/x", "").ok());
  const std::string text = m.Exposition();
  EXPECT_THAT(text,
              HasSubstr("berth_etcd_errors_total{method=\"Range\",code=\"UNAVAILABLE\"} 1\n"));
  EXPECT_THAT(text, Not(HasSubstr("berth_kube_api_errors_total{")));
}

}  // namespace
}  // namespace berth::server
