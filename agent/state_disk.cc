#include "agent/state_disk.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <nlohmann/json.hpp>

#include "common/bytes.h"
#include "common/crypto.h"

namespace berth::agent {

namespace {

class RealMounter : public Mounter {
 public:
  Result<bool> IsMountPoint(const std::string& path) override {
    std::ifstream in("/proc/self/mountinfo");
    if (!in) return ErrnoStatus("open(/proc/self/mountinfo)");
    std::string line;
    while (std::getline(in, line)) {
      // Field 5 is the mount point.
      std::istringstream fields(line);
      std::string f;
      for (int i = 0; i < 5 && fields >> f; ++i) {
      }
      if (f == path) return true;
    }
    return false;
  }
  Status Mount(const std::string& source, const std::string& target,
               const std::string& fstype) override {
    if (mount(source.c_str(), target.c_str(), fstype.c_str(), MS_NOSUID | MS_NODEV, nullptr) != 0) {
      return ErrnoStatus("mount(" + source + ", " + target + ")");
    }
    return OkStatus();
  }
  Status BindMount(const std::string& source, const std::string& target) override {
    if (mount(source.c_str(), target.c_str(), nullptr, MS_BIND, nullptr) != 0) {
      return ErrnoStatus("bind mount(" + source + ", " + target + ")");
    }
    return OkStatus();
  }
};

}  // namespace

std::unique_ptr<Mounter> MakeRealMounter() { return std::make_unique<RealMounter>(); }

std::string NewDiskUuid() {
  Bytes b = RandomBytes(16);
  b[6] = static_cast<uint8_t>((b[6] & 0x0f) | 0x40);
  b[8] = static_cast<uint8_t>((b[8] & 0x3f) | 0x80);
  std::string hex = HexEncode(b);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20, 12);
}

StateDisk::StateDisk(const v1::StateDiskConfig& config, std::string root, Disk* disk,
                     Mounter* mounter, ProcessRunner* runner)
    : config_(config),
      root_(std::move(root)),
      device_(JoinRoot(root_, config.device())),
      mount_point_(JoinRoot(root_, config.mount_point())),
      disk_(disk),
      mounter_(mounter),
      runner_(runner) {}

std::string StateDisk::mapper() const {
  return JoinRoot(root_, std::string("/dev/mapper/") + kMapperName);
}

Result<std::string> StateDisk::BerthUuid() {
  BERTH_ASSIGN_OR_RETURN(LuksHeader header, disk_->ReadLuksHeader(device_));
  if (header.type != "LUKS2") {
    return FailedPrecondition(device_ + " is a " + header.type +
                              " disk, which berth never makes; leaving it alone");
  }
  if (!header.is_berth()) {
    return FailedPrecondition(device_ + " is a LUKS2 disk that berth did not make (label \"" +
                              header.label + "\"); leaving it alone");
  }
  return header.uuid;
}

Status StateDisk::FormatIfBlank(const std::string& uuid, const SecretBytes& key) {
  BERTH_RETURN_IF_ERROR(disk_->FormatIfBlank(device_, uuid, key));
  formatted_here_ = true;
  return OkStatus();
}

Status StateDisk::Unlock(const SecretBytes& key) {
  Status opened = disk_->Open(device_, kMapperName, key);
  if (opened.code() == Code::kPermissionDenied) {
    return PermissionDenied("the disk key from berthd does not open " + device_ +
                            "; the disk was not touched");
  }
  return opened;
}

