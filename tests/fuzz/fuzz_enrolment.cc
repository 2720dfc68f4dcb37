// The EnrolmentConfig on the ESP, which anyone with the disk can write: read and validated by
// the agent's own entry point (LoadEnrolmentConfig, from a file as at boot), then printed and
// re-parsed as `berthctl enrolment show` and `write` do.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>

#include "common/bytes.h"
#include "common/enrolment.h"
#include "tests/fuzz/fuzz_support.h"

namespace {
// The file the agent reads; one per process, removed at exit.
struct ConfigFile {
  ConfigFile() {
    const char* tmp = getenv("TMPDIR");
    path = std::string(tmp != nullptr && *tmp != '\0' ? tmp : "/tmp") + "/berth-fuzz-enrolment-" +
           std::to_string(getpid()) + ".binpb";
  }
  ~ConfigFile() { unlink(path.c_str()); }
  std::string path;
};
}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static ConfigFile file;
  const std::string& path = file.path;
  FILE* f = fopen(path.c_str(), "wb");
  if (f == nullptr) abort();
  if (size > 0 && fwrite(data, 1, size, f) != size) abort();
  fclose(f);
  auto config = berth::LoadEnrolmentConfig(path);
  auto unvalidated = berth::ReadEnrolmentConfigUnvalidated(path);
  if (unvalidated.ok()) {
    std::string text = berth::EnrolmentToText(*unvalidated);
    auto again = berth::ParseEnrolmentTextUnvalidated(text);
    // What `show` prints must read back: the text form is how operators edit configs.
    if (!again.ok()) {
      fprintf(stderr, "text form does not parse back: %s\n", again.status().ToString().c_str());
      abort();
    }
    (void)berth::ValidateEnrolmentConfig(*again);
  }
  return 0;
}
