// SEV-SNP verification: the real reports in testdata (AMD's chain, signature, TCB) and their
// tampers; a test chain made here whose reports exercise every check and policy rule; the
// certificate cache and a stand-in KDS.
#include "verify/snp_verifier.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/binding.h"
#include "common/subprocess.h"
#include "server/cloud/amd_kds.h"
#include "server/snp_service.h"
#include "tests/fakes/fake_clock.h"
#include "tests/testing/snp_chain.h"
#include "tests/testing/testing.h"
#include "verify/policy.h"

namespace berth::verify {
namespace {

using ::berth::server::MakeCurlKds;
using ::berth::testing::MakeSnpReport;
using ::berth::testing::SnpIssued;
using ::berth::testing::SnpReportSpec;
using ::berth::testing::SnpTestChain;
using ::berth::testing::SnpVcekSpec;
using ::berth::testing::Testdata;
using ::testing::HasSubstr;
using ::testing::StartsWith;

constexpr int64_t k2025 = 1735689600;  // 2025-01-01T00:00:00Z, inside every fixture's validity

bool HaveTestdata() { return std::filesystem::exists(Testdata("snp-virtee-milan")); }
#define REQUIRE_TESTDATA()                                                                    \
  if (!HaveTestdata())                                                                        \
  GTEST_FAIL() << "the real attestation testdata is not at " << berth::testing::TestdataDir() \
               << " (set BERTH_TESTDATA)"

Bytes ReadBytes(const std::string& path) { return ToBytes(berth::testing::MustRead(path)); }
Bytes CertFileDer(const std::string& path) {
  return std::move(snp::CertificateToDer(berth::testing::MustRead(path))).value();
}

SnpTrustAnchors AmdAnchors() { return std::move(SnpTrustAnchors::Amd()).value(); }

// ---- the real reports ----

SnpOfflineInput VirteeInput() {
  SnpOfflineInput in;
  in.report = ReadBytes(Testdata("snp-virtee-milan/report_milan.bin"));
  in.leaf_der = ReadBytes(Testdata("snp-virtee-milan/vcek_milan.der"));
  in.at_unix = k2025;
  return in;
}

TEST(SnpRealReportTest, VirteeMilanVerifiesToThePinnedAmdRoots) {
  REQUIRE_TESTDATA();
  auto anchors = AmdAnchors();
  auto v = VerifySnpReportOffline(VirteeInput(), anchors);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->product, snp::Product::kMilan);
  EXPECT_EQ(v->report.version, 2u);
  EXPECT_EQ(v->report.policy, 0x30000u);
  EXPECT_EQ(v->report.vmpl, 0u);
  EXPECT_EQ(v->report.reported_tcb, 0x7308000000000003u);
  EXPECT_EQ(snp::DecodeTcb(v->report.reported_tcb, v->product),
            (snp::Tcb{.bootloader = 3, .tee = 0, .snp = 8, .microcode = 115}));
  EXPECT_EQ(HexEncode(v->report.measurement),
            "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9"
            "c480cd81841f");
  EXPECT_EQ(HexEncode(v->report.chip_id),
            "d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc15d7af38db757039029f"
            "0efacfd08e244324884738c72b082e2f87a44d541eb6");
  // The same with the ASK and ARK files given instead of the pinned ones.
  SnpOfflineInput given = VirteeInput();
  given.intermediate_der = CertFileDer(Testdata("snp-virtee-milan/ask_milan.pem"));
  given.ark_der = CertFileDer(Testdata("snp-virtee-milan/ark_milan.pem"));
  EXPECT_TRUE(VerifySnpReportOffline(given, anchors).ok());
}

TEST(SnpRealReportTest, VirteeTampersFail) {
  REQUIRE_TESTDATA();
  auto anchors = AmdAnchors();
  SnpOfflineInput in = VirteeInput();
  in.report[21] ^= 0x80;
  auto v = VerifySnpReportOffline(in, anchors);
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(v.status().message(),
            "signature: the report's signature does not verify with the VCEK's key");

  in = VirteeInput();
  in.leaf_der[40] ^= 0xff;
  v = VerifySnpReportOffline(in, anchors);
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(v.status().message(), "chain: the VCEK's signature does not verify with the ASK's key");
}

TEST(SnpRealReportTest, ExpiredCertificatesFailAtTheCurrentTimeOfTheirExpiry) {
  REQUIRE_TESTDATA();
  auto anchors = AmdAnchors();
  SnpOfflineInput in = VirteeInput();
  in.at_unix = 1924992000;  // 2031-01-01, after the VCEK's notAfter
  auto v = VerifySnpReportOffline(in, anchors);
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(v.status().message(),
            "chain: the VCEK expired at 2030-04-03T19:23:43Z "
            "(verification time 2031-01-01T00:00:00Z)");
}

TEST(SnpRealReportTest, CmcMilanReportAndItsInvalidTwins) {
  REQUIRE_TESTDATA();
  auto anchors = AmdAnchors();
  SnpOfflineInput in;
  in.report = ReadBytes(Testdata("snp-cmc-milan/report.bin"));
  in.leaf_der = CertFileDer(Testdata("snp-cmc-milan/vcek.pem"));
  in.intermediate_der = CertFileDer(Testdata("snp-cmc-milan/ask_milan.pem"));
  in.ark_der = CertFileDer(Testdata("snp-cmc-milan/ark_milan.pem"));
  in.report_data = Bytes(64, 0x23);
  in.at_unix = k2025;
  auto v = VerifySnpReportOffline(in, anchors);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->report.reported_tcb, 0x4306000000000002u);
  EXPECT_EQ(v->report.current_major, 1);
  EXPECT_EQ(v->report.current_minor, 51);
  EXPECT_EQ(v->report.current_build, 3);

  SnpOfflineInput bad = in;
  bad.report_data = Bytes(64, 0x24);
  EXPECT_THAT(VerifySnpReportOffline(bad, anchors).status().message(),
              StartsWith("report_data: is 2323"));

  bad = in;
  bad.report = ReadBytes(Testdata("snp-cmc-milan/report_INVALID_SIGNATURE.bin"));
  EXPECT_EQ(VerifySnpReportOffline(bad, anchors).status().message(),
            "signature: the report's signature does not verify with the VCEK's key");

