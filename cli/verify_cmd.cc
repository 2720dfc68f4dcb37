#include "cli/commands.h"

namespace berth::cli {

void AddVerifyCommands(CLI::App& app, Context& ctx) {}

}  // namespace berth::cli
