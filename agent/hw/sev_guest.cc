#include "agent/hw/sev_guest.h"

#include <fcntl.h>
#include <linux/sev-guest.h>
#include <openssl/crypto.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/snp/report.h"

namespace berth::agent {

namespace {

// MSG_REPORT_RSP (SNP ABI spec): status, report size, 24 reserved bytes, then the report.
constexpr size_t kReportResponseHeader = 0x20;
constexpr size_t kPageSize = 4096;

std::string ExitInfo(uint64_t exitinfo2) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "firmware error 0x%x, VMM error 0x%x",
                static_cast<unsigned>(exitinfo2 & 0xffffffffu),
                static_cast<unsigned>(exitinfo2 >> 32));
  return buf;
}

Result<Bytes> ReportFromResponse(const snp_report_resp& resp) {
  uint32_t status, size;
  std::memcpy(&status, resp.data, 4);
  std::memcpy(&size, resp.data + 4, 4);
  if (status != 0) {
    return Internal("SEV-SNP firmware refused the report request (status " +
                    std::to_string(status) + ")");
  }
  if (size != snp::kReportSize) {
    return Internal("SEV-SNP firmware returned a " + std::to_string(size) +
                    "-byte report, expected " + std::to_string(snp::kReportSize));
  }
  return Bytes(resp.data + kReportResponseHeader, resp.data + kReportResponseHeader + size);
}

class DeviceSevGuest : public SevGuest {
 public:
  DeviceSevGuest(int fd, std::string path) : fd_(fd), path_(std::move(path)) {}
  ~DeviceSevGuest() override { close(fd_); }

  Result<Bytes> GetReport(std::span<const uint8_t> report_data, uint32_t vmpl) override {
    snp_report_req req{};
    BERTH_RETURN_IF_ERROR(Fill(req, report_data, vmpl));
    snp_report_resp resp{};
    snp_guest_request_ioctl io{};
    io.msg_version = 1;
    io.req_data = reinterpret_cast<uintptr_t>(&req);
    io.resp_data = reinterpret_cast<uintptr_t>(&resp);
    if (ioctl(fd_, SNP_GET_REPORT, &io) != 0) return IoctlError("SNP_GET_REPORT", io.exitinfo2);
    return ReportFromResponse(resp);
  }

  Result<SnpExtendedReport> GetExtendedReport(std::span<const uint8_t> report_data,
                                              uint32_t vmpl) override {
    snp_ext_report_req req{};
    BERTH_RETURN_IF_ERROR(Fill(req.data, report_data, vmpl));
    // The host says how much room its certificates need when the first guess is too small.
    std::vector<uint8_t> certs(4 * kPageSize);
    for (int attempt = 0; attempt < 2; ++attempt) {
      snp_report_resp resp{};
      snp_guest_request_ioctl io{};
      io.msg_version = 1;
      req.certs_address = reinterpret_cast<uintptr_t>(certs.data());
      req.certs_len = static_cast<uint32_t>(certs.size());
      io.req_data = reinterpret_cast<uintptr_t>(&req);
      io.resp_data = reinterpret_cast<uintptr_t>(&resp);
      if (ioctl(fd_, SNP_GET_EXT_REPORT, &io) == 0) {
        SnpExtendedReport out;
        BERTH_ASSIGN_OR_RETURN(out.report, ReportFromResponse(resp));
        size_t len = std::min<size_t>(req.certs_len, certs.size());
        // A host without certificates leaves the table zero: an empty table.
        bool empty = std::all_of(certs.begin(), certs.begin() + std::min<size_t>(len, 24),
                                 [](uint8_t b) { return b == 0; });
        if (!empty) out.cert_table.assign(certs.begin(), certs.begin() + len);
        return out;
      }
      int err = errno;
      if (err == EIO && (io.exitinfo2 >> 32) == SNP_GUEST_VMM_ERR_INVALID_LEN &&
          req.certs_len > certs.size() && req.certs_len <= (1u << 20)) {
        certs.assign(req.certs_len, 0);
        continue;
      }
      if (err == ENOTTY || err == EINVAL || err == EOPNOTSUPP) {
        return Status(Code::kUnimplemented, "SNP_GET_EXT_REPORT is not supported here");
      }
      errno = err;
      return IoctlError("SNP_GET_EXT_REPORT", io.exitinfo2);
    }
    return Internal("SNP_GET_EXT_REPORT: the host keeps asking for a larger certificate buffer");
  }

  Result<SecretBytes> GetDerivedKey(const SnpDerivedKeyRequest& request) override {
    snp_derived_key_req req{};
    req.root_key_select = request.root_key_select;
    req.guest_field_select = request.guest_field_select;
    req.vmpl = request.vmpl;
    req.guest_svn = request.guest_svn;
    req.tcb_version = request.tcb_version;
    snp_derived_key_resp resp{};
    snp_guest_request_ioctl io{};
    io.msg_version = 1;
    io.req_data = reinterpret_cast<uintptr_t>(&req);
    io.resp_data = reinterpret_cast<uintptr_t>(&resp);
    struct Wipe {
      snp_derived_key_resp& r;
      ~Wipe() { OPENSSL_cleanse(r.data, sizeof r.data); }
    } wipe{resp};
    if (ioctl(fd_, SNP_GET_DERIVED_KEY, &io) != 0) {
      Status st = IoctlError("SNP_GET_DERIVED_KEY", io.exitinfo2);
      // The firmware's INVALID_PARAM (a TCB above CommittedTcb, a lower VMPL) is not transient.
      return st.code() == Code::kUnavailable ? st : Status(Code::kFailedPrecondition, st.message());
    }
    // MSG_KEY_RSP: status (4 bytes), 28 reserved, the 32-byte key.
    uint32_t status;
    std::memcpy(&status, resp.data, 4);
    if (status != 0) {
      return FailedPrecondition("SEV-SNP firmware refused the key request (status " +
                                std::to_string(status) + ")");
    }
    return SecretBytes(resp.data + 32, 32);
  }

 private:
  static Status Fill(snp_report_req& req, std::span<const uint8_t> report_data, uint32_t vmpl) {
    if (report_data.size() != sizeof req.user_data) {
      return InvalidArgument("SEV-SNP report_data must be 64 bytes");
    }
    std::memcpy(req.user_data, report_data.data(), sizeof req.user_data);
    req.vmpl = vmpl;
    return OkStatus();
  }

  Status IoctlError(const char* what, uint64_t exitinfo2) {
    int err = errno;
    if (err == EIO && (exitinfo2 >> 32) == SNP_GUEST_VMM_ERR_BUSY) {
      return Unavailable(std::string(what) + " on " + path_ + ": the host is busy");
    }
    Status st = ErrnoStatus(std::string(what) + " on " + path_, err);
    return Status(st.code(), st.message() + " (" + ExitInfo(exitinfo2) + ")");
  }

  int fd_;
  std::string path_;
};

}  // namespace

Result<std::unique_ptr<SevGuest>> OpenSevGuestDevice(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open(" + path + ")");
  return std::unique_ptr<SevGuest>(new DeviceSevGuest(fd, path));
}

}  // namespace berth::agent
