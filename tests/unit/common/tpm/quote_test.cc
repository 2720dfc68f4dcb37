// TPM quote verification: every real quote in the testdata is accepted and every tamper its
// README lists is refused; signed synthetic quotes reach the checks real ones cannot
// (magic, type, empty selection, each scheme).
#include "common/tpm/quote.h"

#include <gtest/gtest.h>
#include <openssl/ecdsa.h>
#include <tss2/tss2_mu.h>

#include <fstream>
#include <sstream>

#include "tests/testing/testing.h"
#include "tests/unit/common/tpm/real_quotes.h"
#include "tests/unit/common/tpm/synthetic_quote.h"

namespace berth::tpm {
namespace {

using testdata::RealQuote;
using testing::MustRead;
using testing::Testdata;

Bytes ReadBytes(const std::string& rel) { return ToBytes(MustRead(Testdata(rel))); }

// The "INDEX HEX" files of the testdata, read by the test itself (berthctl has its own
// parser, tested separately).
PcrValues ReadPcrs(const RealQuote& q) {
  PcrValues out;
  std::istringstream in(MustRead(Testdata(q.pcrs)));
  uint32_t index;
  std::string hex;
  while (in >> index >> hex) out[q.bank][index] = *HexDecode(hex);
  return out;
}

EvpPkeyPtr LoadPemAk(const RealQuote& q) {
  auto key = PublicKeyFromPem(MustRead(Testdata(q.ak_pem)));
  EXPECT_TRUE(key.ok()) << q.name << ": " << key.status().ToString();
  return key.ok() ? std::move(*key) : nullptr;
}

Result<VerifiedQuote> Verify(EVP_PKEY* ak, const Bytes& quote, const Bytes& sig,
                             const PcrValues& pcrs, std::optional<Bytes> nonce) {
  std::optional<std::span<const uint8_t>> expected;
  if (nonce.has_value()) expected = std::span<const uint8_t>(*nonce);
  return VerifyQuote(ak, quote, sig, pcrs, expected);
}

class RealQuoteTest : public ::testing::Test {
 protected:
  void SetUp() override { BERTH_REQUIRE_TESTDATA(); }
};

TEST_F(RealQuoteTest, EveryValidQuoteVerifies) {
  size_t count = 0;
  for (const RealQuote& q : testdata::RealQuotes()) {
    SCOPED_TRACE(q.name);
    EvpPkeyPtr ak = LoadPemAk(q);
    ASSERT_NE(ak, nullptr);
    const PcrValues pcrs = ReadPcrs(q);
    const Bytes nonce = *HexDecode(q.extra_data_hex);
    auto v = Verify(ak.get(), ReadBytes(q.quote), ReadBytes(q.signature), pcrs, nonce);
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(HexEncode(v->extra_data), q.extra_data_hex);
    EXPECT_EQ(v->signature_hash, q.signature_hash);
    ASSERT_EQ(v->selection.size(), q.selected);
    for (const QuotedPcr& p : v->selection) EXPECT_EQ(p.bank, q.bank);
    EXPECT_EQ(v->pcrs.size(), 1u);
    EXPECT_EQ(v->pcrs.at(q.bank).size(), q.selected);
    if (q.selected == 24) {
      EXPECT_EQ(v->pcrs, pcrs);
      for (uint32_t i = 0; i < 24; ++i) EXPECT_EQ(v->selection[i].index, i);
    }
    // Without an expected nonce, any extraData is accepted.
    EXPECT_TRUE(
        Verify(ak.get(), ReadBytes(q.quote), ReadBytes(q.signature), pcrs, std::nullopt).ok());
    ++count;
  }
  EXPECT_EQ(count, 9u);  // 6 GCE, 2 GCP, 1 keylime
}

TEST_F(RealQuoteTest, KeylimeQuoteSelectsPcr16WithItsAsciiNonce) {
  const RealQuote q = testdata::RealQuotes().back();
  ASSERT_EQ(q.name, "keylime-swtpm");
  EXPECT_EQ(MustRead(Testdata("tpm-keylime-swtpm-checkquote/nonce.txt")), q.nonce_text);
  auto v = Verify(LoadPemAk(q).get(), ReadBytes(q.quote), ReadBytes(q.signature), ReadPcrs(q),
                  ToBytes(q.nonce_text));
  ASSERT_TRUE(v.ok()) << v.status().ToString();
  ASSERT_EQ(v->selection.size(), 1u);
  EXPECT_EQ(v->selection[0], (QuotedPcr{DigestAlg::kSha256, 16}));
  EXPECT_EQ(HexEncode(v->pcrs.at(DigestAlg::kSha256).at(16)),
            "d471c0674951f0ef075aecdd42fbefa6eca6019820add0bd222d1c4e6242ce6f");
}

TEST_F(RealQuoteTest, NonceFilesMatchTheExtraData) {
  for (const char* platform : {"tdx", "amd"}) {
    std::string file = TrimWhitespace(
        MustRead(Testdata(std::string("tpm-gcp-ecc-ak-vaportpm/") + platform + "_nonce.hex")));
    bool found = false;
    for (const RealQuote& q : testdata::RealQuotes()) {
      if (q.name == std::string("gcp-ecdsa-") + platform) {
        EXPECT_EQ(file, q.extra_data_hex);
        found = true;
      }
    }
    EXPECT_TRUE(found) << platform;
  }
}

TEST_F(RealQuoteTest, AkAsTpmtPublicEqualsThePemAndIsARestrictedSigningKey) {
  for (const RealQuote& q : testdata::RealQuotes()) {
    if (q.ak_tpmt.empty()) continue;
    SCOPED_TRACE(q.name);
    auto pub = ParsePublic(ReadBytes(q.ak_tpmt));
    ASSERT_TRUE(pub.ok()) << pub.status().ToString();
    EXPECT_EQ(pub->type, TPM2_ALG_RSA);
    EXPECT_TRUE(CheckAttestationKeyAttributes(*pub).ok());
    auto key = PublicToEvp(*pub);
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    EXPECT_EQ(*PublicKeyToSpkiDer(key->get()), *PublicKeyToSpkiDer(LoadPemAk(q).get()));
    // Marshalling gives back the file byte for byte.
    EXPECT_EQ(*MarshalPublic(*pub), ReadBytes(q.ak_tpmt));
    EXPECT_TRUE(Verify(key->get(), ReadBytes(q.quote), ReadBytes(q.signature), ReadPcrs(q),
                       *HexDecode(q.extra_data_hex))
                    .ok());
  }
}

// The Name as the TPM defines it: nameAlg || SHA-256(TPMT_PUBLIC). Expected value computed
// with Python: "000b" + hashlib.sha256(open("ak_pub.tpmt_public","rb").read()).hexdigest().
TEST_F(RealQuoteTest, PublicNameOfTheGceAk) {
  auto pub = ParsePublic(ReadBytes("tpm-gce-cos85-nonce9009/ak_pub.tpmt_public"));
  ASSERT_TRUE(pub.ok());
  EXPECT_EQ(HexEncode(*PublicName(*pub)),
            "000bf175bdb57297b2b289973f819863d6c9d09c236725676914f4248c9a2404c2a4");
}

TEST_F(RealQuoteTest, Tpm2bPublicIsAcceptedTooButTrailingBytesAreNot) {
  Bytes tpmt = ReadBytes("tpm-gce-cos85-nonce9009/ak_pub.tpmt_public");
  Bytes tpm2b = {static_cast<uint8_t>(tpmt.size() >> 8), static_cast<uint8_t>(tpmt.size())};
  tpm2b.insert(tpm2b.end(), tpmt.begin(), tpmt.end());
  auto a = ParsePublic(tpmt), b = ParsePublic(tpm2b);
  ASSERT_TRUE(a.ok() && b.ok()) << b.status().ToString();
  EXPECT_EQ(*MarshalPublic(*a), *MarshalPublic(*b));
  Bytes trailing = tpmt;
  trailing.push_back(0);
  EXPECT_EQ(ParsePublic(trailing).status().ToString(),
            "INVALID_ARGUMENT: malformed TPMT_PUBLIC: 1 trailing bytes");
  Bytes truncated(tpmt.begin(), tpmt.end() - 10);
  EXPECT_EQ(ParsePublic(truncated).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(ParsePublic(Bytes{}).status().code(), Code::kInvalidArgument);
}

TEST_F(RealQuoteTest, EcdsaSignaturesEqualTheirDerForms) {
  for (const char* platform : {"tdx", "amd"}) {
    SCOPED_TRACE(platform);
    const std::string base = std::string("tpm-gcp-ecc-ak-vaportpm/") + platform;
    auto sig = ParseSignature(ReadBytes(base + "_quote.tpmt_signature"));
    ASSERT_TRUE(sig.ok());
    ASSERT_EQ(sig->sigAlg, TPM2_ALG_ECDSA);
    EXPECT_EQ(sig->signature.ecdsa.hash, TPM2_ALG_SHA256);
    const auto& e = sig->signature.ecdsa;
    ECDSA_SIG* es = ECDSA_SIG_new();
    ECDSA_SIG_set0(es, BN_bin2bn(e.signatureR.buffer, e.signatureR.size, nullptr),
                   BN_bin2bn(e.signatureS.buffer, e.signatureS.size, nullptr));
    unsigned char* der = nullptr;
    int n = i2d_ECDSA_SIG(es, &der);
    ECDSA_SIG_free(es);
    ASSERT_GT(n, 0);
    EXPECT_EQ(Bytes(der, der + n), ReadBytes(base + "_quote_sig_ecdsa_der.bin"));
    OPENSSL_free(der);
    // And the marshalled form is byte for byte what was parsed.
    EXPECT_EQ(*MarshalSignature(*sig), ReadBytes(base + "_quote.tpmt_signature"));
  }
}

// ---- tampering, as the README lists it ----

TEST_F(RealQuoteTest, AnyFlippedQuoteByteBreaksTheSignature) {
  for (const RealQuote& q : testdata::RealQuotes()) {
    SCOPED_TRACE(q.name);
    EvpPkeyPtr ak = LoadPemAk(q);
    const Bytes quote = ReadBytes(q.quote);
    const Bytes sig = ReadBytes(q.signature);
    const PcrValues pcrs = ReadPcrs(q);
    // Byte 5 (the README's keylime tamper: inside the type), the first byte of
    // qualifiedSigner, and the last byte (pcrDigest).
    for (size_t offset : {size_t{5}, size_t{8}, quote.size() - 1}) {
      Bytes tampered = quote;
      tampered[offset] ^= 0x01;
      auto v = Verify(ak.get(), tampered, sig, pcrs, std::nullopt);
      EXPECT_EQ(v.status().ToString(),
                "PERMISSION_DENIED: the quote signature does not verify with the attestation key")
          << "offset " << offset;
    }
  }
}

TEST_F(RealQuoteTest, AFlippedSignatureByteIsRefused) {
  for (const RealQuote& q : testdata::RealQuotes()) {
    SCOPED_TRACE(q.name);
    Bytes sig = ReadBytes(q.signature);
    sig[sig.size() - 1] ^= 0x80;
    auto v = Verify(LoadPemAk(q).get(), ReadBytes(q.quote), sig, ReadPcrs(q), std::nullopt);
    EXPECT_EQ(v.status().ToString(),
              "PERMISSION_DENIED: the quote signature does not verify with the attestation key");
  }
}

TEST_F(RealQuoteTest, AChangedNonceIsRefused) {
  for (const RealQuote& q : testdata::RealQuotes()) {
    SCOPED_TRACE(q.name);
    Bytes nonce = *HexDecode(q.extra_data_hex);
    if (nonce.empty()) {
      nonce = {0x90, 0x09};  // the no-nonce quotes, when a nonce is required
    } else {
      nonce.back() ^= 0x01;
    }
    auto v =
        Verify(LoadPemAk(q).get(), ReadBytes(q.quote), ReadBytes(q.signature), ReadPcrs(q), nonce);
    EXPECT_EQ(v.status().ToString(),
              "PERMISSION_DENIED: the quote's extraData (" +
                  (q.extra_data_hex.empty() ? std::string("empty") : q.extra_data_hex) +
                  ") is not the expected nonce (" + HexEncode(nonce) + ")");
  }
}

TEST_F(RealQuoteTest, ANonceQuoteIsRefusedWhenAnEmptyOneIsExpected) {
  const RealQuote q = testdata::RealQuotes().front();
  ASSERT_EQ(q.name, "gce-nonce9009-sha1");
  auto v =
      Verify(LoadPemAk(q).get(), ReadBytes(q.quote), ReadBytes(q.signature), ReadPcrs(q), Bytes{});
  EXPECT_EQ(v.status().ToString(),
            "PERMISSION_DENIED: the quote's extraData (9009) is not the expected nonce (empty)");
}

TEST_F(RealQuoteTest, AChangedPcrIsRefusedEvenPcrsNotInTheLog) {
  for (const RealQuote& q : testdata::RealQuotes()) {
    SCOPED_TRACE(q.name);
    const PcrValues pcrs = ReadPcrs(q);
    for (const auto& [index, value] : pcrs.at(q.bank)) {
      PcrValues changed = pcrs;
      changed[q.bank][index][0] ^= 0x01;
      auto v = Verify(LoadPemAk(q).get(), ReadBytes(q.quote), ReadBytes(q.signature), changed,
                      std::nullopt);
      EXPECT_EQ(v.status().ToString(),
                "PERMISSION_DENIED: the quote's pcrDigest does not match the PCR values given")
          << "PCR " << index;
    }
  }
}

TEST_F(RealQuoteTest, AMissingPcrIsAFailedCheckNamingIt) {
  for (const RealQuote& q : testdata::RealQuotes()) {
    SCOPED_TRACE(q.name);
    PcrValues pcrs = ReadPcrs(q);
    const uint32_t last = pcrs.at(q.bank).rbegin()->first;
    pcrs[q.bank].erase(last);
    auto v =
        Verify(LoadPemAk(q).get(), ReadBytes(q.quote), ReadBytes(q.signature), pcrs, std::nullopt);
    EXPECT_EQ(v.status().ToString(), "PERMISSION_DENIED: PCR " + PcrName(q.bank, last) +
                                         " is selected in the quote but no value was given for it");
  }
}

TEST_F(RealQuoteTest, PcrsOfAnotherBankDoNotStandInForTheQuotedOnes) {
  RealQuote sha256 = testdata::RealQuotes()[1];
  ASSERT_EQ(sha256.name, "gce-nonce9009-sha256");
  RealQuote sha1 = testdata::RealQuotes()[0];
  auto v = Verify(LoadPemAk(sha256).get(), ReadBytes(sha256.quote), ReadBytes(sha256.signature),
                  ReadPcrs(sha1), std::nullopt);
  EXPECT_EQ(v.status().ToString(),
            "PERMISSION_DENIED: PCR sha256:0 is selected in the quote but no value was given for "
            "it");
}

TEST_F(RealQuoteTest, AWronglySizedPcrValueIsMalformed) {
  const RealQuote q = testdata::RealQuotes()[1];
  PcrValues pcrs = ReadPcrs(q);
  pcrs[q.bank][3].pop_back();
  auto v =
      Verify(LoadPemAk(q).get(), ReadBytes(q.quote), ReadBytes(q.signature), pcrs, std::nullopt);
  EXPECT_EQ(v.status().ToString(), "INVALID_ARGUMENT: PCR sha256:3 value has 31 bytes, not 32");
}

TEST_F(RealQuoteTest, AnotherAkIsRefused) {
  auto quotes = testdata::RealQuotes();
  auto find = [&](const std::string& name) {
    for (const auto& q : quotes) {
      if (q.name == name) return q;
    }
    ADD_FAILURE() << name;
    return quotes.front();
  };
  RealQuote tdx = find("gcp-ecdsa-tdx"), amd = find("gcp-ecdsa-amd"),
            keylime = find("keylime-swtpm"), gce = find("gce-nonce9009-sha256");
  // Same key type, other key.
  EXPECT_EQ(Verify(LoadPemAk(tdx).get(), ReadBytes(amd.quote), ReadBytes(amd.signature),
                   ReadPcrs(amd), std::nullopt)
                .status()
                .ToString(),
            "PERMISSION_DENIED: the quote signature does not verify with the attestation key");
  EXPECT_EQ(Verify(LoadPemAk(keylime).get(), ReadBytes(gce.quote), ReadBytes(gce.signature),
                   ReadPcrs(gce), std::nullopt)
                .status()
                .ToString(),
            "PERMISSION_DENIED: the quote signature does not verify with the attestation key");
  // Other key type.
  EXPECT_EQ(Verify(LoadPemAk(gce).get(), ReadBytes(tdx.quote), ReadBytes(tdx.signature),
                   ReadPcrs(tdx), std::nullopt)
                .status()
                .ToString(),
            "PERMISSION_DENIED: an ECDSA signature does not fit the AK's key type");
  EXPECT_EQ(Verify(LoadPemAk(tdx).get(), ReadBytes(gce.quote), ReadBytes(gce.signature),
                   ReadPcrs(gce), std::nullopt)
                .status()
                .ToString(),
            "PERMISSION_DENIED: an RSA signature does not fit the AK's key type");
}

TEST_F(RealQuoteTest, TruncatedOrPaddedStructuresAreMalformed) {
  const RealQuote q = testdata::RealQuotes()[1];
  EvpPkeyPtr ak = LoadPemAk(q);
  const Bytes quote = ReadBytes(q.quote), sig = ReadBytes(q.signature);
  const PcrValues pcrs = ReadPcrs(q);

  Bytes short_sig(sig.begin(), sig.end() - 1);
  auto v = Verify(ak.get(), quote, short_sig, pcrs, std::nullopt);
  EXPECT_EQ(v.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(v.status().message().rfind("malformed TPMT_SIGNATURE (261 bytes): ", 0), 0u)
      << v.status().message();
  Bytes long_sig = sig;
  long_sig.push_back(0);
  EXPECT_EQ(Verify(ak.get(), quote, long_sig, pcrs, std::nullopt).status().ToString(),
            "INVALID_ARGUMENT: malformed TPMT_SIGNATURE: 1 trailing bytes");

  EXPECT_EQ(ParseAttest(Bytes(quote.begin(), quote.end() - 1)).status().code(),
            Code::kInvalidArgument);
  Bytes long_quote = quote;
  long_quote.push_back(0);
  EXPECT_EQ(ParseAttest(long_quote).status().ToString(),
            "INVALID_ARGUMENT: malformed TPMS_ATTEST: 1 trailing bytes");
  auto attest = ParseAttest(quote);
  ASSERT_TRUE(attest.ok());
  EXPECT_EQ(attest->magic, TPM2_GENERATED_VALUE);
  EXPECT_EQ(attest->type, TPM2_ST_ATTEST_QUOTE);
}

TEST(AkAttributesTest, EachMissingOrExtraAttributeIsNamed) {
  TPMT_PUBLIC pub{};
  pub.objectAttributes = testdata::kAkAttributes;
  EXPECT_TRUE(CheckAttestationKeyAttributes(pub).ok());
  const std::pair<TPMA_OBJECT, const char*> required[] = {
      {TPMA_OBJECT_FIXEDTPM, "the attestation key lacks the fixedTPM attribute"},
      {TPMA_OBJECT_FIXEDPARENT, "the attestation key lacks the fixedParent attribute"},
      {TPMA_OBJECT_SENSITIVEDATAORIGIN,
       "the attestation key lacks the sensitiveDataOrigin attribute"},
      {TPMA_OBJECT_RESTRICTED, "the attestation key lacks the restricted attribute"},
      {TPMA_OBJECT_SIGN_ENCRYPT, "the attestation key lacks the sign attribute"}};
  for (const auto& [bit, message] : required) {
    pub.objectAttributes = testdata::kAkAttributes & ~bit;
    EXPECT_EQ(CheckAttestationKeyAttributes(pub).ToString(),
              std::string("PERMISSION_DENIED: ") + message);
  }
  pub.objectAttributes = testdata::kAkAttributes | TPMA_OBJECT_DECRYPT;
  EXPECT_EQ(CheckAttestationKeyAttributes(pub).ToString(),
            "PERMISSION_DENIED: the attestation key has the decrypt attribute");
}

TEST(TpmAlgTest, DigestMappings) {
  for (DigestAlg alg :
       {DigestAlg::kSha1, DigestAlg::kSha256, DigestAlg::kSha384, DigestAlg::kSha512}) {
    EXPECT_EQ(*DigestFromTpmAlg(TpmAlgFromDigest(alg)), alg);
  }
  EXPECT_EQ(TpmAlgFromDigest(DigestAlg::kSha256), TPM2_ALG_SHA256);
  EXPECT_EQ(DigestFromTpmAlg(TPM2_ALG_SM3_256).status().ToString(),
            "INVALID_ARGUMENT: unsupported TPM hash algorithm 0x0012");
  EXPECT_EQ(PcrName(DigestAlg::kSha384, 23), "sha384:23");
}

TEST(TssErrorTest, TransientCodesRetry) {
  EXPECT_EQ(TssError("Esys_Quote", TPM2_RC_RETRY).code(), Code::kUnavailable);
  EXPECT_EQ(TssError("Esys_Quote", TPM2_RC_TESTING).code(), Code::kUnavailable);
  EXPECT_EQ(TssError("Esys_Quote", 0x000a000a).code(), Code::kUnavailable);  // TCTI I/O
  Status st = TssError("Esys_Quote", TPM2_RC_HASH);
  EXPECT_EQ(st.code(), Code::kInternal);
  EXPECT_EQ(st.message().rfind("Esys_Quote: ", 0), 0u);
  EXPECT_NE(st.message().find("(0x83)"), std::string::npos) << st.message();
}

// ---- synthetic quotes: signed by a key the test holds ----

class SyntheticQuoteTest : public ::testing::Test {
 protected:
  // RSA key generation is slow; one pair of keys serves the whole suite.
  static void SetUpTestSuite() {
    shared_rsa_ = GenerateRsaKey(2048).value().release();
    shared_ec_ = GenerateP256Key().value().release();
  }
  static void TearDownTestSuite() {
    EVP_PKEY_free(shared_rsa_);
    EVP_PKEY_free(shared_ec_);
  }
  void SetUp() override {
    EVP_PKEY_up_ref(shared_rsa_);
    EVP_PKEY_up_ref(shared_ec_);
    rsa_.reset(shared_rsa_);
    ec_.reset(shared_ec_);
  }
  static inline EVP_PKEY* shared_rsa_ = nullptr;
  static inline EVP_PKEY* shared_ec_ = nullptr;
  Result<VerifiedQuote> Check(const testdata::SyntheticQuoteSpec& spec, EVP_PKEY* key,
                              std::optional<Bytes> nonce = std::nullopt) {
    auto q = testdata::MakeSyntheticQuote(spec, key);
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    if (!q.ok()) return q.status();
    return Verify(key, q->attest, q->signature, q->pcrs, nonce);
  }
  EvpPkeyPtr rsa_, ec_;
};

TEST_F(SyntheticQuoteTest, EverySchemeAndHashVerifies) {
  struct Case {
    uint16_t sig_alg;
    DigestAlg hash;
    bool ec;
  } cases[] = {
      {TPM2_ALG_RSASSA, DigestAlg::kSha1, false},   {TPM2_ALG_RSASSA, DigestAlg::kSha256, false},
      {TPM2_ALG_RSASSA, DigestAlg::kSha384, false}, {TPM2_ALG_RSAPSS, DigestAlg::kSha256, false},
      {TPM2_ALG_RSAPSS, DigestAlg::kSha384, false}, {TPM2_ALG_ECDSA, DigestAlg::kSha256, true},
      {TPM2_ALG_ECDSA, DigestAlg::kSha384, true},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::to_string(c.sig_alg) + "/" + std::string(DigestName(c.hash)));
    testdata::SyntheticQuoteSpec spec{
        .extra_data = Bytes(32, 0xab),
        .selection = {{DigestAlg::kSha1, {0, 7}}, {DigestAlg::kSha256, {4, 7, 14}}},
        .sig_alg = c.sig_alg,
        .sig_hash = c.hash};
    auto v = Check(spec, c.ec ? ec_.get() : rsa_.get(), Bytes(32, 0xab));
    ASSERT_TRUE(v.ok()) << v.status().ToString();
    EXPECT_EQ(v->signature_hash, c.hash);
    EXPECT_EQ(v->selection, (std::vector<QuotedPcr>{{DigestAlg::kSha1, 0},
                                                    {DigestAlg::kSha1, 7},
                                                    {DigestAlg::kSha256, 4},
                                                    {DigestAlg::kSha256, 7},
                                                    {DigestAlg::kSha256, 14}}));
  }
}

TEST_F(SyntheticQuoteTest, WrongMagicIsRefusedAfterTheSignature) {
  auto v = Check({.magic = 0x12345678}, rsa_.get());
  EXPECT_EQ(v.status().ToString(),
            "PERMISSION_DENIED: the quote's magic is not TPM_GENERATED_VALUE: it was not made by "
            "a TPM");
}

TEST_F(SyntheticQuoteTest, ASignedAttestationThatIsNotAQuoteIsRefused) {
  auto v = Check({.type = TPM2_ST_ATTEST_CERTIFY}, rsa_.get());
  EXPECT_EQ(v.status().ToString(), "PERMISSION_DENIED: the attestation is not a quote");
}

TEST_F(SyntheticQuoteTest, AnEmptySelectionIsRefused) {
  auto v = Check({.selection = {}}, rsa_.get());
  EXPECT_EQ(v.status().ToString(), "PERMISSION_DENIED: the quote selects no PCRs");
}

TEST_F(SyntheticQuoteTest, ChecksRunInOrderSignatureFirst) {
  // Wrong magic *and* a tampered byte: the signature is what fails, since nothing inside
  // the bytes is trusted before it is checked.
  auto q = testdata::MakeSyntheticQuote({.magic = 1}, rsa_.get());
  ASSERT_TRUE(q.ok());
  q->attest.back() ^= 1;
  EXPECT_EQ(Verify(rsa_.get(), q->attest, q->signature, q->pcrs, std::nullopt).status().message(),
            "the quote signature does not verify with the attestation key");
  // A wrong nonce and a wrong PCR: extraData is checked before pcrDigest.
  auto good = testdata::MakeSyntheticQuote({.extra_data = {1, 2}}, rsa_.get());
  good->pcrs[DigestAlg::kSha256][7][0] ^= 1;
  EXPECT_EQ(
      Verify(rsa_.get(), good->attest, good->signature, good->pcrs, Bytes{1, 3}).status().message(),
      "the quote's extraData (0102) is not the expected nonce (0103)");
}

TEST_F(SyntheticQuoteTest, UnsupportedSignatureAlgorithmIsMalformed) {
  auto q = testdata::MakeSyntheticQuote({}, rsa_.get());
  ASSERT_TRUE(q.ok());
  TPMT_SIGNATURE hmac{};
  hmac.sigAlg = TPM2_ALG_HMAC;
  hmac.signature.hmac.hashAlg = TPM2_ALG_SHA256;
  Bytes sig = *MarshalSignature(hmac);
  EXPECT_EQ(Verify(rsa_.get(), q->attest, sig, q->pcrs, std::nullopt).status().ToString(),
            "INVALID_ARGUMENT: unsupported signature algorithm 5");
}

TEST_F(SyntheticQuoteTest, EccTpmtPublicConvertsToTheSameKey) {
  for (EVP_PKEY* key : {ec_.get(), rsa_.get()}) {
    auto tpmt = testdata::MakeTpmtPublic(key);
    ASSERT_TRUE(tpmt.ok()) << tpmt.status().ToString();
    auto pub = ParsePublic(*tpmt);
    ASSERT_TRUE(pub.ok()) << pub.status().ToString();
    auto evp = PublicToEvp(*pub);
    ASSERT_TRUE(evp.ok()) << evp.status().ToString();
    EXPECT_EQ(EVP_PKEY_eq(evp->get(), key), 1);
  }
}

TEST_F(SyntheticQuoteTest, EccPointOffItsCurveIsMalformed) {
  for (auto [curve, field] : {std::pair{TPM2_ECC_NIST_P256, 32}, std::pair{TPM2_ECC_NIST_P384, 48},
                              std::pair{TPM2_ECC_NIST_P521, 66}}) {
    TPMT_PUBLIC pub{};
    pub.type = TPM2_ALG_ECC;
    pub.parameters.eccDetail.curveID = curve;
    pub.unique.ecc.x.size = static_cast<UINT16>(field);
    pub.unique.ecc.y.size = static_cast<UINT16>(field);
    pub.unique.ecc.x.buffer[field - 1] = 1;  // (1, 1): on none of them
    pub.unique.ecc.y.buffer[field - 1] = 1;
    auto key = PublicToEvp(pub);
    EXPECT_EQ(key.status().code(), Code::kInvalidArgument) << curve;
    EXPECT_EQ(key.status().message().rfind("building an EC public key from its parameters", 0), 0u)
        << key.status().ToString();
  }
  // Each curve's key is its own.
  TPMT_PUBLIC p256 = *ParsePublic(*testdata::MakeTpmtPublic(ec_.get()));
  ASSERT_EQ(p256.parameters.eccDetail.curveID, TPM2_ECC_NIST_P256);
  EXPECT_EQ(EVP_PKEY_get_bits(PublicToEvp(p256)->get()), 256);
}

TEST_F(SyntheticQuoteTest, UnsupportedKeysAreMalformed) {
  TPMT_PUBLIC pub{};
  pub.type = TPM2_ALG_KEYEDHASH;
  EXPECT_EQ(PublicToEvp(pub).status().ToString(), "INVALID_ARGUMENT: unsupported TPM key type 8");
  pub.type = TPM2_ALG_ECC;
  pub.parameters.eccDetail.curveID = TPM2_ECC_BN_P256;
  EXPECT_EQ(PublicToEvp(pub).status().ToString(), "INVALID_ARGUMENT: unsupported ECC curve 16");
  pub.type = TPM2_ALG_RSA;
  EXPECT_EQ(PublicToEvp(pub).status().ToString(),
            "INVALID_ARGUMENT: TPMT_PUBLIC has an empty RSA modulus");
}

}  // namespace
}  // namespace berth::tpm
