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

  EventLogBuilder& FirmwareBlob(const std::string& content);                         // PCR 0
  EventLogBuilder& Separator(uint32_t pcr);                                          // 4 zero bytes
  EventLogBuilder& SecureBootVariable(const std::string& name, const Bytes& value);  // PCR 7
  EventLogBuilder& BootApplication(const std::string& path, const std::string& image);  // PCR 4
  EventLogBuilder& GrubFile(const std::string& path, const std::string& content);       // PCR 9
  EventLogBuilder& GrubCommandLine(const std::string& cmdline);                         // PCR 8
  EventLogBuilder& LinuxInitrd(const std::string& initrd);                              // PCR 9 tag

  Bytes Build() const;
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
