#include "tests/unit/common/tpm/real_quotes.h"

#include <sys/stat.h>

#include "tests/testing/testing.h"

namespace berth::testdata {

std::vector<RealQuote> RealQuotes() {
  std::vector<RealQuote> out;
  const std::pair<const char*, DigestAlg> banks[] = {
      {"sha1", DigestAlg::kSha1}, {"sha256", DigestAlg::kSha256}, {"sha384", DigestAlg::kSha384}};
  // GCE (go-tpm-tools): RSASSA-SHA256 whatever the bank, all 24 PCRs selected.
  for (const auto& [dir, nonce] :
       {std::pair<std::string, std::string>{"tpm-gce-cos85-nonce9009", "9009"},
        {"tpm-gce-cos85-no-nonce", ""}}) {
    for (const auto& [bank_name, bank] : banks) {
      std::string b = bank_name;
      out.push_back({.name = std::string(nonce.empty() ? "gce-no-nonce-" : "gce-nonce9009-") + b,
                     .ak_pem = dir + "/ak_pub.pem",
                     .ak_tpmt = dir + "/ak_pub.tpmt_public",
                     .quote = dir + "/quote_" + b + ".tpms_attest",
                     .signature = dir + "/quote_" + b + ".tpmt_signature",
                     .pcrs = dir + "/pcrs_" + b + ".txt",
                     .bank = bank,
                     .selected = 24,
                     .extra_data_hex = nonce,
                     .signature_hash = DigestAlg::kSha256,
                     .ecdsa = false});
    }
  }
  // GCP vaportpm: ECDSA P-256 AKs, all 24 sha256 PCRs, a 32-byte nonce.
  const std::string vtpm = "tpm-gcp-ecc-ak-vaportpm/";
  for (const auto& [platform, nonce] :
       {std::pair<std::string, std::string>{
            "tdx", "6424632e79ec068f2189adf46d121b9a10f758c45a18c52f630da14600d4317b"},
        {"amd", "8a543108a653b4a1162232744cc9b945017a449dea4fbb0ca62f42d3ef145562"}}) {
    out.push_back({.name = "gcp-ecdsa-" + platform,
                   .ak_pem = vtpm + platform + "_ak_pub.pem",
                   .quote = vtpm + platform + "_quote.tpms_attest",
                   .signature = vtpm + platform + "_quote.tpmt_signature",
                   .pcrs = vtpm + platform + "_pcrs_sha256.txt",
                   .bank = DigestAlg::kSha256,
                   .selected = 24,
                   .extra_data_hex = nonce,
                   .signature_hash = DigestAlg::kSha256,
                   .ecdsa = true});
  }
  // keylime: swtpm, sha256 PCR 16 only, an ASCII nonce.
  const std::string keylime = "tpm-keylime-swtpm-checkquote/";
  out.push_back({.name = "keylime-swtpm",
                 .ak_pem = keylime + "ak_pub.pem",
                 .quote = keylime + "quote.tpms_attest",
                 .signature = keylime + "quote.tpmt_signature",
                 .pcrs = keylime + "pcrs_sha256.txt",
                 .bank = DigestAlg::kSha256,
                 .selected = 1,
                 .extra_data_hex = "4169354d35536a596a6e6b797634503769744831",
                 .nonce_text = "Ai5M5SjYjnkyv4P7itH1",
                 .signature_hash = DigestAlg::kSha256,
                 .ecdsa = false});
  return out;
}

bool HaveTestdata() {
  struct stat st;
  return stat(berth::testing::Testdata("README.md").c_str(), &st) == 0;
}

std::string MissingTestdataReason() {
  return "the real attestation artefacts are not at " + berth::testing::TestdataDir() +
         " (set BERTH_TESTDATA to their folder to run this test)";
}

}  // namespace berth::testdata
