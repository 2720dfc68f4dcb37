// A fake SEV-SNP guest device: reports in AMD's layout for the report_data and VMPL asked for,
// signed by a test chain's VCEK key, and the certificate table a host would hand out. Faults
// are injected by setting `failure` or `extended_supported`. Not thread-safe.
#pragma once

#include <string>
#include <vector>

#include "agent/hw/sev_guest.h"
#include "common/snp/report.h"
#include "tests/testing/snp_chain.h"

namespace berth::testing {

class FakeSevGuest : public agent::SevGuest {
 public:
  FakeSevGuest(SnpReportSpec spec, EVP_PKEY* vcek_key, snp::CertTable certs)
      : spec(std::move(spec)), certs(std::move(certs)) {
    EVP_PKEY_up_ref(vcek_key);
    key_.reset(vcek_key);
  }

  Result<Bytes> GetReport(std::span<const uint8_t> report_data, uint32_t vmpl) override {
    calls.push_back("GetReport");
    return Make(report_data, vmpl);
  }
  Result<agent::SnpExtendedReport> GetExtendedReport(std::span<const uint8_t> report_data,
                                                     uint32_t vmpl) override {
    calls.push_back("GetExtendedReport");
    if (!extended_supported) return Status(Code::kUnimplemented, "no extended reports here");
    BERTH_ASSIGN_OR_RETURN(Bytes report, Make(report_data, vmpl));
    return agent::SnpExtendedReport{std::move(report), snp::MakeCertTable(certs)};
  }

  SnpReportSpec spec;
  snp::CertTable certs;
  bool extended_supported = true;
  Status failure;                // returned by every call when not OK
  bool echo_report_data = true;  // false: a misbehaving firmware ignores report_data
  std::vector<std::string> calls;
  std::vector<uint32_t> vmpls;

 private:
  Result<Bytes> Make(std::span<const uint8_t> report_data, uint32_t vmpl) {
    vmpls.push_back(vmpl);
    if (!failure.ok()) return failure;
    SnpReportSpec s = spec;
    if (echo_report_data) s.report_data.assign(report_data.begin(), report_data.end());
    s.vmpl = vmpl;
    return MakeSnpReport(s, key_.get());
  }
  EvpPkeyPtr key_;
};

}  // namespace berth::testing
