// NodeOperatorService end to end on the host (docs/cluster-lifecycle.md): berth-agent's
// OperatorServer with a real TPM (swtpm) behind it, berthctl's AttestedNode in front, real TLS
// and gRPC on loopback. What must hold: nothing reaches the node's handler unless the caller is a
// pinned operator, with a nonce the node attested, in the node's mode; and berthctl sends
// nothing to a node whose evidence fails the operator's policy.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/attestation.h"
#include "agent/hw/tpm.h"
#include "agent/operator_server.h"
#include "cli/operator_client.h"
#include "common/crypto.h"
#include "common/tpm/quote.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth {
namespace {

using ::testing::HasSubstr;

// What the agent would do; records what reached it.
class RecordingHandler : public agent::OperatorHandler {
 public:
  Result<v1::BootstrapResponse> Bootstrap(const v1::BootstrapRequest& request) override {
    bootstraps.push_back(request.cluster_id());
    if (!fail_with.ok()) return fail_with;
    v1::BootstrapResponse r;
    r.set_berthd_endpoint("10.0.0.1:8443");
    r.set_join_ca_pem("-----BEGIN CERTIFICATE-----\n");
    return r;
  }
  Status Recover(const SecretBytes& key) override {
    recovered.push_back(std::string(key.view()));
    return OkStatus();
  }
  std::vector<std::string> bootstraps;
  std::vector<std::string> recovered;
  Status fail_with;
};

struct OperatorIdentity {
  std::string cert_pem;
  SecretBytes key_pem;
  Bytes spki_sha256;
  static OperatorIdentity Make() {
    OperatorIdentity o;
    auto key = GenerateP256Key();
    auto cert = IssueCert({.common_name = "alice", .client_auth = true}, key->get(), nullptr,
                          key->get());
    o.cert_pem = *CertToPem(cert->get());
    o.key_pem = std::move(PrivateKeyToPem(key->get()).value());
    o.spki_sha256 = Sha256(*PublicKeyToSpkiDer(key->get()));
    return o;
  }
};

class OperatorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(swtpm_.ok()) << swtpm_.error();
    ASSERT_TRUE(swtpm_.ExtendPcrs({{4, std::string(64, 'a')}}));
    auto tpm = agent::OpenEsysTpm(swtpm_.Tcti());
    ASSERT_TRUE(tpm.ok()) << tpm.status().ToString();
    tpm_ = std::move(*tpm);
    v1::PcrSelection sel;
    sel.set_bank(v1::HASH_ALGORITHM_SHA256);
    for (uint32_t p : {0u, 4u, 15u}) sel.add_pcrs(p);
    attester_ = std::make_unique<agent::TpmAttester>(tpm_.get(), std::vector<v1::PcrSelection>{sel},
                                                     dir_.Join("no-event-log"));
  }

  void StartNode(v1::OperatorMode mode, const std::vector<Bytes>& operators) {
    agent::OperatorServerConfig config;
    config.listen = "127.0.0.1:0";
    config.operator_spki_sha256 = operators;
    config.mode = mode;
    config.node_name = "cp-1";
    config.disk_uuid = "0b1e7c2a-5f3d-4e8a-9c1b-2d3e4f5a6b7c";
    auto server = agent::OperatorServer::Start(config, attester_.get(), &handler_);
    ASSERT_TRUE(server.ok()) << server.status().ToString();
    server_ = std::move(*server);
  }

  // The policy an operator writes from a reference boot: this TPM's AK, PCR 4 as it is now.
  verify::Policy PolicyFor(const std::string& pcr4_hex = "") {
    auto ak = tpm::ParsePublic(*tpm_->AttestationKeyPublic());
    auto evp = tpm::PublicToEvp(*ak);
    std::string ak_hash = HexEncode(Sha256(*PublicKeyToSpkiDer(evp->get())));
    v1::PcrSelection sel;
    sel.set_bank(v1::HASH_ALGORITHM_SHA256);
    sel.add_pcrs(4);
    auto now = tpm_->ReadPcrs({sel});
    std::string pcr4 = pcr4_hex.empty() ? HexEncode(now->at(DigestAlg::kSha256).at(4)) : pcr4_hex;
    auto policy = verify::ParsePolicy("tpm:\n  trusted_aks:\n    - {name: cp-1, sha256: " +
                                      ak_hash + "}\n  pcrs:\n    sha256:\n      4: " + pcr4 + "\n");
    EXPECT_TRUE(policy.ok()) << policy.status().ToString();
    return std::move(*policy);
  }

  cli::OperatorConnection As(const OperatorIdentity& who) {
    return {.node = "127.0.0.1:" + std::to_string(server_->port()),
            .cert_pem = who.cert_pem,
            .key_pem = who.key_pem.Clone(),
            .timeout = std::chrono::seconds(20),
            .long_timeout = std::chrono::seconds(20)};
  }

  berth::testing::TempDir dir_;
  berth::testing::Swtpm swtpm_{dir_.path()};
  std::unique_ptr<agent::Tpm> tpm_;
  std::unique_ptr<agent::TpmAttester> attester_;
  RecordingHandler handler_;
  std::unique_ptr<agent::OperatorServer> server_;
  OperatorIdentity alice_ = OperatorIdentity::Make();
};

