#include "agent/hw/disk.h"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <libcryptsetup.h>
#include <nlohmann/json.hpp>
#include <linux/fs.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>

namespace berth::agent {

bool LuksHeader::is_berth() const { return type == "LUKS2" && label == kLuksLabel; }

Status BlkidError(std::string_view what, int rc, int err) {
  if (err != 0) return ErrnoStatus(std::string(what) + " (libblkid)", err);
  return Internal(std::string(what) + ": libblkid error " + std::to_string(rc));
}

Status CryptsetupError(std::string_view what, int rc, CryptOp op) {
  const int err = rc < 0 ? -rc : rc;
  std::string msg = std::string(what) + ": " + std::strerror(err);
  switch (err) {
    case EPERM:
      if (op == CryptOp::kTryKey) {
        return PermissionDenied(std::string(what) + ": no keyslot opens with this key");
      }
      return FailedPrecondition(std::move(msg));
    case ENOENT:
    case ENODEV:
    case ENXIO:
      return NotFound(std::move(msg));
    case EINVAL:
      return InvalidArgument(std::move(msg));
    case EBUSY:
      return FailedPrecondition(msg + " (device in use)");
    case EACCES:
    case EROFS:
      return FailedPrecondition(std::move(msg));
    case ENOTSUP:
    case ENOSYS:
      return FailedPrecondition(msg + " (is dm-crypt, or the cipher, missing from the kernel?)");
    case ENOMEM:
      return ResourceExhausted(std::move(msg));
    default:
      return Internal(std::move(msg));
  }
}

namespace {

struct BlkidProbeFree {
  void operator()(blkid_probe p) const { blkid_free_probe(p); }
};
struct CryptFree {
  void operator()(crypt_device* cd) const { crypt_free(cd); }
};
using CryptPtr = std::unique_ptr<crypt_device, CryptFree>;

// libcryptsetup logs through a callback; keep its messages at debug level (they never hold
// keys, but they are noisy).
void CryptLog(int level, const char* msg, void*) {
  std::string m(msg);
  while (!m.empty() && m.back() == '\n') m.pop_back();
  if (level == CRYPT_LOG_ERROR) {
    spdlog::debug("libcryptsetup error: {}", m);
  } else {
    spdlog::debug("libcryptsetup: {}", m);
  }
}

Result<CryptPtr> CryptInit(const std::string& device) {
  crypt_device* cd = nullptr;
  int rc = crypt_init(&cd, device.c_str());
  if (rc < 0) return CryptsetupError("opening " + device, rc);
  crypt_set_log_callback(cd, CryptLog, nullptr);
  return CryptPtr(cd);
}

// `type`: CRYPT_LUKS2, or CRYPT_LUKS (a null pointer) for either version.
Result<CryptPtr> CryptLoad(const std::string& device, const char* type = CRYPT_LUKS2) {
  BERTH_ASSIGN_OR_RETURN(CryptPtr cd, CryptInit(device));
  int rc = crypt_load(cd.get(), type, nullptr);
  if (rc < 0) {
    const bool luks2 = type != nullptr && std::string_view(type) == CRYPT_LUKS2;
    return CryptsetupError(
        std::string("reading the ") + (luks2 ? "LUKS2" : "LUKS") + " header of " + device, rc);
  }
  return cd;
}

// libblkid calls return 0 (or a result >= 0) on success and a negative code on failure, and
// set errno only sometimes: clear it first so BlkidError sees what this call set.
template <typename Fn>
Status BlkidCall(std::string_view what, Fn fn) {
  errno = 0;
  int rc = fn();
  if (rc < 0) return BlkidError(what, rc, errno);
  return OkStatus();
}

constexpr uint64_t kMiB = 1 << 20;
// Signatures one probe loop reports at most (a safety stop; a real device has a handful).
constexpr int kMaxSignatures = 64;
// Places past the start where the probe asks libblkid what starts there, at most (each is a
// probe of every superblock type libblkid knows).
constexpr int kMaxNamingWindows = 16;
// The legacy DOS partition start (sector 63), inside the first MiB.
constexpr uint64_t kDosPartitionStart = 63 * 512;

// "1 MiB" for a whole number of MiB, else "offset N".
std::string Place(uint64_t offset) {
  if (offset % kMiB == 0) return std::to_string(offset / kMiB) + " MiB";
  return "offset " + std::to_string(offset);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// One signature libblkid reported.
struct Signature {
  bool partition_table = false;
  std::string type, usage, version;
  uint64_t offset = 0;  // of its magic, from the start of the device
  uint64_t window = 0;  // where the probe that found it started
  bool has_offset = false;
};

// Every signature libblkid finds in [window, end of device), by wipefs's loop
// (util-linux misc-utils/wipefs.c): probe, note the signature, hide its magic, step back and
// probe again, so that another copy (the backup GPT header, LUKS2's second header) or a
// signature beneath it (the protective MBR under a GPT) is reported too.
// BLKID_PARTS_FORCE_GPT: a GPT is reported without a valid protective MBR; BLKID_SUBLKS_BADCSUM:
// a superblock with a bad checksum is still a superblock.
Result<std::vector<Signature>> Signatures(const std::string& device, int fd, uint64_t window,
                                          bool partitions) {
  const std::string what = "probing " + device + (window == 0 ? "" : " from " + Place(window));
  errno = 0;
  std::unique_ptr<blkid_struct_probe, BlkidProbeFree> pr(blkid_new_probe());
  if (!pr) return BlkidError(what, -1, errno);
  blkid_probe p = pr.get();
  BERTH_RETURN_IF_ERROR(BlkidCall(what, [&] {
    return blkid_probe_set_device(p, fd, static_cast<blkid_loff_t>(window), 0);
  }));
  BERTH_RETURN_IF_ERROR(BlkidCall(what, [&] { return blkid_probe_enable_superblocks(p, 1); }));
  BERTH_RETURN_IF_ERROR(BlkidCall(what, [&] {
    return blkid_probe_set_superblocks_flags(p, BLKID_SUBLKS_MAGIC | BLKID_SUBLKS_TYPE |
                                                    BLKID_SUBLKS_USAGE | BLKID_SUBLKS_VERSION |
                                                    BLKID_SUBLKS_BADCSUM);
  }));
  BERTH_RETURN_IF_ERROR(
      BlkidCall(what, [&] { return blkid_probe_enable_partitions(p, partitions ? 1 : 0); }));
  if (partitions) {
    BERTH_RETURN_IF_ERROR(BlkidCall(what, [&] {
      return blkid_probe_set_partitions_flags(p, BLKID_PARTS_MAGIC | BLKID_PARTS_FORCE_GPT);
    }));
  }
  auto value = [&](const char* name, size_t* len = nullptr) -> std::string {
    const char* v = nullptr;
    size_t n = 0;
    if (blkid_probe_lookup_value(p, name, &v, &n) != 0 || v == nullptr) return "";
    if (len != nullptr) *len = n;
    return v;
  };
  std::vector<Signature> out;
  for (int i = 0; i < kMaxSignatures; ++i) {
    errno = 0;
    int rc = blkid_do_probe(p);
    if (rc == 1) break;  // nothing (more)
    if (rc < 0) return BlkidError(what, rc, errno);
    Signature s;
    s.window = window;
    const char* magic = "SBMAGIC";
    if (blkid_probe_has_value(p, "TYPE")) {
      s.type = value("TYPE");
      s.usage = value("USAGE");
      s.version = value("VERSION");
    } else if (blkid_probe_has_value(p, "PTTYPE")) {
      s.partition_table = true;
      s.type = value("PTTYPE");
      magic = "PTMAGIC";
    } else {
      break;  // no other chain is enabled
    }
    size_t magic_len = 0;
    value(magic, &magic_len);
    const std::string at = value((std::string(magic) + "_OFFSET").c_str());
    s.has_offset = !at.empty();
    const uint64_t relative = s.has_offset ? std::strtoull(at.c_str(), nullptr, 10) : 0;
    s.offset = window + relative;
    const bool hideable = s.has_offset && magic_len > 0;
    out.push_back(std::move(s));
    // Without a magic to hide, probing again would find the same signature.
    if (!hideable) break;
    if (blkid_probe_hide_range(p, relative, magic_len) != 0) break;
    blkid_probe_step_back(p);
  }
  return out;
}

// What a found signature is and where, for people.
std::string Describe(const Signature& s, uint64_t size) {
  const std::string at = "offset " + std::to_string(s.offset);
  if (s.partition_table) {
    if (s.type == "gpt") {
      // libblkid reports the header's sector; the backup header is the device's last sector
      // (512 bytes or 4 KiB, whichever the device's sectors are).
      if (s.offset + 512 == size || s.offset + 4096 == size) {
        return "backup GPT header at the last sector (" + at + ")";
      }
      return "GPT header at " + at;
    }
    if (s.type == "PMBR") return "protective MBR at " + at;
    if (s.type == "dos") return "MBR partition table at " + at;
    return s.type + " partition table at " + at;
  }
  std::string d = s.type;
  if ((s.usage == "raid" || s.usage == "crypto") && !s.version.empty()) {
    d += " (version " + s.version + ")";
  }
  // "superblock" for filesystems and RAID or LVM members; LUKS has a header; swap, bcache
  // and the like (usage "other") a signature.
  d += s.usage == "crypto" ? " header" : s.usage == "other" ? " signature" : " superblock";
  d += s.has_offset ? " at " + at : " in the area from " + Place(s.window);
  if (s.window != 0 && s.has_offset) {
    d += s.usage == "filesystem" ? " (a filesystem from " + Place(s.window) + ")"
                                 : " (probed from " + Place(s.window) + ")";
  }
  return d;
}

// Index of the first non-zero byte of buf[0, n), or n.
size_t FirstNonZero(const uint8_t* buf, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t word;
    std::memcpy(&word, buf + i, 8);
    if (word != 0) break;
  }
  for (; i < n; ++i) {
    if (buf[i] != 0) return i;
  }
  return n;
}

Result<uint64_t> DeviceSize(const std::string& device, int fd) {
  struct stat st {};
  if (fstat(fd, &st) != 0) return ErrnoStatus("fstat(" + device + ")");
  if (S_ISREG(st.st_mode)) return static_cast<uint64_t>(st.st_size);
  if (S_ISBLK(st.st_mode)) {
    uint64_t size = 0;
    if (ioctl(fd, BLKGETSIZE64, &size) != 0) return ErrnoStatus("BLKGETSIZE64(" + device + ")");
    return size;
  }
  return FailedPrecondition(device + " is not a block device or an image file");
}

// Reads [offset, offset + n) into buf; fewer bytes only at the end of the device.
Result<size_t> ReadAt(const std::string& device, int fd, uint8_t* buf, size_t n, uint64_t offset) {
  size_t total = 0;
  while (total < n) {
    ssize_t got = pread(fd, buf + total, n - total, static_cast<off_t>(offset + total));
    if (got < 0) {
      if (errno == EINTR) continue;
      return ErrnoStatus("read(" + device + ", " + Place(offset + total) + ")");
    }
    if (got == 0) break;
    total += static_cast<size_t>(got);
  }
  return total;
}

Result<ProbeResult> ProbeDevice(const std::string& device) {
  Fd fd(open(device.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) return ErrnoStatus("open(" + device + ")");
  BERTH_ASSIGN_OR_RETURN(const uint64_t size, DeviceSize(device, fd.get()));
  if (size == 0) return FailedPrecondition(device + " is empty (0 bytes)");

  ProbeResult result;
  BERTH_ASSIGN_OR_RETURN(std::vector<Signature> signatures,
                         Signatures(device, fd.get(), 0, /*partitions=*/true));
  const bool luks = !signatures.empty() &&
                    std::all_of(signatures.begin(), signatures.end(), [](const Signature& s) {
                      return !s.partition_table && s.type == "crypto_LUKS";
                    });
  if (luks) {
    // A LUKS disk's data area is ciphertext: the data check would only find noise.
    result.kind = ProbeResult::Kind::kLuks;
    result.signature = "crypto_LUKS";
    result.found.push_back(Describe(signatures.front(), size));
    return result;
  }

  // The data check. The first MiB is kept: it is where the naming below looks first.
  const std::vector<ByteRange> ranges = DataCheckRanges(size);
  std::unique_ptr<uint8_t[]> head(new uint8_t[kEndCheckBytes]);
  std::unique_ptr<uint8_t[]> buf(new uint8_t[kEndCheckBytes]);
  std::vector<std::string> data;
  std::vector<uint64_t> windows;  // where libblkid is asked what starts there
  for (const ByteRange& r : ranges) {
    uint8_t* into = r.offset == 0 ? head.get() : buf.get();
    BERTH_ASSIGN_OR_RETURN(size_t got, ReadAt(device, fd.get(), into, r.length, r.offset));
    ++result.data_reads;
    result.data_bytes += got;
    const size_t first = FirstNonZero(into, got);
    if (first == got) continue;
    const std::string byte = "first non-zero byte at offset " + std::to_string(r.offset + first);
    if (r.offset == 0) {
      data.push_back("non-zero data in the first MiB (" + byte + ")");
      // A filesystem at the DOS partition start (sector 63), the one common start in here.
      if (got > kDosPartitionStart &&
          FirstNonZero(head.get() + kDosPartitionStart, got - kDosPartitionStart) !=
              got - kDosPartitionStart) {
        windows.push_back(kDosPartitionStart);
      }
    } else if (r.offset + r.length == size && r.length == kEndCheckBytes) {
      data.push_back("non-zero data in the last MiB (" + byte + ")");
    } else {
      data.push_back("non-zero data at " + Place(r.offset) + " (" + byte + ")");
      windows.push_back(r.offset);
    }
  }

  // Name what starts where data was found: a filesystem with no partition table in front of
  // it (or whose table was wiped) is invisible to a probe of the whole device. The first
  // place that names something is enough to say what the disk holds (past it, a filesystem's
  // own backup superblocks would be named as if they were more filesystems); and a device
  // whose own start holds a superblock needs no more naming.
  const bool superblock_at_start =
      std::any_of(signatures.begin(), signatures.end(),
                  [](const Signature& s) { return !s.partition_table; });
  if (windows.size() > static_cast<size_t>(kMaxNamingWindows)) windows.resize(kMaxNamingWindows);
  for (uint64_t w : windows) {
    if (superblock_at_start || size - w < 4096) break;
    BERTH_ASSIGN_OR_RETURN(std::vector<Signature> more,
                           Signatures(device, fd.get(), w, /*partitions=*/false));
    signatures.insert(signatures.end(), more.begin(), more.end());
    if (!more.empty()) break;
  }

  // Each signature once: a type once per probe (vfat has three magics, LUKS2 two headers), a
  // place once over all probes (a RAID superblock at the end of the device is found from every
  // place probed). The MBR boot signature of a FAT, exFAT or NTFS boot sector is that
  // filesystem's, not a partition table.
  std::vector<const Signature*> kept;
  for (const Signature& s : signatures) {
    bool repeat = std::any_of(kept.begin(), kept.end(), [&](const Signature* k) {
      return (k->type == s.type && k->window == s.window && !s.partition_table &&
              !k->partition_table) ||
             (k->type == s.type && k->offset == s.offset && k->has_offset && s.has_offset);
    });
    bool boot_sector = s.partition_table && s.type == "dos" &&
                       std::any_of(kept.begin(), kept.end(), [](const Signature* k) {
                         return !k->partition_table && k->window == 0 && k->has_offset &&
                                k->offset < 512;
                       });
    if (!repeat && !boot_sector) kept.push_back(&s);
  }
  for (const Signature* s : kept) result.found.push_back(Describe(*s, size));
  if (!kept.empty()) {
    result.signature =
        kept.front()->partition_table ? "partition table " + kept.front()->type : kept.front()->type;
  } else if (!data.empty()) {
    result.signature = "non-zero data";
  }
  result.found.insert(result.found.end(), data.begin(), data.end());
  if (!result.found.empty()) result.kind = ProbeResult::Kind::kOther;
  return result;
}

}  // namespace

std::string ProbeResult::Describe() const {
  constexpr size_t kShown = 4;
  std::string out;
  for (size_t i = 0; i < found.size() && i < kShown; ++i) {
    if (i > 0) out += "; ";
    out += found[i];
  }
  if (found.size() > kShown) out += "; and " + std::to_string(found.size() - kShown) + " more";
  return out;
}

std::vector<ByteRange> DataCheckRanges(uint64_t size) {
  std::vector<ByteRange> out;
  if (size == 0) return out;
  const uint64_t head_end = std::min(size, kEndCheckBytes);
  out.push_back({0, head_end});
  const uint64_t tail_start = size > 2 * kEndCheckBytes ? size - kEndCheckBytes : head_end;
  std::vector<uint64_t> starts;
  for (uint64_t mib = 1; mib <= 16; ++mib) starts.push_back(mib * kMiB);
  for (uint64_t p = 32 * kMiB; p < size && p != 0; p *= 2) starts.push_back(p);
  for (uint64_t mib : {101, 117, 129, 257, 513, 601, 1025, 1601, 1625}) starts.push_back(mib * kMiB);
  for (uint64_t i = 1; i < 32; ++i) starts.push_back(size / 32 * i / kMiB * kMiB);
  std::sort(starts.begin(), starts.end());
  starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
  for (uint64_t s : starts) {
    if (s < head_end || s >= tail_start) continue;
    out.push_back({s, std::min(kSampleBytes, tail_start - s)});
  }
  if (tail_start < size) out.push_back({tail_start, size - tail_start});
  return out;
}

namespace {

class LibDisk : public Disk {
 public:
  Result<ProbeResult> Probe(const std::string& device) override { return ProbeDevice(device); }

