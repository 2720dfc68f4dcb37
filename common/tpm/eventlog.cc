#include "common/tpm/eventlog.h"

#include <algorithm>
#include <cstring>

namespace berth::eventlog {

namespace {

struct TypeName {
  uint32_t type;
  const char* name;
};

// TCG PC Client Platform Firmware Profile 1.05, table 9 (and the EFI range).
constexpr TypeName kTypeNames[] = {
    {0x0, "EV_PREBOOT_CERT"},
    {0x1, "EV_POST_CODE"},
    {0x2, "EV_UNUSED"},
    {0x3, "EV_NO_ACTION"},
    {0x4, "EV_SEPARATOR"},
    {0x5, "EV_ACTION"},
    {0x6, "EV_EVENT_TAG"},
    {0x7, "EV_S_CRTM_CONTENTS"},
    {0x8, "EV_S_CRTM_VERSION"},
    {0x9, "EV_CPU_MICROCODE"},
    {0xa, "EV_PLATFORM_CONFIG_FLAGS"},
    {0xb, "EV_TABLE_OF_DEVICES"},
    {0xc, "EV_COMPACT_HASH"},
    {0xd, "EV_IPL"},
    {0xe, "EV_IPL_PARTITION_DATA"},
    {0xf, "EV_NONHOST_CODE"},
    {0x10, "EV_NONHOST_CONFIG"},
    {0x11, "EV_NONHOST_INFO"},
    {0x12, "EV_OMIT_BOOT_DEVICE_EVENTS"},
    {0x80000001, "EV_EFI_VARIABLE_DRIVER_CONFIG"},
    {0x80000002, "EV_EFI_VARIABLE_BOOT"},
    {0x80000003, "EV_EFI_BOOT_SERVICES_APPLICATION"},
    {0x80000004, "EV_EFI_BOOT_SERVICES_DRIVER"},
    {0x80000005, "EV_EFI_RUNTIME_SERVICES_DRIVER"},
    {0x80000006, "EV_EFI_GPT_EVENT"},
    {0x80000007, "EV_EFI_ACTION"},
    {0x80000008, "EV_EFI_PLATFORM_FIRMWARE_BLOB"},
    {0x80000009, "EV_EFI_HANDOFF_TABLES"},
    {0x8000000a, "EV_EFI_PLATFORM_FIRMWARE_BLOB2"},
    {0x8000000b, "EV_EFI_HANDOFF_TABLES2"},
    {0x8000000c, "EV_EFI_VARIABLE_BOOT2"},
    {0x80000010, "EV_EFI_HCRTM_EVENT"},
    {0x800000e0, "EV_EFI_VARIABLE_AUTHORITY"},
    {0x800000e1, "EV_EFI_SPDM_FIRMWARE_BLOB"},
    {0x800000e2, "EV_EFI_SPDM_FIRMWARE_CONFIG"},
};

std::string Hex32(uint32_t v) {
  char buf[16];
  snprintf(buf, sizeof buf, "0x%08x", v);
  return buf;
}

// Little-endian reader over the log that never reads past the end.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> data) : data_(data) {}
  size_t offset() const { return offset_; }
  size_t remaining() const { return data_.size() - offset_; }
  bool U8(uint8_t& v) {
    if (remaining() < 1) return false;
    v = data_[offset_++];
    return true;
  }
  bool U16(uint16_t& v) {
    if (remaining() < 2) return false;
    v = static_cast<uint16_t>(data_[offset_] | (data_[offset_ + 1] << 8));
    offset_ += 2;
    return true;
  }
  bool U32(uint32_t& v) {
    if (remaining() < 4) return false;
    v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | data_[offset_ + i];
    offset_ += 4;
    return true;
  }
  bool Take(size_t n, Bytes& out) {
    if (remaining() < n) return false;
    out.assign(data_.begin() + offset_, data_.begin() + offset_ + n);
    offset_ += n;
    return true;
  }
  bool Skip(size_t n) {
    if (remaining() < n) return false;
    offset_ += n;
    return true;
  }
  bool RestIsZero() const {
    return std::all_of(data_.begin() + offset_, data_.end(), [](uint8_t b) { return b == 0; });
  }

