// The agent's SEV-SNP side: evidence from a (fake) guest device, bound to the nonce and the TLS
// key, carrying the host's certificates; and the whole agent flow of an SEV-SNP node, whose
// evidence berthd's verifier accepts.
#include "agent/snp_attester.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "agent/agent.h"
#include "agent/identity.h"
#include "common/binding.h"
#include "tests/fakes/agent_fakes.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fakes/fake_sev_guest.h"
#include "tests/testing/testing.h"
#include "verify/policy.h"
#include "verify/snp_verifier.h"

namespace berth::agent {
namespace {

using ::berth::testing::FakeSevGuest;
using ::berth::testing::SnpIssued;
using ::berth::testing::SnpTestChain;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class SnpAttesterTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { chain_ = new SnpTestChain(snp::Product::kMilan); }
  static void TearDownTestSuite() { delete chain_; }

  void SetUp() override {
    spec_.reported_tcb = snp::EncodeTcb(tcb_, snp::Product::kMilan);
    vcek_ = chain_->IssueVcek({.hwid = spec_.chip_id, .tcb = tcb_});
    vcek_der_ = std::move(CertToDer(vcek_.cert.get())).value();
    binding_ = Sha256(AsBytes("binding"));
  }
  std::unique_ptr<FakeSevGuest> Device(bool with_certs = true) {
    snp::CertTable certs;
    if (with_certs) certs = {.vcek = vcek_der_, .ask = chain_->AskDer(), .ark = chain_->ArkDer()};
    return std::make_unique<FakeSevGuest>(spec_, vcek_.key.get(), certs);
  }
  // This node's identity, sealed in the test's directory by `device`.
  SnpIdentity Identity(SevGuest& device) {
    auto id = SnpIdentity::LoadOrCreate(device, IdentityPath(), 0);
    EXPECT_TRUE(id.ok()) << id.status().ToString();
    return std::move(*id);
  }
  std::string IdentityPath() const { return dir_.Join("efi/berth/snp-identity.binpb"); }

  static SnpTestChain* chain_;
  snp::Tcb tcb_{.bootloader = 3, .tee = 0, .snp = 8, .microcode = 115};
  berth::testing::SnpReportSpec spec_;
  SnpIssued vcek_;
  Bytes vcek_der_, binding_;
  berth::testing::TempDir dir_;
};
SnpTestChain* SnpAttesterTest::chain_ = nullptr;

TEST_F(SnpAttesterTest, ExtendedReportCarriesBindingIdentityAndHostCertificates) {
  auto device = Device();
  SnpIdentity identity = Identity(*device);
  device->calls.clear();
  SnpAttester attester(device.get(), 2, &identity);
  auto a = attester.Attest(v1::ChallengeResponse(), binding_);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  const v1::SevSnpEvidence& e = a->evidence.sev_snp();
  auto report = snp::ParseReport(AsBytes(e.report()));
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(Bytes(report->report_data.begin(), report->report_data.end()),
            SnpReportData(binding_, identity.public_spki()));
  EXPECT_EQ(e.identity_public(), ToString(identity.public_spki()));
  auto key = PublicKeyFromSpkiDer(identity.public_spki());
  ASSERT_TRUE(key.ok());
  EXPECT_TRUE(EcdsaVerifySha256(key->get(), SnpIdentityProofMessage(binding_),
                                AsBytes(e.identity_proof())));
  EXPECT_FALSE(EcdsaVerifySha256(key->get(), SnpIdentityProofMessage(Sha256(AsBytes("other"))),
                                 AsBytes(e.identity_proof())));
  EXPECT_EQ(report->vmpl, 2u);
  EXPECT_EQ(e.vcek(), ToString(vcek_der_));
  EXPECT_EQ(e.ask(), ToString(chain_->AskDer()));
  EXPECT_THAT(device->calls, ElementsAre("GetExtendedReport"));
  EXPECT_TRUE(a->activated_credential.empty());
  EXPECT_EQ(attester.MakeChallengeRequest()->ByteSizeLong(), 0u);
}

TEST_F(SnpAttesterTest, FallsBackToAPlainReportWithoutExtendedReports) {
  auto device = Device();
  SnpIdentity identity = Identity(*device);
  device->calls.clear();
  device->extended_supported = false;
  auto e = CollectSnpEvidence(*device, binding_, 0, identity);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_THAT(device->calls, ElementsAre("GetExtendedReport", "GetReport"));
  EXPECT_EQ(e->sev_snp().report().size(), snp::kReportSize);
  EXPECT_TRUE(e->sev_snp().vcek().empty());
  EXPECT_TRUE(e->sev_snp().ask().empty());
}

TEST_F(SnpAttesterTest, PemCertificatesBecomeDerAndGarbageIsDropped) {
  auto device = Device();
  SnpIdentity identity = Identity(*device);
  device->certs.vcek = ToBytes(std::move(CertToPem(vcek_.cert.get())).value());
  device->certs.ask = ToBytes("not a certificate");
  auto e = CollectSnpEvidence(*device, binding_, 0, identity);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->sev_snp().vcek(), ToString(vcek_der_));
  EXPECT_TRUE(e->sev_snp().ask().empty());
}

