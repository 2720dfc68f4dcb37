// `berthctl verify tpm-quote` as a subprocess: every real quote in the testdata is "valid",
// every tamper its README lists exits 1 with the line naming the failed check, and
// unreadable or malformed input exits 2 naming the file.
#include <gtest/gtest.h>

#include <sstream>

#include "common/bytes.h"
#include "common/tpm/eventlog.h"
#include "tests/cli/berthctl_run.h"
#include "tests/testing/eventlog_builder.h"
#include "tests/testing/testing.h"
#include "tests/unit/common/tpm/real_quotes.h"
#include "tests/unit/common/tpm/synthetic_quote.h"

namespace berth::cli {
namespace {

using testdata::RealQuote;
using testing::BerthctlRun;
using testing::MustRead;
using testing::MustWrite;
using testing::RunBerthctl;
using testing::TempDir;
using testing::Testdata;

constexpr char kBadSignature[] =
    "invalid: the quote signature does not verify with the attestation key\n";

std::vector<std::string> Args(const std::string& ak, const std::string& quote,
                              const std::string& sig, const std::string& pcrs) {
  return {"verify", "tpm-quote", "--ak", ak, "--quote", quote, "--signature", sig, "--pcrs", pcrs};
}

std::vector<std::string> Args(const RealQuote& q) {
  return Args(Testdata(q.ak_pem), Testdata(q.quote), Testdata(q.signature), Testdata(q.pcrs));
}

std::vector<std::string> With(std::vector<std::string> args,
                              std::initializer_list<std::string> more) {
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

void ExpectValid(const BerthctlRun& r) {
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "valid\n");
  EXPECT_EQ(r.err, "");
}

void ExpectFailedCheck(const BerthctlRun& r, const std::string& line) {
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, line);
}

void ExpectBadInput(const BerthctlRun& r, const std::string& line) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err, line);
}

