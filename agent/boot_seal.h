// Sealing the boot on the node (common/tpm/sealed_boot.h, docs/attestation.md): berth-agent
// measures the EnrolmentConfig it read into PCR 15 before it quotes, and extends PCR 15 with
// "keys released" once the ticket's secrets are used, so that nothing running later in the
// same boot can attest its way to them again.
//
// Robust to restarts within one boot (systemd Restart=on-failure): the PCR itself says how
// far this boot got, because the possible histories are few and known. A restart before the
// keys were released finds the config already measured and measures nothing; no state file
// is needed, and none could be forged into making the agent skip the measurement.
// Not thread-safe.
#pragma once

#include <span>
#include <vector>

#include "agent/hw/tpm.h"
#include "berth/v1/berth.pb.h"
#include "common/bytes.h"
#include "common/status.h"

namespace berth::agent {

class BootSeal {
 public:
  // Brings PCR 15 to "config measured" for the EnrolmentConfig file `config_file`: measures
  // it if the PCR is still at its reset value, otherwise recognises an earlier run of this
  // boot (config measured; or config measured and keys released). FAILED_PRECONDITION when
  // the PCR holds anything else: another component measured into it, or the EnrolmentConfig
  // changed since this boot measured it.
  static Result<BootSeal> Measure(Tpm& tpm, std::span<const uint8_t> config_file);

  // What PCR 15 holds, in order, for TpmEvidence.agent_events.
  std::vector<v1::TpmAgentEvent> Events() const;
  bool keys_released() const { return events_.size() == 2; }
  // Whether this run measured the config (false: an earlier run of this boot had).
  bool measured_now() const { return measured_now_; }

  // Extends PCR 15 with "keys released" (nothing if already done).
  Status ReleaseKeys(Tpm& tpm);

 private:
  std::vector<Bytes> events_;
  bool measured_now_ = false;
};

}  // namespace berth::agent
