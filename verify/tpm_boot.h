// Whether a verified TPM quote shows a boot the policy accepts: the pinned PCRs, one of the
// PCR sets, and the measured-boot event log under the policy's event rules: the PCRs the
// policy requires must be quoted and replay exactly, and every event in the PCRs it covers
// must be accepted by a rule (tpm_policy.h CheckEventLog). berthd runs it for every TPM join;
// `berthctl verify tpm-quote --eventlog FILE --policy FILE` runs it offline on a captured
// quote. Pure; thread-safe.
#pragma once

#include <optional>
#include <span>
#include <string>

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

}  // namespace berth::verify
