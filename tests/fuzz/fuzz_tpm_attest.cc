// TPMS_ATTEST as berthd receives it in TpmEvidence.quote: tpm::ParseAttest, the parse inside
// tpm::VerifyQuote (whose signature check comes first and is covered by fuzz_evidence).
#include <cstddef>
#include <cstdint>

#include "common/tpm/quote.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  (void)berth::tpm::ParseAttest({data, size});
  return 0;
}
