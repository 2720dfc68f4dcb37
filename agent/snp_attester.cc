#include "agent/snp_attester.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/binding.h"
#include "common/snp/report.h"

namespace berth::agent {

namespace {

// Hosts are meant to hand out DER; take PEM too, and drop what is neither (berthd may have the
// certificate cached) rather than fail the boot over an optional hint.
std::string UsableCert(const Bytes& raw, const char* what) {
  if (raw.empty()) return "";
  auto der = snp::CertificateToDer(ToString(raw));
  if (!der.ok()) {
    spdlog::warn("ignoring the host's {} certificate: {}", what, der.status().message());
    return "";
  }
  return ToString(*der);
}

}  // namespace

Result<v1::Evidence> CollectSnpEvidence(SevGuest& device, std::span<const uint8_t> binding,
                                        uint32_t vmpl, const SnpIdentity& identity) {
  Bytes report_data = SnpReportData(binding, identity.public_spki());
  SnpExtendedReport ext;
  auto extended = device.GetExtendedReport(report_data, vmpl);
  if (extended.ok()) {
    ext = std::move(*extended);
  } else if (extended.status().code() == Code::kUnimplemented) {
    BERTH_ASSIGN_OR_RETURN(ext.report, device.GetReport(report_data, vmpl));
  } else {
    return extended.status();
  }
  // The firmware must have put our report_data in; anything else is not evidence for this call.
  auto parsed = snp::ParseReport(ext.report);
  if (!parsed.ok()) return parsed.status().WithContext("the SEV-SNP firmware's report");
  if (!std::equal(parsed->report_data.begin(), parsed->report_data.end(), report_data.begin())) {
    return Internal("the SEV-SNP firmware returned a report for other report_data");
  }
  v1::Evidence evidence;
  v1::SevSnpEvidence* out = evidence.mutable_sev_snp();
  out->set_report(ToString(ext.report));
  out->set_identity_public(ToString(identity.public_spki()));
  BERTH_ASSIGN_OR_RETURN(Bytes proof, identity.Prove(binding));
  out->set_identity_proof(ToString(proof));
  auto table = snp::ParseCertTable(ext.cert_table);
  if (!table.ok()) {
    spdlog::warn("ignoring the host's certificate table: {}", table.status().message());
  } else {
    const bool vlek = parsed->signing_key == snp::SigningKey::kVlek;
    out->set_vcek(UsableCert(vlek ? table->vlek : table->vcek, vlek ? "VLEK" : "VCEK"));
    out->set_ask(UsableCert(table->ask, vlek ? "ASVK" : "ASK"));
  }
  return evidence;
}

Result<Attestation> SnpAttester::Attest(const v1::ChallengeResponse& challenge,
                                        std::span<const uint8_t> binding) {
  Attestation out;
  BERTH_ASSIGN_OR_RETURN(out.evidence, CollectSnpEvidence(*device_, binding, vmpl_, *identity_));
  return out;
}

}  // namespace berth::agent
