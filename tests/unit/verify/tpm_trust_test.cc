// How berthd comes to trust a TPM's attestation key, against real TPMs (swtpm manufactured
// with EK certificates by a local CA) and the real GCE AK certificate chain: credential
// activation through JoinLogic end to end, an AK from another TPM, untrusted manufacturers,
// pinned EKs; and berth-agent's sealing events in PCR 15 (configs pinned, keys released).
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "agent/attestation.h"
#include "agent/boot_seal.h"
#include "common/binding.h"
#include "common/enrolment.h"
#include "common/subprocess.h"
#include "common/tpm/sealed_boot.h"
#include "server/join/join_logic.h"
#include "tests/fakes/fake_clock.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"
#include "verify/evidence.h"

namespace berth::server {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;
using testing::Testdata;

SecretBytes Master() { return SecretBytes(Bytes(32, 0x42).data(), 32); }

class RecordingTokens : public TokenIssuer {
 public:
  std::vector<std::string> nodes;
  Result<BootstrapToken> Issue(const std::string& node) override {
    nodes.push_back(node);
    BootstrapToken t;
    t.id = "abc123";
    std::string s = "0123456789abcdef";
    t.secret = SecretBytes::TakeFrom(s);
    t.expires_unix = 1'800'000'900;
    return t;
  }
};

std::string Indented(const std::string& text, int spaces) {
  std::string out, pad(spaces, ' ');
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) out += pad + line + "\n";
  return out;
}

std::string SpkiHash(const TPMT_PUBLIC& pub) {
  auto key = tpm::PublicToEvp(pub);
  return HexEncode(Sha256(*PublicKeyToSpkiDer(key->get())));
}

// A node with a real TPM talking to JoinLogic (the whole Challenge / activate / ticket
// sequence, without the transport).
class CredentialActivationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(manufactured_.ok()) << manufactured_.error();
    peer_.spki_sha256 = Bytes(32, 0x5a);
    peer_.address = "ipv4:127.0.0.1:5555";
  }

  std::unique_ptr<agent::Tpm> Open(const testing::Swtpm& swtpm) {
    auto tpm = agent::OpenEsysTpm(swtpm.Tcti());
    EXPECT_TRUE(tpm.ok()) << tpm.status().ToString();
    return std::move(*tpm);
  }

  std::string EkCaPolicy(const std::string& ca_pem) {
    return "tpm:\n  ek_ca_pem: |\n" + Indented(ca_pem, 4) +
           "  pcrs:\n    sha256:\n      0: " + std::string(64, '0') + "\n";
  }

  // JoinLogic over a real TpmEvidenceVerifier with `policy_yaml`.
  struct Server {
    FakeClock clock{1'800'000'000};
    NonceIssuer nonces;
    verify::TpmEvidenceVerifier verifier;
    RecordingTokens tokens;
    JoinLogic logic;
    explicit Server(verify::Policy policy)
        : nonces(
              std::move(NonceIssuer::Create(Master(), &clock, std::chrono::seconds(60))).value()),
          verifier(std::move(policy)),
          logic(JoinOptions{.cluster_id = "c",
                            .api_server_endpoint = "10.0.0.1:6443",
                            .ca_cert_hashes = {"sha256:" + std::string(64, 'b')}},
                Master(), &nonces, &verifier, &tokens) {}
  };
  std::unique_ptr<Server> MakeServer(const std::string& policy_yaml) {
    auto policy = verify::ParsePolicy(policy_yaml);
    EXPECT_TRUE(policy.ok()) << policy.status().ToString();
    return std::make_unique<Server>(std::move(*policy));
  }

  v1::JoinRequest Request(agent::Attestation& a, const std::string& nonce) {
    v1::JoinRequest r;
    *r.mutable_evidence() = a.evidence;
    r.set_activated_credential(std::string(a.activated_credential.view()));
    r.set_nonce(nonce);
    r.set_node_name("node-1");
    r.set_role(v1::NODE_ROLE_WORKER);
    return r;
  }

  testing::TempDir dir_;
  testing::Swtpm manufactured_{dir_.Join("tpm"), {.ek_ca_dir = dir_.Join("ca")}};
  Peer peer_;
  const std::vector<v1::PcrSelection> selection_ = DefaultPcrSelection();
};

