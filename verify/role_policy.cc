#include "verify/role_policy.h"

#include <algorithm>
#include <cctype>
#include <cstdlib>

#include "common/bytes.h"
#include "common/enrolment.h"
#include "verify/policy.h"

namespace berth::verify {

const RoleGrant* RolePolicy::FindControlPlane(const std::string& node,
                                              const std::string& ak_sha256_hex) const {
  if (ak_sha256_hex.empty()) return nullptr;
  for (const auto& g : control_plane) {
    if (g.ak_sha256_hex == ak_sha256_hex && (g.node.empty() || g.node == node)) return &g;
  }
  return nullptr;
}

namespace {

Status ParseColdStart(const YAML::Node& node, ColdStartPolicy& out) {
  if (!node) return OkStatus();
  if (!node.IsMap()) {
    return InvalidArgument("policy: roles.cold_start: expected a map with bank and pcrs");
  }
  for (const auto& key : node) {
    std::string k = key.first.as<std::string>();
    if (k != "bank" && k != "pcrs") {
      return InvalidArgument("policy: unknown key \"roles.cold_start." + k + "\"");
    }
  }
  if (node["bank"]) {
    const std::string name = node["bank"].as<std::string>();
    auto bank = DigestFromName(name);
    if (!bank.ok() || *bank == DigestAlg::kSha1) {
      return InvalidArgument("policy: roles.cold_start.bank: \"" + name +
                             "\" is not sha256, sha384 or sha512 (a SHA-1 policy would approve "
                             "any boot whose SHA-1 values collide)");
    }
    out.bank = *bank;
  }
  if (node["pcrs"]) {
    const YAML::Node& list = node["pcrs"];
    if (!list.IsSequence() || list.size() == 0) {
      return InvalidArgument(
          "policy: roles.cold_start.pcrs: expected a non-empty list of PCR indices (an empty "
          "one would let a control plane's TPM release its disk key in any boot)");
    }
    std::vector<uint32_t> pcrs;
    for (const auto& item : list) {
      const std::string text = item.as<std::string>();
      char* end = nullptr;
      const unsigned long pcr = std::strtoul(text.c_str(), &end, 10);
      if (text.empty() || !std::isdigit(static_cast<unsigned char>(text[0])) || *end != '\0' ||
          pcr > 14) {
        return InvalidArgument("policy: roles.cold_start.pcrs: \"" + text +
                               "\" is not a PCR from 0 to 14 (15 is berth-agent's per-boot "
                               "record, 16-23 can be reset by software)");
      }
      if (std::find(pcrs.begin(), pcrs.end(), pcr) != pcrs.end()) {
        return InvalidArgument("policy: roles.cold_start.pcrs: PCR " + text + " is listed twice");
      }
      pcrs.push_back(static_cast<uint32_t>(pcr));
    }
    std::sort(pcrs.begin(), pcrs.end());
    out.pcrs = std::move(pcrs);
  }
  return OkStatus();
}

}  // namespace

Status ParseRolePolicy(const YAML::Node& roles, const std::vector<TrustedAk>& trusted_aks,
                       RolePolicy& out) {
  if (!roles) return OkStatus();
  if (!roles.IsMap()) return InvalidArgument("policy: roles: expected a map");
  for (const auto& key : roles) {
    std::string k = key.first.as<std::string>();
    if (k != "control_plane" && k != "cold_start") {
      return InvalidArgument("policy: unknown key \"roles." + k + "\"");
    }
  }
  BERTH_RETURN_IF_ERROR(ParseColdStart(roles["cold_start"], out.cold_start));
  const YAML::Node list = roles["control_plane"];
  if (!list) return OkStatus();
  if (!list.IsSequence()) return InvalidArgument("policy: roles.control_plane: expected a list");
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string where = "roles.control_plane[" + std::to_string(i) + "]";
    const YAML::Node& entry = list[i];
    if (!entry.IsMap()) {
      return InvalidArgument("policy: " + where +
                             ": expected {ak: <trusted_aks name>} or "
                             "{ak_sha256: <hex>}, optionally with node: <name>");
    }
    for (const auto& key : entry) {
      std::string k = key.first.as<std::string>();
      if (k != "ak" && k != "ak_sha256" && k != "node") {
        return InvalidArgument("policy: unknown key \"" + where + "." + k + "\"");
      }
    }
    RoleGrant grant;
    grant.where = where;
    if (entry["ak"] && entry["ak_sha256"]) {
      return InvalidArgument("policy: " + where + ": give ak or ak_sha256, not both");
    }
    if (entry["ak"]) {
      const std::string name = entry["ak"].as<std::string>();
      for (const auto& ak : trusted_aks) {
        if (ak.name == name) grant.ak_sha256_hex = HexEncode(ak.spki_sha256);
      }
      if (grant.ak_sha256_hex.empty()) {
        return InvalidArgument("policy: " + where + ".ak: \"" + name +
                               "\" is not a name in tpm.trusted_aks");
      }
    } else if (entry["ak_sha256"]) {
      auto bytes = HexDecode(TrimWhitespace(entry["ak_sha256"].as<std::string>()));
      if (!bytes.ok() || bytes->size() != 32) {
        return InvalidArgument("policy: " + where + ".ak_sha256: expected 64 hex digits");
      }
      grant.ak_sha256_hex = HexEncode(*bytes);
    } else {
      return InvalidArgument("policy: " + where +
                             ": names no attestation key (ak or ak_sha256); a node name alone "
                             "is a claim, not an authorization");
    }
    if (entry["node"]) {
      grant.node = entry["node"].as<std::string>();
      if (!IsValidNodeName(grant.node)) {
        return InvalidArgument("policy: " + where + ".node: \"" + grant.node +
                               "\" is not a valid node name");
      }
    }
    out.control_plane.push_back(std::move(grant));
  }
  return OkStatus();
}

}  // namespace berth::verify
