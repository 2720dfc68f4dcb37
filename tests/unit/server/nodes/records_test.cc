// Node record transitions (pure functions) and the roles: section of the policy.
#include "server/nodes/records.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "verify/policy.h"

namespace berth::server {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

const std::string kAk(64, 'a');
const std::string kOtherAk(64, 'b');

JoinFacts Worker(int64_t now = 1000) {
  return JoinFacts{.name = "node-1",
                   .role = v1::NODE_ROLE_WORKER,
                   .disk_uuid = "disk-1",
                   .ak_sha256 = kAk,
                   .policy_rule = "rule-a",
                   .now_unix = now};
}

JoinFacts ControlPlane(uint64_t member, bool voter, std::vector<std::string> serials, int64_t now) {
  JoinFacts f{.name = "cp-1",
              .role = v1::NODE_ROLE_CONTROL_PLANE,
              .disk_uuid = "disk-c",
              .ak_sha256 = kAk,
              .policy_rule = "rule-a",
              .role_authorization = "policy roles.control_plane[0]",
              .etcd_peer_url = "https://10.0.0.5:2380",
              .etcd_client_url = "https://10.0.0.5:2379",
              .etcd_member_id = member,
              .etcd_member_is_voter = voter,
              .cert_serials = std::move(serials),
              .now_unix = now};
  return f;
}

TEST(NodeRecordTest, FirstWorkerJoinIsJoined) {
  auto r = ApplyJoin(nullptr, Worker());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->version(), kNodeRecordVersion);
  EXPECT_EQ(r->name(), "node-1");
  EXPECT_EQ(r->role(), v1::NODE_ROLE_WORKER);
  EXPECT_EQ(r->state(), v1::NODE_STATE_JOINED);
  EXPECT_EQ(r->disk_uuid(), "disk-1");
  EXPECT_EQ(r->ak_sha256(), kAk);
  EXPECT_EQ(r->first_join_unix(), 1000);
  EXPECT_EQ(r->last_join_unix(), 1000);
  EXPECT_EQ(r->joins(), 1u);
  EXPECT_EQ(r->policy_rule(), "rule-a");
  EXPECT_EQ(r->etcd_member_id(), 0u);
}

TEST(NodeRecordTest, JoinAgainKeepsFirstJoinAndCounts) {
  auto first = ApplyJoin(nullptr, Worker(1000));
  JoinFacts again = Worker(2000);
  again.disk_uuid = "disk-2";  // the node was reinstalled onto a fresh disk
  auto second = ApplyJoin(&*first, again);
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second->first_join_unix(), 1000);
  EXPECT_EQ(second->last_join_unix(), 2000);
  EXPECT_EQ(second->joins(), 2u);
  EXPECT_EQ(second->disk_uuid(), "disk-2");
}

TEST(NodeRecordTest, ControlPlaneIsJoiningUntilPromoted) {
  auto r = ApplyJoin(nullptr, ControlPlane(7, false, {"s1", "p1"}, 1000));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->state(), v1::NODE_STATE_JOINING);
  EXPECT_EQ(r->etcd_member_id(), 7u);
  EXPECT_EQ(r->etcd_peer_url(), "https://10.0.0.5:2380");
  EXPECT_EQ(r->etcd_learner_added_unix(), 1000);
  EXPECT_EQ(r->role_authorization(), "policy roles.control_plane[0]");
  EXPECT_THAT(r->etcd_cert_serials(), ElementsAre("s1", "p1"));
  // A retry after a lost reply: same member, new certificates; the learner's age is kept.
  auto retry = ApplyJoin(&*r, ControlPlane(7, false, {"s2", "p2"}, 1010));
  ASSERT_TRUE(retry.ok());
  EXPECT_EQ(retry->etcd_learner_added_unix(), 1000);
  EXPECT_THAT(retry->etcd_cert_serials(), ElementsAre("s1", "p1", "s2", "p2"));
  EXPECT_EQ(retry->state(), v1::NODE_STATE_JOINING);
  v1::NodeRecord promoted = ApplyPromoted(*retry, 7);
  EXPECT_EQ(promoted.state(), v1::NODE_STATE_JOINED);
  // Promotion does not resurrect a revoked record.
  v1::NodeRecord revoked = ApplyRevoke(*retry, "CN=op", 1100);
  EXPECT_EQ(ApplyPromoted(revoked, 7).state(), v1::NODE_STATE_REVOKED);
  // A join whose member is a voter already (promoted before the reply got through) is joined.
  auto late = ApplyJoin(&*retry, ControlPlane(7, true, {}, 1020));
  EXPECT_EQ(late->state(), v1::NODE_STATE_JOINED);
}

