// TCG PC Client event logs (the firmware's measured-boot log, as Linux exposes it in
// /sys/kernel/security/tpm0/binary_bios_measurements): parsing, replay and classification.
//
// Two formats exist. The crypto-agile one (TCG PC Client Platform Firmware Profile, TPM 2.0)
// starts with an EV_NO_ACTION "Spec ID Event03" header in the SHA-1 layout that lists the
// banks and their digest sizes; every later event carries one digest per bank. The legacy one
// (TCG 1.2 layout, SHA-1 only) has one 20-byte digest per event.
//
// Replay follows the firmware: every PCR starts at zero, except PCR 0 when an EV_NO_ACTION
// "StartupLocality" event says the TPM was started from locality 3 or 4 (PCR 0 then starts
// at 00..03 or 00..04); EV_NO_ACTION events are never extended. A replayed log proves nothing
// by itself: only once its replay equals PCR values a quote signed are its events trusted.
//
// Events are numbered from 0 in log order; the crypto-agile header is event 0. Pure functions,
// thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <set>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/status.h"
#include "common/tpm/quote.h"

namespace berth::eventlog {

// Event types (TCG PC Client PFP, section 10.4.1) that berth looks at by name.
inline constexpr uint32_t kEvPostCode = 0x1;
inline constexpr uint32_t kEvNoAction = 0x3;
inline constexpr uint32_t kEvSeparator = 0x4;
inline constexpr uint32_t kEvAction = 0x5;
inline constexpr uint32_t kEvEventTag = 0x6;
inline constexpr uint32_t kEvSCrtmVersion = 0x8;
inline constexpr uint32_t kEvIpl = 0xd;
inline constexpr uint32_t kEvEfiVariableDriverConfig = 0x80000001;
inline constexpr uint32_t kEvEfiVariableBoot = 0x80000002;
inline constexpr uint32_t kEvEfiBootServicesApplication = 0x80000003;
inline constexpr uint32_t kEvEfiBootServicesDriver = 0x80000004;
inline constexpr uint32_t kEvEfiRuntimeServicesDriver = 0x80000005;
inline constexpr uint32_t kEvEfiGptEvent = 0x80000006;
inline constexpr uint32_t kEvEfiAction = 0x80000007;
inline constexpr uint32_t kEvEfiPlatformFirmwareBlob = 0x80000008;
inline constexpr uint32_t kEvEfiVariableAuthority = 0x800000e0;

// "EV_EFI_BOOT_SERVICES_APPLICATION", or "0x800000ff" for a type berth has no name for.
std::string EventTypeName(uint32_t type);
// The inverse, for policies; accepts names and 0x-hex numbers.
Result<uint32_t> EventTypeFromName(std::string_view name);

struct Event {
  uint32_t index = 0;  // position in the log, from 0
  size_t offset = 0;   // byte offset of the event in the log
  uint32_t pcr = 0;
  uint32_t type = 0;
  std::map<DigestAlg, Bytes> digests;  // one per bank the log records
  Bytes data;                          // the event data, as logged
};

struct EventLog {
  enum class Format { kCryptoAgile, kSha1Legacy };
  Format format = Format::kCryptoAgile;
  // The banks the log records, in header order (legacy: sha1). Banks berth cannot compute
  // (e.g. SM3) are parsed over and left out of `banks` and of every event's digests.
  std::vector<DigestAlg> banks;
  // From EV_NO_ACTION "StartupLocality"; absent means 0.
  std::optional<uint8_t> startup_locality;
  std::vector<Event> events;  // every event, EV_NO_ACTION ones included
};

// Parses a whole log. Malformed input (a truncated event, a digest of an algorithm the header
// did not announce, sizes that run past the end) is kInvalidArgument naming the event and its
// byte offset. Zero padding after the last event (some firmware hands out a fixed-size area)
// is accepted.
Result<EventLog> ParseEventLog(std::span<const uint8_t> data);

// Every bank's PCR values after replaying the log, for the PCRs at least one extending event
// touches. With `only`, just those banks (a verifier replays the banks the quote holds: each
// bank is a hash of every event).
tpm::PcrValues Replay(const EventLog& log, const std::set<DigestAlg>* only = nullptr);

// The initial value of `pcr` in `bank` for this log (zero, or the locality for PCR 0).
Bytes InitialPcrValue(const EventLog& log, DigestAlg bank, uint32_t pcr);

// `bank index hex` lines (bank as sha1/sha256/sha384/sha512, lowercase hex), sorted by bank
// then index: the format of `berthctl eventlog replay` and of the testdata's expected PCRs.
std::string FormatPcrLines(const tpm::PcrValues& pcrs);

// ---- what an event is, for policies and for people ----

// The class of boot component an event measures, by the rules in docs/attestation.md
// ("Where each event class is measured"), across the boot chains berth knows: UEFI firmware
// loading images, shim + GRUB (PCR 8/9 strings and files), the Linux EFI stub (PCR 9 tagged
// events) and systemd-stub UKIs (PCR 11/12).
enum class EventClass {
  kOther,
  kBootApplication,     // EV_EFI_BOOT_SERVICES_APPLICATION: a UEFI image the firmware loaded
  kKernel,              // a kernel image read by the boot loader
  kInitrd,              // an initrd
  kKernelCmdline,       // a kernel command line
  kSecureBootVariable,  // EV_EFI_VARIABLE_DRIVER_CONFIG in PCR 7 (SecureBoot, PK, KEK, db, dbx)
};
std::string_view EventClassName(EventClass c);  // "boot_applications", "kernels", ...

// The classes whose events firmware, shim, GRUB, the Linux EFI stub and systemd-stub put in
// `pcr` with event type `type` (the per-class PCR table of docs/attestation.md): boot
// applications only in PCR 4, Secure Boot variables only in 7, GRUB's command line in 8 and
// its kernel and initrd in 9, the EFI stub's initrd and LoadOptions in 9, a UKI's sections in
// 11, systemd-stub's command line in 12. Empty for any other place. A verifier decides by
// this, never by what an event's data says it is: the measured software writes that.
std::vector<EventClass> ClassesMeasuredAt(uint32_t pcr, uint32_t type);

// The class an event's data describes it as, among ClassesMeasuredAt(its PCR, its type):
// for naming events and for writing policies from a reference boot, whose log is trusted.
// kOther when its place admits no class or the data names none of them.
EventClass ClassifyEvent(const Event& event);

// For the event types the TCG PC Client PFP ties to one PCR, that PCR is the only one they
// may be in: EV_EFI_BOOT_SERVICES_APPLICATION (4), EV_EFI_BOOT_SERVICES_DRIVER and
// EV_EFI_RUNTIME_SERVICES_DRIVER (2), EV_EFI_VARIABLE_AUTHORITY and the Secure Boot
// variables' EV_EFI_VARIABLE_DRIVER_CONFIG (7), the Linux EFI stub's tagged events (9).
// PERMISSION_DENIED names the event (its digest in `bank`) and where it belongs.
Status CheckEventPcr(const Event& event, DigestAlg bank);

// Whether the event is one whose whole content the specifications fix and that loads or
// configures nothing, so that a verifier accepts it wherever it is: an EV_SEPARATOR of
// 00000000h, the firmware's EV_EFI_ACTION strings in their PCRs (4: calling and returning
// from a boot option; 5: ExitBootServices), systemd-stub's section-name events in PCR 11 (the
// digest is of the name and its NUL). Returns what it is ("separator", "firmware action",
// "UKI section name"), or empty. It checks the digests it relies on in every bank.
std::string_view FixedEventKind(const Event& event);

// A short human description of the event data: the variable name of a UEFI variable event,
// the file path of a loaded image, the text of a string event. Empty when there is none.
std::string DescribeEvent(const Event& event);

// For EV_EFI_VARIABLE_* events: the variable's UTF-8 name ("db", "SecureBoot"); otherwise
// kInvalidArgument.
Result<std::string> UefiVariableName(const Event& event);

// For the event types whose digest the specifications define as the hash of the event data
// (EV_SEPARATOR, EV_EFI_ACTION, EV_EFI_GPT_EVENT, EV_EFI_VARIABLE_DRIVER_CONFIG, and GRUB's
// strings in PCR 8: "grub_cmd: ", "kernel_cmdline: ", "module_cmdline: " and Red Hat's
// "grub_cmd " and "grub_kernel_cmdline ", hashed without the prefix, with or without the
// string's NUL), checks that every digest matches the data: a verifier that reads such data (a
// variable name, a command) must not be shown one thing while the PCR holds another.
// PERMISSION_DENIED names the event and bank. Other events pass: their digests cover images
// or files the log does not contain. With `banks`, only the digests of those banks are checked
// (the verifier passes the banks in which the quote vouches for the event's PCR: a digest of a
// bank no quote covers is one the node could have written anyway, and nothing reads it).
Status CheckEventDataDigests(const Event& event, const std::set<DigestAlg>* banks = nullptr);

// "event #12 (EV_IPL, PCR 9, sha256 7a1e...)": how policy refusals name an event.
std::string EventReference(const Event& event, DigestAlg bank);

}  // namespace berth::eventlog
