#include "verify/tpm_boot.h"

#include <algorithm>
#include <set>

#include "common/tpm/eventlog.h"
#include "common/tpm/sealed_boot.h"

namespace berth::verify {

namespace {

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
  std::set<DigestAlg> quoted_banks;
  for (const auto& [b, values] : quoted) quoted_banks.insert(b);
  const tpm::PcrValues replayed = eventlog::Replay(log, &quoted_banks);
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

  // The banks in which the quote vouches for each PCR: an event's data is checked against its
  // digests there, the only ones anything here relies on.
  std::map<uint32_t, std::set<DigestAlg>> vouching;
  for (const auto& [b, pcrs] : vouched) {
    for (uint32_t index : pcrs) vouching[index].insert(b);
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
      BERTH_RETURN_IF_ERROR(eventlog::CheckEventDataDigests(e, &vouching[e.pcr]));
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
  // An event's data is checked in the rules' bank always: a covered PCR the log extends is
  // vouched for in it (step 2).
  for (uint32_t index : covered) vouching[index].insert(bank);
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
    BERTH_RETURN_IF_ERROR(eventlog::CheckEventDataDigests(e, &vouching[e.pcr]));
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


Result<std::string> CheckQuotedBoot(const tpm::VerifiedQuote& quote,
                                    std::optional<std::span<const uint8_t>> event_log,
                                    const Policy* policy) {
  std::string rules;
  auto add = [&](const std::string& rule) {
    if (!rule.empty()) rules += (rules.empty() ? "" : " + ") + rule;
  };
  if (policy != nullptr && !policy->pcrs.empty()) {
    BERTH_RETURN_IF_ERROR(policy->CheckPcrs(quote.pcrs));
    add("pcrs " + policy->DescribePcrs());
  }
  if (policy != nullptr && !policy->tpm_trust.pcr_sets.empty()) {
    BERTH_ASSIGN_OR_RETURN(std::string set, CheckPcrSets(policy->tpm_trust.pcr_sets, quote.pcrs));
    add("pcr_sets[" + set + "]");
  }
  const EventLogPolicy* rules_for_log = policy != nullptr && policy->tpm_trust.event_log.has_value()
                                            ? &*policy->tpm_trust.event_log
                                            : nullptr;
  const bool have_log = event_log.has_value() && !event_log->empty();
  if (!have_log) {
    if (rules_for_log != nullptr) {
      return PermissionDenied(
          "the policy checks the boot's event log (tpm.event_log), but the "
          "evidence carries none");
    }
    return rules;
  }
  auto log = eventlog::ParseEventLog(*event_log);
  if (!log.ok()) return log.status();
  // The PCRs of the rules' bank whose quoted values the policy fixed above: their events need
  // no rule of their own.
  std::set<uint32_t> pinned;
  if (rules_for_log != nullptr) {
    const DigestAlg bank = rules_for_log->bank;
    if (auto b = policy->pcrs.find(bank); b != policy->pcrs.end()) {
      for (const auto& [index, value] : b->second) pinned.insert(index);
    }
    for (const PcrSet& set : policy->tpm_trust.pcr_sets) {
      if (!CheckPcrSets({set}, quote.pcrs).ok()) continue;  // the first set that matches
      if (auto b = set.pcrs.find(bank); b != set.pcrs.end()) {
        for (const auto& [index, value] : b->second) pinned.insert(index);
      }
      break;
    }
  }
  BERTH_ASSIGN_OR_RETURN(std::string checked,
                         CheckEventLog(*log, quote.pcrs, rules_for_log, pinned));
  add(checked);
  return rules;
}

}  // namespace berth::verify
