#include "verify/admission_policy.h"

namespace berth::verify {

Status ParseAdmissionPolicy(const YAML::Node& node, AdmissionPolicy& out) {
  out = AdmissionPolicy{};
  if (!node) return OkStatus();
  if (!node.IsMap()) return InvalidArgument("admission: expected a map");
  for (const auto& entry : node) {
    const std::string key = entry.first.as<std::string>();
    const YAML::Node& value = entry.second;
    if (key == "approval") {
      const std::string v = value.IsScalar() ? value.as<std::string>() : "";
      if (v == "required") {
        out.approval_required = true;
      } else if (v == "none") {
        out.approval_required = false;
      } else {
        return InvalidArgument("admission.approval: expected \"required\" or \"none\", not \"" + v +
                               "\"");
      }
    } else if (key == "ec2_preauthorized_only") {
      bool v = false;
      if (!value.IsScalar() || !YAML::convert<bool>::decode(value, v)) {
        return InvalidArgument("admission.ec2_preauthorized_only: expected true or false");
      }
      out.ec2_preauthorized_only = v;
    } else if (key == "ec2_identity") {
      BERTH_RETURN_IF_ERROR(ParseEc2IdentityPolicy(value, out.ec2_identity));
    } else {
      return InvalidArgument("policy: unknown key \"admission." + key + "\"");
    }
  }
  return OkStatus();
}

}  // namespace berth::verify