  // The invalid VCEK: neither the VCEK <- ASK link nor the report signature holds.
  X509Ptr invalid =
      std::move(CertFromPem(berth::testing::MustRead(Testdata("snp-cmc-milan/vcek_INVALID.pem"))))
          .value();
  X509Ptr ask = std::move(CertFromDer(*in.intermediate_der)).value();
  X509Ptr ark = std::move(CertFromDer(*in.ark_der)).value();
  Status chain = VerifySnpChain(ark.get(), ask.get(), invalid.get(), false, 1651400000);
  EXPECT_EQ(chain.code(), Code::kPermissionDenied);
  EXPECT_THAT(chain.message(), StartsWith("chain: the VCEK is not signed with RSASSA-PSS"));
  auto report = snp::ParseReport(in.report);
  ASSERT_TRUE(report.ok());
  EXPECT_EQ(VerifyReportSignature(*report, invalid.get()).code(), Code::kPermissionDenied);
  bad = in;
  bad.leaf_der = CertFileDer(Testdata("snp-cmc-milan/vcek_INVALID.pem"));
  EXPECT_EQ(VerifySnpReportOffline(bad, anchors).status().code(), Code::kPermissionDenied);
}

TEST(SnpRealReportTest, BerthdPathVerifiesAndCachesThenVerifiesFromTheCache) {
  REQUIRE_TESTDATA();
  berth::testing::TempDir dir;
  auto anchors = AmdAnchors();
  SnpCertStore store(dir.Join("cache"), nullptr);
  SnpPolicy policy;
  policy.measurements.push_back(ToBytes(std::string(48, 'x')));
  SnpVerifier verifier(policy, &anchors, &store, {.verify_at_unix = k2025});
  v1::SevSnpEvidence evidence;
  evidence.set_report(berth::testing::MustRead(Testdata("snp-virtee-milan/report_milan.bin")));
  evidence.set_vcek(berth::testing::MustRead(Testdata("snp-virtee-milan/vcek_milan.der")));
  auto first = verifier.Authenticate(evidence);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(first->leaf_source, CertSource::kSent);
  EXPECT_EQ(first->intermediate_source, CertSource::kPinned);
  const std::string vcek_file = dir.Join(
      "cache/Milan/vcek-d49554ec717f4e5b0fe6b143bcf0405bd7ae304727edf46603f2a76aef6a3abc"
      "15d7af38db757039029f0efacfd08e244324884738c72b082e2f87a44d541eb6-7308000000000003"
      ".der");
  EXPECT_EQ(berth::testing::MustRead(vcek_file), evidence.vcek());

  evidence.clear_vcek();
  auto second = verifier.Authenticate(evidence);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(second->leaf_source, CertSource::kCache);
}

// ---- a test chain made here ----

class SnpTestChainTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    milan_ = new SnpTestChain(snp::Product::kMilan);
    other_ = new SnpTestChain(snp::Product::kMilan);
  }
  static void TearDownTestSuite() {
    delete milan_;
    delete other_;
  }

  void SetUp() override {
    ASSERT_TRUE(anchors_.PinArk(snp::Product::kMilan, X509Ptr(X509_dup(milan_->ark()))).ok());
    policy_.measurements = {Bytes(48, 0x4d)};
    policy_.min_tcb = {.bootloader = 2, .tee = 0, .snp = 5, .microcode = 100};
    binding_ = Sha256(AsBytes("a binding"));
    identity_ = std::move(GenerateP256Key()).value();
    identity_spki_ = std::move(PublicKeyToSpkiDer(identity_.get())).value();
    spec_.report_data = SnpReportData(binding_, identity_spki_);
    spec_.reported_tcb = snp::EncodeTcb(tcb_, snp::Product::kMilan);
  }

  // The node identity key's part of the evidence: its public key and its proof for `binding`.
  void AddIdentity(v1::Evidence& e, EVP_PKEY* key, std::span<const uint8_t> binding) {
    e.mutable_sev_snp()->set_identity_public(
        ToString(std::move(PublicKeyToSpkiDer(key)).value()));
    e.mutable_sev_snp()->set_identity_proof(
        ToString(std::move(EcdsaSignSha256(key, SnpIdentityProofMessage(binding))).value()));
  }

  SnpIssued Vcek(snp::Tcb tcb, const SnpTestChain* chain = nullptr) {
    return (chain ? chain : milan_)->IssueVcek({.hwid = spec_.chip_id, .tcb = tcb});
  }

  v1::Evidence Evidence(const Bytes& report, const SnpIssued& vcek, bool send_ask = true,
                        const SnpTestChain* chain = nullptr) {
    v1::Evidence e;
    e.mutable_sev_snp()->set_report(ToString(report));
    e.mutable_sev_snp()->set_vcek(ToString(std::move(CertToDer(vcek.cert.get())).value()));
    if (send_ask) e.mutable_sev_snp()->set_ask(ToString((chain ? chain : milan_)->AskDer()));
    AddIdentity(e, identity_.get(), binding_);
    return e;
  }

  Result<VerifiedEvidence> VerifyWith(const SnpPolicy& policy, const v1::Evidence& e,
                                      SnpCertStore* store = nullptr) {
    SnpVerifier verifier(policy, &anchors_, store, {.clock = &clock_});
    return verifier.Verify(e, binding_);
  }
  Result<VerifiedEvidence> Verify(const SnpReportSpec& spec, snp::Tcb vcek_tcb) {
    SnpIssued vcek = Vcek(vcek_tcb);
    return VerifyWith(policy_, Evidence(MakeSnpReport(spec, vcek.key.get()), vcek));
  }
  Result<VerifiedEvidence> Verify(const SnpReportSpec& spec) { return Verify(spec, tcb_); }

  static SnpTestChain* milan_;
  static SnpTestChain* other_;
  SnpTrustAnchors anchors_;
  SnpPolicy policy_;
  Bytes binding_;
  SnpReportSpec spec_;
  snp::Tcb tcb_{.bootloader = 3, .tee = 0, .snp = 8, .microcode = 115};
  FakeClock clock_{static_cast<int64_t>(std::time(nullptr))};
  EvpPkeyPtr identity_;  // the node's own identity key (docs/sev-snp.md "Node identity")
  Bytes identity_spki_;
};
SnpTestChain* SnpTestChainTest::milan_ = nullptr;
SnpTestChain* SnpTestChainTest::other_ = nullptr;

void ExpectDenied(const Result<VerifiedEvidence>& r, const std::string& message) {
  ASSERT_FALSE(r.ok()) << "accepted, expected: " << message;
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied) << r.status().ToString();
  EXPECT_EQ(r.status().message(), message);
}

