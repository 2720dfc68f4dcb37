#include "verify/ec2_identity_policy.h"

#include <algorithm>
#include <regex>

#include "common/crypto.h"

namespace berth::verify {

namespace {

bool IsAccountId(const std::string& s) {
  return s.size() == 12 &&
         std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

bool IsAwsRegionName(const std::string& s) {
  static const std::regex kRegion("^[a-z]{2}(-[a-z]+)+-[0-9]+$");
  return std::regex_match(s, kRegion);
}

namespace {

Result<std::vector<std::string>> StringList(const YAML::Node& node, const std::string& where) {
  if (!node.IsSequence()) return InvalidArgument(where + ": expected a list");
  std::vector<std::string> out;
  for (size_t i = 0; i < node.size(); ++i) {
    if (!node[i].IsScalar())
      return InvalidArgument(where + "[" + std::to_string(i) + "]: expected a string");
    out.push_back(node[i].as<std::string>());
  }
  return out;
}

}  // namespace

Status ParseEc2IdentityPolicy(const YAML::Node& node, Ec2IdentityPolicy& out) {
  out = Ec2IdentityPolicy{};
  if (!node) return OkStatus();
  if (!node.IsMap()) return InvalidArgument("admission.ec2_identity: expected a map");
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    const std::string where = "admission.ec2_identity." + key;
    if (key == "account_ids") {
      BERTH_ASSIGN_OR_RETURN(out.account_ids, StringList(entry.second, where));
      for (const auto& id : out.account_ids) {
        if (!IsAccountId(id))
          return InvalidArgument(where + ": \"" + id + "\" is not a 12-digit AWS account ID");
      }
    } else if (key == "regions") {
      BERTH_ASSIGN_OR_RETURN(out.regions, StringList(entry.second, where));
      for (const auto& r : out.regions) {
        if (!IsAwsRegionName(r))
          return InvalidArgument(where + ": \"" + r + "\" is not an AWS region name");
      }
    } else if (key == "certificates") {
      if (!entry.second.IsMap()) return InvalidArgument(where + ": expected a map of region: PEM");
      for (const auto& c : entry.second) {
        const std::string region = c.first.as<std::string>();
        if (!IsAwsRegionName(region)) {
          return InvalidArgument(where + ": \"" + region + "\" is not an AWS region name");
        }
        std::string pem = c.second.IsScalar() ? c.second.as<std::string>() : "";
        auto certs = CertsFromPem(pem);
        if (!certs.ok() || certs->empty()) {
          return InvalidArgument(where + "." + region + ": expected PEM certificates");
        }
        out.certificates[region] = pem;
      }
    } else {
      return InvalidArgument("policy: unknown key \"" + where + "\"");
    }
  }
  return OkStatus();
}

}  // namespace berth::verify
