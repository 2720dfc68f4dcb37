// A fake SEV-SNP guest device: reports in AMD's layout for the report_data and VMPL asked for,
// signed by a test chain's VCEK key, the certificate table a host would hand out, and derived
// keys (SNP_GET_DERIVED_KEY) computed deterministically from the fake chip's secret and the
// fields the request selects, as the firmware derives them: the same request from a guest with
// the same selected fields on the same chip gets the same key. Faults are injected by setting
// `failure` or `extended_supported`. Not thread-safe.
//
// What the fields model: `chip_secret` is the chip (a move to another chip changes it; a TCB
// update does not); `spec` is this guest's launch (measurement, policy, TCB as reported and
// committed). A TCB update is a new `spec.reported_tcb`/`committed_tcb` and a new VCEK key.
#pragma once

#include <openssl/crypto.h>

#include <string>
#include <vector>

#include "agent/hw/sev_guest.h"
#include "common/crypto.h"
#include "common/snp/report.h"
#include "tests/testing/snp_chain.h"

namespace berth::testing {

class FakeSevGuest : public agent::SevGuest {
 public:
  FakeSevGuest(SnpReportSpec spec, EVP_PKEY* vcek_key, snp::CertTable certs)
      : spec(std::move(spec)), certs(std::move(certs)) {
    SetVcekKey(vcek_key);
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
  Result<SecretBytes> GetDerivedKey(const agent::SnpDerivedKeyRequest& request) override {
    const agent::SnpDerivedKeyRequest r = request;  // `request` may be one of the recorded ones
    calls.push_back("GetDerivedKey");
    derived_key_requests.push_back(r);
    if (!failure.ok()) return failure;
    if (r.root_key_select != agent::kRootKeyVcek) {
      return FailedPrecondition("SEV-SNP firmware refused the key request (status 22)");
    }
    const uint64_t committed = spec.committed_tcb ? spec.committed_tcb : spec.reported_tcb;
    if ((r.guest_field_select & agent::kFieldTcbVersion) != 0) {
      for (int i = 0; i < 8; ++i) {  // each security patch level
        if (((r.tcb_version >> (8 * i)) & 0xff) > ((committed >> (8 * i)) & 0xff)) {
          return FailedPrecondition("SEV-SNP firmware refused the key request (status 22)");
        }
      }
    }
    Bytes in(std::string_view("fake-snp-derived-key").begin(),
             std::string_view("fake-snp-derived-key").end());
    auto put = [&](uint64_t v, int bytes) {
      for (int i = 0; i < bytes; ++i) in.push_back(static_cast<uint8_t>(v >> (8 * i)));
    };
    put(r.root_key_select, 4);
    put(r.guest_field_select, 8);
    put(r.vmpl, 4);
    if (r.guest_field_select & agent::kFieldGuestPolicy) put(spec.policy, 8);
    if (r.guest_field_select & agent::kFieldImageId) in.insert(in.end(), 16, 0);
    if (r.guest_field_select & agent::kFieldFamilyId) in.insert(in.end(), 16, 0);
    if (r.guest_field_select & agent::kFieldMeasurement) {
      in.insert(in.end(), spec.measurement.begin(), spec.measurement.end());
    }
    if (r.guest_field_select & agent::kFieldGuestSvn) put(r.guest_svn, 4);
    // Without TCB_VERSION selected, the key follows the TCB the chip runs now.
    put((r.guest_field_select & agent::kFieldTcbVersion) ? r.tcb_version : committed, 8);
    Bytes key = HmacSha256(chip_secret, in);
    SecretBytes out(key.data(), key.size());
    OPENSSL_cleanse(key.data(), key.size());
    return out;
  }

  // A TCB update or a new VCEK: reports are signed with `vcek_key` from now on.
  void SetVcekKey(EVP_PKEY* vcek_key) {
    EVP_PKEY_up_ref(vcek_key);
    key_.reset(vcek_key);
  }

  SnpReportSpec spec;
  snp::CertTable certs;
  Bytes chip_secret = Bytes(32, 0xc5);  // the chip's root secret
  bool extended_supported = true;
  Status failure;                // returned by every call when not OK
  bool echo_report_data = true;  // false: a misbehaving firmware ignores report_data
  std::vector<std::string> calls;
  std::vector<uint32_t> vmpls;
  std::vector<agent::SnpDerivedKeyRequest> derived_key_requests;

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
