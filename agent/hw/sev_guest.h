// The SEV-SNP guest device (/dev/sev-guest), behind a small interface so the agent's tests run
// without one. The real implementation speaks the Linux sev-guest ioctls (linux/sev-guest.h):
// SNP_GET_REPORT, SNP_GET_EXT_REPORT for the certificates the host hands out with the report
// (GHCB spec, "SNP Extended Guest Request"), and SNP_GET_DERIVED_KEY (MSG_KEY_REQ of the SNP
// firmware ABI, AMD pub. 56860) for keys only this guest's firmware context can derive.
#pragma once

#include <memory>
#include <span>
#include <string>

#include "common/bytes.h"
#include "common/secret.h"
#include "common/status.h"

namespace berth::agent {

inline constexpr char kSevGuestDevice[] = "/dev/sev-guest";

struct SnpExtendedReport {
  Bytes report;      // the 1184-byte ATTESTATION_REPORT
  Bytes cert_table;  // the host's certificate table (snp::ParseCertTable); may be empty
};

// MSG_KEY_REQ's GUEST_FIELD_SELECT: what the firmware mixes into a derived key.
inline constexpr uint64_t kFieldGuestPolicy = 1u << 0;
inline constexpr uint64_t kFieldImageId = 1u << 1;
inline constexpr uint64_t kFieldFamilyId = 1u << 2;
inline constexpr uint64_t kFieldMeasurement = 1u << 3;
inline constexpr uint64_t kFieldGuestSvn = 1u << 4;
inline constexpr uint64_t kFieldTcbVersion = 1u << 5;

inline constexpr uint32_t kRootKeyVcek = 0;  // derived from the chip's VCEK root secret
inline constexpr uint32_t kRootKeyVmrk = 1;  // the VM root key (from a migration agent)

struct SnpDerivedKeyRequest {
  uint32_t root_key_select = kRootKeyVcek;
  uint64_t guest_field_select = 0;
  uint32_t vmpl = 0;         // >= the requesting VMPL
  uint32_t guest_svn = 0;    // <= the ID block's
  uint64_t tcb_version = 0;  // <= CommittedTcb; mixed in with kFieldTcbVersion
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
  // A 32-byte key the firmware derives from the root key and the selected fields of this
  // guest (its launch measurement, policy, ...): the same request in a guest with the same
  // selected fields on the same chip gets the same key, any other guest another one.
  // FAILED_PRECONDITION when the firmware refuses the request (a TCB_VERSION above
  // CommittedTcb, a VMPL below the guest's).
  virtual Result<SecretBytes> GetDerivedKey(const SnpDerivedKeyRequest& request) = 0;
};

// Opens the device at `path`. NOT_FOUND when there is none (not an SEV-SNP guest).
Result<std::unique_ptr<SevGuest>> OpenSevGuestDevice(const std::string& path);

}  // namespace berth::agent
