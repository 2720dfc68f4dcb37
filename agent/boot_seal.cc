#include "agent/boot_seal.h"

#include "common/tpm/sealed_boot.h"

namespace berth::agent {

namespace {

Result<Bytes> ReadSealPcr(Tpm& tpm) {
  v1::PcrSelection sel;
  sel.set_bank(v1::HASH_ALGORITHM_SHA256);
  sel.add_pcrs(seal::kPcr);
  BERTH_ASSIGN_OR_RETURN(tpm::PcrValues values, tpm.ReadPcrs({sel}));
  return values[DigestAlg::kSha256][seal::kPcr];
}

// Which of the histories PCR 15 is at, or -1.
int FindHistory(const Bytes& value, const std::vector<std::vector<Bytes>>& histories) {
  for (size_t i = 0; i < histories.size(); ++i) {
    if (seal::Replay(DigestAlg::kSha256, histories[i]) == value) return static_cast<int>(i);
  }
  return -1;
}

}  // namespace

Result<BootSeal> BootSeal::Measure(Tpm& tpm, std::span<const uint8_t> config_file) {
  const auto histories = seal::PossibleHistories(config_file);
  BERTH_ASSIGN_OR_RETURN(Bytes value, ReadSealPcr(tpm));
  int at = FindHistory(value, histories);
  if (at < 0) {
    return FailedPrecondition(
        "PCR " + std::to_string(seal::kPcr) + " holds " + HexEncode(value) +
        ", which is not what berth-agent measures for this EnrolmentConfig in one boot: another "
        "component measured into it, or the EnrolmentConfig changed since this boot read it; "
        "reboot the node");
  }
  BootSeal seal;
  if (at == 0) {
    BERTH_RETURN_IF_ERROR(tpm.MeasureEvent(seal::kPcr, histories[1][0]));
    BERTH_ASSIGN_OR_RETURN(value, ReadSealPcr(tpm));
    if (FindHistory(value, histories) != 1) {
      return FailedPrecondition("PCR " + std::to_string(seal::kPcr) +
                                " changed while berth-agent measured the EnrolmentConfig into it");
    }
    seal.measured_now_ = true;
    at = 1;
  }
  seal.events_ = histories[at];
  return seal;
}

std::vector<v1::TpmAgentEvent> BootSeal::Events() const {
  std::vector<v1::TpmAgentEvent> out;
  for (const Bytes& e : events_) {
    v1::TpmAgentEvent event;
    event.set_pcr(seal::kPcr);
    event.set_data(ToString(e));
    out.push_back(std::move(event));
  }
  return out;
}

Status BootSeal::ReleaseKeys(Tpm& tpm) {
  if (keys_released()) return OkStatus();
  const Bytes released = seal::KeysReleasedEvent();
  BERTH_RETURN_IF_ERROR(tpm.MeasureEvent(seal::kPcr, released));
  events_.push_back(released);
  return OkStatus();
}

}  // namespace berth::agent
