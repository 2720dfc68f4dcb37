// The TPM evidence verifier against quotes from a real TPM (swtpm), made by the agent's own
// evidence collection.
#include "verify/evidence.h"

#include <gtest/gtest.h>

#include "agent/attestation.h"
#include "common/binding.h"
#include "common/enrolment.h"
#include "tests/bench/soft_ak.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::verify {
namespace {

class EvidenceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(swtpm_.ok()) << swtpm_.error();
    // A "boot": measure something into PCR 7, so the policy pins a non-trivial value.
    ASSERT_TRUE(swtpm_.ExtendPcr(7, std::string(64, 'c')));
    auto tpm = agent::OpenEsysTpm(swtpm_.Tcti());
    ASSERT_TRUE(tpm.ok()) << tpm.status().ToString();
    tpm_ = std::move(*tpm);
    selection_ = DefaultPcrSelection();
    auto pcrs = tpm_->ReadPcrs(selection_);
    ASSERT_TRUE(pcrs.ok());
    pcrs_ = *pcrs;
    auto ak = tpm::ParsePublic(*tpm_->AttestationKeyPublic());
    auto key = tpm::PublicToEvp(*ak);
    ak_hash_ = HexEncode(Sha256(*PublicKeyToSpkiDer(key->get())));
  }

  Policy MakePolicy(const std::string& ak_hash, uint32_t pinned_pcr = 7) {
    std::string text =
        "tpm:\n  trusted_aks:\n    - name: node-a\n      sha256: " + ak_hash +
        "\n  pcrs:\n    sha256:\n      0: " + HexEncode(pcrs_[DigestAlg::kSha256][0]) + "\n      " +
        std::to_string(pinned_pcr) + ": " + HexEncode(pcrs_[DigestAlg::kSha256][7]) + "\n";
    auto p = ParsePolicy(text);
    EXPECT_TRUE(p.ok()) << p.status().ToString();
    return *p;
  }

  v1::Evidence Collect(const Bytes& binding) {
    auto e = agent::CollectTpmEvidence(*tpm_, selection_, binding, dir_.Join("no-event-log"));
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return *e;
  }

  testing::TempDir dir_;
  testing::Swtpm swtpm_{dir_.Join("tpm")};
  std::unique_ptr<agent::Tpm> tpm_;
  std::vector<v1::PcrSelection> selection_;
  tpm::PcrValues pcrs_;
  std::string ak_hash_;
  Bytes binding_ = ComputeBinding(Bytes(56, 1), Bytes(32, 2));
};

TEST_F(EvidenceTest, MatchingQuoteIsAccepted) {
  TpmEvidenceVerifier verifier(MakePolicy(ak_hash_));
  auto v = verifier.Verify(Collect(binding_), binding_);
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  EXPECT_EQ(v->ak_sha256_hex, ak_hash_);
  EXPECT_EQ(v->ak_name, "node-a");
  EXPECT_EQ(v->rule, "trusted_aks[node-a] + pcrs sha256:0,7 + no enrolment config measured");
  // Every quoted PCR with the TPM's value (a control plane's cold-start policy is signed over
  // them), the ones the policy does not pin included.
  EXPECT_EQ(v->quoted_pcrs, pcrs_);
}

TEST_F(EvidenceTest, EvidenceBoundToAnotherChannelIsRefused) {
  TpmEvidenceVerifier verifier(MakePolicy(ak_hash_));
  Bytes other = ComputeBinding(Bytes(56, 1), Bytes(32, 3));
  auto v = verifier.Verify(Collect(binding_), other);
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(v.status().message(), "TPM quote: the quote's extraData (" + HexEncode(binding_) +
                                      ") is not the expected nonce (" + HexEncode(other) + ")");
}

TEST_F(EvidenceTest, ChangedBootStateIsRefusedNamingThePcr) {
  TpmEvidenceVerifier verifier(MakePolicy(ak_hash_));
  ASSERT_TRUE(swtpm_.ExtendPcr(7, std::string(64, 'd')));
  auto now = tpm_->ReadPcrs(selection_);
  auto v = verifier.Verify(Collect(binding_), binding_);
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(v.status().message(), "PCR sha256:7 is " + HexEncode((*now)[DigestAlg::kSha256][7]) +
                                      ", policy expects " +
                                      HexEncode(pcrs_[DigestAlg::kSha256][7]));
}

TEST_F(EvidenceTest, UnknownAttestationKeyIsRefused) {
  TpmEvidenceVerifier verifier(MakePolicy(std::string(64, 'e')));
  auto v = verifier.Verify(Collect(binding_), binding_);
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(v.status().message(),
            "attestation key sha256:" + ak_hash_ + " is not in the policy's trusted_aks");
}

TEST_F(EvidenceTest, PcrValuesThatDoNotMatchTheQuoteAreRefused) {
  TpmEvidenceVerifier verifier(MakePolicy(ak_hash_));
  v1::Evidence e = Collect(binding_);
  // Claim the policy's value for a PCR the quote covers, but the quote says otherwise.
  auto* value = e.mutable_tpm()->mutable_pcrs(0)->mutable_values(1);
  value->set_digest(std::string(32, '\x01'));
  auto v = verifier.Verify(e, binding_);
  EXPECT_EQ(v.status().code(), Code::kPermissionDenied);
  EXPECT_EQ(v.status().message(),
            "TPM quote: the quote's pcrDigest does not match the PCR values given");
}

