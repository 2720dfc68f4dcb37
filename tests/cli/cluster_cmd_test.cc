// berthctl's operator commands (cli/cluster_cmd.cc) as an operator runs them, against a node's
// real OperatorServer on a real TPM (swtpm): operator key, cluster init, recover. The node's
// handler records what reached it, so each refusal is shown to have sent nothing.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <regex>

#include "agent/attestation.h"
#include "agent/hw/tpm.h"
#include "agent/operator_server.h"
#include "cli/recovery_shares.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "common/recovery.h"
#include "common/tpm/quote.h"
#include "tests/cli/berthctl_run.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth {
namespace {

using ::testing::HasSubstr;
using testing::RunBerthctl;

constexpr char kUuid[] = "0b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c";

class RecordingHandler : public agent::OperatorHandler {
 public:
  Result<v1::BootstrapResponse> Bootstrap(const v1::BootstrapRequest& request) override {
    bootstraps.push_back(request);
    if (!fail.ok()) return fail;
    v1::BootstrapResponse r;
    r.set_admin_kubeconfig("apiVersion: v1\nkind: Config\n# the admin's key\n");
    r.set_join_ca_pem("JOIN CA\n");
    r.set_kubernetes_ca_pem("KUBERNETES CA\n");
    r.set_berthd_endpoint("10.0.0.1:8443");
    r.set_api_server_endpoint("10.0.0.1:6443");
    return r;
  }
  Status Recover(const SecretBytes& key) override {
    recovered.push_back(key.Clone());
    return OkStatus();
  }
  std::vector<v1::BootstrapRequest> bootstraps;
  std::vector<SecretBytes> recovered;
  Status fail;  // what Bootstrap answers instead of a cluster, unless OK
};

class ClusterCmdTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(swtpm_.ok()) << swtpm_.error();
    ASSERT_TRUE(swtpm_.ExtendPcrs({{4, std::string(64, 'a')}}));
    auto tpm = agent::OpenEsysTpm(swtpm_.Tcti());
    ASSERT_TRUE(tpm.ok());
    tpm_ = std::move(*tpm);
    v1::PcrSelection sel;
    sel.set_bank(v1::HASH_ALGORITHM_SHA256);
    for (uint32_t p : {4u, 15u}) sel.add_pcrs(p);
    attester_ = std::make_unique<agent::TpmAttester>(
        tpm_.get(), std::vector<v1::PcrSelection>{sel}, dir_.Join("no-event-log"));
    // The operator's identity, as berthctl makes it.
    auto key = RunBerthctl({"operator", "key", "--out", dir_.Join("op")});
    ASSERT_EQ(key.exit_code, 0) << key.err;
    std::smatch m;
    ASSERT_TRUE(std::regex_search(key.out, m, std::regex("operator_spki_sha256: ([0-9a-f]{64})")));
    operator_spki_ = *HexDecode(m[1].str());
    WritePolicy(HexEncode(PcrNow(4)));
  }

  Bytes PcrNow(uint32_t index) {
    v1::PcrSelection sel;
    sel.set_bank(v1::HASH_ALGORITHM_SHA256);
    sel.add_pcrs(index);
    return tpm_->ReadPcrs({sel})->at(DigestAlg::kSha256).at(index);
  }

  void WritePolicy(const std::string& pcr4_hex) {
    auto ak = tpm::ParsePublic(*tpm_->AttestationKeyPublic());
    auto evp = tpm::PublicToEvp(*ak);
    const std::string ak_hash = HexEncode(Sha256(*PublicKeyToSpkiDer(evp->get())));
    ASSERT_TRUE(WriteFileAtomic(dir_.Join("policy.yaml"),
                                "tpm:\n  trusted_aks:\n    - {name: cp-1, sha256: " + ak_hash +
                                    "}\n  pcrs:\n    sha256:\n      4: " + pcr4_hex + "\n",
                                0644)
                    .ok());
  }

  void StartNode(v1::OperatorMode mode, const Bytes& box = {}, const std::string& fingerprint = "") {
    agent::OperatorServerConfig config{.listen = "127.0.0.1:0",
                                       .operator_spki_sha256 = {operator_spki_},
                                       .mode = mode,
                                       .node_name = "cp-1",
                                       .disk_uuid = kUuid,
                                       .recovery_box = box,
                                       .recovery_key_sha256 = fingerprint,
                                       .reason = "no signed boot policy matches this boot"};
    auto server = agent::OperatorServer::Start(config, attester_.get(), &handler_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
  }

  std::vector<std::string> OperatorArgs() {
    return {"--node", "127.0.0.1:" + std::to_string(server_->port()), "--operator-cert",
            dir_.Join("op/operator.pem"), "--operator-key", dir_.Join("op/operator.key"),
            "--policy", dir_.Join("policy.yaml")};
  }

  std::vector<std::string> Args(std::vector<std::string> head) {
    for (auto& a : OperatorArgs()) head.push_back(a);
    return head;
  }

  berth::testing::TempDir dir_;
  berth::testing::Swtpm swtpm_{dir_.path()};
  std::unique_ptr<agent::Tpm> tpm_;
  std::unique_ptr<agent::TpmAttester> attester_;
  Bytes operator_spki_;
  RecordingHandler handler_;
  std::unique_ptr<agent::OperatorServer> server_;
};

