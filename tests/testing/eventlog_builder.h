// Synthetic TCG PC Client event logs for tests, in the formats real firmware writes:
// crypto-agile (Spec ID Event03 header, one digest per bank) or SHA-1 legacy. The events are
// the ones boot chains make (UEFI applications with a device path, Secure Boot variables,
// GRUB's kernel file and command line, the Linux EFI stub's initrd), and their digests are the
// hashes of the content they stand for, so a swtpm extended with Sha256Extends() holds what a
// real boot of that content would.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/tpm/quote.h"

namespace berth::testing {

class EventLogBuilder {
 public:
  enum class Format { kCryptoAgile, kSha1Legacy };
  explicit EventLogBuilder(std::vector<DigestAlg> banks = {DigestAlg::kSha256},
                           Format format = Format::kCryptoAgile);

  // EV_NO_ACTION "StartupLocality" (PCR 0 then starts at 00..0<locality>).
  EventLogBuilder& StartupLocality(uint8_t locality);
  // Any event: its digests are H_bank(`measured`), its data `data`.
  EventLogBuilder& Add(uint32_t pcr, uint32_t type, const Bytes& data, const Bytes& measured);
  // An event whose digests are the hashes of its own data (EV_SEPARATOR, EV_EFI_ACTION, ...).
  EventLogBuilder& AddHashedData(uint32_t pcr, uint32_t type, const Bytes& data);
  EventLogBuilder& NoAction(uint32_t pcr, const Bytes& data);

  // The events of real boot chains, each in the PCR its measurer uses; `pcr` moves one
  // elsewhere (what a forged log does).
  EventLogBuilder& FirmwareBlob(const std::string& content);                         // PCR 0
  EventLogBuilder& Separator(uint32_t pcr);                                          // 4 zero bytes
  EventLogBuilder& SecureBootVariable(const std::string& name, const Bytes& value);  // PCR 7
  // EV_EFI_ACTION: the firmware's own strings ("Calling EFI Application from Boot Option").
  EventLogBuilder& EfiAction(uint32_t pcr, const std::string& text);
  EventLogBuilder& BootApplication(const std::string& path, const std::string& image,
                                   uint32_t pcr = 4);
  EventLogBuilder& GrubFile(const std::string& path, const std::string& content,
                            uint32_t pcr = 9);
  // GRUB's "kernel_cmdline: ..." and "grub_cmd: ..." strings: the digest is of the text after
  // the prefix.
  EventLogBuilder& GrubCommandLine(const std::string& cmdline, uint32_t pcr = 8);
  EventLogBuilder& GrubCommand(const std::string& command);                          // PCR 8
  EventLogBuilder& LinuxInitrd(const std::string& initrd);                           // PCR 9 tag
  EventLogBuilder& LinuxLoadOptions(const std::string& options);                     // PCR 9 tag
  // systemd-stub (252) measuring a UKI section: an EV_IPL event with the section's name
  // whose digest is of the name and its NUL, then one with the same name whose digest is of
  // the section's contents.
  EventLogBuilder& UkiSection(const std::string& name, const std::string& contents,
                              uint32_t pcr = 11);
  // systemd-stub's loader-provided command line (PCR 12): UTF-16 text, measured as logged.
  EventLogBuilder& StubCommandLine(const std::string& cmdline);

  Bytes Build() const;
  // One event in the layout of a log recording `banks` (crypto-agile, or the SHA-1 legacy
  // layout when `banks` is {sha1} and `legacy`), its digests H_bank(`measured`): what a
  // forger appends to a real log.
  static Bytes Event(const std::vector<DigestAlg>& banks, bool legacy, uint32_t pcr,
                     uint32_t type, const Bytes& data, const Bytes& measured);
  // The sha256 extends of every non-EV_NO_ACTION event, in order, as (PCR, hex digest).
  std::vector<std::pair<int, std::string>> Sha256Extends() const;

 private:
  struct Entry {
    uint32_t pcr, type;
    Bytes data;
    std::vector<std::pair<DigestAlg, Bytes>> digests;
  };
  std::vector<DigestAlg> banks_;
  Format format_;
  std::vector<Entry> entries_;
};

}  // namespace berth::testing
