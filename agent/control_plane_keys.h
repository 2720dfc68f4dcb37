// A control plane's two extra keyslots (docs/cluster-lifecycle.md): the cold-start keyslot,
// whose key this node's TPM releases in a boot the cluster's boot-policy key approved, and the
// recovery keyslot, whose key is sealed to the cluster's recovery public key for K of N
// operators. What opens each lives in its LUKS2 token (agent/hw/disk.h LuksKeyslots):
//
//   "berth-cold-start": {"boot-policy-key": hex TPMT_PUBLIC, "tpm2-public": hex TPM2B_PUBLIC,
//                        "tpm2-private": hex TPM2B_PRIVATE,
//                        "policies": [{"bank", "pcrs", "approved", "signature", "signed"}...]}
//   "berth-recovery":   {"box": hex, "recovery-key-sha256": hex}
//
// Everything in them is public: the TPM blob opens only in its own TPM, the box only with the
// recovery secret, and a signed policy only lets the TPM release the key in the boot it names.
// Not thread-safe; `tpm` and `keyslots` outlive it.
#pragma once

#include <span>
#include <string>

#include "agent/hw/disk.h"
#include "agent/hw/tpm.h"
#include "berth/v1/berth.pb.h"
#include "common/secret.h"
#include "common/status.h"

namespace berth::agent {

inline constexpr char kColdStartToken[] = "berth-cold-start";
inline constexpr char kRecoveryToken[] = "berth-recovery";
// Signed boot policies kept per disk: the newest ones, so an update and a rollback both open.
inline constexpr size_t kKeptBootPolicies = 8;

struct RecoveryBox {
  Bytes box;
  std::string recovery_key_sha256;
};

class ControlPlaneKeys {
 public:
  ControlPlaneKeys(Tpm* tpm, LuksKeyslots* keyslots, std::string device, std::string disk_uuid)
      : tpm_(tpm), keyslots_(keyslots), device_(std::move(device)), uuid_(std::move(disk_uuid)) {}

  // After the disk opened with `disk_key` (the cluster's keyslot): the cold-start keyslot is
  // sealed to `cold_start.boot_policy_key` (made when missing or sealed to another key), and
  // its token gains the ticket's signed policy; the recovery keyslot is made when missing or
  // sealed to another recovery key (`recovery_public_key` empty: left as it is).
  Status Refresh(const SecretBytes& disk_key, const v1::ColdStart& cold_start,
                 std::span<const uint8_t> recovery_public_key);

  // Cold start: the TPM tries the stored policies, newest first. PERMISSION_DENIED saying why
  // none opens (no cold-start keyslot; this boot's PCRs are in no signed policy; ...).
  Result<SecretBytes> ColdStartKey();

  // The recovery keyslot's box, for the operator (NOT_FOUND when the disk has none).
  Result<RecoveryBox> Recovery();

 private:
  Status SealColdStart(const SecretBytes& disk_key, const std::string& boot_policy_key_hex);
  Status SealRecovery(const SecretBytes& disk_key, std::span<const uint8_t> recovery_public_key);

  Tpm* tpm_;
  LuksKeyslots* keyslots_;
  std::string device_;
  std::string uuid_;
};

}  // namespace berth::agent
