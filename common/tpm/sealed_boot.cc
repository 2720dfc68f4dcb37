#include "common/tpm/sealed_boot.h"

#include <cstring>

namespace berth::seal {

namespace {

// The labels include their NUL: one can never be a prefix of another's payload.
constexpr char kConfigLabel[] = "berth.enrolment-config.v1";
constexpr char kReleasedLabel[] = "berth.keys-released.v1";

bool HasLabel(std::span<const uint8_t> data, const char* label, size_t size_with_nul) {
  return data.size() >= size_with_nul && std::memcmp(data.data(), label, size_with_nul) == 0;
}

}  // namespace

Bytes EnrolmentConfigEvent(std::span<const uint8_t> config_file) {
  Bytes out(kConfigLabel, kConfigLabel + sizeof kConfigLabel);
  Bytes digest = Sha256(config_file);
  out.insert(out.end(), digest.begin(), digest.end());
  return out;
}

Bytes KeysReleasedEvent() { return Bytes(kReleasedLabel, kReleasedLabel + sizeof kReleasedLabel); }

Result<SealEvent> ParseEvent(std::span<const uint8_t> data) {
  if (HasLabel(data, kConfigLabel, sizeof kConfigLabel) &&
      data.size() == sizeof kConfigLabel + 32) {
    return SealEvent{SealEvent::Kind::kEnrolmentConfig,
                     Bytes(data.begin() + sizeof kConfigLabel, data.end())};
  }
  if (data.size() == sizeof kReleasedLabel &&
      HasLabel(data, kReleasedLabel, sizeof kReleasedLabel)) {
    return SealEvent{SealEvent::Kind::kKeysReleased, {}};
  }
  return InvalidArgument("not a berth-agent event (" + std::to_string(data.size()) + " bytes)");
}

Bytes Replay(DigestAlg bank, const std::vector<Bytes>& events) {
  Bytes value(DigestSize(bank), 0);
  for (const Bytes& e : events) {
    Bytes input = value;
    Bytes d = Digest(bank, e);
    input.insert(input.end(), d.begin(), d.end());
    value = Digest(bank, input);
  }
  return value;
}

std::vector<std::vector<Bytes>> PossibleHistories(std::span<const uint8_t> config_file) {
  Bytes config = EnrolmentConfigEvent(config_file);
  return {{}, {config}, {config, KeysReleasedEvent()}};
}

}  // namespace berth::seal