 private:
  std::span<const uint8_t> data_;
  size_t offset_ = 0;
};

constexpr char kSpecIdSignature[] = "Spec ID Event03";  // 16 bytes with its NUL
constexpr char kStartupLocality[] = "StartupLocality";  // 16 bytes with its NUL

bool StartsWith(const Bytes& data, const char* prefix, size_t n) {
  return data.size() >= n && std::memcmp(data.data(), prefix, n) == 0;
}

struct BankInfo {
  uint16_t alg;
  uint16_t size;
  std::optional<DigestAlg> digest;  // null: a bank berth cannot compute
};

Status Malformed(uint32_t index, size_t offset, const std::string& what) {
  return InvalidArgument("malformed event log: event #" + std::to_string(index) + " at byte " +
                         std::to_string(offset) + ": " + what);
}

// The header's TCG_EfiSpecIdEvent: the banks and their digest sizes.
Result<std::vector<BankInfo>> ParseSpecId(const Bytes& data) {
  Reader r(data);
  uint32_t platform_class, count;
  uint8_t minor, major, errata, uintn;
  if (!r.Skip(16) || !r.U32(platform_class) || !r.U8(minor) || !r.U8(major) || !r.U8(errata) ||
      !r.U8(uintn) || !r.U32(count)) {
    return InvalidArgument("truncated Spec ID event");
  }
  if (count == 0 || count > 16) {
    return InvalidArgument("Spec ID event lists " + std::to_string(count) + " algorithms");
  }
  std::vector<BankInfo> banks;
  for (uint32_t i = 0; i < count; ++i) {
    BankInfo b{};
    if (!r.U16(b.alg) || !r.U16(b.size)) return InvalidArgument("truncated Spec ID event");
    if (auto alg = tpm::DigestFromTpmAlg(b.alg); alg.ok()) {
      if (DigestSize(*alg) != b.size) {
        return InvalidArgument("Spec ID event gives " + std::string(DigestName(*alg)) + " a " +
                               std::to_string(b.size) + "-byte digest");
      }
      b.digest = *alg;
    }
    if (b.size == 0 || b.size > 64) {
      return InvalidArgument("Spec ID event gives algorithm " + std::to_string(b.alg) + " a " +
                             std::to_string(b.size) + "-byte digest");
    }
    banks.push_back(b);
  }
  return banks;
}

void NoteStartupLocality(EventLog& log, const Event& e) {
  // TCG_EfiStartupLocalityEvent: the signature, then one byte.
  if (e.type == kEvNoAction && e.pcr == 0 && e.data.size() == 17 &&
      StartsWith(e.data, kStartupLocality, 16)) {
    log.startup_locality = e.data[16];
  }
}

// One event in the TCG 1.2 (SHA-1) layout: pcr, type, digest[20], size, data.
Result<Event> ParseSha1Event(Reader& r, uint32_t index) {
  Event e;
  e.index = index;
  e.offset = r.offset();
  uint32_t size;
  Bytes digest;
  if (!r.U32(e.pcr) || !r.U32(e.type) || !r.Take(20, digest) || !r.U32(size)) {
    return Malformed(index, e.offset, "truncated event header");
  }
  if (!r.Take(size, e.data)) {
    return Malformed(
        index, e.offset,
        "event data of " + std::to_string(size) + " bytes runs past the end of the log");
  }
  e.digests[DigestAlg::kSha1] = std::move(digest);
  return e;
}

// One crypto-agile event: pcr, type, TPML_DIGEST_VALUES, size, data.
Result<Event> ParseAgileEvent(Reader& r, uint32_t index, const std::vector<BankInfo>& banks) {
  Event e;
  e.index = index;
  e.offset = r.offset();
  uint32_t count, size;
  if (!r.U32(e.pcr) || !r.U32(e.type) || !r.U32(count)) {
    return Malformed(index, e.offset, "truncated event header");
  }
  if (count > banks.size()) {
    return Malformed(index, e.offset,
                     std::to_string(count) + " digests, but the header lists " +
                         std::to_string(banks.size()) + " algorithms");
  }
  for (uint32_t i = 0; i < count; ++i) {
    uint16_t alg;
    if (!r.U16(alg)) return Malformed(index, e.offset, "truncated digest list");
    auto bank =
        std::find_if(banks.begin(), banks.end(), [&](const BankInfo& b) { return b.alg == alg; });
    if (bank == banks.end()) {
      return Malformed(
          index, e.offset,
          "digest of algorithm " + std::to_string(alg) + ", which the header does not list");
    }
    Bytes digest;
    if (!r.Take(bank->size, digest)) return Malformed(index, e.offset, "truncated digest");
    if (bank->digest.has_value()) {
      if (!e.digests.emplace(*bank->digest, std::move(digest)).second) {
        return Malformed(index, e.offset,
                         "two " + std::string(DigestName(*bank->digest)) + " digests");
      }
    }
  }
  if (!r.U32(size)) return Malformed(index, e.offset, "truncated event size");
  if (!r.Take(size, e.data)) {
    return Malformed(
        index, e.offset,
        "event data of " + std::to_string(size) + " bytes runs past the end of the log");
  }
  return e;
}

}  // namespace

