#include "verify/tpm_policy.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <ctime>
#include <set>

#include "common/time.h"
#include "common/tpm/sealed_boot.h"

namespace berth::verify {

namespace {

constexpr const char* kKeys[] = {"ek_ca_bundles",     "ek_ca_pem", "trusted_eks",
                                 "ak_ca_bundles",     "ak_ca_pem", "certificate_time",
                                 "enrolment_configs", "pcr_sets",  "event_log"};

Result<Bytes> Hex(const YAML::Node& node, const std::string& where, size_t size) {
  if (!node || !node.IsScalar()) return InvalidArgument(where + ": expected a hex string");
  auto bytes = HexDecode(TrimWhitespace(node.as<std::string>()));
  if (!bytes.ok()) return bytes.status().WithContext(where);
  if (bytes->size() != size) {
    return InvalidArgument(where + ": " + std::to_string(bytes->size()) + " bytes, expected " +
                           std::to_string(size));
  }
  return bytes;
}

Status CheckKeys(const YAML::Node& map, const std::string& where,
                 std::initializer_list<std::string_view> allowed) {
  for (const auto& kv : map) {
    std::string k = kv.first.as<std::string>();
    if (std::find(allowed.begin(), allowed.end(), k) == allowed.end()) {
      return InvalidArgument(where + ": unknown key \"" + k + "\"");
    }
  }
  return OkStatus();
}

// [{name: ..., <digest_key>: <hex>}, ...]
Result<std::vector<NamedDigest>> NamedDigests(const YAML::Node& list, const std::string& where,
                                              const std::string& digest_key, size_t size) {
  if (!list.IsSequence()) return InvalidArgument(where + ": expected a list");
  std::vector<NamedDigest> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    const YAML::Node& entry = list[i];
    if (!entry.IsMap())
      return InvalidArgument(at + ": expected {name: ..., " + digest_key + ": <hex>}");
    BERTH_RETURN_IF_ERROR(CheckKeys(entry, at, {"name", digest_key}));
    NamedDigest d;
    BERTH_ASSIGN_OR_RETURN(d.digest, Hex(entry[digest_key], at + "." + digest_key, size));
    if (entry["name"]) d.name = entry["name"].as<std::string>();
    for (const auto& other : out) {
      if (other.digest == d.digest) return InvalidArgument(at + ": this digest is listed twice");
    }
    out.push_back(std::move(d));
  }
  return out;
}

Result<tpm::PcrValues> PcrMap(const YAML::Node& banks, const std::string& where,
                              std::set<std::string> skip = {}) {
  tpm::PcrValues out;
  for (const auto& bank : banks) {
    const std::string bank_name = bank.first.as<std::string>();
    if (skip.contains(bank_name)) continue;
    auto alg = DigestFromName(bank_name);
    if (!alg.ok()) return InvalidArgument(where + ": unknown bank \"" + bank_name + "\"");
    if (!bank.second.IsMap()) return InvalidArgument(where + "." + bank_name + ": expected a map");
    for (const auto& pcr : bank.second) {
      const std::string index_text = pcr.first.as<std::string>();
      const std::string at = where + "." + bank_name + "." + index_text;
      char* end = nullptr;
      unsigned long index = std::strtoul(index_text.c_str(), &end, 10);
      if (index_text.empty() || *end != '\0' || index > 23) {
        return InvalidArgument(at + ": PCR index must be 0-23");
      }
      BERTH_ASSIGN_OR_RETURN(Bytes value, Hex(pcr.second, at, DigestSize(*alg)));
      out[*alg][static_cast<uint32_t>(index)] = std::move(value);
    }
  }
  if (out.empty()) return InvalidArgument(where + ": pins no PCR");
  return out;
}

// CA certificates from bundle files and inline PEM, as DER.
Status CaCerts(const YAML::Node& tpm, const std::string& prefix, std::vector<Bytes>& out) {
  std::vector<std::pair<std::string, std::string>> sources;  // where, PEM text
  if (const YAML::Node& bundles = tpm[prefix + "_bundles"]; bundles) {
    if (!bundles.IsSequence())
      return InvalidArgument("tpm." + prefix + "_bundles: expected a list");
    for (size_t i = 0; i < bundles.size(); ++i) {
      const std::string where = "tpm." + prefix + "_bundles[" + std::to_string(i) + "]";
      const std::string path = bundles[i].as<std::string>();
      if (path.empty() || path.front() != '/') {
        return InvalidArgument(where + ": \"" + path + "\" is not an absolute path");
      }
      auto text = ReadFile(path, 4 << 20);
      if (!text.ok()) return text.status().WithContext(where);
      sources.emplace_back(where + " (" + path + ")", std::move(*text));
    }
  }
  if (const YAML::Node& pem = tpm[prefix + "_pem"]; pem) {
    sources.emplace_back("tpm." + prefix + "_pem", pem.as<std::string>());
  }
  for (const auto& [where, text] : sources) {
    auto certs = CertsFromPem(text);
    if (!certs.ok()) return certs.status().WithContext(where);
    for (auto& c : *certs) {
      BERTH_ASSIGN_OR_RETURN(Bytes der, CertToDer(c.get()));
      out.push_back(std::move(der));
    }
  }
  return OkStatus();
}

Result<int64_t> ParseTime(const YAML::Node& node) {
  const std::string text = node.as<std::string>();
  if (!text.empty() && text.back() == 'Z') {
    if (auto t = ParseRfc3339(text); t.ok()) return *t;
  }
  return InvalidArgument("tpm.certificate_time: \"" + text +
                         "\" is not a UTC time like 2026-02-04T00:00:00Z");
}

// The event types eventlog::ClassesMeasuredAt places classes at.
constexpr uint32_t kClassifiedTypes[] = {eventlog::kEvEfiBootServicesApplication,
                                         eventlog::kEvEfiVariableDriverConfig,
                                         eventlog::kEvEventTag, eventlog::kEvIpl};

// The PCRs events of class `c` are measured into, from eventlog::ClassesMeasuredAt.
std::set<uint32_t> PcrsOfClass(eventlog::EventClass c) {
  std::set<uint32_t> out;
  for (uint32_t pcr = 0; pcr < 24; ++pcr) {
    for (uint32_t type : kClassifiedTypes) {
      auto here = eventlog::ClassesMeasuredAt(pcr, type);
      if (std::find(here.begin(), here.end(), c) != here.end()) out.insert(pcr);
    }
  }
  return out;
}

// "PCR 4", "PCR 9 or 11", "PCR 8, 9, 11 or 12".
std::string PcrList(const std::set<uint32_t>& pcrs) {
  std::string out = "PCR ";
  size_t i = 0;
  for (uint32_t p : pcrs) {
    if (i > 0) out += i + 1 == pcrs.size() ? " or " : ", ";
    out += std::to_string(p);
    ++i;
  }
  return out;
}

Result<uint32_t> PcrIndex(const YAML::Node& node, const std::string& where) {
  const std::string text = node.IsScalar() ? node.as<std::string>() : "";
  char* end = nullptr;
  unsigned long index = std::strtoul(text.c_str(), &end, 10);
  if (text.empty() || *end != '\0' || index > 23) {
    return InvalidArgument(where + ": \"" + text + "\" is not a PCR index (0-23)");
  }
  return static_cast<uint32_t>(index);
}

Status ParseRequiredPcrs(const YAML::Node& node, std::set<uint32_t>& out) {
  const std::string where = "tpm.event_log.required_pcrs";
  if (!node) {
    return InvalidArgument(
        where +
        " is missing: list the PCRs every quote must cover (`berthctl policy from --eventlog` "
        "writes every PCR the reference boot extended); without it the node would choose which "
        "PCRs, and so which of its events, are checked");
  }
  if (!node.IsSequence() || node.size() == 0) {
    return InvalidArgument(where +
                           ": expected a non-empty list of PCR indices, e.g. [0, 1, 2, 3, 4, 5, "
                           "6, 7, 8, 9]");
  }
  for (size_t i = 0; i < node.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    BERTH_ASSIGN_OR_RETURN(uint32_t pcr, PcrIndex(node[i], at));
    if (pcr == 10) {
      return InvalidArgument(at + ": PCR 10 is IMA's: Linux extends it at runtime and the "
                                  "firmware's event log does not record it");
    }
    if (pcr == seal::kPcr) {
      return InvalidArgument(at + ": PCR 15 is berth-agent's: berthd checks it from the agent's "
                                  "own events (docs/attestation.md, \"Sealing the boot\")");
    }
    if (pcr > 14) {
      return InvalidArgument(at + ": PCR " + std::to_string(pcr) +
                             " is not one that boot firmware or loaders extend (0-9, 11-14)");
    }
    if (!out.insert(pcr).second) {
      return InvalidArgument(at + ": PCR " + std::to_string(pcr) + " is listed twice");
    }
  }
  return OkStatus();
}

Result<std::vector<ListedEvent>> ParseListedEvents(const YAML::Node& list, size_t digest_size) {
  const std::string where = "tpm.event_log.other_events";
  if (!list.IsSequence()) return InvalidArgument(where + ": expected a list");
  std::vector<ListedEvent> out;
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    const YAML::Node& entry = list[i];
    if (!entry.IsMap() || !entry["pcr"] || !entry["type"] || !entry["digest"]) {
      return InvalidArgument(at + ": expected {name: ..., pcr: <index>, type: <EV_...>, digest: "
                                  "<hex>}");
    }
    BERTH_RETURN_IF_ERROR(CheckKeys(entry, at, {"name", "pcr", "type", "digest"}));
    ListedEvent e;
    BERTH_ASSIGN_OR_RETURN(e.pcr, PcrIndex(entry["pcr"], at + ".pcr"));
    auto type = eventlog::EventTypeFromName(entry["type"].as<std::string>());
    if (!type.ok()) return type.status().WithContext(at + ".type");
    e.type = *type;
    if (e.type == eventlog::kEvNoAction) {
      return InvalidArgument(at + ".type: EV_NO_ACTION events are never extended into a PCR");
    }
    BERTH_ASSIGN_OR_RETURN(e.digest, Hex(entry["digest"], at + ".digest", digest_size));
    if (entry["name"]) e.name = entry["name"].as<std::string>();
    for (const auto& other : out) {
      if (other.pcr == e.pcr && other.type == e.type && other.digest == e.digest) {
        return InvalidArgument(at + ": this event is listed twice");
      }
    }
    out.push_back(std::move(e));
  }
  return out;
}