// Like ExpectBadInput for messages that end in a library's wording (OpenSSL, tpm2-tss),
// which the test does not pin: the part berthctl writes must match exactly.
void ExpectBadInputStartingWith(const BerthctlRun& r, const std::string& prefix) {
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind(prefix, 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
}

class RealQuoteCliTest : public ::testing::Test {
 protected:
  void SetUp() override { BERTH_REQUIRE_TESTDATA(); }

  // A copy of a testdata file with byte `offset` XORed with `mask`, in the temp dir.
  std::string Tampered(const std::string& rel, size_t offset, uint8_t mask) {
    std::string data = MustRead(Testdata(rel));
    data[offset < data.size() ? offset : data.size() - 1] ^= static_cast<char>(mask);
    std::string path = dir_.Join("tampered-" + std::to_string(++files_));
    MustWrite(path, data);
    return path;
  }
  std::string Write(const std::string& content) {
    std::string path = dir_.Join("file-" + std::to_string(++files_));
    MustWrite(path, content);
    return path;
  }
  static RealQuote Find(const std::string& name) {
    for (const RealQuote& q : testdata::RealQuotes()) {
      if (q.name == name) return q;
    }
    ADD_FAILURE() << "no real quote " << name;
    return testdata::RealQuotes().front();
  }

  TempDir dir_;
  int files_ = 0;
};

TEST_F(RealQuoteCliTest, EveryValidQuoteIsValidWithItsNonceAndWithoutOne) {
  for (const RealQuote& q : testdata::RealQuotes()) {
    SCOPED_TRACE(q.name);
    ExpectValid(RunBerthctl(With(Args(q), {"--nonce", q.extra_data_hex})));
    ExpectValid(RunBerthctl(Args(q)));  // no --nonce: any extraData
    if (!q.ak_tpmt.empty()) {
      ExpectValid(RunBerthctl(With(
          Args(Testdata(q.ak_tpmt), Testdata(q.quote), Testdata(q.signature), Testdata(q.pcrs)),
          {"--nonce", q.extra_data_hex})));
    }
  }
}

TEST_F(RealQuoteCliTest, TextNoncesAreGivenAsTextOrAsTheirHex) {
  RealQuote q = Find("keylime-swtpm");
  ExpectValid(RunBerthctl(With(Args(q), {"--nonce-text", "Ai5M5SjYjnkyv4P7itH1"})));
  ExpectValid(RunBerthctl(With(Args(q), {"--nonce", "4169354d35536a596a6e6b797634503769744831"})));
  ExpectValid(
      RunBerthctl(With(Args(q), {"--nonce", "0x4169354D35536A596A6E6B797634503769744831"})));
  ExpectFailedCheck(
      RunBerthctl(With(Args(q), {"--nonce-text", "Ai5M5SjYjnkyv4P7itH2"})),
      "invalid: the quote's extraData (4169354d35536a596a6e6b797634503769744831) is not the "
      "expected nonce (4169354d35536a596a6e6b797634503769744832)\n");
  // The text nonce is not hex: --nonce says so and points at --nonce-text.
  ExpectBadInput(RunBerthctl(With(Args(q), {"--nonce", "Ai5M5SjYjnkyv4P7itH1"})),
                 "--nonce \"Ai5M5SjYjnkyv4P7itH1\" is not hex (invalid hex character at offset "
                 "0); give the extraData in hex, or a text nonce with --nonce-text\n");
}

TEST_F(RealQuoteCliTest, Gce9009IsTwoBytes) {
  RealQuote q = Find("gce-nonce9009-sha256");
  ExpectValid(RunBerthctl(With(Args(q), {"--nonce", "9009"})));
  // "9009" as text would be four ASCII bytes: not what the quote carries.
  ExpectFailedCheck(RunBerthctl(With(Args(q), {"--nonce-text", "9009"})),
                    "invalid: the quote's extraData (9009) is not the expected nonce (39303039)\n");
  ExpectFailedCheck(RunBerthctl(With(Args(q), {"--nonce", ""})),
                    "invalid: the quote's extraData (9009) is not the expected nonce (empty)\n");
}

TEST_F(RealQuoteCliTest, ANoNonceQuoteIsRefusedWhenANonceIsRequired) {
  for (const char* bank : {"sha1", "sha256", "sha384"}) {
    RealQuote q = Find(std::string("gce-no-nonce-") + bank);
    ExpectValid(RunBerthctl(With(Args(q), {"--nonce", ""})));
    ExpectFailedCheck(RunBerthctl(With(Args(q), {"--nonce", "9009"})),
                      "invalid: the quote's extraData (empty) is not the expected nonce (9009)\n");
  }
}

TEST_F(RealQuoteCliTest, AChangedNonceIsRefused) {
  for (const RealQuote& q : testdata::RealQuotes()) {
    if (q.extra_data_hex.empty()) continue;
    SCOPED_TRACE(q.name);
    std::string changed = q.extra_data_hex;
    changed.back() = changed.back() == '0' ? '1' : '0';
    ExpectFailedCheck(RunBerthctl(With(Args(q), {"--nonce", changed})),
                      "invalid: the quote's extraData (" + q.extra_data_hex +
                          ") is not the expected nonce (" + changed + ")\n");
  }
}

TEST_F(RealQuoteCliTest, AFlippedQuoteOrSignatureByteIsRefused) {
  for (const RealQuote& q : testdata::RealQuotes()) {
    SCOPED_TRACE(q.name);
    // A byte of qualifiedSigner, and the last byte (inside pcrDigest): still a TPMS_ATTEST,
    // but not the one the TPM signed.
    for (size_t offset : {size_t{8}, size_t{1000}}) {
      ExpectFailedCheck(RunBerthctl(Args(Testdata(q.ak_pem), Tampered(q.quote, offset, 0x01),
                                         Testdata(q.signature), Testdata(q.pcrs))),
                        kBadSignature);
    }
    // Byte 5 (the README's keylime tamper) is in the type: the attestation no longer parses
    // as one, which is malformed input; berthctl also says the signature fails over it.
    const std::string type_flipped = Tampered(q.quote, 5, 0x01);
    ExpectBadInput(RunBerthctl(Args(Testdata(q.ak_pem), type_flipped, Testdata(q.signature),
                                    Testdata(q.pcrs))),
                   "--quote " + type_flipped +
                       ": malformed TPMS_ATTEST: 11 trailing bytes (and the signature does not "
                       "verify: these are not the bytes the TPM signed)\n");
    ExpectFailedCheck(RunBerthctl(Args(Testdata(q.ak_pem), Testdata(q.quote),
                                       Tampered(q.signature, 1000, 0x80), Testdata(q.pcrs))),
                      kBadSignature);
  }
}

TEST_F(RealQuoteCliTest, AChangedPcrIsRefused) {
  for (const RealQuote& q : testdata::RealQuotes()) {
    SCOPED_TRACE(q.name);
    // Change the first value's first hex digit.
    std::string pcrs = MustRead(Testdata(q.pcrs));
    size_t value = pcrs.find(' ') + 1;
    pcrs[value] = pcrs[value] == '0' ? '1' : '0';
    ExpectFailedCheck(RunBerthctl(Args(Testdata(q.ak_pem), Testdata(q.quote), Testdata(q.signature),
                                       Write(pcrs))),
                      "invalid: the quote's pcrDigest does not match the PCR values given\n");
  }
}

TEST_F(RealQuoteCliTest, AMissingPcrIsNamed) {
  RealQuote keylime = Find("keylime-swtpm");
  ExpectFailedCheck(
      RunBerthctl(Args(Testdata(keylime.ak_pem), Testdata(keylime.quote),
                       Testdata(keylime.signature), Write("# nothing but a comment\n"))),
      "invalid: PCR sha256:16 is selected in the quote but no value was given for it\n");
  RealQuote gce = Find("gce-nonce9009-sha384");
  std::string pcrs = MustRead(Testdata(gce.pcrs));
  size_t line7 = pcrs.find("\n7 ") + 1;
  pcrs.erase(line7, pcrs.find('\n', line7) + 1 - line7);
  ExpectFailedCheck(
      RunBerthctl(
          Args(Testdata(gce.ak_pem), Testdata(gce.quote), Testdata(gce.signature), Write(pcrs))),
      "invalid: PCR sha384:7 is selected in the quote but no value was given for it\n");
}

TEST_F(RealQuoteCliTest, AnotherAkIsRefused) {
  RealQuote tdx = Find("gcp-ecdsa-tdx"), amd = Find("gcp-ecdsa-amd"),
            gce = Find("gce-nonce9009-sha1");
  ExpectFailedCheck(RunBerthctl(Args(Testdata(tdx.ak_pem), Testdata(amd.quote),
                                     Testdata(amd.signature), Testdata(amd.pcrs))),
                    kBadSignature);
  ExpectFailedCheck(RunBerthctl(Args(Testdata(gce.ak_pem), Testdata(tdx.quote),
                                     Testdata(tdx.signature), Testdata(tdx.pcrs))),
                    "invalid: an ECDSA signature does not fit the AK's key type\n");
}

TEST_F(RealQuoteCliTest, PcrFileAnnotationsAndBankPrefixesAreAccepted) {
  RealQuote q = Find("gce-nonce9009-sha1");
  std::istringstream in(MustRead(Testdata(q.pcrs)));
  std::string annotated = "# GCE COS 85, sha1 bank\n\n";
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    // Alternate the three accepted forms, with trailing comments and 0x prefixes.
    size_t space = line.find(' ');
    std::string index = line.substr(0, space), hex = line.substr(space + 1);
    switch (n++ % 3) {
      case 0:
        annotated += line + "   # plain\n";
        break;
      case 1:
        annotated += "sha1 " + index + " 0x" + hex + "\n";
        break;
      case 2:
        annotated += "  sha1:" + index + "\t" + hex + "\n";
        break;
    }
  }
  // A value for a bank the quote does not select is ignored.
  annotated += "sha256 0 " + std::string(64, 'a') + "\n";
  ExpectValid(RunBerthctl(
      With(Args(Testdata(q.ak_pem), Testdata(q.quote), Testdata(q.signature), Write(annotated)),
           {"--nonce", "9009"})));
}

