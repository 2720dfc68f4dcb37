// Whether a verified TPM quote shows a boot the policy accepts: the pinned PCRs, one of the
// PCR sets, and the measured-boot event log under the policy's event rules: the PCRs the
// policy requires must be quoted and replay exactly, and every event in the PCRs it covers
// must be accepted by a rule (CheckEventLog below). berthd runs it for every TPM join;
// `berthctl verify tpm-quote --eventlog FILE --policy FILE` runs it offline on a captured
// quote. Pure; thread-safe.
#pragma once

#include <optional>
#include <set>
#include <span>
#include <string>

#include "berth/v1/berth.pb.h"
#include "common/tpm/eventlog.h"
#include "common/tpm/quote.h"
#include "verify/policy.h"

namespace berth::verify {

// `quote` must come from tpm::VerifyQuote (its PCR values are the signed ones). `event_log`
// is the raw TCG log (nullopt or empty: none). `policy` may be null: then only the log, when
// given, is checked against the quote. Returns the rules that accepted the boot, for audit
// lines ("pcrs sha256:0,7 + pcr_sets[fw-2] + event log replayed to quoted sha256:0,1,...").
// PERMISSION_DENIED names the PCR or the event (index, type, PCR, digest) that broke the
// policy; INVALID_ARGUMENT for a log that does not parse.
Result<std::string> CheckQuotedBoot(const tpm::VerifiedQuote& quote,
                                    std::optional<std::span<const uint8_t>> event_log,
                                    const Policy* policy);

// The checks CheckQuotedBoot is made of, each on its own (berthd's evidence check runs
// CheckSealedBoot after it).

// OK when `pcr_sets` is empty or one of the sets matches `quoted` entirely (the name of the
// matching set is returned); otherwise PERMISSION_DENIED naming, for each set, the first PCR
// that differs or is missing.
Result<std::string> CheckPcrSets(const std::vector<PcrSet>& sets, const tpm::PcrValues& quoted);

// Trusts the event log only as far as the quote vouches for it.
//
// With `policy` (default deny; `pinned` are the PCRs of `policy->bank` whose quoted values the
// policy's `pcrs` or the matching `pcr_sets` entry already fixed, checked by the caller):
//  1. every PCR of `required_pcrs` must be quoted in the rules' bank (PERMISSION_DENIED names
//     the first one missing);
//  2. in every bank both the quote and the log have, the quoted value of every PCR the log
//     extends or the policy covers must be the log's replay (PERMISSION_DENIED names the PCR);
//  3. every event, in log order: its PCR must be covered (required or pinned); its type must
//     be in the PCR the specifications give it (eventlog::CheckEventPcr); data the
//     specifications tie to the digest must match it in every bank in which the quote vouches
//     for its PCR (eventlog::CheckEventDataDigests); and a rule must accept it: a pinned PCR, a
//     fixed event (eventlog::FixedEventKind), an allow-listed digest of a class measured at its
//     place (eventlog::ClassesMeasuredAt), or an `other_events` entry. What its data says it is
//     never decides which list is consulted. PERMISSION_DENIED names the event (index, type, PCR,
//     digest, what it says it is);
//  4. every non-empty class list and every listed Secure Boot variable matched at least once.
// Without a policy: step 2 for the PCRs both the log and the quote have, and in them the
// checks of step 3 that need no rules. Returns a short description of what was checked, for
// the audit line; without a policy it also names the PCRs the log extends that the quote
// does not cover (nothing vouches for their events).
Result<std::string> CheckEventLog(const eventlog::EventLog& log, const tpm::PcrValues& quoted,
                                  const EventLogPolicy* policy,
                                  const std::set<uint32_t>& pinned = {});

// berth-agent's own measurements (common/tpm/sealed_boot.h) against the quoted PCR 15: the quote
// must cover PCR 15, the events must replay to it in every quoted bank, the boot must not
// have released its keys yet, and when `enrolment_configs` is not empty the measured config
// must be one of them. Returns the config's description for the audit line.
Result<std::string> CheckSealedBoot(const TpmTrustPolicy& policy, const v1::TpmEvidence& evidence,
                                    const tpm::PcrValues& quoted);

}  // namespace berth::verify
