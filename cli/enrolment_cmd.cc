#include "cli/commands.h"

namespace berth::cli {

void AddEnrolmentCommands(CLI::App& app, Context& ctx) {}

}  // namespace berth::cli