std::string EventTypeName(uint32_t type) {
  for (const auto& t : kTypeNames) {
    if (t.type == type) return t.name;
  }
  return Hex32(type);
}

Result<uint32_t> EventTypeFromName(std::string_view name) {
  for (const auto& t : kTypeNames) {
    if (name == t.name) return t.type;
  }
  if (name.size() > 2 && name.size() <= 10 && name.substr(0, 2) == "0x") {
    uint32_t v = 0;
    for (char c : name.substr(2)) {
      int d = (c >= '0' && c <= '9')   ? c - '0'
              : (c >= 'a' && c <= 'f') ? c - 'a' + 10
              : (c >= 'A' && c <= 'F') ? c - 'A' + 10
                                       : -1;
      if (d < 0) return InvalidArgument("unknown event type \"" + std::string(name) + "\"");
      v = (v << 4) | static_cast<uint32_t>(d);
    }
    return v;
  }
  return InvalidArgument("unknown event type \"" + std::string(name) + "\"");
}

Result<EventLog> ParseEventLog(std::span<const uint8_t> data) {
  EventLog log;
  Reader r(data);
  if (data.empty()) return InvalidArgument("the event log is empty");
  // The first event is always in the SHA-1 layout; in a crypto-agile log it is the header.
  BERTH_ASSIGN_OR_RETURN(Event first, ParseSha1Event(r, 0));
  std::vector<BankInfo> banks;
  if (first.type == kEvNoAction && first.pcr == 0 &&
      StartsWith(first.data, kSpecIdSignature, sizeof kSpecIdSignature)) {
    auto parsed = ParseSpecId(first.data);
    if (!parsed.ok()) return Malformed(0, 0, parsed.status().message());
    banks = std::move(*parsed);
    log.format = EventLog::Format::kCryptoAgile;
    for (const auto& b : banks) {
      if (b.digest.has_value()) log.banks.push_back(*b.digest);
    }
  } else {
    log.format = EventLog::Format::kSha1Legacy;
    log.banks = {DigestAlg::kSha1};
    NoteStartupLocality(log, first);
  }
  log.events.push_back(std::move(first));

  while (r.remaining() > 0) {
    if (r.RestIsZero()) break;  // padding after the last event
    const uint32_t index = static_cast<uint32_t>(log.events.size());
    Result<Event> e = log.format == EventLog::Format::kCryptoAgile
                          ? ParseAgileEvent(r, index, banks)
                          : ParseSha1Event(r, index);
    if (!e.ok()) return e.status();
    NoteStartupLocality(log, *e);
    log.events.push_back(std::move(*e));
  }
  return log;
}

Bytes InitialPcrValue(const EventLog& log, DigestAlg bank, uint32_t pcr) {
  Bytes value(DigestSize(bank), 0);
  if (pcr == 0 && log.startup_locality.has_value()) value.back() = *log.startup_locality;
  return value;
}

