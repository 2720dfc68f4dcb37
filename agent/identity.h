// berth-agent --print-identity: what an operator enrolling a reference node writes into
// berthd's policy, read from this machine (docs/attestation.md). Not part of the boot flow.
#pragma once

#include <string>

#include "agent/agent.h"
#include "agent/hw/sev_guest.h"
#include "agent/snp_identity.h"
#include "common/status.h"

namespace berth::agent {

// The AK fingerprint, the EK's (as a comment: the other way to trust this TPM), the current
// PCR values of the selection the agent quotes (PCR 15 left out: berthd replays its events)
// and the EnrolmentConfig's hash, as a berthd policy snippet (YAML, yaml-cpp's emitter); for
// an SEV-SNP node (by its EnrolmentConfig), DescribeSnpIdentity's instead.
Result<std::string> DescribeIdentity(const AgentOptions& options, AgentDeps& deps);

// This guest's launch measurement and its platform's reported TCB as a berthd `sev_snp:`
// policy snippet (YAML), and the node's identity key fingerprint (what roles, approvals and
// node records name it by) as a comment. The TCB is read with the Milan/Genoa layout unless
// the report names its product (version 3+).
Result<std::string> DescribeSnpIdentity(SevGuest& device, uint32_t vmpl,
                                        const SnpIdentity* identity = nullptr);

}  // namespace berth::agent