Status ParseEventLogPolicy(const YAML::Node& node, EventLogPolicy& out) {
  if (!node.IsMap()) return InvalidArgument("tpm.event_log: expected a map");
  BERTH_RETURN_IF_ERROR(CheckKeys(node, "tpm.event_log",
                                  {"bank", "required_pcrs", "boot_applications", "kernels",
                                   "initrds", "kernel_cmdlines", "secure_boot_variables",
                                   "other_events"}));
  if (node["bank"]) {
    auto bank = DigestFromName(node["bank"].as<std::string>());
    if (!bank.ok()) return bank.status().WithContext("tpm.event_log.bank");
    out.bank = *bank;
  }
  BERTH_RETURN_IF_ERROR(ParseRequiredPcrs(node["required_pcrs"], out.required_pcrs));
  const size_t size = DigestSize(out.bank);
  // A class whose PCRs no quote is required to cover could never be matched.
  auto require_pcrs_of = [&](eventlog::EventClass c, const std::string& key) -> Status {
    const std::set<uint32_t> pcrs = PcrsOfClass(c);
    for (uint32_t p : pcrs) {
      if (out.required_pcrs.contains(p)) return OkStatus();
    }
    return InvalidArgument(key + ": these events are measured into " + PcrList(pcrs) +
                           ", which tpm.event_log.required_pcrs does not list");
  };
  for (eventlog::EventClass c : kListedEventClasses) {
    const std::string key(eventlog::EventClassName(c));
    if (!node[key]) continue;
    BERTH_ASSIGN_OR_RETURN(out.allowed[c],
                           NamedDigests(node[key], "tpm.event_log." + key, "digest", size));
    BERTH_RETURN_IF_ERROR(require_pcrs_of(c, "tpm.event_log." + key));
  }
  if (const YAML::Node& vars = node["secure_boot_variables"]; vars) {
    if (!vars.IsMap()) {
      return InvalidArgument(
          "tpm.event_log.secure_boot_variables: expected a map of variable names");
    }
    for (const auto& v : vars) {
      const std::string name = v.first.as<std::string>();
      BERTH_ASSIGN_OR_RETURN(
          out.secure_boot_variables[name],
          NamedDigests(v.second, "tpm.event_log.secure_boot_variables." + name, "digest", size));
    }
    BERTH_RETURN_IF_ERROR(require_pcrs_of(eventlog::EventClass::kSecureBootVariable,
                                          "tpm.event_log.secure_boot_variables"));
  }
  if (node["other_events"]) {
    BERTH_ASSIGN_OR_RETURN(out.other_events, ParseListedEvents(node["other_events"], size));
    for (size_t i = 0; i < out.other_events.size(); ++i) {
      if (!out.required_pcrs.contains(out.other_events[i].pcr)) {
        return InvalidArgument("tpm.event_log.other_events[" + std::to_string(i) + "]: PCR " +
                               std::to_string(out.other_events[i].pcr) +
                               " is not in tpm.event_log.required_pcrs");
      }
    }
  }
  return OkStatus();
}

}  // namespace