tpm::PcrValues Replay(const EventLog& log, const std::set<DigestAlg>* only) {
  tpm::PcrValues out;
  for (const Event& e : log.events) {
    if (e.type == kEvNoAction) continue;
    for (const auto& [bank, digest] : e.digests) {
      if (only != nullptr && !only->contains(bank)) continue;
      auto& bank_values = out[bank];
      auto it = bank_values.find(e.pcr);
      if (it == bank_values.end()) {
        it = bank_values.emplace(e.pcr, InitialPcrValue(log, bank, e.pcr)).first;
      }
      DigestInto(bank, it->second, digest, it->second);
    }
  }
  return out;
}

std::string FormatPcrLines(const tpm::PcrValues& pcrs) {
  std::string out;
  for (const auto& [bank, values] : pcrs) {
    for (const auto& [index, value] : values) {
      out += std::string(DigestName(bank)) + " " + std::to_string(index) + " " + HexEncode(value) +
             "\n";
    }
  }
  return out;
}

// ---- classification ----

namespace {

// Event data as text: UTF-16LE when it looks like it (systemd-stub, UEFI), else ASCII; a
// trailing NUL is dropped. Non-printable characters become '?'.
std::string EventText(const Bytes& data) {
  bool utf16 = data.size() >= 4 && data.size() % 2 == 0;
  for (size_t i = 1; utf16 && i < data.size(); i += 2) utf16 = data[i] == 0;
  std::string out;
  if (utf16) {
    for (size_t i = 0; i + 1 < data.size(); i += 2) out.push_back(static_cast<char>(data[i]));
  } else {
    out.assign(data.begin(), data.end());
  }
  while (!out.empty() && out.back() == '\0') out.pop_back();
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) > 0x7e) c = '?';
  }
  return out;
}

std::string Basename(const std::string& path) {
  size_t slash = path.find_last_of("/\\)");
  return slash == std::string::npos ? path : path.substr(slash + 1);
}

bool HasPrefix(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() && s.substr(0, prefix.size()) == prefix;
}

// Tagged events of the Linux EFI stub (drivers/firmware/efi/libstub/efi-stub-helper.c).
// (INITRD_EVENT_TAG_ID, LOAD_OPTIONS_EVENT_TAG_ID; the events' own text says so: "Linux initrd",
// "LOADED_IMAGE::LoadOptions".)
constexpr uint32_t kLinuxEventTagInitrd = 0x8F3B22EC;
constexpr uint32_t kLinuxEventTagLoadOptions = 0x8F3B22ED;

std::optional<uint32_t> TaggedEventId(const Event& e) {
  if (e.type != kEvEventTag || e.data.size() < 8) return std::nullopt;
  return static_cast<uint32_t>(e.data[0] | (e.data[1] << 8) | (e.data[2] << 16) |
                               (static_cast<uint32_t>(e.data[3]) << 24));
}

// The file path nodes (type 4, subtype 4) of a UEFI device path, joined.
std::string DevicePathFile(std::span<const uint8_t> dp) {
  std::string out;
  size_t at = 0;
  while (at + 4 <= dp.size()) {
    uint8_t type = dp[at], subtype = dp[at + 1];
    uint16_t len = static_cast<uint16_t>(dp[at + 2] | (dp[at + 3] << 8));
    if (len < 4 || at + len > dp.size()) break;
    if (type == 0x7f) break;  // end of the device path
    if (type == 4 && subtype == 4) {
      out += EventText(Bytes(dp.begin() + at + 4, dp.begin() + at + len));
    }
    at += len;
  }
  return out;
}

}  // namespace

std::string_view EventClassName(EventClass c) {
  switch (c) {
    case EventClass::kOther:
      return "other";
    case EventClass::kBootApplication:
      return "boot_applications";
    case EventClass::kKernel:
      return "kernels";
    case EventClass::kInitrd:
      return "initrds";
    case EventClass::kKernelCmdline:
      return "kernel_cmdlines";
    case EventClass::kSecureBootVariable:
      return "secure_boot_variables";
  }
  return "other";
}

