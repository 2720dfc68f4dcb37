#include "cli/commands.h"

namespace berth::cli {

CLI::App* Group(CLI::App& parent, const std::string& name, const std::string& description) {
  for (CLI::App* sub : parent.get_subcommands([](CLI::App*) { return true; })) {
    if (sub->get_name() == name) return sub;
  }
  CLI::App* group = parent.add_subcommand(name, description);
  group->require_subcommand(1);
  return group;
}

int ExitFor(Context& ctx, const Status& status) {
  if (status.ok()) return kExitOk;
  *ctx.err << status.message() << "\n";
  return status.code() == Code::kPermissionDenied ? kExitCheckFailed : kExitBadInput;
}

}  // namespace berth::cli
