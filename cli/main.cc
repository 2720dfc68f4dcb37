// berthctl: the operator's tool. main() only wires the command groups (commands.h).
#include "cli/commands.h"
#include "common/log.h"

int main(int argc, char** argv) {
  berth::cli::Context ctx;
  CLI::App app{"berthctl: operate berth (EnrolmentConfigs, evidence, policies, nodes)"};
  app.require_subcommand(1);
  berth::cli::AddEnrolmentCommands(app, ctx);
  berth::cli::AddVerifyCommands(app, ctx);
  berth::cli::AddSnpCommands(app, ctx);
  berth::cli::AddEventLogCommands(app, ctx);
  berth::cli::AddPolicyCommands(app, ctx);
  berth::cli::AddDiskCommands(app, ctx);
  berth::cli::AddNodesCommands(app, ctx);
  berth::cli::AddLifecycleCommands(app, ctx);
  berth::cli::AddClusterCommands(app, ctx);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    app.exit(e);
    return berth::cli::kExitBadInput;  // usage errors are bad input
  }
  return ctx.exit_code;
}