TEST_F(SnpTestChainTest, AGoodReportIsAccepted) {
  auto v = Verify(spec_);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_THAT(v->rule, HasSubstr("product Milan"));
  EXPECT_THAT(v->rule, HasSubstr("VCEK sent"));
  // The node is its identity key; the VCEK is what vouched for its platform.
  EXPECT_EQ(v->ak_sha256_hex, HexEncode(Sha256(identity_spki_)));
  EXPECT_EQ(v->ak_name, "snp-node-" + HexEncode(Sha256(identity_spki_)).substr(0, 16));
  EXPECT_FALSE(v->platform_key_sha256_hex.empty());
  EXPECT_NE(v->platform_key_sha256_hex, v->ak_sha256_hex);
  EXPECT_THAT(v->rule, HasSubstr("VCEK sent sha256:" + v->platform_key_sha256_hex.substr(0, 16)));
}

// Issue 22, section 4: the node's "attestation key" was the VCEK's, which every guest on the
// host shares (and a VLEK every guest in the region).
TEST_F(SnpTestChainTest, TwoGuestsSignedByOneVcekHaveTheirOwnIdentities) {
  SnpIssued vcek = Vcek(tcb_);
  auto a = VerifyWith(policy_, Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek));
  ASSERT_TRUE(a.ok()) << a.status().ToString();
  EvpPkeyPtr other = std::move(GenerateP256Key()).value();
  SnpReportSpec neighbour = spec_;  // same image, same host, another guest
  neighbour.report_data = SnpReportData(binding_, *PublicKeyToSpkiDer(other.get()));
  v1::Evidence e = Evidence(MakeSnpReport(neighbour, vcek.key.get()), vcek);
  AddIdentity(e, other.get(), binding_);
  auto b = VerifyWith(policy_, e);
  ASSERT_TRUE(b.ok()) << b.status().ToString();
  EXPECT_NE(a->ak_sha256_hex, b->ak_sha256_hex);
  EXPECT_EQ(a->platform_key_sha256_hex, b->platform_key_sha256_hex);
}

TEST_F(SnpTestChainTest, EvidenceWithoutAnIdentityKeyIsRefused) {
  SnpIssued vcek = Vcek(tcb_);
  v1::Evidence e = Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek);
  e.mutable_sev_snp()->clear_identity_public();
  ExpectDenied(VerifyWith(policy_, e),
               "identity: the SEV-SNP evidence carries no node identity key and proof "
               "(berth-agent too old?): the VCEK/VLEK names a host or a cloud region, not a node");
  e = Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek);
  e.mutable_sev_snp()->clear_identity_proof();
  EXPECT_EQ(VerifyWith(policy_, e).status().code(), Code::kPermissionDenied);
  e = Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek);
  EvpPkeyPtr rsa = std::move(GenerateRsaKey(2048)).value();
  e.mutable_sev_snp()->set_identity_public(ToString(*PublicKeyToSpkiDer(rsa.get())));
  EXPECT_EQ(VerifyWith(policy_, e).status().ToString(),
            "INVALID_ARGUMENT: identity: the node identity key is not an EC P-256 public key");
  EvpPkeyPtr k256 = EvpPkeyPtr(EVP_EC_gen("secp256k1"));  // 256 bits, another curve
  ASSERT_TRUE(k256);
  e.mutable_sev_snp()->set_identity_public(ToString(*PublicKeyToSpkiDer(k256.get())));
  EXPECT_EQ(VerifyWith(policy_, e).status().ToString(),
            "INVALID_ARGUMENT: identity: the node identity key is not an EC P-256 public key");
}

TEST_F(SnpTestChainTest, AReplayedIdentityProofIsRefused) {
  SnpIssued vcek = Vcek(tcb_);
  // The victim's evidence for an earlier call (another nonce, so another binding).
  const Bytes old_binding = Sha256(AsBytes("an earlier call"));
  SnpReportSpec earlier = spec_;
  earlier.report_data = SnpReportData(old_binding, identity_spki_);
  v1::Evidence seen = Evidence(MakeSnpReport(earlier, vcek.key.get()), vcek);
  AddIdentity(seen, identity_.get(), old_binding);
  // Replayed whole on this call: the report is for the other binding.
  ExpectDenied(VerifyWith(policy_, seen),
               "report_data: does not equal the channel binding of this call (challenge nonce "
               "and TLS client key) and the node identity key it presents");
  // A neighbour on the same host gets a fresh report committing to the victim's public key
  // and this call's binding, and sends the victim's old proof with it.
  v1::Evidence forged = Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek);
  forged.mutable_sev_snp()->set_identity_proof(seen.sev_snp().identity_proof());
  ExpectDenied(VerifyWith(policy_, forged),
               "identity: the identity proof does not verify with the node identity key for "
               "this call (replayed, or made by another key)");
  // ... or a proof of its own key for this call.
  EvpPkeyPtr own = std::move(GenerateP256Key()).value();
  forged.mutable_sev_snp()->set_identity_proof(
      ToString(*EcdsaSignSha256(own.get(), SnpIdentityProofMessage(binding_))));
  ExpectDenied(VerifyWith(policy_, forged),
               "identity: the identity proof does not verify with the node identity key for "
               "this call (replayed, or made by another key)");
}

TEST_F(SnpTestChainTest, WrongMeasurementIsRefused) {
  spec_.measurement = Bytes(48, 0x4e);
  ExpectDenied(Verify(spec_), "policy: measurement " + HexEncode(spec_.measurement) +
                                  " is not in sev_snp.measurements");
}

TEST_F(SnpTestChainTest, DebugBitIsRefusedUnlessAllowed) {
  spec_.policy |= uint64_t{1} << 19;
  ExpectDenied(Verify(spec_),
               "policy: the guest policy allows debugging (bit 19), which "
               "sev_snp.allow_debug forbids");
  policy_.allow_debug = true;
  EXPECT_TRUE(Verify(spec_).ok());
}

TEST_F(SnpTestChainTest, TcbBelowTheMinimumIsRefused) {
  snp::Tcb old{.bootloader = 3, .tee = 0, .snp = 4, .microcode = 115};
  spec_.reported_tcb = snp::EncodeTcb(old, snp::Product::kMilan);
  ExpectDenied(Verify(spec_, old), "policy: reported_tcb snp SPL 4 is below the minimum 5");
  old = {.bootloader = 3, .tee = 0, .snp = 8, .microcode = 99};
  spec_.reported_tcb = snp::EncodeTcb(old, snp::Product::kMilan);
  ExpectDenied(Verify(spec_, old),
               "policy: reported_tcb microcode SPL 99 is below the minimum 100");
}