  Result<LuksHeader> ReadLuksHeader(const std::string& device) override {
    BERTH_ASSIGN_OR_RETURN(CryptPtr cd, CryptLoad(device, CRYPT_LUKS));
    LuksHeader h;
    const char* type = crypt_get_type(cd.get());
    const char* uuid = crypt_get_uuid(cd.get());
    const char* label = crypt_get_label(cd.get());
    const char* subsystem = crypt_get_subsystem(cd.get());
    h.type = type ? type : "";
    h.uuid = uuid ? uuid : "";
    h.label = label ? label : "";
    h.subsystem = subsystem ? subsystem : "";
    return h;
  }

  Status WriteLuksSubsystem(const std::string& device, const std::string& subsystem) override {
    BERTH_ASSIGN_OR_RETURN(CryptPtr cd, CryptLoad(device));
    // A copy: the pointer is into the header's JSON, which crypt_set_label replaces.
    const char* current = crypt_get_label(cd.get());
    const std::string label = current ? current : "";
    int rc = crypt_set_label(cd.get(), label.c_str(), subsystem.c_str());
    if (rc < 0) return CryptsetupError("writing the LUKS2 subsystem label of " + device, rc);
    return OkStatus();
  }

  Status FormatIfBlank(const std::string& device, const std::string& uuid,
                       const SecretBytes& key) override {
    BERTH_ASSIGN_OR_RETURN(ProbeResult probe, Probe(device));
    if (!probe.blank()) {
      return FailedPrecondition(device + " is not blank, refusing to format it: found " +
                                probe.Describe());
    }
    BERTH_ASSIGN_OR_RETURN(CryptPtr cd, CryptInit(device));
    // LUKS2 fills its whole keyslots area with random bytes when formatting; kKeyslotsAreaBytes
    // has room for berth's keyslot, an operator's recovery key and a `cryptsetup reencrypt`.
    int rc = crypt_set_metadata_size(cd.get(), 0 /* the default 16 KiB */, kKeyslotsAreaBytes);
    if (rc < 0) return CryptsetupError("sizing the LUKS2 keyslots area of " + device, rc);
    crypt_pbkdf_type pbkdf{};
    pbkdf.type = CRYPT_KDF_PBKDF2;
    // The hash of the keyslot's KDF, its anti-forensic split and the volume key's digest.
    // SHA-512, not cryptsetup's SHA-256: the split hashes each of its 4,000 stripes of the
    // 64-byte volume key in digest-sized blocks, each block with a hash context of its own
    // (an OpenSSL fetch each), so one block of SHA-512 per stripe instead of two of SHA-256
    // halves the work at format and at every unlock (docs/state-disk.md, "Benchmark").
    pbkdf.hash = "sha512";
    pbkdf.iterations = 1000;  // libcryptsetup's minimum for PBKDF2
    pbkdf.flags = CRYPT_PBKDF_NO_BENCHMARK;
    crypt_params_luks2 params{};
    params.pbkdf = &pbkdf;
    params.label = kLuksLabel;
    params.sector_size = 4096;
    rc = crypt_format(cd.get(), CRYPT_LUKS2, "aes", "xts-plain64", uuid.c_str(), nullptr,
                      64 /* 512-bit volume key for AES-256-XTS */, &params);
    if (rc < 0) return CryptsetupError("formatting " + device + " as LUKS2", rc);
    rc = crypt_keyslot_add_by_volume_key(cd.get(), CRYPT_ANY_SLOT, nullptr, 0,
                                         reinterpret_cast<const char*>(key.data()), key.size());
    if (rc < 0) return CryptsetupError("adding the key to " + device, rc);
    return OkStatus();
  }