TEST_F(CredentialActivationTest, NodeWhoseEkChainsToTheManufacturerJoinsByActivation) {
  auto server = MakeServer(EkCaPolicy(testing::Swtpm::EkCaBundlePem(dir_.Join("ca"))));
  auto tpm = Open(manufactured_);
  agent::TpmAttester attester(tpm.get(), selection_, "/nonexistent");
  auto request = attester.MakeChallengeRequest();
  ASSERT_TRUE(request.ok());
  EXPECT_FALSE(request->ek_certificate().empty());

  auto challenge = server->logic.Challenge(*request, peer_);
  ASSERT_TRUE(challenge.ok()) << challenge.status().ToString();
  ASSERT_FALSE(challenge->credential_blob().empty());
  ASSERT_FALSE(challenge->encrypted_secret().empty());

  Bytes binding = ComputeBinding(AsBytes(challenge->nonce()), peer_.spki_sha256);
  auto attestation = attester.Attest(*challenge, binding);
  ASSERT_TRUE(attestation.ok()) << attestation.status().ToString();
  EXPECT_EQ(attestation->activated_credential.size(), 32u);

  // The same evidence without the secret, or with another one, is refused (before the good
  // request: a nonce admits one ticket call, and a refused one does not use it up).
  v1::JoinRequest without = Request(*attestation, challenge->nonce());
  without.clear_activated_credential();
  auto refused = server->logic.IssueJoinTicket(without, peer_);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(refused.status().message(),
            "the attestation key is trusted only through the endorsement key, and the request "
            "carries no activated credential");
  v1::JoinRequest guessed = Request(*attestation, challenge->nonce());
  guessed.set_activated_credential(ToString(RandomBytes(32)));
  auto wrong = server->logic.IssueJoinTicket(guessed, peer_);
  EXPECT_EQ(wrong.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(wrong.status().message(),
              StartsWith("the activated credential is not the one berthd made for this nonce"));
  auto ticket = server->logic.IssueJoinTicket(Request(*attestation, challenge->nonce()), peer_);
  ASSERT_TRUE(ticket.ok()) << ticket.status().ToString();
  EXPECT_EQ(server->tokens.nodes, std::vector<std::string>{"node-1"});
  // The secret of one challenge does not answer another.
  auto second = server->logic.Challenge(*request, peer_);
  ASSERT_TRUE(second.ok());
  auto fresh =
      attester.Attest(*second, ComputeBinding(AsBytes(second->nonce()), peer_.spki_sha256));
  ASSERT_TRUE(fresh.ok());
  EXPECT_FALSE(fresh->activated_credential.Equals(attestation->activated_credential));
  fresh->activated_credential = attestation->activated_credential.Clone();
  auto stale = server->logic.IssueJoinTicket(Request(*fresh, second->nonce()), peer_);
  EXPECT_EQ(stale.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(server->tokens.nodes.size(), 1u);
}

TEST_F(CredentialActivationTest, AkFromAnotherTpmCannotActivateAndIsRefused) {
  auto server = MakeServer(EkCaPolicy(testing::Swtpm::EkCaBundlePem(dir_.Join("ca"))));
  testing::Swtpm other(dir_.Join("other"));
  ASSERT_TRUE(other.ok());
  // The trusted TPM's EK and certificate, presented with another TPM's AK.
  v1::ChallengeRequest request;
  agent::Endorsement ek;
  {
    auto trusted = Open(manufactured_);
    ek = *trusted->EndorsementKey();
  }
  auto foreign = Open(other);
  request.set_ak_public(ToString(*foreign->AttestationKeyPublic()));
  request.set_ek_public(ToString(ek.ek_public));
  request.set_ek_certificate(ToString(ek.ek_certificate));
  auto challenge = server->logic.Challenge(request, peer_);
  ASSERT_TRUE(challenge.ok());
  ASSERT_FALSE(challenge->credential_blob().empty());

  // Neither TPM can recover the secret: the one with the AK lacks the EK, and the one with
  // the EK lacks the AK.
  auto in_foreign = foreign->ActivateCredential(AsBytes(challenge->credential_blob()),
                                                AsBytes(challenge->encrypted_secret()));
  EXPECT_EQ(in_foreign.status().code(), Code::kPermissionDenied);
  Bytes binding = ComputeBinding(AsBytes(challenge->nonce()), peer_.spki_sha256);
  auto evidence = agent::CollectTpmEvidence(*foreign, selection_, binding, "/nonexistent");
  ASSERT_TRUE(evidence.ok());
  foreign.reset();
  {
    auto trusted = Open(manufactured_);
    auto in_trusted = trusted->ActivateCredential(AsBytes(challenge->credential_blob()),
                                                  AsBytes(challenge->encrypted_secret()));
    EXPECT_EQ(in_trusted.status().code(), Code::kPermissionDenied);
  }
  // Whatever it sends instead is refused.
  evidence->mutable_tpm()->set_ek_public(ToString(ek.ek_public));
  evidence->mutable_tpm()->set_ek_certificate(ToString(ek.ek_certificate));
  agent::Attestation a{*evidence, SecretBytes(RandomBytes(32).data(), 32)};
  auto refused = server->logic.IssueJoinTicket(Request(a, challenge->nonce()), peer_);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("the AK does not live in the TPM of the endorsement key"));
  EXPECT_TRUE(server->tokens.nodes.empty());
}

TEST_F(CredentialActivationTest, EkCertificateFromAnUntrustedCaIsRefused) {
  // berthd trusts another manufacturer (its own local CA).
  testing::Swtpm elsewhere(dir_.Join("elsewhere"), {.ek_ca_dir = dir_.Join("other-ca")});
  ASSERT_TRUE(elsewhere.ok()) << elsewhere.error();
  auto server = MakeServer(EkCaPolicy(testing::Swtpm::EkCaBundlePem(dir_.Join("other-ca"))));
  auto tpm = Open(manufactured_);
  agent::TpmAttester attester(tpm.get(), selection_, "/nonexistent");
  auto challenge = server->logic.Challenge(*attester.MakeChallengeRequest(), peer_);
  ASSERT_TRUE(challenge.ok());
  EXPECT_TRUE(challenge->credential_blob().empty());  // no credential for an untrusted EK
  auto attestation =
      attester.Attest(*challenge, ComputeBinding(AsBytes(challenge->nonce()), peer_.spki_sha256));
  ASSERT_TRUE(attestation.ok());
  auto refused = server->logic.IssueJoinTicket(Request(*attestation, challenge->nonce()), peer_);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(refused.status().message(),
              HasSubstr("is not in the policy's trusted_aks; EK certificate issued by "
                        "CN=swtpm-localca does not chain to a trusted manufacturer CA (tpm.ek_ca): "
                        "certificate CN=unknown (depth 0): unable to get local issuer "
                        "certificate"));
  EXPECT_TRUE(server->tokens.nodes.empty());
}

TEST_F(CredentialActivationTest, EkCertificateOfAnotherKeyIsRefused) {
  testing::Swtpm other(dir_.Join("other"), {.ek_ca_dir = dir_.Join("ca")});
  ASSERT_TRUE(other.ok());
  agent::Endorsement other_ek;
  {
    auto t = Open(other);
    other_ek = *t->EndorsementKey();
  }
  auto tpm = Open(manufactured_);
  agent::Endorsement ek = *tpm->EndorsementKey();
  // This TPM's EK with the other TPM's (validly issued) certificate.
  auto policy = verify::ParsePolicy(EkCaPolicy(testing::Swtpm::EkCaBundlePem(dir_.Join("ca"))));
  ASSERT_TRUE(policy.ok());
  auto trusted = verify::TrustEndorsementKey(policy->tpm_trust, ToString(ek.ek_public),
                                     ToString(other_ek.ek_certificate), time(nullptr));
  EXPECT_EQ(trusted.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(trusted.status().message(),
            "the EK certificate certifies another key than the one presented");
  // With its own certificate it is trusted.
  EXPECT_TRUE(verify::TrustEndorsementKey(policy->tpm_trust, ToString(ek.ek_public),
                                  ToString(ek.ek_certificate), time(nullptr))
                  .ok());
}

TEST_F(CredentialActivationTest, PinnedEkWithoutCertificateJoinsByActivation) {
  testing::Swtpm plain(dir_.Join("plain"));
  ASSERT_TRUE(plain.ok());
  auto tpm = Open(plain);
  agent::Endorsement ek = *tpm->EndorsementKey();
  ASSERT_TRUE(ek.ek_certificate.empty());
  auto ek_public = tpm::ParsePublic(ek.ek_public);
  ASSERT_TRUE(ek_public.ok());
  auto server = MakeServer(
      "tpm:\n  trusted_eks:\n    - {name: rack1-node07, sha256: " + SpkiHash(*ek_public) +
      "}\n  pcrs:\n    sha256:\n      0: " + std::string(64, '0') + "\n");
  agent::TpmAttester attester(tpm.get(), selection_, "/nonexistent");
  auto challenge = server->logic.Challenge(*attester.MakeChallengeRequest(), peer_);
  ASSERT_TRUE(challenge.ok());
  ASSERT_FALSE(challenge->credential_blob().empty());
  auto attestation =
      attester.Attest(*challenge, ComputeBinding(AsBytes(challenge->nonce()), peer_.spki_sha256));
  ASSERT_TRUE(attestation.ok()) << attestation.status().ToString();
  auto ticket = server->logic.IssueJoinTicket(Request(*attestation, challenge->nonce()), peer_);
  ASSERT_TRUE(ticket.ok()) << ticket.status().ToString();

  // Not pinned (another EK listed): refused, naming the EK.
  auto other = MakeServer("tpm:\n  trusted_eks:\n    - {sha256: " + std::string(64, 'a') +
                          "}\n  pcrs:\n    sha256:\n      0: " + std::string(64, '0') + "\n");
  auto c2 = other->logic.Challenge(*attester.MakeChallengeRequest(), peer_);
  auto a2 = attester.Attest(*c2, ComputeBinding(AsBytes(c2->nonce()), peer_.spki_sha256));
  auto refused = other->logic.IssueJoinTicket(Request(*a2, c2->nonce()), peer_);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(
      refused.status().message(),
      HasSubstr("; endorsement key sha256:" + SpkiHash(*ek_public) + " is not in tpm.trusted_eks"));
}

// ---- AK certificates (cloud vTPMs): the real GCE evidence ----

class AkCertificateTrustTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!std::filesystem::exists(testing::TestdataDir())) {
      GTEST_FAIL() << "the real attestation testdata is not at " << testing::TestdataDir();
    }
  }
  static std::string Gce(const std::string& f) {
    return testing::MustRead(Testdata("tpm-gce-cos85-nonce9009/" + f));
  }
  v1::Evidence GceEvidence(bool with_chain) {
    v1::Evidence e;
    v1::TpmEvidence* t = e.mutable_tpm();
    t->set_ak_public(Gce("ak_pub.tpmt_public"));
    t->set_quote(Gce("quote_sha256.tpms_attest"));
    t->set_signature(Gce("quote_sha256.tpmt_signature"));
    v1::PcrBank* bank = t->add_pcrs();
    bank->set_bank(v1::HASH_ALGORITHM_SHA256);
    std::istringstream in(Gce("pcrs_sha256.txt"));
    uint32_t index;
    std::string hex;
    while (in >> index >> hex) {
      v1::PcrValue* v = bank->add_values();
      v->set_index(index);
      v->set_digest(ToString(*HexDecode(hex)));
      if (index == 0) pcr0_ = hex;
    }
    t->set_event_log(Gce("event_log.bin"));
    if (with_chain) {
      t->add_ak_certificate_chain(Gce("ak_cert.der"));
      t->add_ak_certificate_chain(Gce("tpm_ek_intermediate_2.crt"));
    }
    return e;
  }
  verify::Policy GcePolicy(const std::string& time) {
    auto root = CertFromDer(AsBytes(Gce("tpm_ek_root_1.cer")));
    std::string yaml = "tpm:\n  ak_ca_pem: |\n" + Indented(*CertToPem(root->get()), 4) +
                       "  certificate_time: " + time + "\n  pcrs:\n    sha256:\n      0: " + pcr0_ +
                       "\n";
    auto p = verify::ParsePolicy(yaml);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return *p;
  }
  const Bytes nonce_ = {0x90, 0x09};
  std::string pcr0_;
};

