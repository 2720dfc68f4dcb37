// The real TPM quotes in ../shared/testdata/attestation (see its README), as one table that
// the library tests (tests/unit/common) and the berthctl tests (tests/cli) both walk, so the
// two cover exactly the same artefacts.
#pragma once

#include <string>
#include <vector>

#include "common/crypto.h"

namespace berth::testdata {

struct RealQuote {
  std::string name;            // for test output: "gce-nonce9009-sha256"
  std::string ak_pem;          // paths relative to the testdata folder
  std::string ak_tpmt;         // the AK as TPMT_PUBLIC, "" when the artefact has none
  std::string quote;           // TPMS_ATTEST
  std::string signature;       // TPMT_SIGNATURE
  std::string pcrs;            // "INDEX HEX" lines of the quoted bank
  DigestAlg bank;              // the bank the quote selects
  size_t selected;             // how many PCRs it selects
  std::string extra_data_hex;  // the extraData the README states ("" = none)
  std::string nonce_text;      // the nonce as the upstream tool wrote it, when it is text
  DigestAlg signature_hash;
  bool ecdsa;
};

// Every valid quote the README lists: GCE RSA quotes in the sha1, sha256 and sha384 banks with
// nonce 9009 and without a nonce, GCP ECDSA quotes on TDX and AMD, the keylime swtpm quote.
std::vector<RealQuote> RealQuotes();

// Whether the testdata folder is present. Tests that need it call BERTH_REQUIRE_TESTDATA()
// first, which skips them with the reason when it is not (a user's own clone).
bool HaveTestdata();
std::string MissingTestdataReason();

}  // namespace berth::testdata

#define BERTH_REQUIRE_TESTDATA()                                  \
  do {                                                            \
    if (!::berth::testdata::HaveTestdata()) {                     \
      GTEST_FAIL() << ::berth::testdata::MissingTestdataReason(); \
    }                                                             \
  } while (0)