  Status CheckKey(const std::string& device, const SecretBytes& key) override {
    BERTH_ASSIGN_OR_RETURN(CryptPtr cd, CryptLoad(device));
    int rc = crypt_activate_by_passphrase(cd.get(), nullptr, CRYPT_ANY_SLOT,
                                          reinterpret_cast<const char*>(key.data()), key.size(), 0);
    if (rc < 0) return CryptsetupError("checking the key of " + device, rc, CryptOp::kTryKey);
    return OkStatus();
  }

  Status Open(const std::string& device, const std::string& name, const SecretBytes& key) override {
    BERTH_ASSIGN_OR_RETURN(CryptPtr cd, CryptLoad(device));
    crypt_status_info status = crypt_status(cd.get(), name.c_str());
    if (status == CRYPT_ACTIVE || status == CRYPT_BUSY) {
      // Active from an earlier run of the agent on this boot (BUSY: and mounted, the earlier
      // run got that far); but never hand out another device's mapping under this name, nor
      // accept a key that does not open the header.
      BERTH_RETURN_IF_ERROR(CheckActiveOn(name, device));
      return CheckKey(device, key);
    }
    // One keyslot opening, not a check and then an activation: a wrong key fails here with
    // -EPERM before anything is activated.
    int rc = crypt_activate_by_passphrase(cd.get(), name.c_str(), CRYPT_ANY_SLOT,
                                          reinterpret_cast<const char*>(key.data()), key.size(), 0);
    if (rc < 0) return CryptsetupError("opening " + device + " as " + name, rc, CryptOp::kTryKey);
    return OkStatus();
  }

