// berthctl verify snp-report: checks an SEV-SNP report offline, the way berthd does (AMD
// chain to the pinned ARK, signature, VCEK TCB and chip, then report_data and policy when
// given), and says which check failed.
#include <ctime>
#include <optional>

#include "cli/commands.h"
#include "common/snp/report.h"
#include "common/time.h"
#include "verify/policy.h"
#include "verify/snp_verifier.h"

namespace berth::cli {

namespace {

struct SnpReportArgs {
  std::string report, vcek, ask, ark, report_data, at, policy;
};

// A certificate file, PEM or DER. Unreadable or not a certificate: INVALID_ARGUMENT naming the
// flag (exit 2).
Result<Bytes> ReadCert(const std::string& path, const std::string& flag) {
  auto text = ReadFile(path, 1 << 20);
  if (!text.ok()) return InvalidArgument(flag + " " + path + ": " + text.status().message());
  auto der = snp::CertificateToDer(*text);
  if (!der.ok()) {
    return InvalidArgument(flag + " " + path + ": not a PEM or DER certificate (" +
                           der.status().message() + ")");
  }
  return der;
}

std::string Hex64(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%016llx", static_cast<unsigned long long>(v));
  return buf;
}

Result<std::string> VerifySnpReportCommand(const SnpReportArgs& a) {
  verify::SnpOfflineInput in;
  auto report = ReadFile(a.report, 1 << 20);
  if (!report.ok())
    return InvalidArgument("--report " + a.report + ": " + report.status().message());
  in.report = ToBytes(*report);
  BERTH_ASSIGN_OR_RETURN(in.leaf_der, ReadCert(a.vcek, "--vcek"));
  if (!a.ask.empty()) {
    BERTH_ASSIGN_OR_RETURN(in.intermediate_der, ReadCert(a.ask, "--ask"));
  }
  if (!a.ark.empty()) {
    BERTH_ASSIGN_OR_RETURN(in.ark_der, ReadCert(a.ark, "--ark"));
  }
  if (!a.report_data.empty()) {
    auto data = HexDecode(a.report_data);
    if (!data.ok() || data->size() != snp::kReportDataSize) {
      return InvalidArgument("--report-data: expected 64 bytes as 128 hex digits");
    }
    in.report_data = std::move(*data);
  }
  if (a.at.empty()) {
    in.at_unix = static_cast<int64_t>(std::time(nullptr));
  } else {
    auto at = ParseRfc3339(a.at);
    if (!at.ok()) return at.status().WithContext("--at");
    in.at_unix = *at;
  }
  std::optional<verify::Policy> policy;
  if (!a.policy.empty()) {
    auto p = verify::LoadPolicy(a.policy);
    if (!p.ok()) return InvalidArgument("--policy " + p.status().message());
    if (!p->sev_snp) return InvalidArgument("--policy " + a.policy + ": no sev_snp section");
    policy = std::move(*p);
    in.policy = &*policy->sev_snp;
  }
  BERTH_ASSIGN_OR_RETURN(verify::SnpTrustAnchors anchors, verify::SnpTrustAnchors::Amd());
  BERTH_ASSIGN_OR_RETURN(verify::SnpVerifiedReport v, verify::VerifySnpReportOffline(in, anchors));
  const snp::Report& r = v.report;
  const bool vlek = r.signing_key == snp::SigningKey::kVlek;
  std::string out = "valid\n";
  out += "product: " + std::string(snp::ProductName(v.product)) + "\n";
  out += "report version: " + std::to_string(r.version) + "\n";
  out += "signed by: " + std::string(snp::SigningKeyName(r.signing_key)) +
         " (key sha256:" + v.leaf_spki_sha256_hex + ")\n";
  out += "chain: " + std::string(vlek ? "ASVK" : "ASK") +
         (a.ask.empty() ? " pinned" : " from --ask") + ", ARK " +
         (a.ark.empty() ? "pinned" : "from --ark") + "\n";
  out += "measurement: " + HexEncode(r.measurement) + "\n";
  out += "reported_tcb: " + snp::DecodeTcb(r.reported_tcb, v.product).ToString() + " (" +
         Hex64(r.reported_tcb) + ")\n";
  out += "guest policy: " + Hex64(r.policy) + (r.debug() ? " (debug allowed)" : "") + "\n";
  out += "vmpl: " + std::to_string(r.vmpl) + "\n";
  out += "firmware: " + std::to_string(r.current_major) + "." + std::to_string(r.current_minor) +
         " build " + std::to_string(r.current_build) + "\n";
  out += "report_data: " + HexEncode(r.report_data) +
         (in.report_data ? " (as given)" : " (not checked)") + "\n";
  out += "chip_id: " + HexEncode(r.chip_id) + "\n";
  out += std::string("policy: ") + (in.policy ? a.policy + " satisfied" : "none given") + "\n";
  return out;
}

}  // namespace

void AddSnpCommands(CLI::App& app, Context& ctx) {
  CLI::App* verify = Group(app, "verify", "verify evidence offline and explain why it fails");
  auto args = std::make_shared<SnpReportArgs>();
  CLI::App* cmd = verify->add_subcommand(
      "snp-report",
      "verify an AMD SEV-SNP attestation report: AMD chain, signature, VCEK TCB and chip; "
      "exit 0 valid, 1 a check failed, 2 unreadable input");
  cmd->add_option("--report", args->report, "the 1184-byte attestation report (binary)")
      ->required();
  cmd->add_option("--vcek", args->vcek, "the VCEK or VLEK certificate (PEM or DER)")->required();
  cmd->add_option("--ask", args->ask,
                  "the ASK or ASVK (PEM or DER); default: AMD's for the product");
  cmd->add_option("--ark", args->ark,
                  "the ARK (PEM or DER); default: AMD's pinned ARK for the product");
  cmd->add_option("--report-data", args->report_data, "the expected report_data, 128 hex digits");
  cmd->add_option("--at", args->at,
                  "check certificate validity at this RFC 3339 time (default: now)");
  cmd->add_option("--policy", args->policy, "a berthd policy file whose sev_snp section must hold");
  cmd->callback([&ctx, args] {
    auto result = VerifySnpReportCommand(*args);
    if (!result.ok()) {
      ctx.exit_code = ExitFor(ctx, result.status());
      return;
    }
    *ctx.out << *result;
    ctx.exit_code = kExitOk;
  });
}

}  // namespace berth::cli
