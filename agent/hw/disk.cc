#include "agent/hw/disk.h"

#include <blkid/blkid.h>
#include <fcntl.h>
#include <libcryptsetup.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

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

constexpr size_t kZeroCheckBytes = 1 << 20;

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

// True if the first MiB of `device` (or all of it, if smaller) is zero.
Result<bool> LeadingBytesAreZero(const std::string& device) {
  int fd = open(device.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open(" + device + ")");
  std::unique_ptr<uint8_t[]> buf(new uint8_t[kZeroCheckBytes]);
  size_t total = 0;
  while (total < kZeroCheckBytes) {
    ssize_t n = pread(fd, buf.get() + total, kZeroCheckBytes - total, static_cast<off_t>(total));
    if (n < 0) {
      Status st = ErrnoStatus("read(" + device + ")");
      close(fd);
      return st;
    }
    if (n == 0) break;
    total += static_cast<size_t>(n);
  }
  close(fd);
  for (size_t i = 0; i < total; ++i) {
    if (buf[i] != 0) return false;
  }
  return true;
}

class LibDisk : public Disk {
 public:
  Result<ProbeResult> Probe(const std::string& device) override {
    const std::string what = "probing " + device;
    errno = 0;
    std::unique_ptr<blkid_struct_probe, BlkidProbeFree> pr(
        blkid_new_probe_from_filename(device.c_str()));
    if (!pr) return BlkidError(what, -1, errno);
    blkid_probe p = pr.get();
    BERTH_RETURN_IF_ERROR(BlkidCall(what, [&] { return blkid_probe_enable_superblocks(p, 1); }));
    BERTH_RETURN_IF_ERROR(BlkidCall(what, [&] {
      return blkid_probe_set_superblocks_flags(p, BLKID_SUBLKS_TYPE | BLKID_SUBLKS_USAGE);
    }));
    BERTH_RETURN_IF_ERROR(BlkidCall(what, [&] { return blkid_probe_enable_partitions(p, 1); }));
    BERTH_RETURN_IF_ERROR(
        BlkidCall(what, [&] { return blkid_probe_set_partitions_flags(p, BLKID_PARTS_MAGIC); }));
    errno = 0;
    int rc = blkid_do_safeprobe(p);
    ProbeResult result;
    if (rc == -2) {  // several signatures that contradict each other: certainly not blank
      result.kind = ProbeResult::Kind::kOther;
      result.signature = "several conflicting signatures";
      return result;
    }
    if (rc < 0) return BlkidError(what, rc, errno);
    if (rc == 0) {
      const char* value = nullptr;
      if (blkid_probe_lookup_value(pr.get(), "TYPE", &value, nullptr) == 0 && value != nullptr) {
        result.signature = value;
        result.kind = result.signature == "crypto_LUKS" ? ProbeResult::Kind::kLuks
                                                        : ProbeResult::Kind::kOther;
        return result;
      }
      if (blkid_probe_lookup_value(pr.get(), "PTTYPE", &value, nullptr) == 0 && value != nullptr) {
        result.kind = ProbeResult::Kind::kOther;
        result.signature = std::string("partition table ") + value;
        return result;
      }
      result.kind = ProbeResult::Kind::kOther;
      result.signature = "an unnamed signature";
      return result;
    }
    BERTH_ASSIGN_OR_RETURN(bool zero, LeadingBytesAreZero(device));
    if (!zero) {
      result.kind = ProbeResult::Kind::kOther;
      result.signature = "non-zero data in the first MiB";
    }
    return result;
  }

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
      return FailedPrecondition(device + " is not blank (" + probe.signature +
                                "): refusing to format it");
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

}  // namespace

std::unique_ptr<Disk> MakeLibDisk() { return std::make_unique<LibDisk>(); }

}  // namespace berth::agent