bool IsTpmTrustPolicyKey(std::string_view key) {
  return std::find(std::begin(kKeys), std::end(kKeys), key) != std::end(kKeys);
}

Status ParseTpmTrustPolicy(const YAML::Node& tpm, TpmTrustPolicy& out) {
  BERTH_RETURN_IF_ERROR(CaCerts(tpm, "ek_ca", out.ek_ca_certs));
  BERTH_RETURN_IF_ERROR(CaCerts(tpm, "ak_ca", out.ak_ca_certs));
  if (tpm["trusted_eks"]) {
    BERTH_ASSIGN_OR_RETURN(out.trusted_eks,
                           NamedDigests(tpm["trusted_eks"], "tpm.trusted_eks", "sha256", 32));
  }
  if (tpm["certificate_time"]) {
    BERTH_ASSIGN_OR_RETURN(out.certificate_time, ParseTime(tpm["certificate_time"]));
  }
  if (tpm["enrolment_configs"]) {
    BERTH_ASSIGN_OR_RETURN(
        out.enrolment_configs,
        NamedDigests(tpm["enrolment_configs"], "tpm.enrolment_configs", "sha256", 32));
  }
  if (const YAML::Node& sets = tpm["pcr_sets"]; sets) {
    if (!sets.IsSequence()) return InvalidArgument("tpm.pcr_sets: expected a list");
    for (size_t i = 0; i < sets.size(); ++i) {
      const std::string where = "tpm.pcr_sets[" + std::to_string(i) + "]";
      if (!sets[i].IsMap()) return InvalidArgument(where + ": expected {name: ..., <bank>: {...}}");
      PcrSet set;
      set.name = sets[i]["name"] ? sets[i]["name"].as<std::string>() : std::to_string(i);
      BERTH_ASSIGN_OR_RETURN(set.pcrs, PcrMap(sets[i], where, {"name"}));
      out.pcr_sets.push_back(std::move(set));
    }
  }
  if (tpm["event_log"]) {
    EventLogPolicy p;
    BERTH_RETURN_IF_ERROR(ParseEventLogPolicy(tpm["event_log"], p));
    out.event_log = std::move(p);
  }
  return OkStatus();
}

}  // namespace berth::verify