TEST_F(RealQuoteCliTest, PcrValuesOfTheWrongBankAreMalformed) {
  RealQuote sha256 = Find("gce-nonce9009-sha256"), sha1 = Find("gce-nonce9009-sha1");
  ExpectBadInput(RunBerthctl(Args(Testdata(sha256.ak_pem), Testdata(sha256.quote),
                                  Testdata(sha256.signature), Testdata(sha1.pcrs))),
                 "--pcrs " + Testdata(sha1.pcrs) +
                     ": line 1: PCR sha256:0 value has 20 bytes, "
                     "not 32\n");
}

TEST_F(RealQuoteCliTest, MalformedArtefactsExitTwoNamingTheFile) {
  RealQuote q = Find("gce-nonce9009-sha256");
  std::string quote = MustRead(Testdata(q.quote));
  std::string truncated = Write(quote.substr(0, quote.size() - 3));
  ExpectBadInputStartingWith(
      RunBerthctl(Args(Testdata(q.ak_pem), truncated, Testdata(q.signature), Testdata(q.pcrs))),
      "--quote " + truncated + ": malformed TPMS_ATTEST (112 bytes): ");
  std::string padded = Write(quote + std::string(1, '\0'));
  ExpectBadInput(
      RunBerthctl(Args(Testdata(q.ak_pem), padded, Testdata(q.signature), Testdata(q.pcrs))),
      "--quote " + padded +
          ": malformed TPMS_ATTEST: 1 trailing bytes (and the signature does not verify: these "
          "are not the bytes the TPM signed)\n");
  // The DER form of an ECDSA signature is not a TPMT_SIGNATURE.
  RealQuote tdx = Find("gcp-ecdsa-tdx");
  const std::string der = Testdata("tpm-gcp-ecc-ak-vaportpm/tdx_quote_sig_ecdsa_der.bin");
  ExpectBadInputStartingWith(
      RunBerthctl(Args(Testdata(tdx.ak_pem), Testdata(tdx.quote), der, Testdata(tdx.pcrs))),
      "--signature " + der + ": malformed TPMT_SIGNATURE");
  // A certificate is not accepted as the AK, and berthctl says how to get its key.
  const std::string chain = Testdata("tpm-gcp-ecc-ak-vaportpm/tdx_ak_cert_chain.pem");
  ExpectBadInput(
      RunBerthctl(Args(chain, Testdata(tdx.quote), Testdata(tdx.signature), Testdata(tdx.pcrs))),
      "--ak " + chain + ": is a certificate; give its public key (openssl x509 -in " + chain +
          " -pubkey -noout)\n");
  // The AK certificate in DER is neither PEM nor a TPMT_PUBLIC.
  const std::string ak_der = Testdata("tpm-gce-cos85-nonce9009/ak_cert.der");
  ExpectBadInputStartingWith(
      RunBerthctl(Args(ak_der, Testdata(q.quote), Testdata(q.signature), Testdata(q.pcrs))),
      "--ak " + ak_der + ": neither a PEM public key nor a TPMT_PUBLIC: malformed TPMT_PUBLIC");
}

