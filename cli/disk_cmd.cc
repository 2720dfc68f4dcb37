// berthctl disk inspect PATH: whether a block device or image file is blank (the one thing
// berth-agent checks before it formats a state disk: the same probe, agent::Disk::Probe), what
// is on it and where if not, and for a LUKS disk its header. Reads only; opens nothing
// read-write, writes nothing.
//
// Output, one "key: value" per line:
//   path: /dev/vdb
//   blank: yes | no
//   zero-checked: 34 ranges, 6291456 bytes   (blank disks: what the data check read)
//   signature: ext4 | crypto_LUKS | partition table gpt | non-zero data ...   (the first found)
//   found: backup GPT header at the last sector (offset 67108352)   (one line per finding)
//   luks: LUKS2 | LUKS1                  (LUKS disks)
//   uuid: ...                            (LUKS disks)
//   label: ...                           (LUKS2 disks)
//   subsystem: berth-fs:ext4             (LUKS2 disks that have one)
//   berth: yes | no                      (LUKS disks: a berth state disk?)
// Exit codes: 0 blank, 1 not blank, 2 unreadable (missing, not a device or image file, I/O).
#include <sys/stat.h>

#include <memory>

#include "agent/hw/disk.h"
#include "cli/commands.h"

namespace berth::cli {

namespace {

int Unreadable(Context& ctx, const std::string& path, const std::string& why) {
  *ctx.err << "berthctl disk inspect: cannot read " << path << ": " << why << "\n";
  return kExitBadInput;
}

int Inspect(Context& ctx, agent::Disk& disk, const std::string& path) {
  struct stat st {};
  if (stat(path.c_str(), &st) != 0) return Unreadable(ctx, path, ErrnoStatus("stat").message());
  if (!S_ISBLK(st.st_mode) && !S_ISREG(st.st_mode)) {
    return Unreadable(ctx, path, "not a block device or an image file");
  }
  auto probe = disk.Probe(path);
  if (!probe.ok()) return Unreadable(ctx, path, probe.status().message());
  std::ostream& out = *ctx.out;
  out << "path: " << path << "\n";
  if (probe->blank()) {
    out << "blank: yes\nzero-checked: " << probe->data_reads << " ranges, " << probe->data_bytes
        << " bytes\n";
    return kExitOk;
  }
  out << "blank: no\nsignature: " << probe->signature << "\n";
  for (const std::string& f : probe->found) out << "found: " << f << "\n";
  if (probe->kind == agent::ProbeResult::Kind::kLuks) {
    auto header = disk.ReadLuksHeader(path);
    if (!header.ok()) {
      // A LUKS signature with a header libcryptsetup cannot read: still not blank.
      out << "luks: unreadable header (" << header.status().message() << ")\n";
      return kExitCheckFailed;
    }
    out << "luks: " << header->type << "\nuuid: " << header->uuid << "\n";
    if (header->type == "LUKS2") out << "label: " << header->label << "\n";
    if (!header->subsystem.empty()) out << "subsystem: " << header->subsystem << "\n";
    out << "berth: " << (header->is_berth() ? "yes" : "no") << "\n";
  }
  return kExitCheckFailed;
}

}  // namespace

void AddDiskCommands(CLI::App& app, Context& ctx) {
  CLI::App* group = Group(app, "disk", "state disks");
  CLI::App* inspect = group->add_subcommand(
      "inspect",
      "is a device or image blank (exit 0), and if not (exit 1) what is on it; 2: unreadable");
  auto path = std::make_shared<std::string>();
  inspect->add_option("PATH", *path, "block device or image file")->required();
  inspect->callback([&ctx, path] {
    std::unique_ptr<agent::Disk> disk = agent::MakeLibDisk();
    ctx.exit_code = Inspect(ctx, *disk, *path);
  });
}

}  // namespace berth::cli