TEST_F(ClusterCmdTest, ClusterInitAttestsSendsOnlyPublicParametersAndKeepsTheShares) {
  StartNode(v1::OPERATOR_MODE_BOOTSTRAP);
  const std::string out = dir_.Join("cluster");
  auto run = RunBerthctl(Args({"cluster", "init", "--cluster-id", "prod-eu1", "--out", out,
                               "--recovery-shares", "3", "--recovery-threshold", "2"}));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("node cp-1 at 127.0.0.1:"));
  EXPECT_THAT(run.out, HasSubstr("attestation key cp-1"));
  EXPECT_THAT(run.out, HasSubstr("cluster prod-eu1 is up"));
  ASSERT_EQ(handler_.bootstraps.size(), 1u);
  const v1::BootstrapRequest& sent = handler_.bootstraps[0];
  EXPECT_EQ(sent.cluster_id(), "prod-eu1");
  EXPECT_EQ(sent.recovery_public_key().size(), 32u);
  EXPECT_EQ(sent.policy_yaml(), *ReadFile(dir_.Join("policy.yaml")));
  // The policy's roles.cold_start as berthd's parser reads it (here its default: the firmware
  // and boot chain), which the node signs its own boot over.
  EXPECT_EQ(sent.cold_start().bank(), v1::HASH_ALGORITHM_SHA256);
  EXPECT_THAT(sent.cold_start().pcrs(), ::testing::ElementsAre(0, 1, 2, 3, 4, 5, 6, 7));
  // Any 2 of the 3 shares give the secret whose public key the node was sent.
  std::vector<cli::RecoveryShare> shares;
  for (int i : {3, 1}) {
    const std::string path = out + "/recovery-share-" + std::to_string(i) + "-of-3";
    EXPECT_EQ(std::filesystem::status(path).permissions() & std::filesystem::perms::all,
              std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    shares.push_back(cli::ParseShare(ReadSecretFile(path)->view(), path).value());
  }
  auto secret = cli::CombineRecoveryShares(shares);
  ASSERT_TRUE(secret.ok()) << secret.status().ToString();
  EXPECT_EQ(ToString(*recovery::PublicKeyOf(*secret)), sent.recovery_public_key());
  EXPECT_EQ(*ReadFile(out + "/admin.conf"), "apiVersion: v1\nkind: Config\n# the admin's key\n");
  EXPECT_EQ(std::filesystem::status(out + "/admin.conf").permissions() &
                std::filesystem::perms::all,
            std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
  EXPECT_EQ(*ReadFile(out + "/join-ca.pem"), "JOIN CA\n");
  EXPECT_THAT(*ReadFile(out + "/recovery-key.txt"),
              HasSubstr("recovery-key-sha256: " + shares[0].recovery_key_sha256));
  // Again into the same directory: refused before the node is asked anything.
  auto again = RunBerthctl(Args({"cluster", "init", "--cluster-id", "prod-eu1", "--out", out}));
  EXPECT_EQ(again.exit_code, 1);
  EXPECT_THAT(again.err, HasSubstr("is not empty"));
  EXPECT_EQ(handler_.bootstraps.size(), 1u);
}

// The node seals its disk's recovery keyslot to the recovery key as it formats, so the shares
// are written before it is asked: a bootstrap that fails after that (or whose answer is lost)
// leaves them with the operator, who is told to keep them. A request the node refuses as
// invalid, before it changes anything, leaves nothing behind.
TEST_F(ClusterCmdTest, TheSharesOutliveABootstrapThatFailsAfterTheNodeMayHaveSealedToThem) {
  StartNode(v1::OPERATOR_MODE_BOOTSTRAP);
  handler_.fail = FailedPrecondition(
      "bootstrap: state disk 0b1e7c2a was formatted, then: the Kubernetes API server did not "
      "become ready in 900 s");
  const std::string out = dir_.Join("failed");
  auto run = RunBerthctl(Args({"cluster", "init", "--cluster-id", "prod-eu1", "--out", out,
                               "--recovery-shares", "3", "--recovery-threshold", "2"}));
  EXPECT_EQ(run.exit_code, 1) << run.err;
  EXPECT_THAT(run.err, HasSubstr("did not become ready in 900 s\nthe recovery shares and key in " +
                                 out + " are kept: the node may have sealed its disk to them"));
  ASSERT_EQ(handler_.bootstraps.size(), 1u);
  std::vector<cli::RecoveryShare> shares;
  for (int i : {1, 2}) {
    const std::string path = out + "/recovery-share-" + std::to_string(i) + "-of-3";
    shares.push_back(cli::ParseShare(ReadSecretFile(path)->view(), path).value());
  }
  EXPECT_TRUE(std::filesystem::exists(out + "/recovery-share-3-of-3"));
  auto secret = cli::CombineRecoveryShares(shares);
  ASSERT_TRUE(secret.ok()) << secret.status().ToString();
  EXPECT_EQ(ToString(*recovery::PublicKeyOf(*secret)),
            handler_.bootstraps[0].recovery_public_key());
  EXPECT_TRUE(std::filesystem::exists(out + "/recovery-key.txt"));
  EXPECT_FALSE(std::filesystem::exists(out + "/admin.conf"));

  handler_.fail = InvalidArgument("bootstrap: cluster id \"Prod_EU1\" is not a DNS-1123 label");
  const std::string refused = dir_.Join("refused");
  auto bad = RunBerthctl(Args({"cluster", "init", "--cluster-id", "Prod_EU1", "--out", refused}));
  EXPECT_EQ(bad.exit_code, 2) << bad.err;
  EXPECT_THAT(bad.err, HasSubstr("is not a DNS-1123 label"));
  EXPECT_THAT(bad.err, ::testing::Not(HasSubstr("are kept")));
  EXPECT_EQ(handler_.bootstraps.size(), 2u);
  EXPECT_TRUE(std::filesystem::is_empty(refused));
}

TEST_F(ClusterCmdTest, ANodeThatFailsThePolicyIsSentNothing) {
  StartNode(v1::OPERATOR_MODE_BOOTSTRAP);
  WritePolicy(std::string(64, '0'));
  auto run = RunBerthctl(Args({"cluster", "init", "--cluster-id", "c", "--out", dir_.Join("o")}));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("failed attestation"));
  EXPECT_TRUE(handler_.bootstraps.empty());
  EXPECT_TRUE(std::filesystem::is_empty(dir_.Join("o")));  // no shares of a cluster never made
}