// ---- without the testdata: quotes signed by keys the test makes ----

class SyntheticQuoteCliTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { key_ = GenerateP256Key().value().release(); }
  static void TearDownTestSuite() { EVP_PKEY_free(key_); }

  // Writes the quote made from `spec`, its signature, the AK PEM and "INDEX HEX" PCR lines
  // (bank-qualified when `qualified`); returns the verify arguments.
  std::vector<std::string> Files(testdata::SyntheticQuoteSpec spec, bool qualified = false) {
    spec.sig_alg = TPM2_ALG_ECDSA;
    auto q = testdata::MakeSyntheticQuote(spec, key_);
    EXPECT_TRUE(q.ok()) << q.status().ToString();
    quote_ = Write("quote", ToString(q->attest));
    signature_ = Write("sig", ToString(q->signature));
    ak_ = Write("ak.pem", *PublicKeyToPem(key_));
    std::string pcrs;
    for (const auto& [bank, values] : q->pcrs) {
      for (const auto& [index, value] : values) {
        if (qualified) pcrs += std::string(DigestName(bank)) + " ";
        pcrs += std::to_string(index) + " " + HexEncode(value) + "\n";
      }
    }
    pcrs_ = Write("pcrs", pcrs);
    return Args(ak_, quote_, signature_, pcrs_);
  }
  std::string Write(const std::string& name, const std::string& content) {
    MustWrite(dir_.Join(name), content);
    return dir_.Join(name);
  }

  static inline EVP_PKEY* key_ = nullptr;
  TempDir dir_;
  std::string quote_, signature_, ak_, pcrs_;
};

TEST_F(SyntheticQuoteCliTest, ASignedQuoteIsValid) {
  ExpectValid(RunBerthctl(With(Files({.extra_data = {0xde, 0xad}}), {"--nonce", "DEAD"})));
}

TEST_F(SyntheticQuoteCliTest, WrongMagicOrTypeIsAFailedCheck) {
  ExpectFailedCheck(RunBerthctl(Files({.magic = 0xff544348})),
                    "invalid: the quote's magic is not TPM_GENERATED_VALUE: it was not made by a "
                    "TPM\n");
  ExpectFailedCheck(RunBerthctl(Files({.type = TPM2_ST_ATTEST_CERTIFY})),
                    "invalid: the attestation is not a quote\n");
  ExpectFailedCheck(RunBerthctl(Files({.selection = {}})), "invalid: the quote selects no PCRs\n");
}

TEST_F(SyntheticQuoteCliTest, AnAkGivenAsTpmtPublicMustBeARestrictedSigningKey) {
  auto args = Files({});
  std::string good = Write("ak.tpmt", ToString(*testdata::MakeTpmtPublic(key_)));
  args[3] = good;
  ExpectValid(RunBerthctl(args));
  Bytes tpm2b_prefix = {0, static_cast<uint8_t>(MustRead(good).size())};
  args[3] = Write("ak.tpm2b", ToString(tpm2b_prefix) + MustRead(good));
  ExpectValid(RunBerthctl(args));
  args[3] = Write(
      "ak-unrestricted.tpmt",
      ToString(*testdata::MakeTpmtPublic(key_, testdata::kAkAttributes & ~TPMA_OBJECT_RESTRICTED)));
  ExpectFailedCheck(RunBerthctl(args),
                    "invalid: the attestation key lacks the restricted attribute\n");
}

TEST_F(SyntheticQuoteCliTest, SeveralBanksNeedBankQualifiedLines) {
  testdata::SyntheticQuoteSpec spec{
      .selection = {{DigestAlg::kSha1, {0, 7}}, {DigestAlg::kSha256, {0, 7, 14}}}};
  ExpectValid(RunBerthctl(Files(spec, /*qualified=*/true)));
  auto args = Files(spec, /*qualified=*/false);
  ExpectBadInput(RunBerthctl(args),
                 "--pcrs " + pcrs_ +
                     ": line 1: PCR 0 has no bank, and the quote selects PCRs in "
                     "sha1 and sha256: write \"BANK INDEX HEX\" lines (e.g. \"sha256 0 ...\")\n");
}

