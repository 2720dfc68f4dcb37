#include "verify/policy_from_eventlog.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <map>
#include <set>

#include "verify/tpm_boot.h"
#include "verify/tpm_policy.h"

namespace berth::verify {

namespace {

// Names come from event data the measured software wrote: single-quoted as a reader expects,
// double-quoted (with escapes) when they hold anything but printable ASCII.
YAML::EMITTER_MANIP Quoting(const std::string& s) {
  bool printable = std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
  return printable ? YAML::SingleQuoted : YAML::DoubleQuoted;
}

}  // namespace

Result<std::string> PolicyFromEventLog(const eventlog::EventLog& log, DigestAlg bank,
                                       const std::string& source_name) {
  if (std::find(log.banks.begin(), log.banks.end(), bank) == log.banks.end()) {
    return InvalidArgument("the event log has no " + std::string(DigestName(bank)) + " digests");
  }
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
  const std::string bank_name(DigestName(bank));
  YAML::Emitter y;
  y.SetIndent(2);
  y << YAML::Comment("berthd policy accepting exactly the boot recorded in " + source_name +
                     "\n(" + bank_name +
                     " bank). Edit before use: add how this fleet's attestation keys are\n"
                     "trusted (trusted_aks, ek_ca_bundles, trusted_eks or ak_ca_bundles), and "
                     "add the digests\nof other approved kernels, initrds and command lines "
                     "next to these ones.");
  y << YAML::BeginMap << YAML::Key << "tpm" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "event_log" << YAML::Value << YAML::BeginMap;
  y << YAML::Key << "bank" << YAML::Value << bank_name;
  y << YAML::Newline
    << YAML::Comment("Every quote must cover these PCRs, and the log may extend no other.");
  y << YAML::Key << "required_pcrs" << YAML::Value << YAML::Flow << YAML::BeginSeq;
  for (uint32_t pcr : extended) y << pcr;
  y << YAML::EndSeq;
  auto named = [&](const std::string& name, const std::string& digest_hex) {
    y << YAML::BeginMap << YAML::Key << "name" << YAML::Value << Quoting(name) << name
      << YAML::Key << "digest" << YAML::Value << digest_hex << YAML::EndMap;
  };
  for (eventlog::EventClass c : kListedEventClasses) {
    auto it = lists.find(c);
    if (it == lists.end()) continue;
    y << YAML::Key << std::string(eventlog::EventClassName(c)) << YAML::Value << YAML::BeginSeq;
    for (const auto& [name, digest] : it->second) named(name, HexEncode(digest));
    y << YAML::EndSeq;
  }
  if (!variables.empty()) {
    y << YAML::Key << "secure_boot_variables" << YAML::Value << YAML::BeginMap;
    for (const auto& [name, digests] : variables) {
      y << YAML::Key << Quoting(name) << name << YAML::Value << YAML::BeginSeq;
      for (const Bytes& d : digests) {
        y << YAML::BeginMap << YAML::Key << "digest" << YAML::Value << HexEncode(d)
          << YAML::EndMap;
      }
      y << YAML::EndSeq;
    }
    y << YAML::EndMap;
  }
  if (!others.empty()) {
    y << YAML::Newline
      << YAML::Comment(
             "The other events of the PCRs above that are not pinned below (GRUB's commands "
             "and\nfiles, UKI sections, authorities, ...), each by PCR, type and digest.");
    y << YAML::Key << "other_events" << YAML::Value << YAML::BeginSeq;
    for (const eventlog::Event* e : others) {
      const std::string name = label(*e);
      y << YAML::BeginMap << YAML::Key << "name" << YAML::Value << Quoting(name) << name
        << YAML::Key << "pcr" << YAML::Value << e->pcr << YAML::Key << "type" << YAML::Value
        << std::string(eventlog::EventTypeName(e->type)) << YAML::Key << "digest" << YAML::Value
        << HexEncode(e->digests.at(bank)) << YAML::EndMap;
    }
    y << YAML::EndSeq;
  }
  y << YAML::EndMap;  // event_log
  std::map<uint32_t, std::string> pins;
  if (auto b = replayed.find(bank); b != replayed.end()) {
    for (const auto& [index, value] : b->second) {
      if (pinned.contains(index)) pins[index] = HexEncode(value);
    }
  }
  if (!pins.empty()) {
    y << YAML::Key << "pcrs" << YAML::Value << YAML::BeginMap << YAML::Key << bank_name
      << YAML::Value << YAML::BeginMap;
    for (const auto& [index, hex] : pins) y << YAML::Key << index << YAML::Value << hex;
    y << YAML::EndMap << YAML::EndMap;
  }
  y << YAML::EndMap << YAML::EndMap;  // tpm, the document
  if (!y.good()) return Internal("writing the policy: " + y.GetLastError());
  const std::string out = std::string(y.c_str()) + "\n";

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