TEST_F(OperatorTest, APinnedOperatorAttestsTheNodeThenBootstrapsIt) {
  StartNode(v1::OPERATOR_MODE_BOOTSTRAP, {alice_.spki_sha256});
  auto node = cli::AttestedNode::Connect(As(alice_), PolicyFor());
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  EXPECT_EQ(node->attestation().mode(), v1::OPERATOR_MODE_BOOTSTRAP);
  EXPECT_EQ(node->attestation().node_name(), "cp-1");
  EXPECT_EQ(node->node_key_sha256(), server_->key_sha256());
  EXPECT_EQ(node->verified().ak_name, "cp-1");
  v1::BootstrapRequest request;
  request.set_cluster_id("prod-eu1");
  auto made = node->Bootstrap(request);
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  EXPECT_EQ(made->berthd_endpoint(), "10.0.0.1:8443");
  EXPECT_EQ(handler_.bootstraps, std::vector<std::string>{"prod-eu1"});
  EXPECT_TRUE(server_->Wait().ok());
}

TEST_F(OperatorTest, ANodeThatFailsThePolicyGetsNothing) {
  StartNode(v1::OPERATOR_MODE_BOOTSTRAP, {alice_.spki_sha256});
  auto node = cli::AttestedNode::Connect(As(alice_), PolicyFor(std::string(64, '0')));
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(node.status().message(), HasSubstr("failed attestation: "));
  EXPECT_THAT(node.status().message(), HasSubstr("sha256:4"));
  EXPECT_TRUE(handler_.bootstraps.empty());
}

TEST_F(OperatorTest, AnyoneElseIsRefusedBeforeTheNodeSaysAnything) {
  StartNode(v1::OPERATOR_MODE_BOOTSTRAP, {alice_.spki_sha256});
  OperatorIdentity mallory = OperatorIdentity::Make();
  auto node = cli::AttestedNode::Connect(As(mallory), PolicyFor());
  ASSERT_FALSE(node.ok());
  EXPECT_EQ(node.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(node.status().message(), HasSubstr("is not an operator of this node"));
  EXPECT_TRUE(handler_.bootstraps.empty());
}

TEST_F(OperatorTest, ANonceIsUsedOnceAndTheModeMustMatch) {
  StartNode(v1::OPERATOR_MODE_RECOVERY, {alice_.spki_sha256});
  auto node = cli::AttestedNode::Connect(As(alice_), PolicyFor());
  ASSERT_TRUE(node.ok()) << node.status().ToString();
  auto wrong_mode = node->Bootstrap(v1::BootstrapRequest());
  EXPECT_EQ(wrong_mode.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(wrong_mode.status().message(),
              HasSubstr("this node is waiting for a recovery, not this"));
  SecretBytes key(Bytes(32, 7).data(), 32);
  // The nonce is gone with the refused call: the operator attests again.
  EXPECT_THAT(node->Recover(key).message(), HasSubstr("is not one this node attested"));
  EXPECT_TRUE(handler_.recovered.empty());
  auto again = cli::AttestedNode::Connect(As(alice_), PolicyFor());
  ASSERT_TRUE(again.ok());
  ASSERT_TRUE(again->Recover(key).ok());
  EXPECT_EQ(handler_.recovered.size(), 1u);
  EXPECT_THAT(again->Recover(key).message(), HasSubstr("is not one this node attested"));
  EXPECT_EQ(handler_.recovered.size(), 1u);
}

TEST_F(OperatorTest, AFailedBootstrapLeavesTheNodeWaiting) {
  StartNode(v1::OPERATOR_MODE_BOOTSTRAP, {alice_.spki_sha256});
  handler_.fail_with = FailedPrecondition("the state disk is not blank: ext4 superblock at 1080");
  auto node = cli::AttestedNode::Connect(As(alice_), PolicyFor());
  ASSERT_TRUE(node.ok());
  auto made = node->Bootstrap(v1::BootstrapRequest());
  EXPECT_EQ(made.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(made.status().message(), HasSubstr("the state disk is not blank"));
  handler_.fail_with = OkStatus();
  auto again = cli::AttestedNode::Connect(As(alice_), PolicyFor());
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->Bootstrap(v1::BootstrapRequest()).ok());
  EXPECT_EQ(handler_.bootstraps.size(), 2u);
}

TEST_F(OperatorTest, ANodeWithoutPinnedOperatorsDoesNotListen) {
  agent::OperatorServerConfig config;
  config.listen = "127.0.0.1:0";
  config.mode = v1::OPERATOR_MODE_BOOTSTRAP;
  auto server = agent::OperatorServer::Start(config, attester_.get(), &handler_);
  ASSERT_FALSE(server.ok());
  EXPECT_THAT(server.status().message(), HasSubstr("pins no operator key"));
}

}  // namespace
}  // namespace berth
