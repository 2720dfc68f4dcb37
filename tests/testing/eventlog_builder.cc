#include "tests/testing/eventlog_builder.h"

#include <cstring>

#include "common/tpm/eventlog.h"

namespace berth::testing {

namespace {

void U16(Bytes& out, uint16_t v) {
  out.push_back(static_cast<uint8_t>(v));
  out.push_back(static_cast<uint8_t>(v >> 8));
}
void U32(Bytes& out, uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void U64(Bytes& out, uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
}
void Append(Bytes& out, const Bytes& b) { out.insert(out.end(), b.begin(), b.end()); }
Bytes Utf16(const std::string& s, bool nul) {
  Bytes out;
  for (char c : s) U16(out, static_cast<uint8_t>(c));
  if (nul) U16(out, 0);
  return out;
}

}  // namespace

EventLogBuilder::EventLogBuilder(std::vector<DigestAlg> banks, Format format)
    : banks_(std::move(banks)), format_(format) {
  if (format_ == Format::kSha1Legacy) banks_ = {DigestAlg::kSha1};
}

EventLogBuilder& EventLogBuilder::Add(uint32_t pcr, uint32_t type, const Bytes& data,
                                      const Bytes& measured) {
  Entry e{pcr, type, data, {}};
  for (DigestAlg b : banks_) e.digests.emplace_back(b, Digest(b, measured));
  entries_.push_back(std::move(e));
  return *this;
}

EventLogBuilder& EventLogBuilder::AddHashedData(uint32_t pcr, uint32_t type, const Bytes& data) {
  return Add(pcr, type, data, data);
}

EventLogBuilder& EventLogBuilder::NoAction(uint32_t pcr, const Bytes& data) {
  Entry e{pcr, eventlog::kEvNoAction, data, {}};
  for (DigestAlg b : banks_) e.digests.emplace_back(b, Bytes(DigestSize(b), 0));
  entries_.push_back(std::move(e));
  return *this;
}

EventLogBuilder& EventLogBuilder::StartupLocality(uint8_t locality) {
  Bytes data = ToBytes(std::string("StartupLocality", 16));
  data.push_back(locality);
  return NoAction(0, data);
}

EventLogBuilder& EventLogBuilder::FirmwareBlob(const std::string& content) {
  Bytes data;
  U64(data, 0xffd00000);  // UEFI_PLATFORM_FIRMWARE_BLOB: base, length
  U64(data, content.size());
  return Add(0, eventlog::kEvEfiPlatformFirmwareBlob, data, ToBytes(content));
}

EventLogBuilder& EventLogBuilder::Separator(uint32_t pcr) {
  return AddHashedData(pcr, eventlog::kEvSeparator, Bytes(4, 0));
}

EventLogBuilder& EventLogBuilder::SecureBootVariable(const std::string& name, const Bytes& value) {
  // UEFI_VARIABLE_DATA: VariableName GUID, name length, data length, name, data.
  Bytes data = {0x61, 0xdf, 0xe4, 0x8b, 0xca, 0x93, 0xd2, 0x11,
                0xaa, 0x0d, 0x00, 0xe0, 0x98, 0x03, 0x2b, 0x8c};  // EFI_GLOBAL_VARIABLE
  U64(data, name.size());
  U64(data, value.size());
  Append(data, Utf16(name, false));
  Append(data, value);
  return AddHashedData(7, eventlog::kEvEfiVariableDriverConfig, data);
}

EventLogBuilder& EventLogBuilder::EfiAction(uint32_t pcr, const std::string& text) {
  return AddHashedData(pcr, eventlog::kEvEfiAction, ToBytes(text));
}

EventLogBuilder& EventLogBuilder::BootApplication(const std::string& path,
                                                  const std::string& image, uint32_t pcr) {
  // UEFI_IMAGE_LOAD_EVENT with a device path of one file path node and the end node.
  Bytes path_node = {0x04, 0x04};
  Bytes name = Utf16(path, true);
  U16(path_node, static_cast<uint16_t>(4 + name.size()));
  Append(path_node, name);
  Append(path_node, Bytes{0x7f, 0xff, 0x04, 0x00});
  Bytes data;
  U64(data, 0x7e000000);
  U64(data, image.size());
  U64(data, 0);
  U64(data, path_node.size());
  Append(data, path_node);
  return Add(pcr, eventlog::kEvEfiBootServicesApplication, data, ToBytes(image));
}

EventLogBuilder& EventLogBuilder::GrubFile(const std::string& path, const std::string& content,
                                           uint32_t pcr) {
  Bytes data = ToBytes(path);
  data.push_back(0);
  return Add(pcr, eventlog::kEvIpl, data, ToBytes(content));
}

EventLogBuilder& EventLogBuilder::GrubCommandLine(const std::string& cmdline, uint32_t pcr) {
  Bytes data = ToBytes("kernel_cmdline: " + cmdline);
  data.push_back(0);
  return Add(pcr, eventlog::kEvIpl, data, ToBytes(cmdline));
}

EventLogBuilder& EventLogBuilder::GrubCommand(const std::string& command) {
  Bytes data = ToBytes("grub_cmd: " + command);
  data.push_back(0);
  return Add(8, eventlog::kEvIpl, data, ToBytes(command));
}

EventLogBuilder& EventLogBuilder::LinuxInitrd(const std::string& initrd) {
  Bytes data;
  U32(data, 0x8F3B22EC);  // TCG_PCClientTaggedEvent: id, size, "Linux initrd"
  Bytes text = ToBytes(std::string("Linux initrd", 13));
  U32(data, static_cast<uint32_t>(text.size()));
  Append(data, text);
  return Add(9, eventlog::kEvEventTag, data, ToBytes(initrd));
}

EventLogBuilder& EventLogBuilder::LinuxLoadOptions(const std::string& options) {
  Bytes data;
  U32(data, 0x8F3B22ED);  // TCG_PCClientTaggedEvent: id, size, "LOADED_IMAGE::LoadOptions"
  Bytes text = ToBytes(std::string("LOADED_IMAGE::LoadOptions", 26));
  U32(data, static_cast<uint32_t>(text.size()));
  Append(data, text);
  return Add(9, eventlog::kEvEventTag, data, Utf16(options, true));
}

EventLogBuilder& EventLogBuilder::UkiSection(const std::string& name, const std::string& contents,
                                             uint32_t pcr) {
  Bytes name_and_nul = ToBytes(name);
  name_and_nul.push_back(0);
  Add(pcr, eventlog::kEvIpl, Utf16(name, true), name_and_nul);
  return Add(pcr, eventlog::kEvIpl, Utf16(name, true), ToBytes(contents));
}

EventLogBuilder& EventLogBuilder::StubCommandLine(const std::string& cmdline) {
  return AddHashedData(12, eventlog::kEvIpl, Utf16(cmdline, true));
}

Bytes EventLogBuilder::Build() const {
  Bytes out;
  if (format_ == Format::kCryptoAgile) {
    // The header, in the SHA-1 layout: TCG_EfiSpecIdEvent.
    Bytes spec = ToBytes(std::string("Spec ID Event03", 16));
    U32(spec, 0);  // platform class: client
    spec.push_back(0);
    spec.push_back(2);
    spec.push_back(0);
    spec.push_back(2);  // version 2.0, errata 0, UINTN size 2 (64-bit)
    U32(spec, static_cast<uint32_t>(banks_.size()));
    for (DigestAlg b : banks_) {
      U16(spec, tpm::TpmAlgFromDigest(b));
      U16(spec, static_cast<uint16_t>(DigestSize(b)));
    }
    spec.push_back(0);  // no vendor info
    U32(out, 0);
    U32(out, eventlog::kEvNoAction);
    Append(out, Bytes(20, 0));
    U32(out, static_cast<uint32_t>(spec.size()));
    Append(out, spec);
  }
  for (const Entry& e : entries_) {
    U32(out, e.pcr);
    U32(out, e.type);
    if (format_ == Format::kSha1Legacy) {
      Append(out, e.digests[0].second);
    } else {
      U32(out, static_cast<uint32_t>(e.digests.size()));
      for (const auto& [b, d] : e.digests) {
        U16(out, tpm::TpmAlgFromDigest(b));
        Append(out, d);
      }
    }
    U32(out, static_cast<uint32_t>(e.data.size()));
    Append(out, e.data);
  }
  return out;
}

Bytes EventLogBuilder::Event(const std::vector<DigestAlg>& banks, bool legacy, uint32_t pcr,
                             uint32_t type, const Bytes& data, const Bytes& measured) {
  Bytes out;
  U32(out, pcr);
  U32(out, type);
  if (legacy) {
    Append(out, Digest(DigestAlg::kSha1, measured));
  } else {
    U32(out, static_cast<uint32_t>(banks.size()));
    for (DigestAlg b : banks) {
      U16(out, tpm::TpmAlgFromDigest(b));
      Append(out, Digest(b, measured));
    }
  }
  U32(out, static_cast<uint32_t>(data.size()));
  Append(out, data);
  return out;
}

std::vector<std::pair<int, std::string>> EventLogBuilder::Sha256Extends() const {
  std::vector<std::pair<int, std::string>> out;
  for (const Entry& e : entries_) {
    if (e.type == eventlog::kEvNoAction) continue;
    for (const auto& [b, d] : e.digests) {
      if (b == DigestAlg::kSha256) out.emplace_back(static_cast<int>(e.pcr), HexEncode(d));
    }
  }
  return out;
}

}  // namespace berth::testing