std::vector<EventClass> ClassesMeasuredAt(uint32_t pcr, uint32_t type) {
  using C = EventClass;
  switch (type) {
    case kEvEfiBootServicesApplication:
      if (pcr == 4) return {C::kBootApplication};  // firmware's LoadImage (PFP: PCR 4)
      break;
    case kEvEfiVariableDriverConfig:
      if (pcr == 7) return {C::kSecureBootVariable};
      break;
    case kEvEventTag:
      if (pcr == 9) return {C::kInitrd, C::kKernelCmdline};  // the Linux EFI stub
      break;
    case kEvIpl:
      switch (pcr) {
        case 8:  // GRUB's command line (and its other commands)
          return {C::kKernelCmdline};
        case 9:  // GRUB's files: the kernel, the initrd (and grub.cfg, modules, ...)
          return {C::kKernel, C::kInitrd};
        case 11:  // systemd-stub: the UKI's .linux, .initrd, .cmdline (and other) sections
          return {C::kKernel, C::kInitrd, C::kKernelCmdline};
        case 12:  // systemd-stub: the command line a boot loader passed
          return {C::kKernelCmdline};
        default:
          break;
      }
      break;
    default:
      break;
  }
  return {};
}

EventClass ClassifyEvent(const Event& e) {
  if (ClassesMeasuredAt(e.pcr, e.type).empty()) return EventClass::kOther;
  switch (e.type) {
    case kEvEfiBootServicesApplication:
      return EventClass::kBootApplication;
    case kEvEfiVariableDriverConfig:
      return EventClass::kSecureBootVariable;
    case kEvEventTag: {
      auto tag = TaggedEventId(e);
      if (tag == kLinuxEventTagLoadOptions) return EventClass::kKernelCmdline;
      if (tag == kLinuxEventTagInitrd) return EventClass::kInitrd;
      return EventClass::kOther;
    }
    case kEvIpl: {
      if (!FixedEventKind(e).empty()) return EventClass::kOther;  // a UKI section's name
      const std::string text = EventText(e.data);
      if (e.pcr == 8) {
        // GRUB: "kernel_cmdline: <cmdline>" (the digest is over the command line alone);
        // Red Hat's GRUB: "grub_kernel_cmdline <cmdline>".
        return HasPrefix(text, "kernel_cmdline: ") || HasPrefix(text, "grub_kernel_cmdline ")
                   ? EventClass::kKernelCmdline
                   : EventClass::kOther;
      }
      if (e.pcr == 9) {
        // Red Hat's GRUB (linuxefi) names what it loaded.
        if (text == "grub_linuxefi Kernel") return EventClass::kKernel;
        if (text == "grub_linuxefi Initrd") return EventClass::kInitrd;
        // GRUB measures every file it reads into PCR 9, described by its path.
        const std::string base = Basename(text);
        if (HasPrefix(base, "vmlinuz") || HasPrefix(base, "vmlinux") ||
            HasPrefix(base, "bzImage")) {
          return EventClass::kKernel;
        }
        if (HasPrefix(base, "initrd") || HasPrefix(base, "initramfs")) return EventClass::kInitrd;
        return EventClass::kOther;
      }
      if (e.pcr == 11) {
        // systemd-stub measures each UKI section into PCR 11: an event with the section's
        // name (a fixed event, above), then one with its contents, described by the name.
        if (text == ".linux") return EventClass::kKernel;
        if (text == ".initrd") return EventClass::kInitrd;
        if (text == ".cmdline") return EventClass::kKernelCmdline;
        return EventClass::kOther;
      }
      // systemd-stub measures the command line it passes on into PCR 12.
      return EventClass::kKernelCmdline;
    }
    default:
      return EventClass::kOther;
  }
}

namespace {

constexpr const char* kSecureBootVariableNames[] = {"SecureBoot", "PK",  "KEK", "db",
                                                    "dbx",        "dbt", "dbr"};

bool EveryDigestIsHashOf(const Event& e, std::span<const uint8_t> data) {
  if (e.digests.empty()) return false;
  for (const auto& [bank, digest] : e.digests) {
    if (Digest(bank, data) != digest) return false;
  }
  return true;
}

}  // namespace