TEST(NodeRecordTest, RevokedNodeIsRefusedJoinAndRejoin) {
  auto r = ApplyJoin(nullptr, Worker());
  v1::NodeRecord revoked = ApplyRevoke(*r, "CN=alice", 1'800'000'000);
  EXPECT_EQ(revoked.state(), v1::NODE_STATE_REVOKED);
  EXPECT_EQ(revoked.revoked_by(), "CN=alice");
  // Revoking again keeps the first revocation.
  EXPECT_EQ(ApplyRevoke(revoked, "CN=bob", 1'900'000'000).revoked_by(), "CN=alice");
  const std::string why =
      "PERMISSION_DENIED: node node-1 was revoked at 2027-01-15T08:00:00Z by CN=alice";
  EXPECT_EQ(ApplyJoin(&revoked, Worker()).status().ToString(), why);
  EXPECT_EQ(ApplyRejoin(&revoked, "node-1", "disk-1", kAk, 2000).status().ToString(), why);
}

TEST(NodeRecordTest, AnotherAttestationKeyCannotTakeTheName) {
  auto r = ApplyJoin(nullptr, Worker());
  JoinFacts impostor = Worker();
  impostor.ak_sha256 = kOtherAk;
  EXPECT_EQ(ApplyJoin(&*r, impostor).status().ToString(),
            "PERMISSION_DENIED: node name node-1 is recorded with attestation key "
            "sha256:aaaaaaaaaaaaaaaa..., not this node's sha256:bbbbbbbbbbbbbbbb...");
  EXPECT_EQ(ApplyRejoin(&*r, "node-1", "disk-1", kOtherAk, 2000).status().code(),
            Code::kPermissionDenied);
}

TEST(NodeRecordTest, RejoinNeedsARecordAndTheSameDisk) {
  EXPECT_EQ(ApplyRejoin(nullptr, "node-9", "disk-1", kAk, 2000).status().ToString(),
            "FAILED_PRECONDITION: node node-9 has no record in this cluster: a node joins before "
            "it rejoins");
  auto r = ApplyJoin(nullptr, Worker());
  EXPECT_EQ(ApplyRejoin(&*r, "node-1", "disk-2", kAk, 2000).status().ToString(),
            "PERMISSION_DENIED: disk disk-2 is not the disk recorded for node node-1 (disk-1)");
  auto ok = ApplyRejoin(&*r, "node-1", "disk-1", kAk, 2000);
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->last_rejoin_unix(), 2000);
  EXPECT_EQ(ok->joins(), 1u);
  EXPECT_EQ(ok->state(), v1::NODE_STATE_JOINED);
}

TEST(NodeRecordTest, NewerFormatIsNotRewritten) {
  auto r = ApplyJoin(nullptr, Worker());
  r->set_version(kNodeRecordVersion + 1);
  EXPECT_THAT(ApplyJoin(&*r, Worker()).status().ToString(),
              HasSubstr("FAILED_PRECONDITION: the record of node node-1 has format 2"));
  EXPECT_EQ(ApplyRejoin(&*r, "node-1", "disk-1", kAk, 1).status().code(),
            Code::kFailedPrecondition);
}

TEST(NodeRecordTest, AControlPlaneWithAMemberCannotBecomeAWorker) {
  auto cp = ApplyJoin(nullptr, ControlPlane(7, true, {}, 1000));
  JoinFacts w = Worker();
  w.name = "cp-1";
  EXPECT_EQ(ApplyJoin(&*cp, w).status().code(), Code::kFailedPrecondition);
}

// ---- roles: in the policy ----

const char kPolicyHead[] =
    "tpm:\n"
    "  trusted_aks:\n"
    "    - name: cp-a\n"
    "      sha256: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\n"
    "    - name: worker-b\n"
    "      sha256: bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\n"
    "  pcrs:\n"
    "    sha256:\n"
    "      0: 0000000000000000000000000000000000000000000000000000000000000000\n";

TEST(RolePolicyTest, GrantsByTrustedAkNameOrFingerprintOptionallyPinnedToANodeName) {
  auto p = verify::ParsePolicy(
      std::string(kPolicyHead) +
      "roles:\n"
      "  control_plane:\n"
      "    - ak: cp-a\n"
      "    - ak_sha256: CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC\n"
      "      node: cp-c\n");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  ASSERT_EQ(p->roles.control_plane.size(), 2u);
  const verify::RoleGrant* a = p->roles.FindControlPlane("any-name", kAk);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->where, "roles.control_plane[0]");
  EXPECT_EQ(p->roles.FindControlPlane("cp-b", kOtherAk), nullptr);  // a trusted worker
  const std::string c(64, 'c');
  EXPECT_NE(p->roles.FindControlPlane("cp-c", c), nullptr);
  EXPECT_EQ(p->roles.FindControlPlane("cp-x", c), nullptr);  // right key, other name
  EXPECT_EQ(p->roles.FindControlPlane("cp-c", ""), nullptr);
}

TEST(RolePolicyTest, NoRolesSectionGrantsNothing) {
  auto p = verify::ParsePolicy(kPolicyHead);
  ASSERT_TRUE(p.ok());
  EXPECT_TRUE(p->roles.control_plane.empty());
  EXPECT_EQ(p->roles.FindControlPlane("cp-a", kAk), nullptr);
}

TEST(RolePolicyTest, RefusesNameOnlyUnknownKeysAndUnknownAks) {
  auto parse = [](const std::string& roles) {
    return verify::ParsePolicy(std::string(kPolicyHead) + roles).status().ToString();
  };
  EXPECT_EQ(parse("roles:\n  control_plane:\n    - node: cp-1\n"),
            "INVALID_ARGUMENT: policy: roles.control_plane[0]: names no attestation key (ak or "
            "ak_sha256); a node name alone is a claim, not an authorization");
  EXPECT_EQ(parse("roles:\n  control_plane:\n    - ak: nobody\n"),
            "INVALID_ARGUMENT: policy: roles.control_plane[0].ak: \"nobody\" is not a name in "
            "tpm.trusted_aks");
  EXPECT_EQ(parse("roles:\n  control_plane:\n    - ak_sha256: abcd\n"),
            "INVALID_ARGUMENT: policy: roles.control_plane[0].ak_sha256: expected 64 hex digits");
  EXPECT_EQ(parse("roles:\n  workers: []\n"),
            "INVALID_ARGUMENT: policy: unknown key \"roles.workers\"");
  EXPECT_EQ(parse("roles:\n  control_plane:\n    - ak: cp-a\n      rack: 7\n"),
            "INVALID_ARGUMENT: policy: unknown key \"roles.control_plane[0].rack\"");
  EXPECT_EQ(parse("roles:\n  control_plane:\n    - ak: cp-a\n      node: Not_A_Name\n"),
            "INVALID_ARGUMENT: policy: roles.control_plane[0].node: \"Not_A_Name\" is not a valid "
            "node name");
}

// roles.cold_start: which PCRs berthd signs into a control plane's cold-start policy. The
// default is the firmware and boot chain; an operator may name others, but never PCR 15
// (berth-agent's per-boot record), 16-23 (resettable), SHA-1, or nothing at all.
TEST(RolePolicyTest, ColdStartPcrsDefaultToTheBootChainAndRefuseWhatWouldApproveAnyBoot) {
  auto defaults = verify::ParsePolicy(kPolicyHead);
  ASSERT_TRUE(defaults.ok());
  EXPECT_EQ(defaults->roles.cold_start.bank, DigestAlg::kSha256);
  EXPECT_EQ(defaults->roles.cold_start.pcrs, (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7}));
  auto chosen = verify::ParsePolicy(std::string(kPolicyHead) +
                                    "roles:\n  cold_start:\n    bank: sha384\n"
                                    "    pcrs: [14, 4, 0, 9]\n");
  ASSERT_TRUE(chosen.ok()) << chosen.status().ToString();
  EXPECT_EQ(chosen->roles.cold_start.bank, DigestAlg::kSha384);
  EXPECT_EQ(chosen->roles.cold_start.pcrs, (std::vector<uint32_t>{0, 4, 9, 14}));

  auto parse = [](const std::string& cold_start) {
    return verify::ParsePolicy(std::string(kPolicyHead) + "roles:\n  cold_start:\n" + cold_start)
        .status()
        .ToString();
  };
  const std::string not_a_boot_pcr =
      "\" is not a PCR from 0 to 14 (15 is berth-agent's per-boot record, 16-23 can be reset by "
      "software)";
  EXPECT_EQ(parse("    pcrs: [0, 15]\n"),
            "INVALID_ARGUMENT: policy: roles.cold_start.pcrs: \"15" + not_a_boot_pcr);
  EXPECT_EQ(parse("    pcrs: [16]\n"),
            "INVALID_ARGUMENT: policy: roles.cold_start.pcrs: \"16" + not_a_boot_pcr);
  EXPECT_EQ(parse("    pcrs: [-1]\n"),
            "INVALID_ARGUMENT: policy: roles.cold_start.pcrs: \"-1" + not_a_boot_pcr);
  EXPECT_EQ(parse("    pcrs: [4, 4]\n"),
            "INVALID_ARGUMENT: policy: roles.cold_start.pcrs: PCR 4 is listed twice");
  EXPECT_EQ(parse("    pcrs: []\n"),
            "INVALID_ARGUMENT: policy: roles.cold_start.pcrs: expected a non-empty list of PCR "
            "indices (an empty one would let a control plane's TPM release its disk key in any "
            "boot)");
  EXPECT_EQ(parse("    bank: sha1\n"),
            "INVALID_ARGUMENT: policy: roles.cold_start.bank: \"sha1\" is not sha256, sha384 or "
            "sha512 (a SHA-1 policy would approve any boot whose SHA-1 values collide)");
  EXPECT_EQ(parse("    pcr: [0]\n"),
            "INVALID_ARGUMENT: policy: unknown key \"roles.cold_start.pcr\"");
  EXPECT_EQ(parse("    - 0\n"),
            "INVALID_ARGUMENT: policy: roles.cold_start: expected a map with bank and pcrs");
}

}  // namespace
}  // namespace berth::server