TEST_F(SnpAttesterTest, VlekSignedReportsSendTheVlek) {
  spec_.signing_key = snp::SigningKey::kVlek;
  auto device = Device(false);
  SnpIdentity identity = Identity(*device);
  device->certs.vlek = vcek_der_;  // stands in for a VLEK: only the slot matters here
  auto e = CollectSnpEvidence(*device, binding_, 0, identity);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->sev_snp().vcek(), ToString(vcek_der_));
}

TEST_F(SnpAttesterTest, DeviceFaultsAreReported) {
  auto device = Device();
  SnpIdentity identity = Identity(*device);
  device->failure = Unavailable("SNP_GET_EXT_REPORT on /dev/sev-guest: the host is busy");
  auto e = CollectSnpEvidence(*device, binding_, 0, identity);
  EXPECT_EQ(e.status().code(), Code::kUnavailable);
  device->failure = OkStatus();
  device->echo_report_data = false;
  e = CollectSnpEvidence(*device, binding_, 0, identity);
  EXPECT_EQ(e.status().code(), Code::kInternal);
  EXPECT_EQ(e.status().message(), "the SEV-SNP firmware returned a report for other report_data");
  EXPECT_EQ(OpenSevGuestDevice("/nonexistent/sev-guest").status().message(),
            "open(/nonexistent/sev-guest): No such file or directory");
}

// The whole agent flow on an SEV-SNP node: the join request's evidence verifies with berthd's
// verifier for the nonce and TLS key of the call.
TEST_F(SnpAttesterTest, AgentJoinsWithSnpEvidenceBerthdAccepts) {
  berth::testing::TempDir root, pki_dir;
  auto pki = berth::testing::MakeTestPki(pki_dir.path());
  FakeClock clock(0);
  FakeProcessRunner runner;
  RecordingNotifier notifier;
  FakeBerthd berthd;
  *berthd.ticket.mutable_kubeadm() = GoodKubeadmJoin();
  std::vector<std::string> opened;
  AgentDeps deps{};
  deps.clock = &clock;
  deps.runner = &runner;
  deps.notifier = &notifier;
  deps.open_tpm = [](const std::string&) -> Result<std::unique_ptr<Tpm>> {
    return Internal("an SEV-SNP node must not open a TPM");
  };
  deps.open_sev_guest = [&](const std::string& path) -> Result<std::unique_ptr<SevGuest>> {
    opened.push_back(path);
    return std::unique_ptr<SevGuest>(Device());
  };
  deps.make_transport = [&](const ClientIdentity& id, const v1::EnrolmentConfig&) {
    berthd.client_spki_sha256s.push_back(id.spki_sha256);
    return std::unique_ptr<JoinTransport>(new FakeJoinTransport(&berthd));
  };
  v1::EnrolmentConfig config;
  config.set_version(1);
  config.add_endpoints("127.0.0.1:1");
  config.set_cluster_ca_pem(pki.ca_pem_text);
  config.set_role(v1::NODE_ROLE_WORKER);
  config.set_attestation(v1::ATTESTATION_KIND_SEV_SNP);
  config.set_node_name("snp-node");
  ASSERT_TRUE(MakeDirs(root.path() + "/efi/berth").ok());
  berth::testing::MustWrite(root.path() + "/efi/berth/enrolment.binpb", config.SerializeAsString());
  AgentOptions options;
  options.root = root.path();
  options.sev_guest = "/dev/fake-sev-guest";

  Status st = RunAgent(options, deps);
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_THAT(opened, ElementsAre("/dev/fake-sev-guest"));
  ASSERT_EQ(berthd.join_requests.size(), 1u);
  const v1::JoinRequest& request = berthd.join_requests[0];
  ASSERT_TRUE(request.evidence().has_sev_snp());
  EXPECT_EQ(notifier.ready_count(), 1);

  verify::SnpTrustAnchors anchors;
  ASSERT_TRUE(anchors.PinArk(snp::Product::kMilan, X509Ptr(X509_dup(chain_->ark()))).ok());
  verify::SnpPolicy policy;
  policy.measurements = {spec_.measurement};
  RealClock real_clock;
  verify::SnpVerifier verifier(policy, &anchors, nullptr, {.clock = &real_clock});
  Bytes binding = ComputeBinding(AsBytes(request.nonce()), berthd.client_spki_sha256s.at(0));
  auto verified = verifier.Verify(request.evidence(), binding);
  ASSERT_TRUE(verified.ok()) << verified.status().ToString();
  // The node is named by the identity key it made and sealed on its ESP at this first boot.
  auto sealed = ReadFile(root.path() + "/efi/berth/snp-identity.binpb");
  ASSERT_TRUE(sealed.ok());
  v1::SnpSealedIdentity parsed;
  ASSERT_TRUE(parsed.ParseFromString(*sealed));
  EXPECT_EQ(verified->ak_sha256_hex, HexEncode(Sha256(AsBytes(parsed.public_key()))));
  EXPECT_EQ(verified->platform_key_sha256_hex,
            HexEncode(*CertSpkiSha256(vcek_.cert.get())));
  // Bound to this call: another TLS key's binding does not verify.
  Bytes other = ComputeBinding(AsBytes(request.nonce()), Sha256(AsBytes("another key")));
  EXPECT_EQ(verifier.Verify(request.evidence(), other).status().code(), Code::kPermissionDenied);

  // A node whose device cannot be opened says which step failed and asks berthd nothing.
  deps.open_sev_guest = [](const std::string& path) -> Result<std::unique_ptr<SevGuest>> {
    return OpenSevGuestDevice(path);
  };
  berthd.calls.clear();
  st = RunAgent(options, deps);
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_EQ(st.message(),
            "opening the SEV-SNP guest device: open(/dev/fake-sev-guest): No such "
            "file or directory");
  EXPECT_TRUE(berthd.calls.empty());
}

