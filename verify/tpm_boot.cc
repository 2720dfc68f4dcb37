#include "verify/tpm_boot.h"

#include <set>

#include "common/tpm/eventlog.h"

namespace berth::verify {

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
