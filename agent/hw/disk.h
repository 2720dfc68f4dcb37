// The state disk's block device, behind an interface: signature probing (libblkid) and
// LUKS2 (libcryptsetup). The real implementation is LibDisk; tests on the host use it on image
// files (no device-mapper needed for probing, formatting and key checks) and a fake where an
// activation would be needed.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/secret.h"
#include "common/status.h"

namespace berth::agent {

// The label berth writes into the LUKS2 header of every state disk it formats.
inline constexpr char kLuksLabel[] = "berth-state";
// The LUKS2 keyslots area berth formats: 4 MiB, sixteen keyslots of a 512-bit key. The default,
// 16 MiB, holds 64 and takes four times as long to fill with random bytes; below 4 MiB
// cryptsetup warns that the keyslot count is very limited.
inline constexpr uint64_t kKeyslotsAreaBytes = 4 << 20;

// What Disk::Probe found on a device. Blank is the only answer that lets berth format it.
struct ProbeResult {
  enum class Kind { kBlank, kLuks, kOther };
  Kind kind = Kind::kBlank;
  // The first thing found, by kind: a libblkid type ("ext4", "crypto_LUKS",
  // "linux_raid_member", ...), "partition table <type>" ("partition table gpt"), or "non-zero
  // data"; empty when blank.
  std::string signature;
  // Everything found, each saying what and where, in the order the probe found them:
  //   "backup GPT header at the last sector (offset 67108352)"
  //   "ext4 superblock at offset 1049656 (a filesystem from 1 MiB)"
  //   "non-zero data at 1 MiB (first non-zero byte at offset 1049600)"
  // Empty when blank.
  std::vector<std::string> found;
  // The data check's reads (libblkid's own reads are not counted), for the benchmark.
  int data_reads = 0;
  uint64_t data_bytes = 0;

  bool blank() const { return kind == Kind::kBlank; }
  // `found` joined with "; ", at most the first four, then "and N more".
  std::string Describe() const;
};

// A range of a device the probe reads and requires to be all zero on a blank disk.
struct ByteRange {
  uint64_t offset = 0;
  uint64_t length = 0;
  bool operator==(const ByteRange&) const = default;
};
// The data check for a device of `size` bytes, in offset order, not overlapping: its first
// and its last MiB whole, and kSampleBytes (which holds the superblock of every filesystem
// that starts there, btrfs's at 64 KiB included) at each of a few dozen places between, where
// partitions and filesystems start: every MiB up to 16 MiB, every power of two MiB from 32 MiB,
// installers' usual partition starts (101, 117, 129, 257, 513, 601, 1025, 1601 and 1625 MiB)
// and 31 MiB-aligned places spread evenly over the device: 41 reads (6.9 MiB) on a 64 MiB
// disk, 68 (10.3 MiB) on a 1 TiB one.
inline constexpr uint64_t kEndCheckBytes = 1 << 20;
inline constexpr uint64_t kSampleBytes = 128 << 10;
std::vector<ByteRange> DataCheckRanges(uint64_t size);

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
  // What is on `device`; reads only, and only through a read-only descriptor. Blank means
  // both of:
  //  - libblkid finds no signature on the whole device, probed as wipefs does: every
  //    superblock it knows (filesystems, RAID and LVM members, LUKS, swap, ...), every
  //    partition table, a GPT also without its protective MBR (the backup header at the last
  //    sector is found when the primary is gone), each signature's other copies too;
  //  - every range of DataCheckRanges() reads as zero (data no prober knows is data too).
  // kLuks: the only signatures are LUKS headers (its data area is ciphertext, so the data
  // check is skipped). kOther: anything else not blank; where data is found at a place a
  // filesystem may start, libblkid probes there too to name it.
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

// A LUKS2 token: JSON metadata in the header, tied to keyslots (cryptsetup's tokens). berth
// keeps what opens its extra keyslots there (docs/cluster-lifecycle.md): "berth-cold-start"
// (the TPM-sealed key's blob and the signed boot policies) and "berth-recovery" (the key
// sealed to the cluster's recovery key). Public data only.
struct LuksToken {
  int id = -1;
  std::string type;
  std::string json;  // the whole token, "type" and "keyslots" included
};

// The keyslot and token operations of the control planes' extra keyslots, on the LUKS2 header
// (no device-mapper needed). Each is one header write; LUKS2 keeps two header copies, so a
// crash leaves the old or the new header, never a broken one.
class LuksKeyslots {
 public:
  virtual ~LuksKeyslots() = default;
  // Adds a PBKDF2 keyslot (berth's parameters) for `new_key`, unlocking the volume key with
  // `existing_key`, and a token of `type` whose other fields are `fields` (a JSON object)
  // tied to it; an existing token of `type` and its keyslots are removed first, so repeating
  // it replaces. Returns the keyslot. PERMISSION_DENIED when `existing_key` opens nothing.
  virtual Result<int> AddKeyslotWithToken(const std::string& device, const SecretBytes& existing_key,
                                          const SecretBytes& new_key, const std::string& type,
                                          const std::string& fields) = 0;
  // The tokens of `type` (none: empty).
  virtual Result<std::vector<LuksToken>> Tokens(const std::string& device,
                                                const std::string& type) = 0;
  // Rewrites token `id`'s other fields (its type and keyslots stay).
  virtual Status UpdateToken(const std::string& device, int id, const std::string& fields) = 0;
};

std::unique_ptr<LuksKeyslots> MakeLibLuksKeyslots();

}  // namespace berth::agent