// ---- the node's identity key (issue 22, section 4) ----

TEST_F(SnpAttesterTest, TheIdentityIsMadeOnceSealedAndTheSameOnEveryLaterBoot) {
  auto first_boot = Device();
  SnpIdentity made = Identity(*first_boot);
  EXPECT_TRUE(made.created());
  struct stat st {};
  ASSERT_EQ(stat(IdentityPath().c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  // Sealed with a key derived from the chip's VCEK root, this image's measurement and policy,
  // and the committed TCB, pinned.
  ASSERT_EQ(first_boot->derived_key_requests.size(), 1u);
  const SnpDerivedKeyRequest& r = first_boot->derived_key_requests[0];
  EXPECT_EQ(r.root_key_select, kRootKeyVcek);
  EXPECT_EQ(r.guest_field_select, kFieldGuestPolicy | kFieldMeasurement | kFieldTcbVersion);
  EXPECT_EQ(r.tcb_version, spec_.reported_tcb);
  EXPECT_EQ(r.vmpl, 0u);
  // Nothing of the private key is in the file in clear.
  const std::string file = *ReadFile(IdentityPath());
  EXPECT_EQ(file.find("PRIVATE KEY"), std::string::npos);

  auto later_boot = Device();  // the same guest after a reboot
  SnpIdentity again = Identity(*later_boot);
  EXPECT_FALSE(again.created());
  EXPECT_EQ(again.public_spki(), made.public_spki());
  EXPECT_EQ(*ReadFile(IdentityPath()), file);  // not rewritten
}

TEST_F(SnpAttesterTest, TheIdentitySurvivesATcbUpdate) {
  auto before = Device();
  SnpIdentity made = Identity(*before);
  // Microcode and SNP firmware updated: a higher committed and reported TCB, a new VCEK.
  snp::Tcb newer{.bootloader = 4, .tee = 1, .snp = 22, .microcode = 213};
  spec_.reported_tcb = snp::EncodeTcb(newer, snp::Product::kMilan);
  SnpIssued new_vcek = chain_->IssueVcek({.hwid = spec_.chip_id, .tcb = newer});
  auto after = std::make_unique<FakeSevGuest>(spec_, new_vcek.key.get(), snp::CertTable{});
  SnpIdentity again = Identity(*after);
  EXPECT_EQ(again.public_spki(), made.public_spki());
  // Because the sealing pinned the TCB it was made at: the key for the new TCB is another one.
  agent::SnpDerivedKeyRequest at_new = after->derived_key_requests.back();
  EXPECT_EQ(at_new.tcb_version, snp::EncodeTcb(tcb_, snp::Product::kMilan));
  const agent::SnpDerivedKeyRequest at_sealing = at_new;
  at_new.tcb_version = spec_.reported_tcb;
  auto key_at_new = after->GetDerivedKey(at_new);
  auto key_at_sealing = after->GetDerivedKey(at_sealing);
  ASSERT_TRUE(key_at_new.ok() && key_at_sealing.ok());
  EXPECT_FALSE(key_at_new->Equals(*key_at_sealing));
}

TEST_F(SnpAttesterTest, AnotherChipOrImageCannotUnsealTheIdentity) {
  auto original = Device();
  SnpIdentity made = Identity(*original);
  const std::string file = *ReadFile(IdentityPath());
  const std::string lost =
      "FAILED_PRECONDITION: sealed SEV-SNP identity " + IdentityPath() +
      " cannot be unsealed by this guest: this guest's derived key does not unseal it (another "
      "chip, another launch measurement or guest policy, or a changed file). This node's "
      "identity is lost; berthd will see a new machine (docs/sev-snp.md \"Node identity\")";
  auto moved = Device();
  moved->chip_secret = Bytes(32, 0x77);  // the same disk and image on another chip
  EXPECT_EQ(SnpIdentity::LoadOrCreate(*moved, IdentityPath(), 0).status().ToString(), lost);
  auto other_image = Device();
  other_image->spec.measurement = Bytes(48, 0x66);  // a host's own image on this chip
  EXPECT_EQ(SnpIdentity::LoadOrCreate(*other_image, IdentityPath(), 0).status().ToString(), lost);
  auto debuggable = Device();
  debuggable->spec.policy |= uint64_t{1} << 19;  // the same image launched debuggable
  EXPECT_EQ(SnpIdentity::LoadOrCreate(*debuggable, IdentityPath(), 0).status().ToString(), lost);
  // A file whose parameters were changed (here: the TCB it names) does not unseal either.
  v1::SnpSealedIdentity sealed;
  ASSERT_TRUE(sealed.ParseFromString(file));
  sealed.set_tcb_version(sealed.tcb_version() - 1);
  berth::testing::MustWrite(IdentityPath(), sealed.SerializeAsString(), 0600);
  EXPECT_EQ(SnpIdentity::LoadOrCreate(*original, IdentityPath(), 0).status().ToString(), lost);
  // Refused, never replaced: the file is as it was.
  EXPECT_EQ(*ReadFile(IdentityPath()), sealed.SerializeAsString());
}

TEST_F(SnpAttesterTest, AGuestOfTheSameImageOnTheSameChipDerivesTheSameSealingKey) {
  // The limit of sealing (docs/sev-snp.md "What a neighbour can do"): nothing in MSG_KEY_REQ
  // tells two launches of one image on one chip apart, so such a neighbour that also gets this
  // node's ESP (from a compromised host) could unseal its identity. Without the file it cannot.
  auto node = Device();
  SnpIdentity made = Identity(*node);
  auto neighbour = Device();
  auto unsealed = SnpIdentity::LoadOrCreate(*neighbour, IdentityPath(), 0);
  ASSERT_TRUE(unsealed.ok());
  EXPECT_EQ(unsealed->public_spki(), made.public_spki());
}

}  // namespace
}  // namespace berth::agent

