// berthctl eventlog: TCG measured-boot logs (common/tpm/eventlog.h).
//   berthctl eventlog replay FILE   "bank index hex" for every PCR the log extends
//   berthctl eventlog show FILE     one line per event: index, PCR, type, class, digest, what
#include "cli/commands.h"
#include "common/bytes.h"
#include "common/tpm/eventlog.h"

namespace berth::cli {

namespace {

// Firmware logs are tens of kilobytes; a megabyte-scale one is allowed, more is not a log.
constexpr size_t kMaxEventLogSize = 16 << 20;

Result<eventlog::EventLog> ReadLog(const std::string& path) {
  auto raw = ReadFile(path, kMaxEventLogSize);
  if (!raw.ok()) return InvalidArgument(raw.status().message());
  auto log = eventlog::ParseEventLog(AsBytes(*raw));
  if (!log.ok()) return InvalidArgument(path + ": " + log.status().message());
  return log;
}

}  // namespace

void AddEventLogCommands(CLI::App& app, Context& ctx) {
  CLI::App* group = Group(app, "eventlog", "TCG measured-boot event logs");

  auto replay_file = std::make_shared<std::string>();
  CLI::App* replay = group->add_subcommand(
      "replay", "replay a log: prints 'bank index hex' for every PCR it extends, every bank");
  replay->add_option("FILE", *replay_file, "binary_bios_measurements file")->required();
  replay->callback([&ctx, replay_file] {
    auto log = ReadLog(*replay_file);
    if (!log.ok()) {
      ctx.exit_code = ExitFor(ctx, log.status());
      return;
    }
    *ctx.out << eventlog::FormatPcrLines(eventlog::Replay(*log));
  });

  auto show_file = std::make_shared<std::string>();
  auto show_bank = std::make_shared<std::string>("sha256");
  CLI::App* show = group->add_subcommand("show", "list a log's events");
  show->add_option("FILE", *show_file, "binary_bios_measurements file")->required();
  show->add_option("--bank", *show_bank, "the bank whose digests are shown")->capture_default_str();
  show->callback([&ctx, show_file, show_bank] {
    auto bank = DigestFromName(*show_bank);
    auto log = ReadLog(*show_file);
    Status st = !bank.ok() ? InvalidArgument("--bank: " + bank.status().message()) : log.status();
    if (!st.ok()) {
      ctx.exit_code = ExitFor(ctx, st);
      return;
    }
    for (const auto& e : log->events) {
      auto d = e.digests.find(*bank);
      *ctx.out << e.index << " pcr=" << e.pcr << " " << eventlog::EventTypeName(e.type)
               << " class=" << eventlog::EventClassName(eventlog::ClassifyEvent(e)) << " "
               << *show_bank << "=" << (d == e.digests.end() ? "-" : HexEncode(d->second));
      std::string what = eventlog::DescribeEvent(e);
      if (!what.empty()) *ctx.out << " \"" << what << "\"";
      *ctx.out << "\n";
    }
  });
}

}  // namespace berth::cli
