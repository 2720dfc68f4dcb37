#include "verify/snp_policy.h"

#include <algorithm>
#include <array>
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

Status CheckComponent(const char* which, const char* name, uint8_t actual, uint8_t minimum) {
  if (actual < minimum) {
    return PermissionDenied("policy: " + std::string(which) + " " + std::string(name) + " SPL " +
                            std::to_string(actual) + " is below the minimum " +
                            std::to_string(minimum));
  }
  return OkStatus();
}

// `which` ("reported_tcb", "launch_tcb", ...) of the report against `minimum`.
Status CheckTcb(const char* which, uint64_t raw, snp::Product product, const snp::Tcb& minimum) {
  snp::Tcb tcb = snp::DecodeTcb(raw, product);
  BERTH_RETURN_IF_ERROR(CheckComponent(which, "bootloader", tcb.bootloader, minimum.bootloader));
  BERTH_RETURN_IF_ERROR(CheckComponent(which, "tee", tcb.tee, minimum.tee));
  BERTH_RETURN_IF_ERROR(CheckComponent(which, "snp", tcb.snp, minimum.snp));
  BERTH_RETURN_IF_ERROR(CheckComponent(which, "microcode", tcb.microcode, minimum.microcode));
  if (tcb.fmc && minimum.fmc) {
    BERTH_RETURN_IF_ERROR(CheckComponent(which, "fmc", *tcb.fmc, *minimum.fmc));
  }
  return OkStatus();
}

Result<snp::Tcb> ParseTcb(const YAML::Node& v, const std::string& where) {
  if (!v.IsMap()) return InvalidArgument(where + ": expected a map of components");
  snp::Tcb out;
  for (const auto& c : v) {
    std::string comp = c.first.as<std::string>();
    BERTH_ASSIGN_OR_RETURN(uint64_t spl, ParseUint(c.second, where + "." + comp, 255));
    uint8_t s = static_cast<uint8_t>(spl);
    if (comp == "bootloader")
      out.bootloader = s;
    else if (comp == "tee")
      out.tee = s;
    else if (comp == "snp")
      out.snp = s;
    else if (comp == "microcode")
      out.microcode = s;
    else if (comp == "fmc")
      out.fmc = s;
    else {
      return InvalidArgument(where + ": unknown component \"" + comp +
                             "\" (bootloader, tee, snp, microcode, fmc)");
    }
  }
  return out;
}

Result<std::vector<Bytes>> ParseDigests(const YAML::Node& v, const std::string& where,
                                        size_t size) {
  if (!v.IsSequence()) return InvalidArgument(where + ": expected a list of hex digests");
  std::vector<Bytes> out;
  for (size_t i = 0; i < v.size(); ++i) {
    std::string at = where + "[" + std::to_string(i) + "]";
    if (!v[i].IsScalar()) return InvalidArgument(at + ": expected a hex string");
    auto m = HexDecode(TrimWhitespace(v[i].as<std::string>()));
    if (!m.ok()) return m.status().WithContext(at);
    if (m->size() != size) {
      return InvalidArgument(at + ": " + std::to_string(m->size()) + " bytes, expected " +
                             std::to_string(size));
    }
    out.push_back(std::move(*m));
  }
  return out;
}

