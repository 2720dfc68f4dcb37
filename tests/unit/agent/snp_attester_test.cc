// The agent's SEV-SNP side: evidence from a (fake) guest device, bound to the nonce and the TLS
// key, carrying the host's certificates; and the whole agent flow of an SEV-SNP node, whose
// evidence berthd's verifier accepts.
#include "agent/snp_attester.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "agent/agent.h"
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

  static SnpTestChain* chain_;
  snp::Tcb tcb_{.bootloader = 3, .tee = 0, .snp = 8, .microcode = 115};
  berth::testing::SnpReportSpec spec_;
  SnpIssued vcek_;
  Bytes vcek_der_, binding_;
};
SnpTestChain* SnpAttesterTest::chain_ = nullptr;

TEST_F(SnpAttesterTest, ExtendedReportCarriesBindingAndHostCertificates) {
  auto device = Device();
  SnpAttester attester(device.get(), 2);
  auto a = attester.Attest(v1::ChallengeResponse(), binding_);
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  const v1::SevSnpEvidence& e = a->evidence.sev_snp();
  auto report = snp::ParseReport(AsBytes(e.report()));
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(Bytes(report->report_data.begin(), report->report_data.end()), SnpReportData(binding_));
  EXPECT_EQ(report->vmpl, 2u);
  EXPECT_EQ(e.vcek(), ToString(vcek_der_));
  EXPECT_EQ(e.ask(), ToString(chain_->AskDer()));
  EXPECT_THAT(device->calls, ElementsAre("GetExtendedReport"));
  EXPECT_TRUE(a->activated_credential.empty());
  EXPECT_EQ(attester.MakeChallengeRequest()->ByteSizeLong(), 0u);
}

TEST_F(SnpAttesterTest, FallsBackToAPlainReportWithoutExtendedReports) {
  auto device = Device();
  device->extended_supported = false;
  auto e = CollectSnpEvidence(*device, binding_, 0);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_THAT(device->calls, ElementsAre("GetExtendedReport", "GetReport"));
  EXPECT_EQ(e->sev_snp().report().size(), snp::kReportSize);
  EXPECT_TRUE(e->sev_snp().vcek().empty());
  EXPECT_TRUE(e->sev_snp().ask().empty());
}

TEST_F(SnpAttesterTest, PemCertificatesBecomeDerAndGarbageIsDropped) {
  auto device = Device();
  device->certs.vcek = ToBytes(std::move(CertToPem(vcek_.cert.get())).value());
  device->certs.ask = ToBytes("not a certificate");
  auto e = CollectSnpEvidence(*device, binding_, 0);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->sev_snp().vcek(), ToString(vcek_der_));
  EXPECT_TRUE(e->sev_snp().ask().empty());
}

TEST_F(SnpAttesterTest, VlekSignedReportsSendTheVlek) {
  spec_.signing_key = snp::SigningKey::kVlek;
  auto device = Device(false);
  device->certs.vlek = vcek_der_;  // stands in for a VLEK: only the slot matters here
  auto e = CollectSnpEvidence(*device, binding_, 0);
  ASSERT_TRUE(e.ok()) << e.status().ToString();
  EXPECT_EQ(e->sev_snp().vcek(), ToString(vcek_der_));
}

TEST_F(SnpAttesterTest, DeviceFaultsAreReported) {
  auto device = Device();
  device->failure = Unavailable("SNP_GET_EXT_REPORT on /dev/sev-guest: the host is busy");
  auto e = CollectSnpEvidence(*device, binding_, 0);
  EXPECT_EQ(e.status().code(), Code::kUnavailable);
  device->failure = OkStatus();
  device->echo_report_data = false;
  e = CollectSnpEvidence(*device, binding_, 0);
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
  EXPECT_TRUE(verified.ok()) << verified.status().ToString();
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