TEST_F(SnpTestChainTest, VcekTcbMustEqualReportedTcbNotCurrentTcb) {
  snp::Tcb other{.bootloader = 3, .tee = 0, .snp = 9, .microcode = 115};
  ExpectDenied(Verify(spec_, other),
               "tcb: the VCEK is for TCB bootloader=3 tee=0 snp=9 microcode=115, the report's "
               "reported_tcb is bootloader=3 tee=0 snp=8 microcode=115 (0x7308000000000003)");
  // current_tcb may be newer than reported_tcb: the VCEK matches reported_tcb, so it passes.
  spec_.current_tcb = snp::EncodeTcb(other, snp::Product::kMilan);
  EXPECT_TRUE(Verify(spec_).ok());
}

TEST_F(SnpTestChainTest, WrongReportDataIsRefused) {
  spec_.report_data = SnpReportData(Sha256(AsBytes("another binding")), identity_spki_);
  ExpectDenied(Verify(spec_),
               "report_data: does not equal the channel binding of this call (challenge nonce "
               "and TLS client key) and the node identity key it presents");
  // Committing to another identity key than the one presented is not it either.
  spec_.report_data = SnpReportData(binding_, identity_spki_);
  spec_.report_data[63] ^= 1;
  EXPECT_EQ(Verify(spec_).status().code(), Code::kPermissionDenied);
  // Nor is the old form, the binding and 32 zero bytes.
  spec_.report_data = binding_;
  spec_.report_data.resize(64, 0);
  EXPECT_EQ(Verify(spec_).status().code(), Code::kPermissionDenied);
}

TEST_F(SnpTestChainTest, ChainIsPinnedPerProduct) {
  // The test ARK pinned for Genoa, AMD's for Milan: a Milan VCEK from the test chain fails.
  SnpTrustAnchors anchors = AmdAnchors();
  ASSERT_TRUE(anchors.PinArk(snp::Product::kGenoa, X509Ptr(X509_dup(milan_->ark()))).ok());
  SnpIssued vcek = Vcek(tcb_);
  SnpVerifier verifier(policy_, &anchors, nullptr, {.clock = &clock_});
  ExpectDenied(verifier.Verify(Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek), binding_),
               "chain: the ASK is not issued by the ARK (subject issuer mismatch)");
  // Without a sent ASK, AMD's Milan ASK is used: it did not sign the VCEK.
  ExpectDenied(
      verifier.Verify(Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek, false), binding_),
      "chain: the VCEK is not issued by the ASK (subject issuer mismatch)");
}

TEST_F(SnpTestChainTest, AnotherChainsVcekIsRefused) {
  SnpIssued vcek = Vcek(tcb_, other_);
  // Its own ASK does not chain to the pinned ARK ...
  ExpectDenied(
      VerifyWith(policy_, Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek, true, other_)),
      "chain: the ASK's signature does not verify with the ARK's key");
  // ... and the pinned chain's ASK did not sign it (same names, different keys).
  ExpectDenied(VerifyWith(policy_, Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek)),
               "chain: the VCEK's signature does not verify with the ASK's key");
}

TEST_F(SnpTestChainTest, ReportSignedByAnotherKeyIsRefused) {
  SnpIssued vcek = Vcek(tcb_);
  EvpPkeyPtr other = berth::testing::GenerateP384Key();
  ExpectDenied(VerifyWith(policy_, Evidence(MakeSnpReport(spec_, other.get()), vcek)),
               "signature: the report's signature does not verify with the VCEK's key");
}

TEST_F(SnpTestChainTest, VmplAboveTheMaximumIsRefused) {
  spec_.vmpl = 1;
  ExpectDenied(Verify(spec_),
               "policy: the report was requested at VMPL 1, above "
               "sev_snp.max_vmpl 0");
  policy_.max_vmpl = 1;
  EXPECT_TRUE(Verify(spec_).ok());
}

TEST_F(SnpTestChainTest, RequiredAndForbiddenPolicyBits) {
  policy_.required_policy_bits = uint64_t{1} << snp::kPolicySingleSocketBit;
  ExpectDenied(Verify(spec_), "policy: guest policy lacks required bits single_socket");
  spec_.policy |= uint64_t{1} << snp::kPolicySingleSocketBit;
  EXPECT_TRUE(Verify(spec_).ok());
  policy_.forbidden_policy_bits = uint64_t{1} << snp::kPolicySmtBit;
  ExpectDenied(Verify(spec_), "policy: guest policy has forbidden bits smt");
}

// Issue 22, section 4 (smaller gaps): a migration agent was allowed unless forbidden.
TEST_F(SnpTestChainTest, AMigrationAgentIsRefusedUnlessAllowed) {
  spec_.policy |= uint64_t{1} << snp::kPolicyMigrateMaBit;
  ExpectDenied(Verify(spec_),
               "policy: the guest policy lets a migration agent in (migrate_ma, bit 18), which "
               "sev_snp.allow_migrate_ma does not allow");
  policy_.allow_migrate_ma = true;
  EXPECT_TRUE(Verify(spec_).ok());
}

TEST_F(SnpTestChainTest, HostDataAndIdBlockKeysAreCheckable) {
  spec_.host_data = Bytes(32, 0x11);
  spec_.id_key_digest = Bytes(48, 0x22);
  EXPECT_TRUE(Verify(spec_).ok());  // nothing asked: anything goes
  policy_.host_data = {Bytes(32, 0x12)};
  ExpectDenied(Verify(spec_), "policy: host_data " + HexEncode(Bytes(32, 0x11)) +
                                  " is not in sev_snp.host_data");
  policy_.host_data.push_back(Bytes(32, 0x11));
  EXPECT_TRUE(Verify(spec_).ok());
  policy_.id_key_digests = {Bytes(48, 0x23)};
  ExpectDenied(Verify(spec_), "policy: the ID key digest " + HexEncode(Bytes(48, 0x22)) +
                                  " is not in sev_snp.id_key_digests");
  policy_.id_key_digests = {Bytes(48, 0x22)};
  EXPECT_TRUE(Verify(spec_).ok());
  policy_.author_key_digests = {Bytes(48, 0x33)};
  ExpectDenied(Verify(spec_),
               "policy: the guest was launched without an author key (AUTHOR_KEY_EN), which "
               "sev_snp.author_key_digests needs");
  spec_.author_key_digest = Bytes(48, 0x34);  // and AUTHOR_KEY_EN
  ExpectDenied(Verify(spec_), "policy: the author key digest " + HexEncode(Bytes(48, 0x34)) +
                                  " is not in sev_snp.author_key_digests");
  spec_.author_key_digest = Bytes(48, 0x33);
  EXPECT_TRUE(Verify(spec_).ok());
}