namespace berth::agent {
namespace {

TEST(SnpIdentityTest, PrintsAPolicySnippetThatBerthdParses) {
  berth::testing::SnpTestChain chain(snp::Product::kTurin);
  snp::Tcb tcb{.bootloader = 3, .tee = 2, .snp = 9, .microcode = 120, .fmc = 1};
  berth::testing::SnpReportSpec spec;
  spec.version = 3;
  spec.cpuid_family = 0x1a;
  spec.cpuid_model = 0x02;
  spec.reported_tcb = snp::EncodeTcb(tcb, snp::Product::kTurin);
  auto vcek = chain.IssueVcek({.hwid = Bytes(8, 1), .tcb = tcb});
  berth::testing::FakeSevGuest device(spec, vcek.key.get(), {});
  auto text = DescribeSnpIdentity(device, 0);
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text,
            "# berthd policy for this SEV-SNP guest's launch measurement and TCB\n"
            "sev_snp:\n  measurements:\n    - " +
                HexEncode(spec.measurement) +
                "\n"
                "  min_tcb: {bootloader: 3, tee: 2, snp: 9, microcode: 120, fmc: 1}\n"
                "  max_vmpl: 0\n  products: [Turin]\n");
  auto policy = verify::ParsePolicy(*text);
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  EXPECT_EQ(policy->sev_snp->min_tcb, tcb);
}

}  // namespace
}  // namespace berth::agent
