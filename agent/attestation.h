// Collecting evidence on the node.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "agent/tpm.h"
#include "berth/v1/berth.pb.h"

namespace berth::agent {

// Where Linux exposes the firmware's TCG event log.
inline constexpr char kEventLogPath[] = "/sys/kernel/security/tpm0/binary_bios_measurements";

// TPM evidence bound to `binding`: the AK public, the current values of `selection`, a quote
// over them with extraData = binding, and the event log at `event_log_path` when the file
// exists (a missing log is normal on VMs without measured boot).
Result<v1::Evidence> CollectTpmEvidence(Tpm& tpm, const std::vector<v1::PcrSelection>& selection,
                                        std::span<const uint8_t> binding,
                                        const std::string& event_log_path);

}  // namespace berth::agent