TEST_F(SnpTestChainTest, LaunchAndCommittedTcbHaveMinimumsOfTheirOwn) {
  snp::Tcb launched{.bootloader = 3, .tee = 0, .snp = 6, .microcode = 115};
  spec_.launch_tcb = snp::EncodeTcb(launched, snp::Product::kMilan);
  spec_.committed_tcb = snp::EncodeTcb({.bootloader = 3, .tee = 0, .snp = 7, .microcode = 115},
                                       snp::Product::kMilan);
  EXPECT_TRUE(Verify(spec_).ok());
  policy_.min_launch_tcb = {.snp = 7};
  ExpectDenied(Verify(spec_), "policy: launch_tcb snp SPL 6 is below the minimum 7");
  policy_.min_launch_tcb = {.snp = 6};
  policy_.min_committed_tcb = {.snp = 8};
  ExpectDenied(Verify(spec_), "policy: committed_tcb snp SPL 7 is below the minimum 8");
  policy_.min_committed_tcb = {.snp = 7};
  EXPECT_TRUE(Verify(spec_).ok());
}

// Issue 22, section 4: any cloud's VLEK was accepted.
TEST_F(SnpTestChainTest, VleksAreAcceptedOnlyFromTheCloudsThePolicyNames) {
  SnpIssued vlek = milan_->IssueVlek({.tcb = tcb_, .csp_id = "Amazon Web Services"});
  spec_.signing_key = snp::SigningKey::kVlek;
  v1::Evidence e = Evidence(MakeSnpReport(spec_, vlek.key.get()), vlek);
  e.mutable_sev_snp()->set_ask(ToString(milan_->AsvkDer()));
  ExpectDenied(VerifyWith(policy_, e),
               "policy: the report is signed by a VLEK of cloud \"Amazon Web Services\", which "
               "is not in sev_snp.vlek_csps");
  policy_.vlek_csps = {"Another Cloud"};
  ExpectDenied(VerifyWith(policy_, e),
               "policy: the report is signed by a VLEK of cloud \"Amazon Web Services\", which "
               "is not in sev_snp.vlek_csps");
  policy_.vlek_csps.push_back("Amazon Web Services");
  auto v = VerifyWith(policy_, e);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_THAT(v->rule, HasSubstr("VLEK sent"));
}

TEST_F(SnpTestChainTest, ProductsNotAllowedAreRefused) {
  policy_.products = {snp::Product::kGenoa};
  ExpectDenied(Verify(spec_), "policy: product Milan is not in sev_snp.products");
}

TEST_F(SnpTestChainTest, HwIdMustBeTheChipId) {
  SnpIssued vcek = milan_->IssueVcek({.hwid = Bytes(64, 0xc2), .tcb = tcb_});
  ExpectDenied(VerifyWith(policy_, Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek)),
               "chip: the VCEK's hwID " + HexEncode(Bytes(64, 0xc2)) +
                   " is not the report's chip_id " + HexEncode(spec_.chip_id));
}

TEST_F(SnpTestChainTest, VcekNotSignedWithPssIsRefused) {
  SnpIssued vcek = milan_->IssueVcek({.hwid = spec_.chip_id, .tcb = tcb_, .pss = false});
  ExpectDenied(VerifyWith(policy_, Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek)),
               "chain: the VCEK is not signed with RSASSA-PSS SHA-384, MGF1-SHA-384, salt 48 "
               "(signature algorithm sha384WithRSAEncryption)");
}

TEST_F(SnpTestChainTest, ExpiredVcekPassesOnlyAtAVerificationTimeInsideItsValidity) {
  const int64_t now = clock_.NowUnix();
  SnpIssued vcek = milan_->IssueVcek({.hwid = spec_.chip_id,
                                      .tcb = tcb_,
                                      .not_before = now - 86400 * 30,
                                      .not_after = now - 86400 * 10});
  v1::Evidence e = Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek);
  auto now_result = VerifyWith(policy_, e);
  EXPECT_EQ(now_result.status().code(), Code::kPermissionDenied);
  EXPECT_THAT(now_result.status().message(), StartsWith("chain: the VCEK expired at "));
  SnpVerifier at_then(policy_, &anchors_, nullptr, {.verify_at_unix = now - 86400 * 20});
  EXPECT_TRUE(at_then.Verify(e, binding_).ok());
}

TEST_F(SnpTestChainTest, LaterReportVersionsParseWithTheVersion3Layout) {
  spec_.version = 5;
  spec_.cpuid_family = 0x19;
  spec_.cpuid_model = 0x01;  // Milan
  EXPECT_TRUE(Verify(spec_).ok());
  spec_.cpuid_model = 0x11;  // Genoa, with a Milan VCEK
  ExpectDenied(Verify(spec_),
               "chain: the report comes from a Genoa chip but the endorsement "
               "key is for Milan-B0");
}

TEST_F(SnpTestChainTest, TurinLayoutFmcAndEightByteHwId) {
  SnpTestChain turin(snp::Product::kTurin);
  ASSERT_TRUE(anchors_.PinArk(snp::Product::kTurin, X509Ptr(X509_dup(turin.ark()))).ok());
  snp::Tcb tcb{.bootloader = 3, .tee = 2, .snp = 9, .microcode = 120, .fmc = 1};
  spec_.version = 3;
  spec_.cpuid_family = 0x1a;
  spec_.cpuid_model = 0x02;
  spec_.reported_tcb = snp::EncodeTcb(tcb, snp::Product::kTurin);
  EXPECT_EQ(spec_.reported_tcb, 0x7800000009020301u);  // fmc|bl|tee|snp ... ucode
  spec_.chip_id = Bytes(64, 0);
  std::fill(spec_.chip_id.begin(), spec_.chip_id.begin() + 8, 0x7e);
  SnpIssued vcek = turin.IssueVcek({.hwid = Bytes(8, 0x7e), .tcb = tcb});
  auto v = VerifyWith(policy_, Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek, true, &turin));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_THAT(v->rule, HasSubstr("product Turin"));
  // The FMC level is part of the match.
  snp::Tcb other_fmc = tcb;
  other_fmc.fmc = 2;
  SnpIssued wrong = turin.IssueVcek({.hwid = Bytes(8, 0x7e), .tcb = other_fmc});
  EXPECT_THAT(
      VerifyWith(policy_, Evidence(MakeSnpReport(spec_, wrong.key.get()), wrong, true, &turin))
          .status()
          .message(),
      StartsWith("tcb: the VCEK is for TCB bootloader=3 tee=2 snp=9 microcode=120 fmc=2"));
}

