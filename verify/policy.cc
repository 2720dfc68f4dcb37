#include "verify/policy.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>

namespace berth::verify {

namespace {

Result<Bytes> ParseDigestHex(const YAML::Node& node, const std::string& where, size_t size) {
  if (!node.IsScalar()) return InvalidArgument(where + ": expected a hex string");
  auto bytes = HexDecode(TrimWhitespace(node.as<std::string>()));
  if (!bytes.ok()) return bytes.status().WithContext(where);
  if (bytes->size() != size) {
    return InvalidArgument(where + ": " + std::to_string(bytes->size()) + " bytes, expected " +
                           std::to_string(size));
  }
  return bytes;
}

Status ParseTrustedAks(const YAML::Node& list, Policy& policy) {
  if (!list) return OkStatus();
  if (!list.IsSequence()) return InvalidArgument("tpm.trusted_aks: expected a list");
  for (size_t i = 0; i < list.size(); ++i) {
    std::string where = "tpm.trusted_aks[" + std::to_string(i) + "]";
    const YAML::Node& entry = list[i];
    if (!entry.IsMap() || !entry["sha256"]) {
      return InvalidArgument(where + ": expected {name: ..., sha256: <hex>}");
    }
    TrustedAk ak;
    BERTH_ASSIGN_OR_RETURN(ak.spki_sha256, ParseDigestHex(entry["sha256"], where + ".sha256", 32));
    ak.name =
        entry["name"] ? entry["name"].as<std::string>() : HexEncode(ak.spki_sha256).substr(0, 16);
    if (policy.FindAk(ak.spki_sha256) != nullptr) {
      return InvalidArgument(where + ": this key is listed twice");
    }
    policy.trusted_aks.push_back(std::move(ak));
  }
  return OkStatus();
}

Status ParsePcrs(const YAML::Node& banks, Policy& policy) {
  if (!banks) return OkStatus();
  if (!banks.IsMap()) return InvalidArgument("tpm.pcrs: expected a map of banks");
  for (const auto& bank : banks) {
    std::string bank_name = bank.first.as<std::string>();
    auto alg = DigestFromName(bank_name);
    if (!alg.ok()) return InvalidArgument("tpm.pcrs: unknown bank \"" + bank_name + "\"");
    if (!bank.second.IsMap()) return InvalidArgument("tpm.pcrs." + bank_name + ": expected a map");
    for (const auto& pcr : bank.second) {
      std::string index_text = pcr.first.as<std::string>();
      std::string where = "tpm.pcrs." + bank_name + "." + index_text;
      char* end = nullptr;
      unsigned long index = std::strtoul(index_text.c_str(), &end, 10);
      if (index_text.empty() || *end != '\0' || index > 23) {
        return InvalidArgument(where + ": PCR index must be 0-23");
      }
      BERTH_ASSIGN_OR_RETURN(Bytes value, ParseDigestHex(pcr.second, where, DigestSize(*alg)));
      policy.pcrs[*alg][static_cast<uint32_t>(index)] = std::move(value);
    }
  }
  return OkStatus();
}

}  // namespace

const TrustedAk* Policy::FindAk(std::span<const uint8_t> spki_sha256) const {
  for (const auto& ak : trusted_aks) {
    if (std::equal(ak.spki_sha256.begin(), ak.spki_sha256.end(), spki_sha256.begin(),
                   spki_sha256.end())) {
      return &ak;
    }
  }
  return nullptr;
}

Status Policy::CheckPcrs(const tpm::PcrValues& quoted) const {
  for (const auto& [bank, values] : pcrs) {
    for (const auto& [index, expected] : values) {
      auto b = quoted.find(bank);
      if (b == quoted.end() || !b->second.contains(index)) {
        return PermissionDenied("policy pins PCR " + tpm::PcrName(bank, index) +
                                " but the quote does not cover it");
      }
      const Bytes& actual = b->second.at(index);
      if (actual != expected) {
        return PermissionDenied("PCR " + tpm::PcrName(bank, index) + " is " + HexEncode(actual) +
                                ", policy expects " + HexEncode(expected));
      }
    }
  }
  return OkStatus();
}

std::string Policy::DescribePcrs() const {
  std::string out;
  for (const auto& [bank, values] : pcrs) {
    if (!out.empty()) out += " ";
    out += std::string(DigestName(bank)) + ":";
    bool first = true;
    for (const auto& [index, value] : values) {
      out += (first ? "" : ",") + std::to_string(index);
      first = false;
    }
  }
  return out;
}

Result<Policy> ParsePolicy(const std::string& yaml_text, bool require_ak_trust) {
  Policy policy;
  try {
    YAML::Node root = YAML::Load(yaml_text);
    if (!root.IsMap()) return InvalidArgument("policy: expected a YAML map with a \"tpm\" key");
    for (const auto& key : root) {
      const std::string k = key.first.as<std::string>();
      if (k != "tpm" && k != "sev_snp" && k != "roles" && k != "admission") {
        return InvalidArgument("policy: unknown key \"" + key.first.as<std::string>() + "\"");
      }
    }
    if (root["sev_snp"]) {
      BERTH_ASSIGN_OR_RETURN(policy.sev_snp, ParseSnpPolicy(root["sev_snp"]));
    }
    if (root["tpm"] || !root["sev_snp"]) {  // a policy is for TPM nodes unless it is SNP-only
      YAML::Node tpm = root["tpm"];
      if (!tpm || !tpm.IsMap()) return InvalidArgument("policy: \"tpm\" must be a map");
      policy.has_tpm = true;
      for (const auto& key : tpm) {
        std::string k = key.first.as<std::string>();
        if (k != "trusted_aks" && k != "pcrs" && !IsTpmTrustPolicyKey(k)) {
          return InvalidArgument("policy: unknown key \"tpm." + k + "\"");
        }
      }
      BERTH_RETURN_IF_ERROR(ParseTrustedAks(tpm["trusted_aks"], policy));
      BERTH_RETURN_IF_ERROR(ParsePcrs(tpm["pcrs"], policy));
      BERTH_RETURN_IF_ERROR(ParseTpmTrustPolicy(tpm, policy.tpm_trust));
    }
    BERTH_RETURN_IF_ERROR(ParseRolePolicy(root["roles"], policy.trusted_aks, policy.roles));
    BERTH_RETURN_IF_ERROR(ParseAdmissionPolicy(root["admission"], policy.admission));
  } catch (const YAML::Exception& e) {
    return InvalidArgument(std::string("policy: YAML error: ") + e.what());
  }
  if (policy.has_tpm && require_ak_trust && policy.trusted_aks.empty() &&
      !policy.tpm_trust.TrustsKeysByCertificateOrEk()) {
    return InvalidArgument("policy: tpm.trusted_aks is empty, so no node could join");
  }
  if (policy.has_tpm && policy.pcrs.empty() && !policy.tpm_trust.ConstrainsBoot()) {
    return InvalidArgument("policy: tpm.pcrs pins no PCR, so any booted software would pass");
  }
  return policy;
}

Result<Policy> LoadPolicy(const std::string& path, bool require_ak_trust) {
  BERTH_ASSIGN_OR_RETURN(std::string text, ReadFile(path, 1 << 20));
  auto policy = ParsePolicy(text, require_ak_trust);
  if (!policy.ok()) return policy.status().WithContext(path);
  return policy;
}

}  // namespace berth::verify
