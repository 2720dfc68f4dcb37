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

Status ParseEventLogPolicy(const YAML::Node& node, EventLogPolicy& out) {
  if (!node.IsMap()) return InvalidArgument("tpm.event_log: expected a map");
  BERTH_RETURN_IF_ERROR(CheckKeys(node, "tpm.event_log",
                                  {"bank", "boot_applications", "kernels", "initrds",
                                   "kernel_cmdlines", "secure_boot_variables"}));
  if (node["bank"]) {
    auto bank = DigestFromName(node["bank"].as<std::string>());
    if (!bank.ok()) return bank.status().WithContext("tpm.event_log.bank");
    out.bank = *bank;
  }
  const size_t size = DigestSize(out.bank);
  for (eventlog::EventClass c : kListedClasses) {
    const std::string key(eventlog::EventClassName(c));
    if (!node[key]) continue;
    BERTH_ASSIGN_OR_RETURN(out.allowed[c],
                           NamedDigests(node[key], "tpm.event_log." + key, "digest", size));
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
  }
  if (out.allowed.empty() && out.secure_boot_variables.empty()) {
    return InvalidArgument("tpm.event_log: no allow-list, so it would check nothing");
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
                                  const EventLogPolicy* policy) {
  // 1. Replay == quote, for every PCR both know, in every bank both have.
  const tpm::PcrValues replayed = eventlog::Replay(log);
  std::map<DigestAlg, std::set<uint32_t>> vouched;
  for (const auto& [b, values] : replayed) {
    auto q = quoted.find(b);
    if (q == quoted.end()) continue;
    for (const auto& [index, value] : values) {
      auto v = q->second.find(index);
      if (v == q->second.end()) continue;
      if (v->second != value) {
        return PermissionDenied("the event log does not match the quoted PCR " +
                                tpm::PcrName(b, index) + ": the log replays to " +
                                HexEncode(value) + ", the quote holds " + HexEncode(v->second));
      }
      vouched[b].insert(index);
    }
  }
  // The bank the rules are written in; without rules, sha256 if the quote vouches for any of
  // it, else the first bank it vouches for.
  DigestAlg bank = DigestAlg::kSha256;
  if (policy != nullptr) {
    bank = policy->bank;
  } else if (vouched[DigestAlg::kSha256].empty()) {
    for (DigestAlg b : log.banks) {
      if (!vouched[b].empty()) {
        bank = b;
        break;
      }
    }
  }
  if (std::find(log.banks.begin(), log.banks.end(), bank) == log.banks.end()) {
    return PermissionDenied("the event log has no " + std::string(DigestName(bank)) +
                            " digests, which the policy's event rules are written in");
  }
  const std::set<uint32_t>& trusted = vouched[bank];
  if (trusted.empty()) {
    return PermissionDenied("the quote covers none of the " + std::string(DigestName(bank)) +
                            " PCRs the event log extends, so nothing in the log is vouched for");
  }
  auto is_trusted = [&](const eventlog::Event& e) {
    return e.type != eventlog::kEvNoAction && trusted.contains(e.pcr);
  };

  // 2. Data that must match its digest does.
  for (const auto& e : log.events) {
    if (is_trusted(e)) BERTH_RETURN_IF_ERROR(eventlog::CheckEventDataDigests(e));
  }
  std::string pcr_list;
  for (uint32_t i : trusted) pcr_list += (pcr_list.empty() ? "" : ",") + std::to_string(i);
  std::string summary =
      "event log replayed to quoted " + std::string(DigestName(bank)) + ":" + pcr_list;
  if (policy == nullptr) return summary;

  // 3. The allow-lists.
  std::map<eventlog::EventClass, int> seen;
  std::set<std::string> variables_seen;
  for (const auto& e : log.events) {
    if (!is_trusted(e)) continue;
    const eventlog::EventClass c = eventlog::ClassifyEvent(e);
    if (c == eventlog::EventClass::kOther) continue;
    auto digest = e.digests.find(bank);
    if (digest == e.digests.end()) {
      return PermissionDenied(eventlog::EventReference(e, bank) + " has no " +
                              std::string(DigestName(bank)) + " digest");
    }
    const std::string what = eventlog::DescribeEvent(e);
    const std::string described =
        eventlog::EventReference(e, bank) + (what.empty() ? "" : " " + Quote(what));
    if (c == eventlog::EventClass::kSecureBootVariable) {
      if (policy->secure_boot_variables.empty()) continue;
      auto name = eventlog::UefiVariableName(e);
      if (!name.ok()) return PermissionDenied(name.status().message());
      auto allowed = policy->secure_boot_variables.find(*name);
      if (allowed == policy->secure_boot_variables.end()) {
        return PermissionDenied("Secure Boot variable " + described +
                                " is not in tpm.event_log.secure_boot_variables");
      }
      if (Find(allowed->second, digest->second) == nullptr) {
        return PermissionDenied("Secure Boot variable " + described +
                                " is not in tpm.event_log.secure_boot_variables." + *name);
      }
      variables_seen.insert(*name);
      continue;
    }
    auto allowed = policy->allowed.find(c);
    if (allowed == policy->allowed.end()) continue;
    const NamedDigest* match = Find(allowed->second, digest->second);
    if (match == nullptr) {
      return PermissionDenied(std::string(eventlog::EventClassName(c)) + " " + described +
                              " is not in tpm.event_log." +
                              std::string(eventlog::EventClassName(c)));
    }
    summary += " " + std::string(eventlog::EventClassName(c)) + "[" + Label(*match) + "]";
    ++seen[c];
  }
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
  if (!policy->secure_boot_variables.empty()) summary += " secure_boot_variables";
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
  std::map<eventlog::EventClass, std::vector<std::pair<std::string, Bytes>>> lists;
  std::map<std::string, std::vector<Bytes>> variables;
  std::set<uint32_t> classified_pcrs;
  for (const auto& e : log.events) {
    if (e.type == eventlog::kEvNoAction) continue;
    const eventlog::EventClass c = eventlog::ClassifyEvent(e);
    if (c == eventlog::EventClass::kOther) continue;
    auto d = e.digests.find(bank);
    if (d == e.digests.end()) continue;
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
    if (!dup) {
      std::string what = eventlog::DescribeEvent(e);
      if (what.size() > 80) what = what.substr(0, 77) + "...";
      list.emplace_back("event " + std::to_string(e.index) + (what.empty() ? "" : ": " + what),
                        d->second);
    }
  }
  const tpm::PcrValues replayed = eventlog::Replay(log);
  std::string out = "# berthd policy accepting exactly the boot recorded in " + source_name +
                    "\n# (" + std::string(DigestName(bank)) +
                    " bank). Edit before use: add how this fleet's attestation keys are\n"
                    "# trusted (trusted_aks, ek_ca_bundles, trusted_eks or ak_ca_bundles), and "
                    "add the digests\n# of other approved kernels, initrds and command lines "
                    "next to these ones.\ntpm:\n";
  out += "  event_log:\n    bank: " + std::string(DigestName(bank)) + "\n";
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
  // The PCRs no event rule speaks for (firmware code and configuration, MOK lists) are
  // pinned to this boot's values.
  std::string pins;
  auto b = replayed.find(bank);
  if (b != replayed.end()) {
    for (const auto& [index, value] : b->second) {
      if (classified_pcrs.contains(index)) continue;
      pins += "      " + std::to_string(index) + ": " + HexEncode(value) + "\n";
    }
  }
  if (!pins.empty()) out += "  pcrs:\n    " + std::string(DigestName(bank)) + ":\n" + pins;
  return out;
}

}  // namespace berth::verify