 private:
  static Status CheckActiveOn(const std::string& name, const std::string& device) {
    crypt_device* raw = nullptr;
    int rc = crypt_init_by_name(&raw, name.c_str());
    if (rc < 0) return CryptsetupError("reading the active mapping " + name, rc);
    CryptPtr active(raw);
    const char* backing = crypt_get_device_name(active.get());
    char* want = realpath(device.c_str(), nullptr);
    char* have = backing ? realpath(backing, nullptr) : nullptr;
    bool same = want != nullptr && have != nullptr && std::strcmp(want, have) == 0;
    std::string have_name = have ? have : (backing ? backing : "?");
    free(want);
    free(have);
    if (!same) {
      return FailedPrecondition("/dev/mapper/" + name + " is already active on " + have_name +
                                ", not on " + device);
    }
    return OkStatus();
  }
};

class LibLuksKeyslots : public LuksKeyslots {
 public:
  Result<int> AddKeyslotWithToken(const std::string& device, const SecretBytes& existing_key,
                                  const SecretBytes& new_key, const std::string& type,
                                  const std::string& fields) override {
    auto object = nlohmann::json::parse(fields, nullptr, false);
    if (object.is_discarded() || !object.is_object()) {
      return InvalidArgument("the " + type + " token's fields are not a JSON object");
    }
    BERTH_ASSIGN_OR_RETURN(CryptPtr cd, CryptLoad(device));
    // The key that opens a keyslot now unlocks the volume key; nothing is added if it does not.
    int rc = crypt_activate_by_passphrase(
        cd.get(), nullptr, CRYPT_ANY_SLOT, reinterpret_cast<const char*>(existing_key.data()),
        existing_key.size(), 0);
    if (rc < 0) return CryptsetupError("unlocking " + device, rc, CryptOp::kTryKey);
    BERTH_RETURN_IF_ERROR(RemoveTokens(cd.get(), device, type));
    crypt_pbkdf_type pbkdf{};
    pbkdf.type = CRYPT_KDF_PBKDF2;
    pbkdf.hash = "sha512";  // as FormatIfBlank's keyslot: the key has full entropy
    pbkdf.iterations = 1000;
    pbkdf.flags = CRYPT_PBKDF_NO_BENCHMARK;
    rc = crypt_set_pbkdf_type(cd.get(), &pbkdf);
    if (rc < 0) return CryptsetupError("setting the keyslot KDF of " + device, rc);
    const int slot = crypt_keyslot_add_by_passphrase(
        cd.get(), CRYPT_ANY_SLOT, reinterpret_cast<const char*>(existing_key.data()),
        existing_key.size(), reinterpret_cast<const char*>(new_key.data()), new_key.size());
    if (slot < 0) return CryptsetupError("adding a " + type + " keyslot to " + device, slot);
    object["type"] = type;
    object["keyslots"] = nlohmann::json::array({std::to_string(slot)});
    const std::string json = object.dump();
    rc = crypt_token_json_set(cd.get(), CRYPT_ANY_TOKEN, json.c_str());
    if (rc < 0) {
      crypt_keyslot_destroy(cd.get(), slot);  // no keyslot without the token that explains it
      return CryptsetupError("writing the " + type + " token of " + device, rc);
    }
    return slot;
  }

