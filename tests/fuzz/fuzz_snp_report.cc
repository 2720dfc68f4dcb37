// An SEV-SNP attestation report (SevSnpEvidence.report; berthctl verify snp-report): parsed,
// and the fields the verifier and policy read decoded.
#include <cstddef>
#include <cstdint>

#include "common/snp/report.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace snp = berth::snp;
  auto report = snp::ParseReport({data, size});
  if (!report.ok()) return 0;
  snp::Product product = report->product();
  (void)snp::ProductName(product);
  for (uint64_t tcb :
       {report->current_tcb, report->reported_tcb, report->committed_tcb, report->launch_tcb}) {
    (void)snp::DecodeTcb(tcb, product).ToString();
  }
  (void)snp::SigningKeyName(report->signing_key);
  (void)report->signed_bytes();
  return 0;
}