TEST_F(AkCertificateTrustTest, GceAkIsTrustedThroughItsCertificateChain) {
  v1::Evidence evidence = GceEvidence(true);
  verify::TpmEvidenceVerifier verifier(GcePolicy("2026-02-04T00:00:00Z"));
  auto v = verifier.Verify(evidence, nonce_);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_THAT(v->rule, StartsWith("ak_certificate[CN=tpm_ek_v1_cloud_host_root-signer"));
  EXPECT_THAT(
      v->rule,
      HasSubstr("+ pcrs sha256:0 + event log replayed to quoted sha256:0,1,2,3,4,5,6,7,8,9"));
  EXPECT_FALSE(v->credential.has_value());
  EXPECT_EQ(v->ak_name, "(empty subject)");
}

TEST_F(AkCertificateTrustTest, WithoutTheChainOrOutsideItsValidityTheAkIsNotTrusted) {
  v1::Evidence no_chain = GceEvidence(false);
  verify::TpmEvidenceVerifier verifier(GcePolicy("2026-02-04T00:00:00Z"));
  auto refused = verifier.Verify(no_chain, nonce_);
  EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(
      refused.status().message(),
      HasSubstr("is not in the policy's trusted_aks; the evidence carries no AK certificate"));

  verify::TpmEvidenceVerifier later(GcePolicy("2060-01-01T00:00:00Z"));
  auto expired = later.Verify(GceEvidence(true), nonce_);
  EXPECT_EQ(expired.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(expired.status().message(), HasSubstr("AK certificate: certificate "));
  EXPECT_THAT(expired.status().message(), HasSubstr("certificate has expired"));
}

// ---- an AK the platform provisioned, as cloud vTPMs do, on a real TPM ----

// The platform (a cloud) writes an AK template and, once it knows the key, the AK's
// certificate into NV at the TCG's AK indices; the agent must use that AK and send the
// certificate, and berthd must trust it through the platform's CA.
TEST(ProvisionedAkTest, AgentUsesThePlatformsAkAndBerthdTrustsItsCertificate) {
  testing::TempDir dir;
  testing::Swtpm swtpm(dir.Join("tpm"));
  ASSERT_TRUE(swtpm.ok());
  RealProcessRunner runner;
  const std::vector<std::string> env = {"TPM2TOOLS_TCTI=" + swtpm.Tcti()};
  auto nv_write = [&](const std::string& index, const Bytes& data) {
    testing::MustWrite(dir.Join("nv.bin"), ToString(data));
    auto def =
        runner.Run({"/usr/bin/tpm2_nvdefine", index, "-C", "o", "-s", std::to_string(data.size()),
                    "-a", "ownerwrite|ownerread|authread|no_da"},
                   env);
    ASSERT_TRUE(def.ok() && def->success()) << (def.ok() ? def->output : "");
    auto write =
        runner.Run({"/usr/bin/tpm2_nvwrite", index, "-C", "o", "-i", dir.Join("nv.bin")}, env);
    ASSERT_TRUE(write.ok() && write->success()) << (write.ok() ? write->output : "");
  };
  Bytes default_ak;
  {
    auto tpm = agent::OpenEsysTpm(swtpm.Tcti());
    ASSERT_TRUE(tpm.ok());
    default_ak = *(*tpm)->AttestationKeyPublic();
    EXPECT_TRUE((*tpm)->AttestationKeyCertificateChain()->empty());
  }
  // The platform's ECC AK template: a restricted ECDSA P-256 signing key (GCE's shape).
  TPMT_PUBLIC tmpl{};
  tmpl.type = TPM2_ALG_ECC;
  tmpl.nameAlg = TPM2_ALG_SHA256;
  tmpl.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                          TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                          TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;
  tmpl.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
  tmpl.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
  tmpl.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  tmpl.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  tmpl.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  nv_write("0x01c10003", *tpm::MarshalPublic(tmpl));
  Bytes platform_ak;
  {
    auto tpm = agent::OpenEsysTpm(swtpm.Tcti());
    ASSERT_TRUE(tpm.ok());
    platform_ak = *(*tpm)->AttestationKeyPublic();
  }
  ASSERT_NE(platform_ak, default_ak);
  auto ak = tpm::ParsePublic(platform_ak);
  ASSERT_TRUE(ak.ok());
  EXPECT_EQ(ak->objectAttributes, tmpl.objectAttributes);

  // The platform's CA certifies that key; the certificate goes to NV 0x01c10002.
  auto ca_key = GenerateP256Key();
  auto ca = IssueCert({.common_name = "Cloud AK CA", .is_ca = true}, ca_key->get(), nullptr,
                      ca_key->get());
  auto ak_key = tpm::PublicToEvp(*ak);
  auto ak_cert = IssueCert({.common_name = "instance-1"}, ak_key->get(), ca->get(), ca_key->get());
  ASSERT_TRUE(ak_cert.ok());
  const Bytes ak_der = *CertToDer(ak_cert->get());
  nv_write("0x01c10002", ak_der);

  auto tpm = agent::OpenEsysTpm(swtpm.Tcti());
  ASSERT_TRUE(tpm.ok());
  EXPECT_EQ(*(*tpm)->AttestationKeyPublic(), platform_ak);
  EXPECT_EQ(*(*tpm)->AttestationKeyCertificateChain(), std::vector<Bytes>{ak_der});
  const Bytes binding = ComputeBinding(Bytes(56, 5), Bytes(32, 6));
  agent::TpmAttester attester(tpm->get(), DefaultPcrSelection(), "/nonexistent");
  auto attestation = attester.Attest(v1::ChallengeResponse{}, binding);
  ASSERT_TRUE(attestation.ok()) << attestation.status().ToString();
  ASSERT_EQ(attestation->evidence.tpm().ak_certificate_chain_size(), 1);

  auto policy = verify::ParsePolicy("tpm:\n  ak_ca_pem: |\n" + Indented(*CertToPem(ca->get()), 4) +
                            "  pcrs:\n    sha256:\n      0: " + std::string(64, '0') + "\n");
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  auto verified = verify::TpmEvidenceVerifier(*policy).Verify(attestation->evidence, binding);
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  EXPECT_THAT(verified->rule, StartsWith("ak_certificate[CN=Cloud AK CA] + pcrs sha256:0"));
  EXPECT_EQ(verified->ak_name, "CN=instance-1");
}

// ---- berth-agent's PCR 15 ----

class SealedBootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(swtpm_.ok());
    auto tpm = agent::OpenEsysTpm(swtpm_.Tcti());
    ASSERT_TRUE(tpm.ok());
    tpm_ = std::move(*tpm);
    auto ak = tpm::ParsePublic(*tpm_->AttestationKeyPublic());
    ak_hash_ = SpkiHash(*ak);
  }
  verify::Policy MakePolicy(const std::string& extra = "") {
    auto p =
        verify::ParsePolicy("tpm:\n  trusted_aks:\n    - {name: n, sha256: " + ak_hash_ +
                    "}\n  pcrs:\n    sha256:\n      0: " + std::string(64, '0') + "\n" + extra);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return *p;
  }
  Result<verify::VerifiedEvidence> Verify(const verify::Policy& policy,
                                  const std::vector<v1::TpmAgentEvent>& events,
                                  std::vector<v1::PcrSelection> selection = DefaultPcrSelection()) {
    auto e = agent::CollectTpmEvidence(*tpm_, selection, binding_, "/nonexistent");
    EXPECT_TRUE(e.ok());
    for (const auto& ev : events) *e->mutable_tpm()->add_agent_events() = ev;
    return verify::TpmEvidenceVerifier(policy).Verify(*e, binding_);
  }
  testing::TempDir dir_;
  testing::Swtpm swtpm_{dir_.path()};
  std::unique_ptr<agent::Tpm> tpm_;
  std::string ak_hash_;
  const std::string config_ = "an EnrolmentConfig's bytes";
  Bytes binding_ = ComputeBinding(Bytes(56, 3), Bytes(32, 4));
};

