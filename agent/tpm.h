// The node's TPM, behind a small interface (the real one talks to tpm2-tss ESYS; tests may
// use swtpm through the same implementation, or a fake).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/bytes.h"
#include "common/status.h"
#include "common/tpm_quote.h"

namespace berth::agent {

struct TpmQuote {
  Bytes attest;     // TPMS_ATTEST as signed
  Bytes signature;  // marshalled TPMT_SIGNATURE
};

class Tpm {
 public:
  virtual ~Tpm() = default;
  // The attestation key's marshalled TPMT_PUBLIC. The AK is a primary key under the
  // endorsement hierarchy from a fixed template, so the same TPM always yields the same AK.
  virtual Result<Bytes> AttestationKeyPublic() = 0;
  // Current values of the selected PCRs.
  virtual Result<tpm::PcrValues> ReadPcrs(const std::vector<v1::PcrSelection>& selection) = 0;
  // A quote by the AK over `selection` with extraData = `extra_data` (at most 64 bytes).
  virtual Result<TpmQuote> Quote(const std::vector<v1::PcrSelection>& selection,
                                 std::span<const uint8_t> extra_data) = 0;
};

// Opens the TPM through the TCTI named by `tcti` ("device:/dev/tpmrm0", "swtpm:path=...")
// and creates the AK. The returned object is not thread-safe.
Result<std::unique_ptr<Tpm>> OpenEsysTpm(const std::string& tcti);

}  // namespace berth::agent
