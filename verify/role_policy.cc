#include "verify/role_policy.h"

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

Status ParseRolePolicy(const YAML::Node& roles, const std::vector<TrustedAk>& trusted_aks,
                       RolePolicy& out) {
  if (!roles) return OkStatus();
  if (!roles.IsMap()) return InvalidArgument("policy: roles: expected a map");
  for (const auto& key : roles) {
    std::string k = key.first.as<std::string>();
    if (k != "control_plane") return InvalidArgument("policy: unknown key \"roles." + k + "\"");
  }
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