Status CheckEventPcr(const Event& e, DigestAlg bank) {
  uint32_t home = 0;
  const char* rule = nullptr;
  switch (e.type) {
    case kEvEfiBootServicesApplication:
      home = 4;
      rule = "firmware measures the UEFI applications it loads into PCR 4 only";
      break;
    case kEvEfiBootServicesDriver:
    case kEvEfiRuntimeServicesDriver:
      home = 2;
      rule = "firmware measures UEFI drivers into PCR 2 only";
      break;
    case kEvEfiVariableAuthority:
      home = 7;
      rule = "the authorities that verified images are measured into PCR 7 only";
      break;
    case kEvEfiVariableDriverConfig: {
      auto name = UefiVariableName(e);
      if (!name.ok() || std::find(std::begin(kSecureBootVariableNames),
                                  std::end(kSecureBootVariableNames),
                                  *name) == std::end(kSecureBootVariableNames)) {
        return OkStatus();
      }
      home = 7;
      rule = "firmware measures the Secure Boot variables into PCR 7 only";
      break;
    }
    case kEvEventTag: {
      auto tag = TaggedEventId(e);
      if (tag != kLinuxEventTagInitrd && tag != kLinuxEventTagLoadOptions) return OkStatus();
      home = 9;
      rule = "the Linux EFI stub measures its initrd and LoadOptions into PCR 9 only";
      break;
    }
    default:
      return OkStatus();
  }
  if (e.pcr == home) return OkStatus();
  const std::string what = DescribeEvent(e);
  return PermissionDenied(EventReference(e, bank) + (what.empty() ? "" : " \"" + what + "\"") +
                          " is in PCR " + std::to_string(e.pcr) + ", but " + rule);
}

std::string_view FixedEventKind(const Event& e) {
  switch (e.type) {
    case kEvSeparator:
      // PFP: 00000000h; FFFFFFFFh signals an error and is no fixed event.
      if (e.data == Bytes(4, 0) && EveryDigestIsHashOf(e, e.data)) return "separator";
      return "";
    case kEvEfiAction: {
      // PFP 1.05, 10.4.4: the firmware's own action strings, each in its PCR.
      static constexpr struct {
        uint32_t pcr;
        std::string_view text;
      } kActions[] = {
          {4, "Calling EFI Application from Boot Option"},
          {4, "Returning from EFI Application from Boot Option"},
          {5, "Exit Boot Services Invocation"},
          {5, "Exit Boot Services Returned with Failure"},
          {5, "Exit Boot Services Returned with Success"},
      };
      const std::string_view text(reinterpret_cast<const char*>(e.data.data()), e.data.size());
      for (const auto& a : kActions) {
        if (a.pcr == e.pcr && a.text == text && EveryDigestIsHashOf(e, e.data)) {
          return "firmware action";
        }
      }
      return "";
    }
    case kEvIpl: {
      if (e.pcr != 11) return "";
      // systemd-stub (tpm_log_event_ascii): data is the name in UTF-16, the digest is of the
      // ASCII name and its NUL. PE section names have at most 8 characters.
      const std::string text = EventText(e.data);
      if (text.empty() || text.size() > 8 || text[0] != '.') return "";
      Bytes name(text.begin(), text.end());
      name.push_back(0);
      return EveryDigestIsHashOf(e, name) ? "UKI section name" : "";
    }
    default:
      return "";
  }
}

Result<std::string> UefiVariableName(const Event& e) {
  if ((e.type & 0x80000000u) == 0 ||
      (e.type != kEvEfiVariableDriverConfig && e.type != kEvEfiVariableBoot &&
       e.type != 0x8000000c && e.type != kEvEfiVariableAuthority)) {
    return InvalidArgument("event #" + std::to_string(e.index) + " is not a UEFI variable event");
  }
  // UEFI_VARIABLE_DATA: GUID[16], UnicodeNameLength u64, VariableDataLength u64, name, data.
  if (e.data.size() < 32) {
    return InvalidArgument("event #" + std::to_string(e.index) + ": truncated UEFI variable data");
  }
  uint64_t name_len = 0;
  for (int i = 7; i >= 0; --i) name_len = (name_len << 8) | e.data[16 + i];
  if (name_len > (e.data.size() - 32) / 2) {
    return InvalidArgument("event #" + std::to_string(e.index) +
                           ": UEFI variable name runs past the event data");
  }
  std::string name;
  for (uint64_t i = 0; i < name_len; ++i) {
    uint8_t lo = e.data[32 + 2 * i], hi = e.data[33 + 2 * i];
    name.push_back(hi == 0 && lo >= 0x20 && lo < 0x7f ? static_cast<char>(lo) : '?');
  }
  return name;
}