class RecoverTest : public ClusterCmdTest {
 protected:
  void SetUp() override {
    ClusterCmdTest::SetUp();
    SecretBytes secret(RandomBytes(32).data(), 32);
    auto split = cli::SplitRecoverySecret(secret, "prod-eu1", 3, 5);
    ASSERT_TRUE(split.ok());
    for (const auto& s : *split) {
      const std::string path = dir_.Join("share-" + std::to_string(s.index));
      ASSERT_TRUE(WriteFileAtomic(path, FormatShare(s).view(), 0600).ok());
    }
    Bytes public_key = *recovery::PublicKeyOf(secret);
    auto box = recovery::Seal(public_key, keyslot_key_, AsBytes(std::string(kUuid)));
    StartNode(v1::OPERATOR_MODE_RECOVERY, *box, recovery::Fingerprint(public_key));
  }
  std::vector<std::string> Shares(std::vector<int> picks) {
    std::vector<std::string> out = {"recover"};
    for (int i : picks) {
      out.push_back("--share");
      out.push_back(dir_.Join("share-" + std::to_string(i)));
    }
    return Args(out);
  }
  SecretBytes keyslot_key_{RandomBytes(32).data(), 32};
};

TEST_F(RecoverTest, KSharesOpenTheNodesRecoveryKeyslot) {
  auto run = RunBerthctl(Shares({5, 2, 4}));
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, HasSubstr("cannot open its state disk " + std::string(kUuid) +
                                 " by itself: no signed boot policy matches this boot"));
  EXPECT_THAT(run.out, HasSubstr("opened its state disk with the recovery keyslot"));
  ASSERT_EQ(handler_.recovered.size(), 1u);
  EXPECT_TRUE(handler_.recovered[0].Equals(keyslot_key_));
}

TEST_F(RecoverTest, TooFewOrWrongSharesSendNothing) {
  auto two = RunBerthctl(Shares({1, 2}));
  EXPECT_EQ(two.exit_code, 1);
  EXPECT_THAT(two.err, HasSubstr("2 recovery shares given, 3 needed"));
  // A share of another split with this split's fingerprint written into it (and its checksum
  // recomputed): only the combination can tell.
  auto other = cli::SplitRecoverySecret(SecretBytes(RandomBytes(32).data(), 32), "prod-eu1", 3, 5);
  cli::RecoveryShare forged = std::move((*other)[2]);
  forged.recovery_key_sha256 =
      cli::ParseShare(ReadSecretFile(dir_.Join("share-1"))->view(), "s")->recovery_key_sha256;
  ASSERT_TRUE(WriteFileAtomic(dir_.Join("share-3"), FormatShare(forged).view(), 0600).ok());
  auto wrong = RunBerthctl(Shares({1, 2, 3}));
  EXPECT_EQ(wrong.exit_code, 1);
  EXPECT_THAT(wrong.err, HasSubstr("do not combine to this cluster's recovery key"));
  EXPECT_TRUE(handler_.recovered.empty());
}

TEST_F(RecoverTest, ANodeThatFailsAttestationGetsNoKeyWhateverTheShares) {
  WritePolicy(std::string(64, '0'));
  auto run = RunBerthctl(Shares({1, 2, 3}));
  EXPECT_EQ(run.exit_code, 1);
  EXPECT_THAT(run.err, HasSubstr("failed attestation"));
  EXPECT_TRUE(handler_.recovered.empty());
}

}  // namespace
}  // namespace berth
