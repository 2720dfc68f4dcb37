// The node's state disk: what is on it, formatting a blank one, unlocking, the filesystem,
// mounting, and the progress record that makes every boot step resumable.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "agent/hw/disk.h"
#include "berth/v1/berth.pb.h"
#include "common/secret.h"
#include "common/subprocess.h"

namespace berth::agent {

// Mounting, behind an interface (tests on the host cannot mount).
class Mounter {
 public:
  virtual ~Mounter() = default;
  virtual Result<bool> IsMountPoint(const std::string& path) = 0;
  virtual Status Mount(const std::string& source, const std::string& target,
                       const std::string& fstype) = 0;
  virtual Status BindMount(const std::string& source, const std::string& target) = 0;
};
std::unique_ptr<Mounter> MakeRealMounter();

// Directories of the node whose contents must outlive a reboot: they live on the state disk
// and are bind-mounted into place (kubeadm's and the kubelet's state, so a rebooted node
// knows it has joined).
inline constexpr const char* kPersistentDirs[] = {"/etc/kubernetes", "/var/lib/kubelet"};
inline constexpr char kMapperName[] = "berth-state";
// The LUKS2 subsystem label berth writes once the volume holds its filesystem:
// "berth-fs:<type>". Until then the volume holds nothing anyone wrote (what dm-crypt reads
// from a blank disk is noise, not zeros), so only this record tells "not made yet" from "made".
inline constexpr char kFilesystemRecordPrefix[] = "berth-fs:";

// What the node has done, recorded on the state disk (<mount>/.berth/progress.json) with a
// durable write after each milestone.
struct Progress {
  bool join_started = false;  // kubeadm join was started at least once
  bool joined = false;        // kubeadm join completed
  bool pki_written = false;   // control planes: the etcd PKI and environment are on disk
};

// A random RFC 4122 version-4 UUID, lowercase.
std::string NewDiskUuid();

class StateDisk {
 public:
  // `root` prefixes every path (device, mount point, persistent directories).
  StateDisk(const v1::StateDiskConfig& config, std::string root, Disk* disk, Mounter* mounter,
            ProcessRunner* runner);

  const std::string& device() const { return device_; }
  Result<ProbeResult> Probe() { return disk_->Probe(device_); }
  // The UUID of a berth LUKS2 disk; FAILED_PRECONDITION for a LUKS2 disk berth did not make.
  Result<std::string> BerthUuid();
  Status FormatIfBlank(const std::string& uuid, const SecretBytes& key);
  // Opens the volume; a wrong key is PERMISSION_DENIED with nothing activated.
  Status Unlock(const SecretBytes& key);
  // OK when `key` opens a keyslot; PERMISSION_DENIED otherwise. Activates nothing.
  Status CheckKey(const SecretBytes& key) { return disk_->CheckKey(device_, key); }
  // Makes the filesystem on the unlocked volume unless the LUKS2 header records that it was
  // made, and then records it. A volume whose header records it is never made again, even if
  // its superblock is damaged (mount then fails: an operator decides, not the agent). On a
  // volume this StateDisk formatted, there is nothing to look for first: its header records
  // nothing yet, and under a volume key made moments ago every block reads as noise.
  Status MakeFilesystemIfBlank();
  // Mounts the volume (unless mounted) and bind-mounts the persistent directories.
  Status Mount();
  // Whether the state filesystem is mounted where the EnrolmentConfig says (an earlier run of
  // the agent in this boot mounted it).
  Result<bool> IsMounted() { return mounter_->IsMountPoint(mount_point_); }
  // Flushes the state filesystem (syncfs): what other programs wrote there (kubeadm does not
  // fsync kubelet.conf) is on the disk before the agent records that it is done.
  Status Sync();

  Result<Progress> ReadProgress();
  Status WriteProgress(const Progress& progress);

 private:
  std::string mapper() const;
  v1::StateDiskConfig config_;
  std::string root_, device_, mount_point_;
  Disk* disk_;
  Mounter* mounter_;
  ProcessRunner* runner_;
  bool formatted_here_ = false;  // FormatIfBlank formatted the disk
};

}  // namespace berth::agent
