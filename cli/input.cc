#include "cli/input.h"

#include "common/bytes.h"

namespace berth::cli {

Status BadInput(std::string_view context, const Status& status) {
  if (status.ok()) return status;
  return InvalidArgument(std::string(context) + ": " + status.message());
}

Result<std::string> ReadInputFile(std::string_view flag, const std::string& path, size_t max_size) {
  if (path.empty()) return InvalidArgument(std::string(flag) + ": no file given");
  auto data = ReadFile(path, max_size);
  // ReadFile's messages name the path already ("open(q.bin): ..."); add the flag.
  if (!data.ok()) return BadInput(flag, data.status());
  return data;
}

}  // namespace berth::cli
