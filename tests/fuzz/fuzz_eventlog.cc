// A TCG PC Client event log (TpmEvidence.event_log; berthctl eventlog): parsed, replayed, and
// every event classified, described and digest-checked as berthd's policy checks do; then the
// event rules themselves: the log replayed against its own values without a policy, and a
// policy written from it (berthctl policy from, which checks the log under that policy).
#include <cstddef>
#include <cstdint>

#include "common/tpm/eventlog.h"
#include "verify/policy_from_eventlog.h"
#include "verify/tpm_boot.h"
#include "verify/tpm_policy.h"
#include "tests/fuzz/fuzz_support.h"

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace el = berth::eventlog;
  auto log = el::ParseEventLog({data, size});
  if (!log.ok()) return 0;
  auto pcrs = el::Replay(*log);
  (void)el::FormatPcrLines(pcrs);
  for (berth::DigestAlg bank : log->banks) (void)el::InitialPcrValue(*log, bank, 0);
  for (const el::Event& event : log->events) {
    (void)el::ClassifyEvent(event);
    (void)el::DescribeEvent(event);
    (void)el::UefiVariableName(event);
    (void)el::CheckEventDataDigests(event);
    (void)el::CheckEventPcr(event, berth::DigestAlg::kSha256);
    (void)el::FixedEventKind(event);
    (void)el::EventTypeName(event.type);
    for (const auto& [bank, digest] : event.digests) (void)el::EventReference(event, bank);
  }
  (void)berth::verify::CheckEventLog(*log, pcrs, nullptr);
  if (!log->banks.empty()) {
    (void)berth::verify::PolicyFromEventLog(*log, log->banks.front(), "fuzz");
  }
  return 0;
}
