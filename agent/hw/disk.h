// The state disk's block device, behind an interface: signature probing (libblkid) and
// LUKS2 (libcryptsetup). The real implementation is LibDisk; tests on the host use it on image
// files (no device-mapper needed for probing, formatting and key checks) and a fake where an
// activation would be needed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "common/secret.h"
#include "common/status.h"

namespace berth::agent {

// The label berth writes into the LUKS2 header of every state disk it formats.
inline constexpr char kLuksLabel[] = "berth-state";
// The LUKS2 keyslots area berth formats: 4 MiB, sixteen keyslots of a 512-bit key. The default,
// 16 MiB, holds 64 and takes four times as long to fill with random bytes; below 4 MiB
// cryptsetup warns that the keyslot count is very limited.
inline constexpr uint64_t kKeyslotsAreaBytes = 4 << 20;

struct ProbeResult {
  enum class Kind { kBlank, kLuks, kOther };
  Kind kind = Kind::kBlank;
  // What was found: "ext4", "crypto_LUKS", "partition table gpt", "non-zero data in the
  // first MiB"...; empty when blank.
  std::string signature;
  bool blank() const { return kind == Kind::kBlank; }
};

struct LuksHeader {
  std::string type;  // "LUKS2" or "LUKS1"
  std::string uuid;
  std::string label;      // empty for LUKS1, which has none
  std::string subsystem;  // LUKS2's second label; berth records its filesystem there
  // Whether this is a disk berth formats: LUKS2 with label kLuksLabel.
  bool is_berth() const;
};

// libblkid return codes -> Status, in one place. `err` is the errno the failed call left
// (libblkid sets it for I/O errors, not always otherwise; 0 when it did not).
Status BlkidError(std::string_view what, int rc, int err);

// What a libcryptsetup call was doing: -EPERM means "no keyslot opens with this key" only
// from calls that try a key.
enum class CryptOp { kOther, kTryKey };
// libcryptsetup return codes (negative errno) -> Status, in one place:
//   -EPERM from kTryKey        PERMISSION_DENIED "<what>: no keyslot opens with this key"
//   -ENOENT/-ENODEV/-ENXIO     NOT_FOUND
//   -EINVAL                    INVALID_ARGUMENT (also: not a LUKS device of that type)
//   -EBUSY                     FAILED_PRECONDITION (in use)
//   -EACCES/-EPERM/-EROFS      FAILED_PRECONDITION (no access: not a policy refusal)
//   -ENOTSUP/-ENOSYS           FAILED_PRECONDITION (the kernel lacks dm-crypt or a cipher)
//   -ENOMEM                    RESOURCE_EXHAUSTED
//   anything else              INTERNAL
// Messages name `what` and the errno text, never a key.
Status CryptsetupError(std::string_view what, int rc, CryptOp op = CryptOp::kOther);

class Disk {
 public:
  virtual ~Disk() = default;
  // Blank means: libblkid finds no filesystem, RAID, LUKS or other superblock and no
  // partition table, *and* the first MiB is all zeroes (unrecognised data is data too).
  virtual Result<ProbeResult> Probe(const std::string& device) = 0;
  // The LUKS header (LUKS2 or LUKS1) of `device`; INVALID_ARGUMENT if there is none.
  virtual Result<LuksHeader> ReadLuksHeader(const std::string& device) = 0;
  // Formats `device` as LUKS2 (aes-xts-plain64, 512-bit volume key, label kLuksLabel, header
  // UUID `uuid`, a keyslots area of kKeyslotsAreaBytes) with `key` in a PBKDF2 keyslot at the
  // minimum iteration count: the key has full entropy, so a slow KDF buys nothing. Probes again
  // first and refuses (FAILED_PRECONDITION) unless the device is blank: this is the one place a
  // disk is ever formatted.
  virtual Status FormatIfBlank(const std::string& device, const std::string& uuid,
                               const SecretBytes& key) = 0;
  // Whether `key` opens a keyslot, without activating anything (PERMISSION_DENIED if not).
  virtual Status CheckKey(const std::string& device, const SecretBytes& key) = 0;
  // Sets the LUKS2 header's subsystem label (keeping the label). LUKS2 writes both header
  // copies, so a crash leaves the old or the new value, never a broken header.
  virtual Status WriteLuksSubsystem(const std::string& device, const std::string& subsystem) = 0;
  // Activates /dev/mapper/<name> with `key` (PERMISSION_DENIED, and nothing activated, if no
  // keyslot opens with it); already active on this device is success if `key` opens the
  // header, active on another device is FAILED_PRECONDITION.
  virtual Status Open(const std::string& device, const std::string& name,
                      const SecretBytes& key) = 0;
};

std::unique_ptr<Disk> MakeLibDisk();

}  // namespace berth::agent