TEST_F(SnpTestChainTest, MalformedEvidenceIsInvalidArgument) {
  SnpIssued vcek = Vcek(tcb_);
  Bytes report = MakeSnpReport(spec_, vcek.key.get());
  v1::Evidence e = Evidence(Bytes(report.begin(), report.end() - 1), vcek);
  auto r = VerifyWith(policy_, e);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(r.status().message(), "SEV-SNP report: SEV-SNP report is 1183 bytes, expected 1184");
  e = Evidence(report, vcek);
  e.mutable_sev_snp()->set_vcek("not a certificate");
  r = VerifyWith(policy_, e);
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_THAT(r.status().message(), StartsWith("evidence VCEK: parsing a DER certificate"));
  report[0] = 1;  // version 1
  r = VerifyWith(policy_, Evidence(report, vcek));
  EXPECT_EQ(r.status().message(),
            "SEV-SNP report: SEV-SNP report version 1 is not supported (2 or later)");
}

// ---- the certificate cache ----

TEST_F(SnpTestChainTest, NodeWithoutCertificatesVerifiesFromTheCache) {
  berth::testing::TempDir dir;
  SnpCertStore store(dir.Join("cache"), nullptr);
  SnpIssued vcek = Vcek(tcb_);
  Bytes report = MakeSnpReport(spec_, vcek.key.get());
  v1::Evidence bare;
  bare.mutable_sev_snp()->set_report(ToString(report));
  AddIdentity(bare, identity_.get(), binding_);
  // Nothing cached yet: refused as a precondition, nothing written.
  auto r = VerifyWith(policy_, bare, &store);
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(r.status().message(),
              StartsWith("chain: the node sent no VCEK and none was found for chip "
                         "c1c1c1c1c1c1c1c1... at reported_tcb 0x7308000000000003"));
  EXPECT_FALSE(std::filesystem::exists(dir.Join("cache/Milan")));
  // A node that sends its certificates fills the cache ...
  ASSERT_TRUE(VerifyWith(policy_, Evidence(report, vcek), &store).ok());
  EXPECT_TRUE(std::filesystem::exists(dir.Join("cache/Milan/ask.der")));
  // ... and the bare report now verifies.
  auto v = VerifyWith(policy_, bare, &store);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_THAT(v->rule, HasSubstr("VCEK cache"));
}

TEST_F(SnpTestChainTest, UnverifiableCertificatesAreNeverCached) {
  berth::testing::TempDir dir;
  SnpCertStore store(dir.Join("cache"), nullptr);
  // Another chain's ASK and VCEK, and a report they sign: refused.
  SnpIssued vcek = Vcek(tcb_, other_);
  auto r = VerifyWith(policy_, Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek, true, other_),
                      &store);
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  // Our chain's VCEK with a report signed by another key: the chain holds, the signature not.
  SnpIssued good = Vcek(tcb_);
  EvpPkeyPtr wrong_key = berth::testing::GenerateP384Key();
  r = VerifyWith(policy_, Evidence(MakeSnpReport(spec_, wrong_key.get()), good), &store);
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  EXPECT_FALSE(std::filesystem::exists(dir.Join("cache/Milan")));
}

// ---- a stand-in KDS ----

class SnpKdsTest : public SnpTestChainTest {
 protected:
  void StartKds(const std::vector<std::string>& extra = {}) {
    std::filesystem::remove(dir_.Join("kds.port"));
    std::vector<std::string> argv = {"/usr/bin/python3",
                                     berth::testing::SourceDir() + "/tests/standins/amd_kds.py",
                                     "--dir",
                                     dir_.Join("kds"),
                                     "--port-file",
                                     dir_.Join("kds.port"),
                                     "--record",
                                     dir_.Join("kds.jsonl")};
    argv.insert(argv.end(), extra.begin(), extra.end());
    auto p = Subprocess::Start(argv, dir_.Join("kds.log"));
    ASSERT_TRUE(p.ok());
    kds_process_ = std::move(*p);
    int port = berth::testing::WaitForPortFile(dir_.Join("kds.port"), std::chrono::seconds(20));
    ASSERT_GT(port, 0) << berth::testing::MustRead(dir_.Join("kds.log"));
    kds_ = MakeCurlKds("http://127.0.0.1:" + std::to_string(port), std::chrono::seconds(5));
  }
  // What the stand-in serves: this chain's cert_chain and `vcek` for the report's chip/TCB.
  void Serve(const SnpIssued& vcek, const SnpTestChain& chain) {
    const std::string base = dir_.Join("kds/vcek/v1/Milan");
    ASSERT_TRUE(MakeDirs(base).ok());
    berth::testing::MustWrite(base + "/cert_chain",
                              std::move(CertToPem(chain.ask())).value() + chain.ArkPem());
    berth::testing::MustWrite(base + "/" + HexEncode(spec_.chip_id),
                              ToString(std::move(CertToDer(vcek.cert.get())).value()));
    berth::testing::MustWrite(base + "/" + HexEncode(spec_.chip_id) + ".query",
                              "blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115");
  }
  v1::Evidence Bare(const Bytes& report) {
    v1::Evidence e;
    e.mutable_sev_snp()->set_report(ToString(report));
    AddIdentity(e, identity_.get(), binding_);
    return e;
  }
  void MustWriteCrl(const Bytes& der) {
    ASSERT_TRUE(MakeDirs(dir_.Join("kds/vcek/v1/Milan")).ok());
    berth::testing::MustWrite(dir_.Join("kds/vcek/v1/Milan/crl"), ToString(der));
  }

  berth::testing::TempDir dir_;
  Subprocess kds_process_;
  std::unique_ptr<SnpKds> kds_;
};

TEST_F(SnpKdsTest, MissingCertificatesAreFetchedVerifiedAndCached) {
  SnpIssued vcek = Vcek(tcb_);
  Serve(vcek, *milan_);
  StartKds();
  SnpCertStore store(dir_.Join("cache"), kds_.get());
  Bytes report = MakeSnpReport(spec_, vcek.key.get());
  auto v = VerifyWith(policy_, Bare(report), &store);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_THAT(v->rule, HasSubstr("VCEK kds"));
  std::string record = berth::testing::MustRead(dir_.Join("kds.jsonl"));
  EXPECT_EQ(record,
            "{\"path\": \"/vcek/v1/Milan/" + HexEncode(spec_.chip_id) +
                "\", \"query\": \"blSPL=3&teeSPL=0&snpSPL=8&ucodeSPL=115\", \"code\": 200}\n"
                "{\"path\": \"/vcek/v1/Milan/cert_chain\", \"query\": \"\", \"code\": 200}\n"
                // AMD's CRL is asked for too (this stand-in has none to serve).
                "{\"path\": \"/vcek/v1/Milan/crl\", \"query\": \"\", \"code\": 404}\n");
  // With KDS gone, the cache answers.
  kds_process_.Stop();
  v = VerifyWith(policy_, Bare(report), &store);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_THAT(v->rule, HasSubstr("VCEK cache"));
}

