// Quotes signed by a key the test holds, for the checks real artefacts cannot reach: a
// correctly signed TPMS_ATTEST with the wrong magic or type, an empty selection, each
// signature scheme and hash. Real quotes are in real_quotes.h; these complement them.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <utility>
#include <vector>

#include "common/tpm/quote.h"

namespace berth::testdata {

// fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign: an AK.
inline constexpr TPMA_OBJECT kAkAttributes =
    TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
    TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT;

struct SyntheticQuoteSpec {
  uint32_t magic = TPM2_GENERATED_VALUE;
  uint16_t type = TPM2_ST_ATTEST_QUOTE;
  Bytes extra_data;
  std::vector<std::pair<DigestAlg, std::vector<uint32_t>>> selection = {
      {DigestAlg::kSha256, {0, 7}}};
  uint16_t sig_alg = TPM2_ALG_RSASSA;  // RSASSA or RSAPSS with an RSA key, ECDSA with EC
  DigestAlg sig_hash = DigestAlg::kSha256;
  // The selected PCRs' values; a PCR not given here is DigestSize bytes of index+1.
  tpm::PcrValues pcr_values;
};

struct SyntheticQuote {
  Bytes attest;         // marshalled TPMS_ATTEST
  Bytes signature;      // marshalled TPMT_SIGNATURE
  tpm::PcrValues pcrs;  // the selected PCRs' values (spec.pcr_values, else bytes of i+1)
};

// Marshals a TPMS_ATTEST as `spec` says (pcrDigest = H_sig(selected values)) and signs it
// with `key`.
Result<SyntheticQuote> MakeSyntheticQuote(const SyntheticQuoteSpec& spec, EVP_PKEY* key);

// The marshalled TPMT_PUBLIC of an RSA or P-256 key with `attributes`.
Result<Bytes> MakeTpmtPublic(EVP_PKEY* key, TPMA_OBJECT attributes = kAkAttributes);

}  // namespace berth::testdata