TEST_F(SyntheticQuoteCliTest, MalformedPcrFilesNameTheLine) {
  auto args = Files({});
  const std::string v32 = std::string(64, 'a');
  struct Case {
    std::string content, message;
  } cases[] = {
      {"0 " + v32 + "\n7 " + v32 + " extra\n",
       "line 2: expected \"INDEX HEX\" or \"BANK INDEX HEX\""},
      {"# x\n24 " + v32 + "\n", "line 2: PCR index 24 is out of range (0-23)"},
      {"seven " + v32 + "\n", "line 1: \"seven\" is not a PCR index (0-23)"},
      {"0 " + v32 + "\n0 " + v32 + "\n", "line 2: PCR sha256:0 is given twice"},
      {"0 " + v32.substr(2) + "\n", "line 1: PCR sha256:0 value has 31 bytes, not 32"},
      {"0 " + v32 + "g\n", "line 1: PCR sha256:0: hex string has odd length"},
      {"0 zz" + v32.substr(2) + "\n", "line 1: PCR sha256:0: invalid hex character at offset 0"},
      {"md5 0 " + v32 + "\n", "line 1: unknown bank \"md5\" (sha1, sha256, sha384 or sha512)"},
      {"SHA256:0 " + v32 + "\n",
       "line 1: unknown bank \"SHA256\" (sha1, sha256, sha384 or sha512)"},
  };
  for (const Case& c : cases) {
    args[9] = Write("bad-pcrs", c.content);
    ExpectBadInput(RunBerthctl(args), "--pcrs " + args[9] + ": " + c.message + "\n");
  }
}

TEST_F(SyntheticQuoteCliTest, UnreadableOrMalformedFilesExitTwoNamingThem) {
  auto args = Files({});
  const std::string missing = dir_.Join("missing");
  for (size_t flag : {3u, 5u, 7u, 9u}) {
    auto a = args;
    a[flag] = missing;
    ExpectBadInput(RunBerthctl(a),
                   a[flag - 1] + ": open(" + missing + "): No such file or directory\n");
  }
  auto a = args;
  a[5] = dir_.path();
  ExpectBadInput(RunBerthctl(a), "--quote: read(" + dir_.path() + "): Is a directory\n");
  a = args;
  a[5] = Write("huge", std::string(64 << 10 | 1, 'x'));
  ExpectBadInput(RunBerthctl(a), "--quote: " + a[5] + " is larger than 65536 bytes\n");
  a = args;
  a[5] = Write("empty", "");
  ExpectBadInputStartingWith(RunBerthctl(a),
                             "--quote " + a[5] + ": malformed TPMS_ATTEST (0 bytes): ");
  a = args;
  a[7] = Write("sig-garbage", "not a signature");
  ExpectBadInputStartingWith(RunBerthctl(a), "--signature " + a[7] + ": malformed TPMT_SIGNATURE");
  a = args;
  a[3] =
      Write("garbage.pem", "-----BEGIN PUBLIC KEY-----\nbm90IGEga2V5\n-----END PUBLIC KEY-----\n");
  ExpectBadInputStartingWith(RunBerthctl(a),
                             "--ak " + a[3] + ": not a PEM public key: parsing a PEM public key: ");
  a[3] = Write("garbage.bin", "\x01\x02\x03");
  ExpectBadInputStartingWith(RunBerthctl(a),
                             "--ak " + a[3] +
                                 ": neither a PEM public key nor a TPMT_PUBLIC: malformed "
                                 "TPMT_PUBLIC (3 bytes): ");
}

TEST_F(SyntheticQuoteCliTest, UsageErrorsExitTwo) {
  auto args = Files({});
  BerthctlRun both = RunBerthctl(With(args, {"--nonce", "00", "--nonce-text", "x"}));
  EXPECT_EQ(both.exit_code, 2);
  EXPECT_EQ(both.out, "");
  EXPECT_NE(both.err.find("--nonce excludes --nonce-text"), std::string::npos) << both.err;

  BerthctlRun missing = RunBerthctl({"verify", "tpm-quote", "--ak", ak_});
  EXPECT_EQ(missing.exit_code, 2);
  EXPECT_NE(missing.err.find("--quote is required"), std::string::npos) << missing.err;

  BerthctlRun no_command = RunBerthctl({});
  EXPECT_EQ(no_command.exit_code, 2);
  BerthctlRun unknown = RunBerthctl({"verify", "tpm-qoute"});
  EXPECT_EQ(unknown.exit_code, 2);
}