Status StateDisk::MakeFilesystemIfBlank() {
  const std::string fs = config_.filesystem().empty() ? "ext4" : config_.filesystem();
  const std::string record = kFilesystemRecordPrefix + fs;
  // Only a volume formatted on an earlier boot can hold a filesystem already: made and
  // recorded, or made by a boot that lost power before recording it.
  bool make = formatted_here_;
  if (!formatted_here_) {
    BERTH_ASSIGN_OR_RETURN(LuksHeader header, disk_->ReadLuksHeader(device_));
    if (header.subsystem == record) {
      spdlog::info("{} holds the {} filesystem made on an earlier boot; not making one", mapper(),
                   fs);
      return OkStatus();
    }
    if (!header.subsystem.empty()) {
      return FailedPrecondition("the LUKS2 header of " + device_ + " records \"" +
                                header.subsystem + "\", not \"" + record +
                                "\"; leaving the volume alone");
    }
    BERTH_ASSIGN_OR_RETURN(ProbeResult probe, disk_->Probe(mapper()));
    make = !(probe.kind == ProbeResult::Kind::kOther && probe.signature == fs);
    if (!make) spdlog::info("{} holds a {} filesystem not yet recorded; keeping it", mapper(), fs);
  }
  if (make) {
    std::vector<std::string> argv = {JoinRoot(root_, "/sbin/mkfs." + fs), "-q"};
    if (fs == "ext4") {
      // The journal is not zeroed first (on a large disk, a gigabyte of writes through
      // dm-crypt). That is only a risk where old journal blocks could be replayed after a
      // crash; on a volume just formatted under a fresh random volume key, every block never
      // written reads as noise, which fails jbd2's magic, sequence and checksum checks.
      argv.insert(argv.end(), {"-E", "lazy_journal_init=1"});
    }
    argv.insert(argv.end(), {"-L", kMapperName, mapper()});
    BERTH_ASSIGN_OR_RETURN(ProcessResult r, runner_->Run(argv));
    if (!r.success()) {
      return Internal("mkfs." + fs + " on " + mapper() + " failed (" + r.Describe() +
                      "): " + TrimWhitespace(r.output));
    }
  }
  return disk_->WriteLuksSubsystem(device_, record);
}

Status StateDisk::Mount() {
  BERTH_RETURN_IF_ERROR(MakeDirs(mount_point_, 0700));
  BERTH_ASSIGN_OR_RETURN(bool mounted, mounter_->IsMountPoint(mount_point_));
  if (!mounted) {
    const std::string fs = config_.filesystem().empty() ? "ext4" : config_.filesystem();
    BERTH_RETURN_IF_ERROR(mounter_->Mount(mapper(), mount_point_, fs));
  }
  for (const char* dir : kPersistentDirs) {
    std::string target = JoinRoot(root_, dir);
    std::string name = std::string(dir + 1);
    std::replace(name.begin(), name.end(), '/', '-');
    std::string source = mount_point_ + "/" + name;
    BERTH_RETURN_IF_ERROR(MakeDirs(source, 0700));
    BERTH_RETURN_IF_ERROR(MakeDirs(target, 0755));
    BERTH_ASSIGN_OR_RETURN(bool bound, mounter_->IsMountPoint(target));
    if (!bound) BERTH_RETURN_IF_ERROR(mounter_->BindMount(source, target));
  }
  return OkStatus();
}

Status StateDisk::Sync() {
  int fd = open(mount_point_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return ErrnoStatus("open(" + mount_point_ + ")");
  int rc = syncfs(fd);
  int err = errno;
  close(fd);
  if (rc != 0) return ErrnoStatus("syncfs(" + mount_point_ + ")", err);
  return OkStatus();
}

Result<Progress> StateDisk::ReadProgress() {
  const std::string path = mount_point_ + "/.berth/progress.json";
  auto text = ReadFile(path, 1 << 16);
  Progress p;
  if (!text.ok()) {
    if (text.status().code() == Code::kNotFound) return p;
    return text.status().WithContext("reading progress");
  }
  auto j = nlohmann::json::parse(*text, nullptr, false);
  if (j.is_discarded() || !j.is_object()) {
    return DataLoss(path + " is corrupt; refusing to guess whether this node has joined");
  }
  p.join_started = j.value("join_started", false);
  p.joined = j.value("joined", false);
  p.pki_written = j.value("pki_written", false);
  return p;
}

Status StateDisk::WriteProgress(const Progress& progress) {
  const std::string dir = mount_point_ + "/.berth";
  BERTH_RETURN_IF_ERROR(MakeDirs(dir, 0700));
  nlohmann::json j = {{"version", 1},
                      {"join_started", progress.join_started},
                      {"joined", progress.joined}};
  if (progress.pki_written) j["pki_written"] = true;  // control planes only
  return WriteFileAtomic(dir + "/progress.json", j.dump() + "\n", 0600);
}

}  // namespace berth::agent
