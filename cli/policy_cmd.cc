// berthctl policy: writing berthd policies from reference material.
//   berthctl policy from --eventlog FILE [--bank sha256] [--out policy.yaml]
// writes a policy that accepts exactly the boot the log records (verify/tpm_policy.h
// PolicyFromEventLog), for the operator to edit: add how AKs are trusted, and the digests of
// the other approved kernels, initrds and command lines.
#include "cli/commands.h"
#include "common/bytes.h"
#include "common/tpm/eventlog.h"
#include "verify/policy_from_eventlog.h"

namespace berth::cli {

void AddPolicyCommands(CLI::App& app, Context& ctx) {
  CLI::App* group = Group(app, "policy", "berthd attestation policies");

  struct FromArgs {
    std::string eventlog, bank = "sha256", out;
  };
  auto args = std::make_shared<FromArgs>();
  CLI::App* from = group->add_subcommand("from", "write a policy accepting a reference boot");
  from->add_option("--eventlog", args->eventlog, "the reference node's event log")->required();
  from->add_option("--bank", args->bank, "the bank the event rules are written in")
      ->capture_default_str();
  from->add_option("--out", args->out, "write here (default: standard output)");
  from->callback([&ctx, args] {
    auto run = [&]() -> Status {
      auto bank = DigestFromName(args->bank);
      if (!bank.ok()) return InvalidArgument("--bank: " + bank.status().message());
      auto raw = ReadFile(args->eventlog, 16 << 20);
      if (!raw.ok()) return InvalidArgument("--eventlog: " + raw.status().message());
      auto log = eventlog::ParseEventLog(AsBytes(*raw));
      if (!log.ok()) return InvalidArgument(args->eventlog + ": " + log.status().message());
      auto policy = verify::PolicyFromEventLog(*log, *bank, args->eventlog);
      if (!policy.ok()) return InvalidArgument(policy.status().message());
      if (args->out.empty()) {
        *ctx.out << *policy;
        return OkStatus();
      }
      Status written = WriteFileAtomic(args->out, *policy, 0644);
      if (!written.ok()) return InvalidArgument("--out: " + written.message());
      return OkStatus();
    };
    ctx.exit_code = ExitFor(ctx, run());
  });
}

}  // namespace berth::cli