  Result<std::vector<LuksToken>> Tokens(const std::string& device, const std::string& type) override {
    BERTH_ASSIGN_OR_RETURN(CryptPtr cd, CryptLoad(device));
    return TokensOf(cd.get(), type);
  }

  Status UpdateToken(const std::string& device, int id, const std::string& fields) override {
    auto object = nlohmann::json::parse(fields, nullptr, false);
    if (object.is_discarded() || !object.is_object()) {
      return InvalidArgument("a token's fields must be a JSON object");
    }
    BERTH_ASSIGN_OR_RETURN(CryptPtr cd, CryptLoad(device));
    const char* current = nullptr;
    int rc = crypt_token_json_get(cd.get(), id, &current);
    if (rc < 0) return CryptsetupError("reading token " + std::to_string(id) + " of " + device, rc);
    auto old = nlohmann::json::parse(current, nullptr, false);
    if (old.is_discarded() || !old.is_object()) return DataLoss("token is not JSON");
    object["type"] = old["type"];
    object["keyslots"] = old["keyslots"];
    rc = crypt_token_json_set(cd.get(), id, object.dump().c_str());
    if (rc < 0) return CryptsetupError("writing token " + std::to_string(id) + " of " + device, rc);
    return OkStatus();
  }

 private:
  static Result<std::vector<LuksToken>> TokensOf(crypt_device* cd, const std::string& type) {
    std::vector<LuksToken> out;
    for (int id = 0; id < 32; ++id) {  // LUKS2 has 32 token slots
      const char* found_type = nullptr;
      if (crypt_token_status(cd, id, &found_type) == CRYPT_TOKEN_INACTIVE) continue;
      if (found_type == nullptr || type != found_type) continue;
      const char* json = nullptr;
      int rc = crypt_token_json_get(cd, id, &json);
      if (rc < 0) return CryptsetupError("reading LUKS2 token " + std::to_string(id), rc);
      out.push_back({.id = id, .type = type, .json = json});
    }
    return out;
  }

  // Removes the tokens of `type` and the keyslots they name.
  static Status RemoveTokens(crypt_device* cd, const std::string& device, const std::string& type) {
    BERTH_ASSIGN_OR_RETURN(std::vector<LuksToken> tokens, TokensOf(cd, type));
    for (const LuksToken& t : tokens) {
      auto j = nlohmann::json::parse(t.json, nullptr, false);
      int rc = crypt_token_json_set(cd, t.id, nullptr);  // null: remove the token
      if (rc < 0) return CryptsetupError("removing the old " + type + " token of " + device, rc);
      if (j.is_object() && j.contains("keyslots") && j["keyslots"].is_array()) {
        for (const auto& slot : j["keyslots"]) {
          if (!slot.is_string()) continue;
          int n = std::atoi(slot.get<std::string>().c_str());
          if (n > 0) crypt_keyslot_destroy(cd, n);  // never keyslot 0: the cluster's
        }
      }
    }
    return OkStatus();
  }
};

}  // namespace

std::unique_ptr<Disk> MakeLibDisk() { return std::make_unique<LibDisk>(); }

std::unique_ptr<LuksKeyslots> MakeLibLuksKeyslots() { return std::make_unique<LibLuksKeyslots>(); }

}  // namespace berth::agent
