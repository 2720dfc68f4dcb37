#include "agent/identity.h"

#include <yaml-cpp/yaml.h>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/enrolment.h"
#include "common/snp/report.h"
#include "common/tpm/quote.h"
#include "common/tpm/sealed_boot.h"

namespace berth::agent {

namespace {

// A one-entry list of {name, sha256}, as trusted_aks and enrolment_configs are written.
void NamedDigest(YAML::Emitter& out, const char* key, const std::string& name,
                 const std::string& sha256_hex) {
  out << YAML::Key << key << YAML::Value << YAML::BeginSeq << YAML::BeginMap;
  out << YAML::Key << "name" << YAML::Value << name;
  out << YAML::Key << "sha256" << YAML::Value << sha256_hex;
  out << YAML::EndMap << YAML::EndSeq;
}

Result<std::string> SpkiSha256(std::span<const uint8_t> tpmt_public) {
  BERTH_ASSIGN_OR_RETURN(TPMT_PUBLIC pub, tpm::ParsePublic(tpmt_public));
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, tpm::PublicToEvp(pub));
  BERTH_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToSpkiDer(key.get()));
  return HexEncode(Sha256(spki));
}

}  // namespace

Result<std::string> DescribeIdentity(const AgentOptions& options, AgentDeps& deps) {
  const std::string enrolment = JoinRoot(options.root, options.enrolment_path);
  auto config = LoadEnrolmentConfig(enrolment);
  std::string name = "node";
  if (config.ok()) {
    if (auto n = ResolveNodeName(*config); n.ok()) name = *n;
  }
  if (config.ok() && config->attestation() == v1::ATTESTATION_KIND_SEV_SNP && deps.open_sev_guest) {
    BERTH_ASSIGN_OR_RETURN(auto device, deps.open_sev_guest(options.sev_guest));
    BERTH_ASSIGN_OR_RETURN(
        SnpIdentity identity,
        SnpIdentity::LoadOrCreate(*device, SnpIdentityPath(options), options.snp_vmpl));
    return DescribeSnpIdentity(*device, options.snp_vmpl, &identity);
  }
  BERTH_ASSIGN_OR_RETURN(auto tpm, deps.open_tpm(options.tcti));
  BERTH_ASSIGN_OR_RETURN(Bytes ak_public, tpm->AttestationKeyPublic());
  BERTH_ASSIGN_OR_RETURN(std::string ak_sha256, SpkiSha256(ak_public));
  BERTH_ASSIGN_OR_RETURN(tpm::PcrValues pcrs,
                         tpm->ReadPcrs(config.ok() ? QuoteSelection(*config) : QuoteSelection({})));

  YAML::Emitter out;
  out << YAML::Comment("berthd policy for this node's TPM and its current boot state");
  out << YAML::BeginMap << YAML::Key << "tpm" << YAML::Value << YAML::BeginMap;
  NamedDigest(out, "trusted_aks", name, ak_sha256);
  out << YAML::Key << "pcrs" << YAML::Value << YAML::BeginMap;
  for (const auto& [bank, values] : pcrs) {
    out << YAML::Key << std::string(DigestName(bank)) << YAML::Value << YAML::BeginMap;
    for (const auto& [index, value] : values) {
      // PCR 15 is berth-agent's own: berthd replays its events instead of pinning a value.
      if (index == seal::kPcr) continue;
      out << YAML::Key << index << YAML::Value << HexEncode(value);
    }
    out << YAML::EndMap;
  }
  out << YAML::EndMap;
  if (config.ok()) {
    if (auto file = ReadFile(enrolment, 1 << 20); file.ok()) {
      NamedDigest(out, "enrolment_configs", name, HexEncode(Sha256(AsBytes(*file))));
    }
  }
  out << YAML::EndMap << YAML::EndMap;
  // The EK, for policies that pin it instead (credential activation proves the AK is its).
  if (auto ek = tpm->EndorsementKey(); ek.ok()) {
    if (auto ek_sha256 = SpkiSha256(ek->ek_public); ek_sha256.ok()) {
      out << YAML::Newline
          << YAML::Comment(
                 "or, instead of the AK, its endorsement key" +
                 std::string(ek->ek_certificate.empty() ? "" : " (it has an EK certificate)") +
                 ": tpm.trusted_eks: [{name: " + name + ", sha256: " + *ek_sha256 + "}]");
    }
  }
  if (!out.good()) return Internal("writing the policy snippet: " + out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

Result<std::string> DescribeSnpIdentity(SevGuest& device, uint32_t vmpl,
                                        const SnpIdentity* identity) {
  BERTH_ASSIGN_OR_RETURN(Bytes raw, device.GetReport(Bytes(snp::kReportDataSize, 0), vmpl));
  BERTH_ASSIGN_OR_RETURN(snp::Report report, snp::ParseReport(raw));
  snp::Product product = report.product();
  snp::Tcb tcb = snp::DecodeTcb(report.reported_tcb, product);

  YAML::Emitter out;
  out << YAML::Comment("berthd policy for this SEV-SNP guest's launch measurement and TCB");
  out << YAML::BeginMap << YAML::Key << "sev_snp" << YAML::Value << YAML::BeginMap;
  out << YAML::Key << "measurements" << YAML::Value << YAML::BeginSeq
      << HexEncode(report.measurement) << YAML::EndSeq;
  out << YAML::Key << "min_tcb" << YAML::Value << YAML::Flow << YAML::BeginMap;
  out << YAML::Key << "bootloader" << YAML::Value << static_cast<unsigned>(tcb.bootloader);
  out << YAML::Key << "tee" << YAML::Value << static_cast<unsigned>(tcb.tee);
  out << YAML::Key << "snp" << YAML::Value << static_cast<unsigned>(tcb.snp);
  out << YAML::Key << "microcode" << YAML::Value << static_cast<unsigned>(tcb.microcode);
  if (tcb.fmc) out << YAML::Key << "fmc" << YAML::Value << static_cast<unsigned>(*tcb.fmc);
  out << YAML::EndMap;
  out << YAML::Key << "max_vmpl" << YAML::Value << report.vmpl;
  if (product != snp::Product::kUnknown) {
    out << YAML::Key << "products" << YAML::Value << YAML::Flow << YAML::BeginSeq
        << std::string(snp::ProductName(product)) << YAML::EndSeq;
  }
  out << YAML::EndMap << YAML::EndMap;
  if (identity != nullptr) {
    out << YAML::Newline
        << YAML::Comment(
               "this node's identity key (roles.control_plane ak_sha256, berthctl "
               "nodes approve --ak-sha256): sha256: " +
               identity->Fingerprint());
  }
  if (!out.good()) return Internal("writing the policy snippet: " + out.GetLastError());
  return std::string(out.c_str()) + "\n";
}

}  // namespace berth::agent
