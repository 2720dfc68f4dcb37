#include "server/join/join_logic.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <sstream>

#include "common/binding.h"
#include "common/subprocess.h"
#include "tests/fakes/fake_clock.h"
#include "tests/testing/testing.h"

namespace berth::server {
namespace {

const std::string kUuid = "0b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c";

SecretBytes Master() {
  SecretBytes s(32);
  for (size_t i = 0; i < 32; ++i) s.data()[i] = static_cast<uint8_t>(i);
  return s;
}

TEST(DiskKeyTest, MatchesAnIndependentHkdf) {
  // openssl kdf -keylen 32 -kdfopt digest:SHA256 -kdfopt hexkey:000102..1f
  //   -kdfopt salt:cluster-a -kdfopt info:berth-disk-v1<uuid> HKDF
  auto key = DeriveDiskKey(Master(), "cluster-a", kUuid);
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(HexEncode(key->span()),
            "9e892139d34bf0cba589db5546d70ca847770718cc310fc8df1f603730d22315");
}

TEST(DiskKeyTest, DependsOnDiskClusterAndSecret) {
  auto base = DeriveDiskKey(Master(), "cluster-a", kUuid);
  auto again = DeriveDiskKey(Master(), "cluster-a", kUuid);
  auto other_disk = DeriveDiskKey(Master(), "cluster-a", "1b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c");
  auto other_cluster = DeriveDiskKey(Master(), "cluster-b", kUuid);
  SecretBytes m = Master();
  m.data()[0] ^= 1;
  auto other_secret = DeriveDiskKey(m, "cluster-a", kUuid);
  EXPECT_TRUE(base->Equals(*again));
  EXPECT_FALSE(base->Equals(*other_disk));
  EXPECT_FALSE(base->Equals(*other_cluster));
  EXPECT_FALSE(base->Equals(*other_secret));
}

TEST(DiskUuidTest, Shapes) {
  EXPECT_TRUE(IsValidDiskUuid(kUuid));
  EXPECT_FALSE(IsValidDiskUuid("0B1E7C2A-5F3D-4E8A-9C1B-2D3E4F5A6B7C"));
  EXPECT_FALSE(IsValidDiskUuid("0b1e7c2a5f3d4e8a9c1b2d3e4f5a6b7c"));
  EXPECT_FALSE(IsValidDiskUuid("../../etc/passwd-0000-0000-000000000"));
  EXPECT_FALSE(IsValidDiskUuid(""));
}

TEST(CaCertHashTest, IsSha256OfTheDerSpkiAsOpensslComputesIt) {
  testing::TempDir dir;
  testing::TestPki pki = testing::MakeTestPki(dir.path());
  RealProcessRunner runner;
  auto openssl = runner.Run({"/bin/sh", "-c",
                             "openssl x509 -in " + pki.ca_pem +
                                 " -pubkey -noout | openssl pkey -pubin -outform DER | "
                                 "openssl dgst -sha256 -r | cut -d' ' -f1"});
  ASSERT_TRUE(openssl.ok() && openssl->success());
  auto hashes = KubeadmCaCertHashes(pki.ca_pem_text);
  ASSERT_TRUE(hashes.ok()) << hashes.status().ToString();
  EXPECT_EQ(*hashes, std::vector<std::string>{"sha256:" + TrimWhitespace(openssl->output)});

  auto bundle = KubeadmCaCertHashes(pki.ca_pem_text + testing::MustRead(pki.server_pem));
  ASSERT_TRUE(bundle.ok());
  EXPECT_EQ(bundle->size(), 2u);
  EXPECT_EQ(KubeadmCaCertHashes("garbage").status().code(), Code::kInvalidArgument);
}

// Collects what berthd logs (the audit lines) while it lives.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    spdlog::default_logger()->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = spdlog::default_logger()->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

// Verifier and token issuer doubles: the logic around them is under test here; the real
// verifier is tested against a real TPM in evidence_test.cc.
class FakeVerifier : public verify::EvidenceVerifier {
 public:
  Status verdict;
  Bytes last_binding;
  int calls = 0;
  Result<verify::VerifiedEvidence> Verify(const v1::Evidence&,
                                          std::span<const uint8_t> binding) override {
    ++calls;
    last_binding.assign(binding.begin(), binding.end());
    if (!verdict.ok()) return verdict;
    return verify::VerifiedEvidence{.ak_sha256_hex = std::string(64, 'a'), .ak_name = "node-a",
                            .rule = "trusted_aks[node-a] + pcrs sha256:0"};
  }
};

class FakeTokens : public TokenIssuer {
 public:
  Status fail;
  std::vector<std::string> nodes;
  Result<BootstrapToken> Issue(const std::string& node) override {
    if (!fail.ok()) return fail;
    nodes.push_back(node);
    BootstrapToken t;
    t.id = "abc123";
    std::string s = "0123456789abcdef";
    t.secret = SecretBytes::TakeFrom(s);
    t.expires_unix = 1'800'000'900;
    return t;
  }
};

class JoinLogicTest : public ::testing::Test {
 protected:
  JoinLogicTest()
      : clock_(1'800'000'000),
        nonces_(
            std::move(NonceIssuer::Create(Master(), &clock_, std::chrono::seconds(60))).value()),
        logic_(JoinOptions{.cluster_id = "cluster-a",
                           .api_server_endpoint = "10.0.0.1:6443",
                           .ca_cert_hashes = {"sha256:" + std::string(64, 'b')},
                           .kubernetes_version = "v1.31.0"},
               Master(), &nonces_, &verifier_, &tokens_) {
    peer_.spki_sha256 = Bytes(32, 0x5a);
    peer_.address = "ipv4:127.0.0.1:5555";
  }

  // A diskless worker: without node records, the only kind this JoinLogic admits.
  v1::JoinRequest Request() {
    v1::JoinRequest r;
    r.set_node_name("node-1");
    r.set_role(v1::NODE_ROLE_WORKER);
    auto challenge = logic_.Challenge({}, peer_);
    r.set_nonce(challenge->nonce());
    r.mutable_evidence()->mutable_tpm();
    return r;
  }

  FakeClock clock_;
  NonceIssuer nonces_;
  FakeVerifier verifier_;
  FakeTokens tokens_;
  JoinLogic logic_;
  Peer peer_;
};

TEST_F(JoinLogicTest, ChallengeCarriesANonceAndItsExpiry) {
  auto c = logic_.Challenge({}, peer_);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->nonce().size(), kNonceSize);
  EXPECT_EQ(c->expires_unix(), 1'800'000'060);
}

TEST_F(JoinLogicTest, GrantedTicketHasTokenAndKubeadmDetailsAndSaysThereAreNoRecords) {
  LogCapture log;
  v1::JoinRequest r = Request();
  auto ticket = logic_.IssueJoinTicket(r, peer_);
  ASSERT_TRUE(ticket.ok()) << ticket.status().ToString();
  EXPECT_EQ(verifier_.last_binding, ComputeBinding(AsBytes(r.nonce()), peer_.spki_sha256));
  EXPECT_TRUE(ticket->disk_key().empty());
  EXPECT_THAT(log.text(), ::testing::HasSubstr(
                              "audit call=IssueJoinTicket decision=granted node=node-1 "));
  EXPECT_THAT(log.text(), ::testing::HasSubstr(" discovery=token records=none"));
  EXPECT_EQ(ticket->kubeadm().api_server_endpoint(), "10.0.0.1:6443");
  EXPECT_EQ(ticket->kubeadm().token(), "abc123.0123456789abcdef");
  ASSERT_EQ(ticket->kubeadm().ca_cert_hashes_size(), 1);
  EXPECT_EQ(ticket->kubeadm().ca_cert_hashes(0), "sha256:" + std::string(64, 'b'));
  EXPECT_EQ(ticket->kubeadm().kubernetes_version(), "v1.31.0");
  EXPECT_EQ(tokens_.nodes, std::vector<std::string>{"node-1"});
}

const char kNoDiskKeys[] =
    "FAILED_PRECONDITION: this berthd runs without node records (--no-etcd, for benchmarks and "
    "tests) and releases no disk keys: nothing would bind the disk to the node asking for it; "
    "run berthd with etcd, or enrol the node without a state disk";

// Issue 22, section 2: without records, the disk key was derived from whatever UUID the
// request named, so a second attested node (another AK, another TLS key) got the first node's
// key from the UUID written in clear on its stolen disk. Now nobody gets a disk key.
TEST_F(JoinLogicTest, WithoutRecordsNoNodeGetsAnyDiskKey) {
  v1::JoinRequest first = Request();
  first.set_disk_uuid(kUuid);
  auto join = logic_.IssueJoinTicket(first, peer_);
  EXPECT_EQ(join.status().ToString(), kNoDiskKeys);
  EXPECT_TRUE(tokens_.nodes.empty());
  EXPECT_EQ(verifier_.calls, 0);  // refused before any evidence is looked at

  // The attacker: another node with its own TLS key names the first node's disk.
  Peer other{.spki_sha256 = Bytes(32, 0x7b), .address = "ipv4:127.0.0.1:6666"};
  v1::RejoinRequest steal;
  steal.set_node_name("node-2");
  steal.set_disk_uuid(kUuid);
  steal.set_nonce(logic_.Challenge({}, other)->nonce());
  steal.mutable_evidence()->mutable_tpm();
  auto rejoin = logic_.IssueRejoinTicket(steal, other);
  EXPECT_EQ(rejoin.status().ToString(), kNoDiskKeys);
  steal.set_node_name("node-1");  // under the first node's name too
  steal.set_nonce(logic_.Challenge({}, other)->nonce());
  EXPECT_EQ(logic_.IssueRejoinTicket(steal, other).status().ToString(), kNoDiskKeys);
  v1::JoinRequest as_join = Request();
  as_join.set_node_name("node-2");
  as_join.set_disk_uuid(kUuid);
  EXPECT_EQ(logic_.IssueJoinTicket(as_join, other).status().ToString(), kNoDiskKeys);
  EXPECT_EQ(verifier_.calls, 0);
  EXPECT_TRUE(tokens_.nodes.empty());
}

TEST_F(JoinLogicTest, RefusedEvidenceMintsNoToken) {
  verifier_.verdict = PermissionDenied("PCR sha256:7 is 00, policy expects 11");
  auto ticket = logic_.IssueJoinTicket(Request(), peer_);
  EXPECT_EQ(ticket.status().ToString(), "PERMISSION_DENIED: PCR sha256:7 is 00, policy expects 11");
  EXPECT_TRUE(tokens_.nodes.empty());
}

TEST_F(JoinLogicTest, ExpiredNonceIsAbortedBeforeEvidenceIsLookedAt) {
  v1::JoinRequest r = Request();
  clock_.Advance(std::chrono::seconds(61));
  auto ticket = logic_.IssueJoinTicket(r, peer_);
  EXPECT_EQ(ticket.status().code(), Code::kAborted);
  EXPECT_EQ(verifier_.calls, 0);
}

// Issue 22, section 6: a nonce admitted any number of calls within its lifetime for the same
// TLS key. Replaying the first attestation (as someone holding the agent's TLS key could, after
// the boot sealed PCR 15) is now refused, before its evidence is verified again.
TEST_F(JoinLogicTest, AReplayedRequestIsRefused) {
  v1::JoinRequest r = Request();
  ASSERT_TRUE(logic_.IssueJoinTicket(r, peer_).ok());
  auto replay = logic_.IssueJoinTicket(r, peer_);
  EXPECT_EQ(replay.status().ToString(),
            "PERMISSION_DENIED: nonce was already used: a challenge admits one ticket call (a "
            "replayed request?); ask for a fresh challenge");
  EXPECT_EQ(verifier_.calls, 1);
  EXPECT_EQ(tokens_.nodes.size(), 1u);
  // A refused verification does not use the nonce up: only verified evidence does.
  v1::JoinRequest second = Request();
  verifier_.verdict = PermissionDenied("PCR sha256:7 is 00, policy expects 11");
  EXPECT_EQ(logic_.IssueJoinTicket(second, peer_).status().code(), Code::kPermissionDenied);
  verifier_.verdict = OkStatus();
  EXPECT_TRUE(logic_.IssueJoinTicket(second, peer_).ok());
  EXPECT_EQ(nonces_.used_count(), 2u);
}

TEST_F(JoinLogicTest, CallWithoutClientCertificateIsUnauthenticated) {
  v1::JoinRequest r = Request();
  Peer anonymous{.spki_sha256 = {}, .address = "ipv4:127.0.0.1:1"};
  auto ticket = logic_.IssueJoinTicket(r, anonymous);
  EXPECT_EQ(ticket.status().ToString(),
            "UNAUTHENTICATED: the call carries no TLS client certificate to bind evidence to");
}

TEST_F(JoinLogicTest, BadRequestsAreInvalidArgument) {
  v1::JoinRequest r = Request();
  r.set_node_name("Node_1");
  EXPECT_EQ(logic_.IssueJoinTicket(r, peer_).status().ToString(),
            "INVALID_ARGUMENT: node name \"Node_1\" is not a valid Kubernetes node name");
  r = Request();
  r.set_disk_uuid("not-a-uuid");
  EXPECT_EQ(logic_.IssueJoinTicket(r, peer_).status().ToString(),
            "INVALID_ARGUMENT: disk UUID \"not-a-uuid\" is not a LUKS2 UUID");
  r = Request();
  r.set_role(v1::NODE_ROLE_UNSPECIFIED);
  EXPECT_EQ(logic_.IssueJoinTicket(r, peer_).status().ToString(),
            "INVALID_ARGUMENT: the request names no node role");
  r = Request();
  r.set_role(v1::NODE_ROLE_CONTROL_PLANE);
  EXPECT_EQ(logic_.IssueJoinTicket(r, peer_).status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(verifier_.calls, 0);
  EXPECT_TRUE(tokens_.nodes.empty());
}

TEST_F(JoinLogicTest, TokenFailureIsUnavailableSoTheNodeRetries) {
  tokens_.fail = Unavailable("creating bootstrap token: Kubernetes API answered 503: down");
  auto ticket = logic_.IssueJoinTicket(Request(), peer_);
  EXPECT_EQ(ticket.status().code(), Code::kUnavailable);
}

TEST_F(JoinLogicTest, MalformedRejoinIsInvalidArgumentEvenWithoutRecords) {
  v1::RejoinRequest r;
  r.set_node_name("node-1");
  r.set_nonce(logic_.Challenge({}, peer_)->nonce());
  r.mutable_evidence()->mutable_tpm();
  EXPECT_EQ(logic_.IssueRejoinTicket(r, peer_).status().ToString(),
            "INVALID_ARGUMENT: disk UUID \"\" is not a LUKS2 UUID");
}

}  // namespace
}  // namespace berth::server
