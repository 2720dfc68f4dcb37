// The state disk's block device, behind an interface: signature probing (libblkid) and
// LUKS2 (libcryptsetup). The real implementation is LibDisk; tests on the host use it on image
// files (no device-mapper needed for probing, formatting and key checks) and a fake where an
// activation would be needed.
#pragma once

#include <memory>
#include <string>

#include "common/secret.h"
#include "common/status.h"

namespace berth::agent {

// The label berth writes into the LUKS2 header of every state disk it formats.
inline constexpr char kLuksLabel[] = "berth-state";

struct ProbeResult {
  enum class Kind { kBlank, kLuks, kOther };
  Kind kind = Kind::kBlank;
  // What was found: "ext4", "crypto_LUKS", "partition table gpt", "non-zero data in the
  // first MiB"...; empty when blank.
  std::string signature;
  bool blank() const { return kind == Kind::kBlank; }
};

struct LuksHeader {
  std::string uuid;
  std::string label;
};

// libblkid return codes -> Status, in one place.
Status BlkidError(std::string_view what, int rc);
// libcryptsetup return codes (negative errno) -> Status, in one place. -EPERM from an
// activation means no keyslot opened with the key: PERMISSION_DENIED.
Status CryptsetupError(std::string_view what, int rc);

class Disk {
 public:
  virtual ~Disk() = default;
  // Blank means: libblkid finds no filesystem, RAID, LUKS or other superblock and no
  // partition table, *and* the first MiB is all zeroes (unrecognised data is data too).
  virtual Result<ProbeResult> Probe(const std::string& device) = 0;
  virtual Result<LuksHeader> ReadLuksHeader(const std::string& device) = 0;
  // Formats `device` as LUKS2 (aes-xts-plain64, 512-bit volume key, label kLuksLabel, header
  // UUID `uuid`) with `key` in a PBKDF2 keyslot at the minimum iteration count: the key has
  // full entropy, so a slow KDF buys nothing. Probes again first and refuses (FAILED_PRECONDITION)
  // unless the device is blank: this is the one place a disk is ever formatted.
  virtual Status FormatIfBlank(const std::string& device, const std::string& uuid,
                               const SecretBytes& key) = 0;
  // Whether `key` opens a keyslot, without activating anything (PERMISSION_DENIED if not).
  virtual Status CheckKey(const std::string& device, const SecretBytes& key) = 0;
  // Activates /dev/mapper/<name>; already active with this device is success.
  virtual Status Open(const std::string& device, const std::string& name, const SecretBytes& key) = 0;
};

std::unique_ptr<Disk> MakeLibDisk();

}  // namespace berth::agent