TEST(VerifyHelpTest, HelpExplainsNoncesAndPcrFiles) {
  BerthctlRun help = RunBerthctl({"verify", "tpm-quote", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("--nonce-text Ai5M5SjYjnkyv4P7itH1"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("so --nonce 9009"), std::string::npos) << help.out;
  EXPECT_NE(help.out.find("\"sha1 0 HEX\""), std::string::npos) << help.out;
}

// ---- the boot: --eventlog and --policy, on a real firmware event log ----

// A quote over the PCRs a real host's event log replays to (gdc-host.bin: SHA-256 only,
// PCRs 0-9 and 14), signed by the test's key: the log and the quote agree as on that host.
class QuotedBootCliTest : public SyntheticQuoteCliTest {
 protected:
  void SetUp() override {
    log_ = Testdata("eventlogs-gotpmtools/gdc-host.bin");
    std::istringstream expected(
        MustRead(Testdata("eventlogs-gotpmtools/gdc-host.expected_pcrs.txt")));
    for (std::string bank, index, hex; expected >> bank >> index >> hex;) {
      replayed_[DigestAlg::kSha256][static_cast<uint32_t>(std::stoul(index))] = *HexDecode(hex);
    }
    ASSERT_EQ(replayed_[DigestAlg::kSha256].size(), 11u);
  }
  // The quote's arguments for the PCRs the log measures (0-9 and 14), with `values`.
  std::vector<std::string> Quote(const tpm::PcrValues& values) {
    return Files({.selection = {{DigestAlg::kSha256, {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14}}},
                  .pcr_values = values});
  }
  std::string log_;
  tpm::PcrValues replayed_;
};

TEST_F(QuotedBootCliTest, ALogThatReplaysToTheQuotedPcrsIsValid) {
  auto r = RunBerthctl(With(Quote(replayed_), {"--eventlog", log_}));
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "valid\nboot: event log replayed to quoted sha256:0,1,2,3,4,5,6,7,8,9,14\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(QuotedBootCliTest, AQuotedPcrTheLogDoesNotReplayToIsAFailedCheck) {
  tpm::PcrValues other = replayed_;
  other[DigestAlg::kSha256][4][0] ^= 0x01;
  auto r = RunBerthctl(With(Quote(other), {"--eventlog", log_}));
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err,
            "invalid: the event log does not match the quoted PCR sha256:4: the log replays to "
            "ded8b5d91a09c328b9859d8c9db5a346f1065224616b0ba66d6c83dba2b465e8, the quote holds "
            "dfd8b5d91a09c328b9859d8c9db5a346f1065224616b0ba66d6c83dba2b465e8\n");
}

TEST_F(QuotedBootCliTest, APolicyFromTheSameLogAcceptsTheBootAndAnotherPcrPinRefusesIt) {
  const std::string policy = dir_.Join("policy.yaml");
  auto from = RunBerthctl({"policy", "from", "--eventlog", log_, "--out", policy});
  ASSERT_EQ(from.exit_code, 0) << from.err;
  auto args = With(Quote(replayed_), {"--eventlog", log_, "--policy", policy});
  auto r = RunBerthctl(args);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // What `policy from` derived: pins for the PCRs without classified events, the log's boot
  // applications, kernel, command lines and initrd, and the other events of PCRs 4, 7, 8 and 9
  // (GRUB's commands and files), all matched by the same boot.
  EXPECT_EQ(r.out,
            "valid\nboot: pcrs sha256:0,1,2,3,5,6,14 + event log replayed to quoted "
            "sha256:0,1,2,3,4,5,6,7,8,9,14 "
            "boot_applications[event 54: \\efi\\Dell\\System_Services\\System_Services.efi] "
            "boot_applications[event 71: \\EFI\\ubuntu\\shimx64.efi] "
            "boot_applications[event 76: \\EFI\\ubuntu\\grubx64.efi] "
            "kernels[event 151: /vmlinuz-6.9.0-rc7+] "
            "kernel_cmdlines[event 152: kernel_cmdline: /vmlinuz-6.9.0-rc7+ "
            "root=/dev/mapper/ubuntu--vg-ubuntu--lv ro...] "
            "initrds[event 154: /initrd.img-6.9.0-rc7+] "
            "kernel_cmdlines[event 155: Linux EFI stub: LoadOptions (command line)] "
            "initrds[event 154: /initrd.img-6.9.0-rc7+] secure_boot_variables other_events(77)\n"
            // What berthd checks from more than a quote is said, not passed over.
            "not evaluated: trust in the attestation key: the policy names none (berthd does not "
            "load such a policy)\n"
            "not evaluated: berth-agent's sealed boot (PCR 15: this boot has not released its "
            "keys yet, tpm.enrolment_configs): berthd replays the agent's events sent with the "
            "evidence, which this command is not given\n");
  EXPECT_EQ(r.err, "");

  // The same boot under a policy pinning PCR 0 to another value.
  const std::string pinned = Write("pinned.yaml", "tpm:\n  pcrs:\n    sha256:\n      0: \"" +
                                                      std::string(64, '0') + "\"\n");
  auto refused = RunBerthctl(With(Quote(replayed_), {"--policy", pinned}));
  EXPECT_EQ(refused.exit_code, 1) << refused.err;
  EXPECT_EQ(refused.out, "");
  EXPECT_EQ(refused.err,
            "invalid: PCR sha256:0 is "
            "dab77c454bd12c27ff6b6ce1f9adca90b7a330c1cef0b5cd01cb89fb3bd0dffa, policy expects " +
                std::string(64, '0') + "\n");
}

// ---- the rules berthd applies, offline (issue 22): the verifier decides what is quoted ----

class BootRulesCliTest : public QuotedBootCliTest {
 protected:
  void SetUp() override {
    QuotedBootCliTest::SetUp();
    policy_ = dir_.Join("policy.yaml");
    auto from = RunBerthctl({"policy", "from", "--eventlog", log_, "--out", policy_});
    ASSERT_EQ(from.exit_code, 0) << from.err;
  }
  // gdc-host.bin with `extra` appended (SHA-256 only, like the log), the replay of the result,
  // and the number of the first appended event.
  std::string Forge(const std::vector<Bytes>& extra, tpm::PcrValues& replayed, uint32_t& first) {
    std::string raw = MustRead(log_);
    first = static_cast<uint32_t>(eventlog::ParseEventLog(AsBytes(raw))->events.size());
    for (const Bytes& e : extra) raw += ToString(e);
    auto parsed = eventlog::ParseEventLog(AsBytes(raw));
    EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
    replayed = eventlog::Replay(*parsed);
    return Write("forged.bin", raw);
  }
  static Bytes Extra(uint32_t pcr, uint32_t type, const std::string& data,
                     const std::string& measured) {
    return testing::EventLogBuilder::Event({DigestAlg::kSha256}, false, pcr, type, ToBytes(data),
                                           ToBytes(measured));
  }
  static constexpr char kNotEvaluated[] =
      "not evaluated: trust in the attestation key: the policy names none (berthd does not load "
      "such a policy)\n"
      "not evaluated: berth-agent's sealed boot (PCR 15: this boot has not released its keys "
      "yet, tpm.enrolment_configs): berthd replays the agent's events sent with the evidence, "
      "which this command is not given\n";
  std::string policy_;
};

TEST_F(BootRulesCliTest, APcrLeftOutOfTheQuoteIsRefusedNamingIt) {
  auto args = Files({.selection = {{DigestAlg::kSha256, {0, 1, 2, 3, 4, 5, 6, 7, 8, 14}}},
                     .pcr_values = replayed_});
  ExpectFailedCheck(RunBerthctl(With(args, {"--eventlog", log_, "--policy", policy_})),
                    "invalid: the quote does not cover PCR sha256:9, which "
                    "tpm.event_log.required_pcrs requires in every quote\n");
}

TEST_F(BootRulesCliTest, AnExtraGrubCommandIsRefusedNamingIt) {
  tpm::PcrValues replayed;
  uint32_t first = 0;
  const std::string forged =
      Forge({Extra(8, eventlog::kEvIpl, std::string("grub_cmd: insmod /boot/evil.mod", 32),
                   "insmod /boot/evil.mod")},
            replayed, first);
  ExpectFailedCheck(
      RunBerthctl(With(Quote(replayed), {"--eventlog", forged, "--policy", policy_})),
      "invalid: event #" + std::to_string(first) + " (EV_IPL, PCR 8, sha256 " +
          HexEncode(Sha256(ToBytes("insmod /boot/evil.mod"))) +
          ") \"grub_cmd: insmod /boot/evil.mod\" is not allowed: it is no fixed event, its PCR "
          "is not pinned, and its digest is in none of tpm.event_log.kernel_cmdlines, "
          "tpm.event_log.other_events\n");
}

TEST_F(BootRulesCliTest, EventsInAPcrTheQuoteLeavesOutAreRefused) {
  // The approved kernel's event (#151), digests and all, again in PCR 11.
  const std::string raw = MustRead(log_);
  auto parsed = eventlog::ParseEventLog(AsBytes(raw));
  ASSERT_TRUE(parsed.ok());
  Bytes kernel(raw.begin() + static_cast<long>(parsed->events[151].offset),
               raw.begin() + static_cast<long>(parsed->events[152].offset));
  kernel[0] = 11;
  tpm::PcrValues replayed;
  uint32_t first = 0;
  const std::string forged = Forge({kernel}, replayed, first);
  // The quote covers what the host's boot extended; the forged PCR 11 event is outside it.
  auto r = RunBerthctl(With(Quote(replayed), {"--eventlog", forged, "--policy", policy_}));
  ExpectFailedCheck(r, "invalid: event #" + std::to_string(first) + " (EV_IPL, PCR 11, sha256 " +
                           HexEncode(parsed->events[151].digests.at(DigestAlg::kSha256)) +
                           ") \"/vmlinuz-6.9.0-rc7+\" is in PCR 11, which the policy does not "
                           "cover: the log may extend only the PCRs of "
                           "tpm.event_log.required_pcrs (and tpm.pcrs)\n");
  // Without a policy the log is only replayed, and the verdict says what nothing vouches for.
  auto replay_only = RunBerthctl(With(Quote(replayed), {"--eventlog", forged}));
  EXPECT_EQ(replay_only.exit_code, 0) << replay_only.err;
  EXPECT_EQ(replay_only.out,
            "valid\nboot: event log replayed to quoted sha256:0,1,2,3,4,5,6,7,8,9,14; not "
            "quoted, so nothing vouches for its events there: sha256:11\n");
}

// berthd trusts the AK before it looks at the boot; offline, the policy's trusted_aks are
// checked too, and what needs more than a quote is listed, not passed over.
TEST_F(BootRulesCliTest, ThePolicysTrustedAksAreCheckedAndWhatIsNotEvaluatedIsSaid) {
  auto args = With(Quote(replayed_), {"--eventlog", log_, "--policy", policy_});
  auto no_trust = RunBerthctl(args);
  EXPECT_EQ(no_trust.exit_code, 0) << no_trust.err;
  EXPECT_EQ(no_trust.out.substr(no_trust.out.find("\nnot evaluated: ") + 1), kNotEvaluated);

  const std::string policy = MustRead(policy_);
  const std::string ak_hash = HexEncode(Sha256(*PublicKeyToSpkiDer(key_)));
  const std::string other = Write(
      "other-ak.yaml", policy + "  trusted_aks:\n    - {name: rack1, sha256: " +
                           std::string(64, 'a') + "}\n");
  ExpectFailedCheck(RunBerthctl(With(Quote(replayed_), {"--eventlog", log_, "--policy", other})),
                    "invalid: attestation key sha256:" + ak_hash +
                        " is not in the policy's trusted_aks\n");

  const std::string pinned = Write(
      "this-ak.yaml", policy + "  trusted_aks:\n    - {name: gdc-host, sha256: " + ak_hash + "}\n");
  auto trusted = RunBerthctl(With(Quote(replayed_), {"--eventlog", log_, "--policy", pinned}));
  EXPECT_EQ(trusted.exit_code, 0) << trusted.err;
  EXPECT_EQ(trusted.out.substr(0, trusted.out.find("boot: ")),
            "valid\nak: trusted_aks[gdc-host]\n");
  EXPECT_EQ(trusted.out.substr(trusted.out.find("\nnot evaluated: ") + 1),
            "not evaluated: berth-agent's sealed boot (PCR 15: this boot has not released its keys "
            "yet, tpm.enrolment_configs): berthd replays the agent's events sent with the "
            "evidence, which this command is not given\n");

  // Trust through EK certificates or pinned EKs needs what the node sends with the quote.
  const std::string by_ek = Write(
      "by-ek.yaml", policy + "  trusted_eks:\n    - {name: rack1, sha256: " +
                        std::string(64, 'e') + "}\n");
  auto ek = RunBerthctl(With(Quote(replayed_), {"--eventlog", log_, "--policy", by_ek}));
  EXPECT_EQ(ek.exit_code, 0) << ek.err;
  EXPECT_NE(ek.out.find("\nnot evaluated: trust in the attestation key through EK or AK "
                        "certificates (tpm.ek_ca_*, tpm.trusted_eks, tpm.ak_ca_*): berthd checks "
                        "the certificates and the credential activation the node sends, which "
                        "this command is not given\n"),
            std::string::npos)
      << ek.out;

  // An SEV-SNP-only policy accepts no TPM evidence at all.
  const std::string snp_only = Write(
      "snp.yaml", "sev_snp:\n  measurements: [" + std::string(96, 'a') + "]\n");
  ExpectFailedCheck(RunBerthctl(With(Quote(replayed_), {"--policy", snp_only})),
                    "invalid: TPM evidence is not accepted by this berthd's policy\n");
}

TEST_F(QuotedBootCliTest, AnUnparseableLogOrPolicyIsBadInputNamingTheFile) {
  const std::string junk = Write("junk.bin", std::string(100, '\x5a'));
  auto r = RunBerthctl(With(Quote(replayed_), {"--eventlog", junk}));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.err, "--eventlog " + junk +
                       ": malformed event log: event #0 at byte 0: event data of 1515870810 bytes "
                       "runs past the end of the log\n");

  const std::string bad = Write("bad.yaml", "tpm: [unclosed\n");
  r = RunBerthctl(With(Quote(replayed_), {"--policy", bad}));
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_EQ(r.err, "--policy: " + bad +
                       ": policy: YAML error: yaml-cpp: error at line 2, column 1: end of "
                       "sequence flow not found\n");
  EXPECT_EQ(r.out, "");
}

}  // namespace
}  // namespace berth::cli
