// The certificate table of an extended SEV-SNP report (what the agent reads from
// SNP_GET_EXT_REPORT and sends on): parsed, and each certificate in it read as the verifier
// reads it (fuzz_snp_cert.cc does the same for one certificate).
#include <cstddef>
#include <cstdint>

#include "common/crypto.h"
#include "common/snp/report.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace snp = berth::snp;
  auto table = snp::ParseCertTable({data, size});
  if (!table.ok()) return 0;
  for (const berth::Bytes* der : {&table->vcek, &table->vlek, &table->ask, &table->ark}) {
    if (der->empty()) continue;
    auto cert = berth::CertFromDer(*der);
    if (cert.ok()) (void)snp::ParseEndorsementKeyInfo(cert->get());
  }
  (void)snp::MakeCertTable(*table);
  return 0;
}
