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

constexpr eventlog::EventClass kListedClasses[] = {
    eventlog::EventClass::kBootApplication, eventlog::EventClass::kKernel,
    eventlog::EventClass::kInitrd, eventlog::EventClass::kKernelCmdline};

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
  for (eventlog::EventClass c : kListedClasses) {
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

// "shim 15.8" / "digest 1f3a..." for messages.
std::string Label(const NamedDigest& d) {
  return d.name.empty() ? "digest " + HexEncode(d.digest).substr(0, 16) : d.name;
}

const NamedDigest* Find(const std::vector<NamedDigest>& list, const Bytes& digest) {
  for (const auto& d : list) {
    if (d.digest == digest) return &d;
  }
  return nullptr;
}

std::string Quote(std::string_view s) { return "\"" + std::string(s) + "\""; }

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

Result<std::string> CheckPcrSets(const std::vector<PcrSet>& sets, const tpm::PcrValues& quoted) {
  if (sets.empty()) return std::string();
  std::string reasons;
  for (const PcrSet& set : sets) {
    std::string mismatch;
    for (const auto& [bank, values] : set.pcrs) {
      for (const auto& [index, expected] : values) {
        auto b = quoted.find(bank);
        if (b == quoted.end() || !b->second.contains(index)) {
          mismatch = "PCR " + tpm::PcrName(bank, index) + " is not quoted";
        } else if (b->second.at(index) != expected) {
          mismatch = "PCR " + tpm::PcrName(bank, index) + " is " + HexEncode(b->second.at(index));
        }
        if (!mismatch.empty()) break;
      }
      if (!mismatch.empty()) break;
    }
    if (mismatch.empty()) return set.name;
    reasons += (reasons.empty() ? "" : "; ") + Quote(set.name) + ": " + mismatch;
  }
  return PermissionDenied("no tpm.pcr_sets entry matches the quoted PCRs (" + reasons + ")");
}

Result<std::string> CheckEventLog(const eventlog::EventLog& log, const tpm::PcrValues& quoted,
                                  const EventLogPolicy* policy, const std::set<uint32_t>& pinned) {
  const tpm::PcrValues replayed = eventlog::Replay(log);
  auto in_log = [&](DigestAlg b) {
    return std::find(log.banks.begin(), log.banks.end(), b) != log.banks.end();
  };
  // 1. The policy, not the node, decides what is quoted.
  std::set<uint32_t> covered;
  if (policy != nullptr) {
    if (!in_log(policy->bank)) {
      return PermissionDenied("the event log has no " + std::string(DigestName(policy->bank)) +
                              " digests, which the policy's event rules are written in");
    }
    auto q = quoted.find(policy->bank);
    for (uint32_t pcr : policy->required_pcrs) {
      if (q == quoted.end() || !q->second.contains(pcr)) {
        return PermissionDenied("the quote does not cover PCR " +
                                tpm::PcrName(policy->bank, pcr) +
                                ", which tpm.event_log.required_pcrs requires in every quote");
      }
    }
    covered = policy->required_pcrs;
    covered.insert(pinned.begin(), pinned.end());
  }

  // 2. Replay == quote, for every PCR the log extends or the policy covers, in every bank both
  // the quote and the log have. A covered PCR the log does not extend must be at its reset
  // value: events left out of the log are events nobody checks.
  std::map<DigestAlg, std::set<uint32_t>> vouched;
  for (const auto& [b, quoted_values] : quoted) {
    if (!in_log(b)) continue;
    const auto r = replayed.find(b);
    std::set<uint32_t> pcrs;
    if (r != replayed.end()) {
      for (const auto& [index, value] : r->second) pcrs.insert(index);
    }
    if (policy != nullptr && b == policy->bank) pcrs.insert(covered.begin(), covered.end());
    for (uint32_t index : pcrs) {
      auto v = quoted_values.find(index);
      if (v == quoted_values.end()) continue;
      const bool extended = r != replayed.end() && r->second.contains(index);
      const Bytes value = extended ? r->second.at(index) : eventlog::InitialPcrValue(log, b, index);
      if (v->second != value) {
        return PermissionDenied("the event log does not match the quoted PCR " +
                                tpm::PcrName(b, index) + ": the log replays to " +
                                HexEncode(value) + ", the quote holds " + HexEncode(v->second));
      }
      if (extended) vouched[b].insert(index);
    }
  }

  auto pcr_list = [](const std::set<uint32_t>& pcrs) {
    std::string out;
    for (uint32_t i : pcrs) out += (out.empty() ? "" : ",") + std::to_string(i);
    return out;
  };

  if (policy == nullptr) {
    // The bank to report in: sha256 if the quote vouches for any of it, else the first bank it
    // vouches for.
    DigestAlg bank = DigestAlg::kSha256;
    if (vouched[DigestAlg::kSha256].empty()) {
      for (DigestAlg b : log.banks) {
        if (!vouched[b].empty()) {
          bank = b;
          break;
        }
      }
    }
    if (!in_log(bank)) {
      return PermissionDenied("the event log has no " + std::string(DigestName(bank)) +
                              " digests, which the policy's event rules are written in");
    }
    const std::set<uint32_t>& trusted = vouched[bank];
    if (trusted.empty()) {
      return PermissionDenied("the quote covers none of the " + std::string(DigestName(bank)) +
                              " PCRs the event log extends, so nothing in the log is vouched for");
    }
    for (const auto& e : log.events) {
      if (e.type == eventlog::kEvNoAction || !trusted.contains(e.pcr)) continue;
      BERTH_RETURN_IF_ERROR(eventlog::CheckEventPcr(e, bank));
      BERTH_RETURN_IF_ERROR(eventlog::CheckEventDataDigests(e));
    }
    std::string summary =
        "event log replayed to quoted " + std::string(DigestName(bank)) + ":" + pcr_list(trusted);
    std::set<uint32_t> unquoted;
    if (auto r = replayed.find(bank); r != replayed.end()) {
      for (const auto& [index, value] : r->second) {
        if (!trusted.contains(index)) unquoted.insert(index);
      }
    }
    if (!unquoted.empty()) {
      summary += "; not quoted, so nothing vouches for its events there: " +
                 std::string(DigestName(bank)) + ":" + pcr_list(unquoted);
    }
    return summary;
  }

  // 3. Default deny: every event, in log order, in a covered PCR, in its place, and accepted
  // by a rule chosen by where it was measured, never by what its data says it is.
  const DigestAlg bank = policy->bank;
  std::string classes;
  std::map<eventlog::EventClass, int> seen;
  std::set<std::string> variables_seen;
  int listed = 0;
  for (const auto& e : log.events) {
    if (e.type == eventlog::kEvNoAction) continue;
    const std::string what = eventlog::DescribeEvent(e);
    const std::string described =
        eventlog::EventReference(e, bank) + (what.empty() ? "" : " " + Quote(what));
    BERTH_RETURN_IF_ERROR(eventlog::CheckEventPcr(e, bank));
    if (!covered.contains(e.pcr)) {
      return PermissionDenied(described + " is in PCR " + std::to_string(e.pcr) +
                              ", which the policy does not cover: the log may extend only the "
                              "PCRs of tpm.event_log.required_pcrs (and tpm.pcrs)");
    }
    auto digest = e.digests.find(bank);
    if (digest == e.digests.end()) {
      return PermissionDenied(eventlog::EventReference(e, bank) + " has no " +
                              std::string(DigestName(bank)) + " digest");
    }
    BERTH_RETURN_IF_ERROR(eventlog::CheckEventDataDigests(e));
    if (pinned.contains(e.pcr)) continue;                // the policy fixed the whole PCR
    if (!eventlog::FixedEventKind(e).empty()) continue;  // a separator, a firmware action, ...

    bool accepted = false;
    std::vector<std::string> consulted;
    for (eventlog::EventClass c : eventlog::ClassesMeasuredAt(e.pcr, e.type)) {
      consulted.emplace_back(eventlog::EventClassName(c));
      if (c == eventlog::EventClass::kSecureBootVariable) {
        auto name = eventlog::UefiVariableName(e);
        if (!name.ok()) return PermissionDenied(name.status().message());
        auto allowed = policy->secure_boot_variables.find(*name);
        if (allowed != policy->secure_boot_variables.end() &&
            Find(allowed->second, digest->second) != nullptr) {
          variables_seen.insert(*name);
          accepted = true;
        }
      } else if (auto allowed = policy->allowed.find(c); allowed != policy->allowed.end()) {
        if (const NamedDigest* match = Find(allowed->second, digest->second); match != nullptr) {
          classes += " " + std::string(eventlog::EventClassName(c)) + "[" + Label(*match) + "]";
          ++seen[c];
          accepted = true;
        }
      }
      if (accepted) break;
    }
    if (!accepted) {
      consulted.emplace_back("other_events");
      for (const ListedEvent& l : policy->other_events) {
        if (l.pcr == e.pcr && l.type == e.type && l.digest == digest->second) {
          ++listed;
          accepted = true;
          break;
        }
      }
    }
    if (accepted) continue;

    // Refused. The data's own description only chooses the words.
    const eventlog::EventClass c = eventlog::ClassifyEvent(e);
    if (c == eventlog::EventClass::kSecureBootVariable) {
      auto name = eventlog::UefiVariableName(e);
      if (!name.ok()) return PermissionDenied(name.status().message());
      return PermissionDenied(
          "Secure Boot variable " + described + " is not in tpm.event_log.secure_boot_variables" +
          (policy->secure_boot_variables.contains(*name) ? "." + *name : ""));
    }
    if (c != eventlog::EventClass::kOther) {
      return PermissionDenied(std::string(eventlog::EventClassName(c)) + " " + described +
                              " is not in tpm.event_log." +
                              std::string(eventlog::EventClassName(c)));
    }
    std::string lists;
    for (const std::string& l : consulted) {
      lists += (lists.empty() ? "tpm.event_log." : ", tpm.event_log.") + l;
    }
    return PermissionDenied(described +
                            " is not allowed: it is no fixed event, its PCR is not pinned, and its "
                            "digest is in none of " +
                            lists);
  }

  // 4. Every configured class and variable was measured.
  for (const auto& [c, list] : policy->allowed) {
    if (!list.empty() && seen[c] == 0) {
      return PermissionDenied("tpm.event_log." + std::string(eventlog::EventClassName(c)) +
                              ": the event log has no such event in a quoted PCR");
    }
  }
  for (const auto& [name, list] : policy->secure_boot_variables) {
    if (!variables_seen.contains(name)) {
      return PermissionDenied("tpm.event_log.secure_boot_variables." + name +
                              ": the event log does not measure this variable in a quoted PCR 7");
    }
  }
  std::string summary = "event log replayed to quoted " + std::string(DigestName(bank)) + ":" +
                        pcr_list(vouched[bank]) + classes;
  if (!policy->secure_boot_variables.empty()) summary += " secure_boot_variables";
  if (listed > 0) summary += " other_events(" + std::to_string(listed) + ")";
  return summary;
}

Result<std::string> CheckSealedBoot(const TpmTrustPolicy& policy, const v1::TpmEvidence& evidence,
                                    const tpm::PcrValues& quoted) {
  const std::string pcr = std::to_string(seal::kPcr);
  std::vector<Bytes> events;
  std::optional<Bytes> config;
  for (int i = 0; i < evidence.agent_events_size(); ++i) {
    const v1::TpmAgentEvent& e = evidence.agent_events(i);
    const std::string at = "berth-agent event #" + std::to_string(i);
    if (e.pcr() != seal::kPcr) {
      return InvalidArgument(at + " is in PCR " + std::to_string(e.pcr()) + ", not " + pcr);
    }
    auto parsed = seal::ParseEvent(AsBytes(e.data()));
    if (!parsed.ok()) return parsed.status().WithContext(at);
    if (parsed->kind == seal::SealEvent::Kind::kKeysReleased) {
      return PermissionDenied(at + " (PCR " + pcr +
                              ") says this boot already released its keys: a second attestation "
                              "in the same boot is refused; reboot the node");
    }
    if (config.has_value()) return PermissionDenied(at + ": a second EnrolmentConfig measurement");
    config = parsed->config_sha256;
    events.push_back(ToBytes(e.data()));
  }
  bool covered = false;
  for (const auto& [bank, values] : quoted) {
    auto v = values.find(seal::kPcr);
    if (v == values.end()) continue;
    covered = true;
    Bytes replayed = seal::Replay(bank, events);
    if (replayed != v->second) {
      return PermissionDenied(
          "PCR " + tpm::PcrName(bank, seal::kPcr) + " is " + HexEncode(v->second) +
          ", but berth-agent's " + std::to_string(events.size()) + " event(s) replay to " +
          HexEncode(replayed) + ": something else measured into it, or the keys were released");
    }
  }
  if (!covered) {
    return PermissionDenied("the quote does not cover PCR " + pcr +
                            ", where berth-agent seals the boot, so berthd cannot tell whether "
                            "this boot already released its keys");
  }
  std::string summary = config.has_value()
                            ? "enrolment_config sha256:" + HexEncode(*config).substr(0, 16)
                            : "no enrolment config measured";
  if (!policy.enrolment_configs.empty()) {
    if (!config.has_value()) {
      return PermissionDenied(
          "the policy pins tpm.enrolment_configs, but this boot measured no "
          "EnrolmentConfig into PCR " +
          pcr);
    }
    const NamedDigest* match = Find(policy.enrolment_configs, *config);
    if (match == nullptr) {
      return PermissionDenied("the node booted with EnrolmentConfig sha256:" + HexEncode(*config) +
                              ", which is not in tpm.enrolment_configs");
    }
    summary = "enrolment_configs[" + Label(*match) + "]";
  }
  return summary;
}

Result<std::string> PolicyFromEventLog(const eventlog::EventLog& log, DigestAlg bank,
                                       const std::string& source_name) {
  if (std::find(log.banks.begin(), log.banks.end(), bank) == log.banks.end()) {
    return InvalidArgument("the event log has no " + std::string(DigestName(bank)) + " digests");
  }
  auto quote_yaml = [](const std::string& s) {
    std::string out = "'";
    for (char c : s) out += c == '\'' ? std::string("''") : std::string(1, c);
    return out + "'";
  };
  auto label = [](const eventlog::Event& e) {
    std::string what = eventlog::DescribeEvent(e);
    if (what.size() > 80) what = what.substr(0, 77) + "...";
    return "event " + std::to_string(e.index) + (what.empty() ? "" : ": " + what);
  };
  std::map<eventlog::EventClass, std::vector<std::pair<std::string, Bytes>>> lists;
  std::map<std::string, std::vector<Bytes>> variables;
  std::set<uint32_t> extended, classified_pcrs;
  for (const auto& e : log.events) {
    if (e.type == eventlog::kEvNoAction) continue;
    auto d = e.digests.find(bank);
    if (d == e.digests.end()) {
      return InvalidArgument(eventlog::EventReference(e, bank) + " has no " +
                             std::string(DigestName(bank)) + " digest");
    }
    extended.insert(e.pcr);
    const eventlog::EventClass c = eventlog::ClassifyEvent(e);
    if (c == eventlog::EventClass::kOther) continue;
    classified_pcrs.insert(e.pcr);
    if (c == eventlog::EventClass::kSecureBootVariable) {
      auto name = eventlog::UefiVariableName(e);
      if (!name.ok()) return name.status();
      auto& v = variables[*name];
      if (std::find(v.begin(), v.end(), d->second) == v.end()) v.push_back(d->second);
      continue;
    }
    auto& list = lists[c];
    bool dup =
        std::any_of(list.begin(), list.end(), [&](const auto& p) { return p.second == d->second; });
    if (!dup) list.emplace_back(label(e), d->second);
  }
  // The PCRs no event rule speaks for (firmware code and configuration, MOK lists) are pinned
  // to this boot's values; in the others every event that is neither classified nor fixed is
  // listed by place and digest.
  std::set<uint32_t> pinned;
  for (uint32_t pcr : extended) {
    if (!classified_pcrs.contains(pcr)) pinned.insert(pcr);
  }
  std::vector<const eventlog::Event*> others;
  for (const auto& e : log.events) {
    if (e.type == eventlog::kEvNoAction || pinned.contains(e.pcr) ||
        eventlog::ClassifyEvent(e) != eventlog::EventClass::kOther ||
        !eventlog::FixedEventKind(e).empty()) {
      continue;
    }
    const Bytes& d = e.digests.at(bank);
    bool dup = std::any_of(others.begin(), others.end(), [&](const eventlog::Event* o) {
      return o->pcr == e.pcr && o->type == e.type && o->digests.at(bank) == d;
    });
    if (!dup) others.push_back(&e);
  }

  const tpm::PcrValues replayed = eventlog::Replay(log);
  std::string out = "# berthd policy accepting exactly the boot recorded in " + source_name +
                    "\n# (" + std::string(DigestName(bank)) +
                    " bank). Edit before use: add how this fleet's attestation keys are\n"
                    "# trusted (trusted_aks, ek_ca_bundles, trusted_eks or ak_ca_bundles), and "
                    "add the digests\n# of other approved kernels, initrds and command lines "
                    "next to these ones.\ntpm:\n";
  out += "  event_log:\n    bank: " + std::string(DigestName(bank)) + "\n";
  std::string required;
  for (uint32_t pcr : extended) required += (required.empty() ? "" : ", ") + std::to_string(pcr);
  out += "    # Every quote must cover these PCRs, and the log may extend no other.\n"
         "    required_pcrs: [" +
         required + "]\n";
  for (eventlog::EventClass c : kListedClasses) {
    auto it = lists.find(c);
    if (it == lists.end()) continue;
    out += "    " + std::string(eventlog::EventClassName(c)) + ":\n";
    for (const auto& [name, digest] : it->second) {
      out += "      - name: " + quote_yaml(name) + "\n        digest: " + HexEncode(digest) + "\n";
    }
  }
  if (!variables.empty()) {
    out += "    secure_boot_variables:\n";
    for (const auto& [name, digests] : variables) {
      out += "      " + quote_yaml(name) + ":\n";
      for (const Bytes& d : digests) out += "        - digest: " + HexEncode(d) + "\n";
    }
  }
  if (!others.empty()) {
    out += "    # The other events of the PCRs above that are not pinned below (GRUB's commands "
           "and\n    # files, UKI sections, authorities, ...), each by PCR, type and digest.\n"
           "    other_events:\n";
    for (const eventlog::Event* e : others) {
      out += "      - name: " + quote_yaml(label(*e)) + "\n        pcr: " + std::to_string(e->pcr) +
             "\n        type: " + eventlog::EventTypeName(e->type) +
             "\n        digest: " + HexEncode(e->digests.at(bank)) + "\n";
    }
  }
  std::string pins;
  if (auto b = replayed.find(bank); b != replayed.end()) {
    for (const auto& [index, value] : b->second) {
      if (pinned.contains(index)) {
        pins += "      " + std::to_string(index) + ": " + HexEncode(value) + "\n";
      }
    }
  }
  if (!pins.empty()) out += "  pcrs:\n    " + std::string(DigestName(bank)) + ":\n" + pins;

  // The policy must accept the boot it was written from; a log that breaks the placement
  // rules cannot be accepted by any policy, and the operator learns it now, not at the first
  // node's refusal.
  TpmTrustPolicy written;
  try {
    BERTH_RETURN_IF_ERROR(ParseTpmTrustPolicy(YAML::Load(out)["tpm"], written));
  } catch (const YAML::Exception& e) {
    return Internal(std::string("the written policy does not parse: ") + e.what());
  }
  if (!written.event_log.has_value()) return Internal("the written policy has no event_log");
  auto self = CheckEventLog(log, replayed, &*written.event_log, pinned);
  if (!self.ok()) {
    return InvalidArgument(source_name +
                           " breaks berth's event rules, so no policy can accept its boot: " +
                           self.status().message());
  }
  return out;
}

}  // namespace berth::verify
