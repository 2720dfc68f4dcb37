// The SEV-SNP guest device (/dev/sev-guest), behind a small interface so the agent's tests run
// without one. The real implementation speaks the Linux sev-guest ioctls (linux/sev-guest.h):
// SNP_GET_REPORT, and SNP_GET_EXT_REPORT for the certificates the host hands out with the
// report (GHCB spec, "SNP Extended Guest Request").
#pragma once

#include <memory>
#include <span>
#include <string>

#include "common/bytes.h"
#include "common/status.h"

namespace berth::agent {

inline constexpr char kSevGuestDevice[] = "/dev/sev-guest";

struct SnpExtendedReport {
  Bytes report;      // the 1184-byte ATTESTATION_REPORT
  Bytes cert_table;  // the host's certificate table (snp::ParseCertTable); may be empty
};

// Not thread-safe.
class SevGuest {
 public:
  virtual ~SevGuest() = default;
  // An attestation report carrying `report_data` (64 bytes), requested at `vmpl`.
  virtual Result<Bytes> GetReport(std::span<const uint8_t> report_data, uint32_t vmpl) = 0;
  // The report and the host's certificates. UNIMPLEMENTED when the kernel or the host does not
  // offer extended reports (the caller then uses GetReport).
  virtual Result<SnpExtendedReport> GetExtendedReport(std::span<const uint8_t> report_data,
                                                      uint32_t vmpl) = 0;
};

// Opens the device at `path`. NOT_FOUND when there is none (not an SEV-SNP guest).
Result<std::unique_ptr<SevGuest>> OpenSevGuestDevice(const std::string& path);

}  // namespace berth::agent