TEST_F(EvidenceTest, TamperedQuoteIsRefused) {
  TpmEvidenceVerifier verifier(MakePolicy(ak_hash_));
  v1::Evidence e = Collect(binding_);
  std::string quote = e.tpm().quote();
  quote[quote.size() - 1] ^= 1;
  e.mutable_tpm()->set_quote(quote);
  EXPECT_EQ(verifier.Verify(e, binding_).status().code(), Code::kPermissionDenied);
}

TEST_F(EvidenceTest, MalformedEvidenceIsInvalidArgument) {
  TpmEvidenceVerifier verifier(MakePolicy(ak_hash_));
  v1::Evidence e = Collect(binding_);
  e.mutable_tpm()->set_ak_public("junk");
  EXPECT_EQ(verifier.Verify(e, binding_).status().code(), Code::kInvalidArgument);

  e = Collect(binding_);
  e.mutable_tpm()->mutable_pcrs(0)->mutable_values(0)->set_digest("short");
  auto v = verifier.Verify(e, binding_);
  EXPECT_EQ(v.status().ToString(), "INVALID_ARGUMENT: evidence PCR sha256:0: 5 bytes, expected 32");

  e = Collect(binding_);
  *e.mutable_tpm()->mutable_pcrs(0)->add_values() = e.tpm().pcrs(0).values(0);
  EXPECT_EQ(verifier.Verify(e, binding_).status().ToString(),
            "INVALID_ARGUMENT: evidence PCR sha256:0 is given twice");

  v1::Evidence none;
  EXPECT_EQ(verifier.Verify(none, binding_).status().ToString(),
            "INVALID_ARGUMENT: the request carries no evidence");
  v1::Evidence snp;
  snp.mutable_sev_snp();
  EXPECT_EQ(verifier.Verify(snp, binding_).status().code(), Code::kInvalidArgument);
}

// An AK the policy trusts by its key, but whose TPMT_PUBLIC says it is not a restricted
// signing key bound to its TPM: such a key can sign any TPMS_ATTEST (PCR values and nonce of
// the signer's choosing), or may have been created outside a TPM. The quote itself is
// well-formed and verifies; the attributes alone refuse it (issue 22, section 5). The key is a
// software AK producing real TPM structures (tests/bench/soft_ak.h).
TEST(AkAttributesTest, ATrustedKeyWithoutTheAkAttributesIsRefusedNamingTheAttribute) {
  auto key = GenerateP256Key();
  ASSERT_TRUE(key.ok());
  auto pem = PrivateKeyToPem(key->get());
  ASSERT_TRUE(pem.ok());
  const Bytes binding = ComputeBinding(Bytes(56, 3), Bytes(32, 4));
  auto with = [&](TPMA_OBJECT attributes) {
    auto copy = PrivateKeyFromPem(pem->view());
    EXPECT_TRUE(copy.ok());
    auto ak = bench::SoftAk::FromKey(std::move(*copy), {0, 7}, attributes);
    EXPECT_TRUE(ak.ok()) << ak.status().ToString();
    return std::move(*ak);
  };
  const bench::SoftAk good = with(bench::SoftAk::kAkAttributes);
  auto policy = ParsePolicy(*good.PolicyYaml());
  ASSERT_TRUE(policy.ok()) << policy.status().ToString();
  TpmEvidenceVerifier verifier(*policy);
  auto accepted = verifier.Verify(*good.Quote(binding), binding);
  ASSERT_TRUE(accepted.ok()) << accepted.status().ToString();
  EXPECT_EQ(accepted->ak_name, "berth-bench");

  const struct {
    TPMA_OBJECT attributes;
    const char* refusal;
  } cases[] = {
      {bench::SoftAk::kAkAttributes & ~TPMA_OBJECT_RESTRICTED,
       "the attestation key lacks the restricted attribute"},
      {bench::SoftAk::kAkAttributes & ~TPMA_OBJECT_FIXEDTPM,
       "the attestation key lacks the fixedTPM attribute"},
      {bench::SoftAk::kAkAttributes & ~TPMA_OBJECT_SENSITIVEDATAORIGIN,
       "the attestation key lacks the sensitiveDataOrigin attribute"},
      {bench::SoftAk::kAkAttributes | TPMA_OBJECT_DECRYPT,
       "the attestation key has the decrypt attribute"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.refusal);
    const bench::SoftAk bad = with(c.attributes);
    auto refused = verifier.Verify(*bad.Quote(binding), binding);
    ASSERT_FALSE(refused.ok());
    EXPECT_EQ(refused.status().code(), Code::kPermissionDenied);
    EXPECT_EQ(refused.status().message(), c.refusal);
  }
}

}  // namespace
}  // namespace berth::verify