template <size_t N>
bool Listed(const std::vector<Bytes>& list, const std::array<uint8_t, N>& value) {
  Bytes v(value.begin(), value.end());
  return std::find(list.begin(), list.end(), v) != list.end();
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
      BERTH_ASSIGN_OR_RETURN(p.measurements, ParseDigests(v, where, snp::kMeasurementSize));
    } else if (key == "min_tcb") {
      BERTH_ASSIGN_OR_RETURN(p.min_tcb, ParseTcb(v, where));
    } else if (key == "min_launch_tcb") {
      BERTH_ASSIGN_OR_RETURN(p.min_launch_tcb, ParseTcb(v, where));
    } else if (key == "min_committed_tcb") {
      BERTH_ASSIGN_OR_RETURN(p.min_committed_tcb, ParseTcb(v, where));
    } else if (key == "host_data") {
      BERTH_ASSIGN_OR_RETURN(p.host_data, ParseDigests(v, where, 32));
    } else if (key == "id_key_digests") {
      BERTH_ASSIGN_OR_RETURN(p.id_key_digests, ParseDigests(v, where, 48));
    } else if (key == "author_key_digests") {
      BERTH_ASSIGN_OR_RETURN(p.author_key_digests, ParseDigests(v, where, 48));
    } else if (key == "allow_migrate_ma") {
      BERTH_ASSIGN_OR_RETURN(p.allow_migrate_ma, ParseBool(v, where));
    } else if (key == "require_crl") {
      BERTH_ASSIGN_OR_RETURN(p.require_crl, ParseBool(v, where));
    } else if (key == "vlek_csps") {
      if (!v.IsSequence()) return InvalidArgument(where + ": expected a list of cloud names");
      for (size_t i = 0; i < v.size(); ++i) {
        std::string csp = v[i].IsScalar() ? v[i].as<std::string>() : "";
        if (csp.empty()) {
          return InvalidArgument(where + "[" + std::to_string(i) + "]: expected a csp_id");
        }
        p.vlek_csps.push_back(csp);
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
  if ((p.required_policy_bits >> snp::kPolicyMigrateMaBit) & 1 && !p.allow_migrate_ma) {
    return InvalidArgument(
        "sev_snp.required_policy_bits: migrate_ma needs sev_snp.allow_migrate_ma: true");
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
  // A migration agent can move the guest, its memory and its keys, off this platform.
  if (((r.policy >> snp::kPolicyMigrateMaBit) & 1) && !allow_migrate_ma) {
    return PermissionDenied(
        "policy: the guest policy lets a migration agent in (migrate_ma, bit 18), which "
        "sev_snp.allow_migrate_ma does not allow");
  }
  if (!host_data.empty() && !Listed(host_data, r.host_data)) {
    return PermissionDenied("policy: host_data " + HexEncode(r.host_data) +
                            " is not in sev_snp.host_data");
  }
  if (!id_key_digests.empty() && !Listed(id_key_digests, r.id_key_digest)) {
    return PermissionDenied("policy: the ID key digest " + HexEncode(r.id_key_digest) +
                            " is not in sev_snp.id_key_digests");
  }
  if (!author_key_digests.empty() &&
      (!r.author_key_en || !Listed(author_key_digests, r.author_key_digest))) {
    return PermissionDenied(
        r.author_key_en ? "policy: the author key digest " + HexEncode(r.author_key_digest) +
                              " is not in sev_snp.author_key_digests"
                        : std::string("policy: the guest was launched without an author key "
                                      "(AUTHOR_KEY_EN), which sev_snp.author_key_digests needs"));
  }
  BERTH_RETURN_IF_ERROR(CheckTcb("reported_tcb", r.reported_tcb, product, min_tcb));
  BERTH_RETURN_IF_ERROR(CheckTcb("launch_tcb", r.launch_tcb, product, min_launch_tcb));
  BERTH_RETURN_IF_ERROR(CheckTcb("committed_tcb", r.committed_tcb, product, min_committed_tcb));
  return OkStatus();
}

Status SnpPolicy::CheckVlekCsp(const std::string& csp_id) const {
  if (std::find(vlek_csps.begin(), vlek_csps.end(), csp_id) != vlek_csps.end()) return OkStatus();
  return PermissionDenied("policy: the report is signed by a VLEK of cloud \"" + csp_id +
                          "\", which is not in sev_snp.vlek_csps");
}

std::string SnpPolicy::Describe() const {
  return "sev_snp measurement allow-list (" + std::to_string(measurements.size()) + "), min_tcb " +
         min_tcb.ToString() + ", max_vmpl " + std::to_string(max_vmpl) +
         (allow_debug ? ", debug allowed" : "");
}

}  // namespace berth::verify