TEST_F(SealedBootTest, PinnedConfigIsAcceptedAndAnEditedOneIsRefused) {
  auto seal = agent::BootSeal::Measure(*tpm_, AsBytes(config_));
  ASSERT_TRUE(seal.ok()) << seal.status().ToString();
  const std::string digest = HexEncode(Sha256(AsBytes(config_)));
  auto pinned =
      Verify(MakePolicy("  enrolment_configs:\n    - {name: workers-v3, sha256: " + digest + "}\n"),
             seal->Events());
  ASSERT_TRUE(pinned.ok()) << pinned.status().ToString();
  EXPECT_THAT(pinned->rule, ::testing::EndsWith(" + enrolment_configs[workers-v3]"));

  auto other =
      Verify(MakePolicy("  enrolment_configs:\n    - {sha256: " + std::string(64, 'c') + "}\n"),
             seal->Events());
  EXPECT_EQ(other.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(other.status().message(), "the node booted with EnrolmentConfig sha256:" + digest +
                                          ", which is not in tpm.enrolment_configs");

  // Claiming the pinned config while PCR 15 holds another one's measurement does not replay.
  v1::TpmAgentEvent forged;
  forged.set_pcr(15);
  forged.set_data(ToString(seal::EnrolmentConfigEvent(AsBytes("the pinned config"))));
  auto lie = Verify(MakePolicy(), {forged});
  EXPECT_EQ(lie.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(lie.status().message(), StartsWith("PCR sha256:15 is "));
  EXPECT_THAT(lie.status().message(), HasSubstr("but berth-agent's 1 event(s) replay to"));
}

TEST_F(SealedBootTest, AttestationAfterTheKeysWereReleasedIsRefused) {
  auto seal = agent::BootSeal::Measure(*tpm_, AsBytes(config_));
  ASSERT_TRUE(seal.ok());
  ASSERT_TRUE(Verify(MakePolicy(), seal->Events()).ok());
  ASSERT_TRUE(seal->ReleaseKeys(*tpm_).ok());
  auto after = Verify(MakePolicy(), seal->Events());
  EXPECT_EQ(after.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(after.status().message(),
            "berth-agent event #1 (PCR 15) says this boot already released its keys: a second "
            "attestation in the same boot is refused; reboot the node");
  // Hiding the release does not help: PCR 15 still holds it.
  auto hidden = Verify(MakePolicy(), {seal->Events()[0]});
  EXPECT_EQ(hidden.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(hidden.status().message(), HasSubstr("but berth-agent's 1 event(s) replay to"));
}

TEST_F(SealedBootTest, QuoteWithoutPcr15IsRefused) {
  v1::PcrSelection s;
  s.set_bank(v1::HASH_ALGORITHM_SHA256);
  s.add_pcrs(0);
  auto v = Verify(MakePolicy(), {}, {s});
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(v.status().message(), StartsWith("the quote does not cover PCR 15"));
}

TEST_F(SealedBootTest, EventsThatAreNotBerthsAreMalformed) {
  v1::TpmAgentEvent junk;
  junk.set_pcr(15);
  junk.set_data("something else");
  EXPECT_EQ(Verify(MakePolicy(), {junk}).status().code(), Code::kInvalidArgument);
  v1::TpmAgentEvent wrong_pcr;
  wrong_pcr.set_pcr(16);
  wrong_pcr.set_data(ToString(seal::KeysReleasedEvent()));
  auto v = Verify(MakePolicy(), {wrong_pcr});
  EXPECT_EQ(v.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(v.status().message(), "berth-agent event #0 is in PCR 16, not 15");
}

}  // namespace
}  // namespace berth::server