TEST_F(SnpKdsTest, AFetchedCertificateThatDoesNotVerifyIsNotCached) {
  SnpIssued impostor = Vcek(tcb_, other_);  // KDS (or whoever answers) serves another chain's
  Serve(impostor, *other_);
  StartKds();
  SnpCertStore store(dir_.Join("cache"), kds_.get());
  auto r = VerifyWith(policy_, Bare(MakeSnpReport(spec_, impostor.key.get())), &store);
  EXPECT_EQ(r.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(r.status().message(), "chain: the ASK's signature does not verify with the ARK's key");
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("cache/Milan")));
}

// Issue 22, section 4: AMD's CRLs were never fetched or checked.
TEST_F(SnpKdsTest, ARevokedAskIsRefusedByAmdsCrl) {
  SnpIssued vcek = Vcek(tcb_);
  Serve(vcek, *milan_);
  MustWriteCrl(milan_->MakeCrl({milan_->ask()}));
  StartKds();
  SnpCertStore store(dir_.Join("cache"), kds_.get());
  BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(milan_->ask()), nullptr);
  char* hex = BN_bn2hex(bn);
  const std::string revoked = "crl: the ASK (serial " + std::string(hex) + ") is revoked by AMD's CRL";
  OPENSSL_free(hex);
  BN_free(bn);
  ExpectDenied(VerifyWith(policy_, Bare(MakeSnpReport(spec_, vcek.key.get())), &store), revoked);
  // The node sending its certificates changes nothing: the CRL applies to them too.
  ExpectDenied(VerifyWith(policy_, Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek), &store),
               revoked);
  EXPECT_THAT(berth::testing::MustRead(dir_.Join("kds.jsonl")),
              HasSubstr("{\"path\": \"/vcek/v1/Milan/crl\", \"query\": \"\", \"code\": 200}"));
  // Cached: with KDS gone, a new store on the same directory still refuses.
  kds_process_.Stop();
  SnpCertStore offline(dir_.Join("cache"), nullptr);
  ExpectDenied(VerifyWith(policy_, Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek), &offline),
               revoked);
}

TEST_F(SnpKdsTest, ARevokedVcekIsRefusedAndAnUnrevokedChainPasses) {
  SnpIssued vcek = Vcek(tcb_);
  SnpIssued other = Vcek(tcb_);
  Serve(vcek, *milan_);
  MustWriteCrl(milan_->MakeCrl({other.cert.get()}));
  StartKds();
  SnpCertStore store(dir_.Join("cache"), kds_.get());
  auto v = VerifyWith(policy_, Bare(MakeSnpReport(spec_, vcek.key.get())), &store);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_THAT(v->rule, HasSubstr(", crl checked"));
  EXPECT_THAT(VerifyWith(policy_, Evidence(MakeSnpReport(spec_, other.key.get()), other), &store)
                  .status()
                  .message(),
              StartsWith("crl: the VCEK (serial "));
}

TEST_F(SnpKdsTest, ACrlNotSignedByTheArkIsNotUsed) {
  SnpIssued vcek = Vcek(tcb_);
  Serve(vcek, *milan_);
  MustWriteCrl(other_->MakeCrl({milan_->ask()}));  // "revokes" our ASK, signed by another ARK
  StartKds();
  SnpCertStore store(dir_.Join("cache"), kds_.get());
  auto v = VerifyWith(policy_, Bare(MakeSnpReport(spec_, vcek.key.get())), &store);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_THAT(v->rule, HasSubstr(", no crl"));
  EXPECT_FALSE(std::filesystem::exists(dir_.Join("cache/Milan/crl-vcek.der")));
  // A policy that requires a CRL refuses without one.
  policy_.require_crl = true;
  SnpCertStore strict(dir_.Join("cache2"), nullptr);
  auto r = VerifyWith(policy_, Evidence(MakeSnpReport(spec_, vcek.key.get()), vcek), &strict);
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(r.status().message(),
              StartsWith("crl: sev_snp.require_crl, and no usable AMD's VCEK CRL is at hand"));
}

TEST_F(SnpKdsTest, KdsOutagesAreRetryableAndMissesAreNot) {
  SnpIssued vcek = Vcek(tcb_);
  Serve(vcek, *milan_);
  StartKds({"--status", "429"});
  SnpCertStore limited(dir_.Join("cache"), kds_.get());
  auto r = VerifyWith(policy_, Bare(MakeSnpReport(spec_, vcek.key.get())), &limited);
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_THAT(r.status().message(), HasSubstr("answered 429"));
  kds_process_.Stop();
  // Nothing listening: UNAVAILABLE too.
  r = VerifyWith(policy_, Bare(MakeSnpReport(spec_, vcek.key.get())), &limited);
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  // KDS has no VCEK for this TCB: a precondition failure, not a retry.
  StartKds();
  SnpCertStore store(dir_.Join("cache2"), kds_.get());
  spec_.reported_tcb =
      snp::EncodeTcb({.bootloader = 3, .tee = 0, .snp = 7, .microcode = 115}, snp::Product::kMilan);
  r = VerifyWith(policy_, Bare(MakeSnpReport(spec_, vcek.key.get())), &store);
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_THAT(r.status().message(), HasSubstr("answered 404"));
}

// ---- policy parsing ----

