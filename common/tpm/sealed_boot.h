// Sealing the boot (docs/attestation.md): berth-agent measures what it acts on into a PCR of
// its own, so that berthd can tell from the quote which EnrolmentConfig this boot read and
// whether this boot has already been given its keys.
//
// The PCR is 15: no firmware or boot loader berth supports measures into it (0-7 firmware,
// 8-9 GRUB / Linux EFI stub, 10 IMA, 11-13 systemd-stub, 14 shim), and like every PCR below 16
// it cannot be reset without a reboot (16 and 23 can be reset from locality 0, 17-22 belong
// to dynamic launch). The node image must not enable systemd's own PCR 15 measurements
// (systemd-pcrmachine, systemd-pcrfs), or berthd cannot replay the PCR.
//
// Every event is TPM2_PCR_Event data (every bank is extended with H_bank(data)):
//   "berth.enrolment-config.v1\0" || SHA-256(the EnrolmentConfig file's bytes)
//   "berth.keys-released.v1\0"
// Pure functions, thread-safe.
#pragma once

#include <optional>
#include <span>
#include <vector>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/status.h"

namespace berth::seal {

inline constexpr uint32_t kPcr = 15;

Bytes EnrolmentConfigEvent(std::span<const uint8_t> config_file);
Bytes KeysReleasedEvent();

struct SealEvent {
  enum class Kind { kEnrolmentConfig, kKeysReleased };
  Kind kind;
  Bytes config_sha256;  // kEnrolmentConfig only
};
// INVALID_ARGUMENT for data that is none of berth's events.
Result<SealEvent> ParseEvent(std::span<const uint8_t> data);

// The value of the PCR in `bank` after `events` were measured from its reset value (zeros).
Bytes Replay(DigestAlg bank, const std::vector<Bytes>& events);

// The event sequences a boot can have reached, in the order the agent makes them: nothing
// yet; the config measured; the config measured and the keys released.
std::vector<std::vector<Bytes>> PossibleHistories(std::span<const uint8_t> config_file);

}  // namespace berth::seal
