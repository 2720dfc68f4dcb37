// Reading the files an operator names on berthctl's command line.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace berth::cli {

// Everything that stops a command before its checks run is bad input (exit 2), whatever
// the underlying code: errno's EACCES maps to kPermissionDenied, which ExitFor would
// otherwise report as a failed check (exit 1). Prefixes `context` ("--quote q.bin").
Status BadInput(std::string_view context, const Status& status);

// Reads the file given to `flag` (at most `max_size` bytes). Errors are bad input naming the
// flag and the path: "--quote: open(q.bin): No such file or directory".
Result<std::string> ReadInputFile(std::string_view flag, const std::string& path,
                                  size_t max_size = 1 << 20);

}  // namespace berth::cli