TEST(SnpPolicyTest, ParsesEveryKey) {
  auto p = ParsePolicy(
      "sev_snp:\n"
      "  measurements: [" +
      std::string(96, 'a') +
      "]\n"
      "  min_tcb: {bootloader: 3, tee: 0, snp: 8, microcode: 115, fmc: 1}\n"
      "  allow_debug: true\n"
      "  max_vmpl: 2\n"
      "  required_policy_bits: [single_socket]\n"
      "  forbidden_policy_bits: [migrate_ma, smt]\n"
      "  products: [Milan, Turin]\n"
      "  allow_migrate_ma: false\n"
      "  host_data: [" + std::string(64, 'b') + "]\n"
      "  id_key_digests: [" + std::string(96, 'c') + "]\n"
      "  author_key_digests: [" + std::string(96, 'd') + "]\n"
      "  min_launch_tcb: {snp: 7}\n"
      "  min_committed_tcb: {snp: 8, microcode: 110}\n"
      "  vlek_csps: [Amazon Web Services]\n"
      "  require_crl: true\n");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_TRUE(p->trusted_aks.empty());  // an SEV-SNP-only policy
  ASSERT_TRUE(p->sev_snp);
  const SnpPolicy& s = *p->sev_snp;
  EXPECT_EQ(s.measurements, std::vector<Bytes>{Bytes(48, 0xaa)});
  EXPECT_EQ(s.min_tcb, (snp::Tcb{.bootloader = 3, .tee = 0, .snp = 8, .microcode = 115, .fmc = 1}));
  EXPECT_TRUE(s.allow_debug);
  EXPECT_EQ(s.max_vmpl, 2u);
  EXPECT_EQ(s.required_policy_bits, uint64_t{1} << 20);
  EXPECT_EQ(s.forbidden_policy_bits, (uint64_t{1} << 18) | (uint64_t{1} << 16));
  EXPECT_EQ(s.products, (std::vector<snp::Product>{snp::Product::kMilan, snp::Product::kTurin}));
  EXPECT_FALSE(s.allow_migrate_ma);
  EXPECT_EQ(s.host_data, std::vector<Bytes>{Bytes(32, 0xbb)});
  EXPECT_EQ(s.id_key_digests, std::vector<Bytes>{Bytes(48, 0xcc)});
  EXPECT_EQ(s.author_key_digests, std::vector<Bytes>{Bytes(48, 0xdd)});
  EXPECT_EQ(s.min_launch_tcb, (snp::Tcb{.snp = 7}));
  EXPECT_EQ(s.min_committed_tcb, (snp::Tcb{.snp = 8, .microcode = 110}));
  EXPECT_EQ(s.vlek_csps, std::vector<std::string>{"Amazon Web Services"});
  EXPECT_TRUE(s.require_crl);
}

TEST(SnpPolicyTest, RefusesWhatIsMalformedNamingTheKey) {
  const std::string m = "  measurements: [" + std::string(96, 'a') + "]\n";
  struct Case {
    std::string yaml, error;
  };
  for (const Case& c : std::vector<Case>{
           {"sev_snp: {}\n",
            "policy: sev_snp.measurements is empty, so any guest image would pass"},
           {"sev_snp:\n  measurements: [abcd]\n", "sev_snp.measurements[0]: 2 bytes, expected 48"},
           {"sev_snp:\n" + m + "  min_tcb: {pcr: 1}\n",
            "sev_snp.min_tcb: unknown component \"pcr\" (bootloader, tee, snp, microcode, fmc)"},
           {"sev_snp:\n" + m + "  min_tcb: {snp: 256}\n",
            "sev_snp.min_tcb.snp: expected a number 0-255"},
           {"sev_snp:\n" + m + "  max_vmpl: 4\n", "sev_snp.max_vmpl: expected a number 0-3"},
           {"sev_snp:\n" + m + "  allow_debug: maybe\n",
            "sev_snp.allow_debug: expected true or false"},
           {"sev_snp:\n" + m + "  forbidden_policy_bits: [debug]\n",
            "sev_snp.forbidden_policy_bits[0]: \"debug\" is not a guest policy bit name here "
            "(use allow_debug)"},
           {"sev_snp:\n" + m + "  required_policy_bits: [smt]\n  forbidden_policy_bits: [smt]\n",
            "sev_snp: policy bits smt are both required and forbidden"},
           {"sev_snp:\n" + m + "  products: [Rome]\n",
            "sev_snp.products[0]: \"Rome\" is not Milan, Genoa or Turin"},
           {"sev_snp:\n" + m + "  vcek_check: false\n",
            "policy: unknown key \"sev_snp.vcek_check\""},
           {"sev_snp:\n" + m + "  required_policy_bits: [migrate_ma]\n",
            "sev_snp.required_policy_bits: migrate_ma needs sev_snp.allow_migrate_ma: true"},
           {"sev_snp:\n" + m + "  host_data: [abcd]\n",
            "sev_snp.host_data[0]: 2 bytes, expected 32"},
           {"sev_snp:\n" + m + "  author_key_digests: [" + std::string(64, 'a') + "]\n",
            "sev_snp.author_key_digests[0]: 32 bytes, expected 48"},
           {"sev_snp:\n" + m + "  min_launch_tcb: {ucode: 1}\n",
            "sev_snp.min_launch_tcb: unknown component \"ucode\" (bootloader, tee, snp, "
            "microcode, fmc)"},
           {"sev_snp:\n" + m + "  vlek_csps: [\"\"]\n", "sev_snp.vlek_csps[0]: expected a csp_id"},
           {"sev_snp:\n" + m + "  require_crl: often\n",
            "sev_snp.require_crl: expected true or false"},
       }) {
    auto p = ParsePolicy(c.yaml);
    EXPECT_EQ(p.status().code(), Code::kInvalidArgument) << c.yaml;
    EXPECT_EQ(p.status().message(), c.error) << c.yaml;
  }
}

}  // namespace
}  // namespace berth::verify

namespace berth::verify {
namespace {

using ::berth::server::SnpServerConfig;
using ::berth::server::SnpService;

TEST(SnpServiceTest, UnusableFlagsAreNamed) {
  RealClock clock;
  SnpPolicy policy;
  policy.measurements = {Bytes(48, 1)};
  auto create = [&](SnpServerConfig c) { return SnpService::Create(c, policy, &clock).status(); };
  EXPECT_EQ(create({.insecure_test_arks = {"Rome=/x"}}).message(),
            "--insecure-test-snp-ark Rome=/x: expected PRODUCT=FILE with PRODUCT Milan, Genoa or "
            "Turin");
  EXPECT_EQ(create({.insecure_test_arks = {"Milan=/nonexistent.pem"}}).message(),
            "--insecure-test-snp-ark: open(/nonexistent.pem): No such file or directory");
  EXPECT_EQ(create({.verify_at = "soon"}).message(),
            "--snp-verify-at: \"soon\" is not an RFC 3339 time (2024-05-01T12:00:00Z)");
  EXPECT_EQ(create({.kds_url = "http://kds.example"}).message(),
            "--snp-kds-url http://kds.example: must be https:// (plain http only for a loopback "
            "stand-in; host kds.example is not a loopback address)");
  EXPECT_TRUE(create({.kds_url = "https://kdsintf.amd.com"}).ok());
}

}  // namespace
}  // namespace berth::verify