std::string DescribeEvent(const Event& e) {
  switch (e.type) {
    case kEvEfiVariableDriverConfig:
    case kEvEfiVariableBoot:
    case 0x8000000c:
    case kEvEfiVariableAuthority: {
      auto name = UefiVariableName(e);
      return name.ok() ? *name : "";
    }
    case kEvEfiBootServicesApplication:
    case kEvEfiBootServicesDriver: {
      // UEFI_IMAGE_LOAD_EVENT: location, length, link-time address, device path length, path.
      if (e.data.size() < 32) return "";
      uint64_t dp_len = 0;
      for (int i = 7; i >= 0; --i) dp_len = (dp_len << 8) | e.data[24 + i];
      if (dp_len > e.data.size() - 32) return "";
      return DevicePathFile(std::span<const uint8_t>(e.data).subspan(32, dp_len));
    }
    case kEvEventTag: {
      auto tag = TaggedEventId(e);
      if (tag == kLinuxEventTagLoadOptions) return "Linux EFI stub: LoadOptions (command line)";
      if (tag == kLinuxEventTagInitrd) return "Linux EFI stub: initrd";
      return "";
    }
    case kEvIpl:
    case kEvAction:
    case kEvEfiAction:
    case kEvSCrtmVersion:
    case kEvPostCode:
    case kEvNoAction: {
      std::string text = EventText(e.data);
      if (text.size() > 120) text = text.substr(0, 117) + "...";
      return text;
    }
    default:
      return "";
  }
}

Status CheckEventDataDigests(const Event& e, const std::set<DigestAlg>* banks) {
  auto checked = [&](DigestAlg bank) { return banks == nullptr || banks->contains(bank); };
  std::span<const uint8_t> hashed;
  switch (e.type) {
    case kEvSeparator:
    case kEvEfiAction:
    case kEvEfiGptEvent:
    case kEvEfiVariableDriverConfig:
      hashed = e.data;
      break;
    case kEvIpl: {
      if (e.pcr != 8) return OkStatus();
      // GRUB's strings (grub_tpm_measure): the digest is of the text after the prefix;
      // GRUB 2.06+ hashes it without its NUL, Red Hat's older GRUB with it ("grub_cmd ").
      std::string_view text(reinterpret_cast<const char*>(e.data.data()), e.data.size());
      size_t prefix = 0;
      for (std::string_view p : {"grub_cmd: ", "kernel_cmdline: ", "module_cmdline: ",
                                 "grub_kernel_cmdline ", "grub_cmd "}) {
        if (HasPrefix(text, p)) {
          prefix = p.size();
          break;
        }
      }
      if (prefix == 0) return OkStatus();
      std::string_view bare = text;
      while (!bare.empty() && bare.back() == '\0') bare.remove_suffix(1);
      const std::span<const uint8_t> without_nul(e.data.data() + prefix, bare.size() - prefix);
      const std::span<const uint8_t> with_nul(
          e.data.data() + prefix, std::min(bare.size() + 1, text.size()) - prefix);
      for (const auto& [bank, digest] : e.digests) {
        if (!checked(bank)) continue;
        if (Digest(bank, without_nul) != digest && Digest(bank, with_nul) != digest) {
          return PermissionDenied(EventReference(e, bank) +
                                  ": its data does not hash to its digest (the log was altered)");
        }
      }
      return OkStatus();
    }
    default:
      return OkStatus();
  }
  for (const auto& [bank, digest] : e.digests) {
    if (!checked(bank)) continue;
    if (Digest(bank, hashed) != digest) {
      return PermissionDenied(EventReference(e, bank) +
                              ": its data does not hash to its digest (the log was altered)");
    }
  }
  return OkStatus();
}

std::string EventReference(const Event& e, DigestAlg bank) {
  std::string out = "event #" + std::to_string(e.index) + " (" + EventTypeName(e.type) + ", PCR " +
                    std::to_string(e.pcr);
  auto d = e.digests.find(bank);
  if (d != e.digests.end())
    out += ", " + std::string(DigestName(bank)) + " " + HexEncode(d->second);
  out += ")";
  return out;
}

}  // namespace berth::eventlog
