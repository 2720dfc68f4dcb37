// berthctl's commands. Each group of commands lives in its own file (enrolment_cmd.cc,
// verify_cmd.cc, ...) and registers itself on the CLI11 app; main.cc only wires them.
//
// Exit codes, the same for every command:
//   0  success (for checks: the evidence is valid, the disk is blank, ...)
//   1  a check failed on well-formed input (the output names the failed check)
//   2  unreadable or malformed input, or a usage error
#pragma once

#include <CLI/CLI.hpp>

#include <iostream>
#include <string>

#include "common/status.h"

namespace berth::cli {

inline constexpr int kExitOk = 0;
inline constexpr int kExitCheckFailed = 1;
inline constexpr int kExitBadInput = 2;

// Where commands write and what they return; main() returns `exit_code`.
struct Context {
  std::ostream* out = &std::cout;
  std::ostream* err = &std::cerr;
  int exit_code = kExitOk;
};

// The subcommand `name` of `parent`, created with `description` on first use, so that
// several files can add commands to one group ("verify tpm-quote", "verify snp-report").
CLI::App* Group(CLI::App& parent, const std::string& name, const std::string& description);

// Maps a Status to berthctl's exit codes: PERMISSION_DENIED (a check failed) -> 1,
// anything else -> 2. Prints the message to ctx.err. OK -> 0 and prints nothing.
int ExitFor(Context& ctx, const Status& status);

void AddEnrolmentCommands(CLI::App& app, Context& ctx);
void AddVerifyCommands(CLI::App& app, Context& ctx);
void AddSnpCommands(CLI::App& app, Context& ctx);  // verify snp-report (snp_cmd.cc)
void AddEventLogCommands(CLI::App& app, Context& ctx);
void AddPolicyCommands(CLI::App& app, Context& ctx);
void AddDiskCommands(CLI::App& app, Context& ctx);
void AddNodesCommands(CLI::App& app, Context& ctx);
void AddLifecycleCommands(CLI::App& app, Context& ctx);  // approve, deny, golden-ticket
void AddClusterCommands(CLI::App& app, Context& ctx);    // operator key, cluster init, recover

}  // namespace berth::cli
