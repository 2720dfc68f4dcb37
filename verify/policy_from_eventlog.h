// berthctl policy from --eventlog: a policy that accepts exactly one recorded boot, for the
// operator to edit (docs/attestation.md "Writing a policy from a reference boot").
#pragma once

#include <string>

#include "common/status.h"
#include "common/tpm/eventlog.h"

namespace berth::verify {

// A policy (YAML) that accepts exactly the boot recorded in `log`, to be edited: an event_log
// section with every PCR the log extends in `bank` as `required_pcrs`, every classified
// event's digest in its class's list, the replayed values of the PCRs without a classified
// event pinned under `pcrs`, and every other event of the unpinned PCRs that is not a fixed
// one under `other_events`. The AK trust keys are left for the operator (a comment says so).
// The policy is checked against the log before it is returned: a log that breaks berth's
// placement rules (eventlog::CheckEventPcr) is INVALID_ARGUMENT naming the event.
Result<std::string> PolicyFromEventLog(const eventlog::EventLog& log, DigestAlg bank,
                                       const std::string& source_name);

}  // namespace berth::verify
