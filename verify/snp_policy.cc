#include "verify/snp_policy.h"

#include <algorithm>
#include <cerrno>
#include <cstdlib>

namespace berth::verify {

namespace {

Result<uint64_t> ParseUint(const YAML::Node& node, const std::string& where, uint64_t max) {
  if (!node.IsScalar()) return InvalidArgument(where + ": expected a number");
  std::string text = TrimWhitespace(node.as<std::string>());
  char* end = nullptr;
  errno = 0;
  unsigned long long v = std::strtoull(text.c_str(), &end, 0);
  if (text.empty() || text[0] == '-' || *end != '\0' || errno != 0 || v > max) {
    return InvalidArgument(where + ": expected a number 0-" + std::to_string(max));
  }
  return static_cast<uint64_t>(v);
}

Result<bool> ParseBool(const YAML::Node& node, const std::string& where) {
  if (node.IsScalar()) {
    std::string v = node.as<std::string>();
    if (v == "true") return true;
    if (v == "false") return false;
  }
  return InvalidArgument(where + ": expected true or false");
}

Result<uint64_t> ParseBits(const YAML::Node& list, const std::string& where) {
  if (!list.IsSequence()) return InvalidArgument(where + ": expected a list of policy bit names");
  uint64_t bits = 0;
  for (size_t i = 0; i < list.size(); ++i) {
    std::string name = list[i].IsScalar() ? list[i].as<std::string>() : "";
    auto bit = snp::PolicyBitFromName(name);
    if (!bit || *bit == snp::kPolicyDebugBit) {
      return InvalidArgument(where + "[" + std::to_string(i) + "]: \"" + name +
                             "\" is not a guest policy bit name" +
                             (name == "debug" ? " here (use allow_debug)" : ""));
    }
    bits |= uint64_t{1} << *bit;
  }
  return bits;
}

std::string BitNames(uint64_t bits) {
  std::string out;
  for (int b = 0; b < 64; ++b) {
    if ((bits >> b) & 1) out += (out.empty() ? "" : ",") + snp::PolicyBitName(b);
  }
  return out;
}

Status CheckComponent(const char* name, uint8_t actual, uint8_t minimum) {
  if (actual < minimum) {
    return PermissionDenied("policy: reported_tcb " + std::string(name) + " SPL " +
                            std::to_string(actual) + " is below the minimum " +
                            std::to_string(minimum));
  }
  return OkStatus();
}

}  // namespace

Result<SnpPolicy> ParseSnpPolicy(const YAML::Node& node) {
  SnpPolicy p;
  if (!node.IsMap()) return InvalidArgument("policy: \"sev_snp\" must be a map");
  for (const auto& kv : node) {
    const std::string key = kv.first.as<std::string>();
    const std::string where = "sev_snp." + key;
    const YAML::Node& v = kv.second;
    if (key == "measurements") {
      if (!v.IsSequence()) return InvalidArgument(where + ": expected a list of hex digests");
      for (size_t i = 0; i < v.size(); ++i) {
        std::string at = where + "[" + std::to_string(i) + "]";
        if (!v[i].IsScalar()) return InvalidArgument(at + ": expected a hex string");
        auto m = HexDecode(TrimWhitespace(v[i].as<std::string>()));
        if (!m.ok()) return m.status().WithContext(at);
        if (m->size() != snp::kMeasurementSize) {
          return InvalidArgument(at + ": " + std::to_string(m->size()) + " bytes, expected 48");
        }
        p.measurements.push_back(std::move(*m));
      }
    } else if (key == "min_tcb") {
      if (!v.IsMap()) return InvalidArgument(where + ": expected a map of components");
      for (const auto& c : v) {
        std::string comp = c.first.as<std::string>();
        BERTH_ASSIGN_OR_RETURN(uint64_t spl, ParseUint(c.second, where + "." + comp, 255));
        uint8_t s = static_cast<uint8_t>(spl);
        if (comp == "bootloader")
          p.min_tcb.bootloader = s;
        else if (comp == "tee")
          p.min_tcb.tee = s;
        else if (comp == "snp")
          p.min_tcb.snp = s;
        else if (comp == "microcode")
          p.min_tcb.microcode = s;
        else if (comp == "fmc")
          p.min_tcb.fmc = s;
        else {
          return InvalidArgument(where + ": unknown component \"" + comp +
                                 "\" (bootloader, tee, snp, microcode, fmc)");
        }
      }
    } else if (key == "allow_debug") {
      BERTH_ASSIGN_OR_RETURN(p.allow_debug, ParseBool(v, where));
    } else if (key == "max_vmpl") {
      BERTH_ASSIGN_OR_RETURN(uint64_t vmpl, ParseUint(v, where, 3));
      p.max_vmpl = static_cast<uint32_t>(vmpl);
    } else if (key == "required_policy_bits") {
      BERTH_ASSIGN_OR_RETURN(p.required_policy_bits, ParseBits(v, where));
    } else if (key == "forbidden_policy_bits") {
      BERTH_ASSIGN_OR_RETURN(p.forbidden_policy_bits, ParseBits(v, where));
    } else if (key == "products") {
      if (!v.IsSequence()) return InvalidArgument(where + ": expected a list of product names");
      for (size_t i = 0; i < v.size(); ++i) {
        std::string name = v[i].IsScalar() ? v[i].as<std::string>() : "";
        snp::Product product = snp::ProductFromName(name);
        if (product == snp::Product::kUnknown || name.find('-') != std::string::npos) {
          return InvalidArgument(where + "[" + std::to_string(i) + "]: \"" + name +
                                 "\" is not Milan, Genoa or Turin");
        }
        p.products.push_back(product);
      }
    } else {
      return InvalidArgument("policy: unknown key \"" + where + "\"");
    }
  }
  if (p.required_policy_bits & p.forbidden_policy_bits) {
    return InvalidArgument("sev_snp: policy bits " +
                           BitNames(p.required_policy_bits & p.forbidden_policy_bits) +
                           " are both required and forbidden");
  }
  if (p.measurements.empty()) {
    return InvalidArgument("policy: sev_snp.measurements is empty, so any guest image would pass");
  }
  return p;
}

Status SnpPolicy::CheckProduct(snp::Product product) const {
  if (products.empty() || std::find(products.begin(), products.end(), product) != products.end()) {
    return OkStatus();
  }
  return PermissionDenied("policy: product " + std::string(snp::ProductName(product)) +
                          " is not in sev_snp.products");
}

Status SnpPolicy::Check(const snp::Report& r, snp::Product product) const {
  BERTH_RETURN_IF_ERROR(CheckProduct(product));
  Bytes measurement(r.measurement.begin(), r.measurement.end());
  if (std::find(measurements.begin(), measurements.end(), measurement) == measurements.end()) {
    return PermissionDenied("policy: measurement " + HexEncode(measurement) +
                            " is not in sev_snp.measurements");
  }
  if (r.debug() && !allow_debug) {
    return PermissionDenied(
        "policy: the guest policy allows debugging (bit 19), which "
        "sev_snp.allow_debug forbids");
  }
  if (r.vmpl > max_vmpl) {
    return PermissionDenied("policy: the report was requested at VMPL " + std::to_string(r.vmpl) +
                            ", above sev_snp.max_vmpl " + std::to_string(max_vmpl));
  }
  if (uint64_t missing = required_policy_bits & ~r.policy) {
    return PermissionDenied("policy: guest policy lacks required bits " + BitNames(missing));
  }
  if (uint64_t present = forbidden_policy_bits & r.policy) {
    return PermissionDenied("policy: guest policy has forbidden bits " + BitNames(present));
  }
  snp::Tcb tcb = snp::DecodeTcb(r.reported_tcb, product);
  BERTH_RETURN_IF_ERROR(CheckComponent("bootloader", tcb.bootloader, min_tcb.bootloader));
  BERTH_RETURN_IF_ERROR(CheckComponent("tee", tcb.tee, min_tcb.tee));
  BERTH_RETURN_IF_ERROR(CheckComponent("snp", tcb.snp, min_tcb.snp));
  BERTH_RETURN_IF_ERROR(CheckComponent("microcode", tcb.microcode, min_tcb.microcode));
  if (tcb.fmc && min_tcb.fmc) BERTH_RETURN_IF_ERROR(CheckComponent("fmc", *tcb.fmc, *min_tcb.fmc));
  return OkStatus();
}

std::string SnpPolicy::Describe() const {
  return "sev_snp measurement allow-list (" + std::to_string(measurements.size()) + "), min_tcb " +
         min_tcb.ToString() + ", max_vmpl " + std::to_string(max_vmpl) +
         (allow_debug ? ", debug allowed" : "");
}

}  // namespace berth::verify
