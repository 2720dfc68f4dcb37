// A node as a QEMU guest, for the e2e tests and the disk benchmark: Debian's kernel, the test
// initramfs (berth-agent, busybox, cryptsetup, the guest kubeadm stand-in; built by the
// e2e_guest target), a state disk image and a swtpm state that persist across its boots, and
// a config disk per boot carrying the EnrolmentConfig and tests/e2e/guest/run-agent.
// Each boot is one run of qemu/berth_vm.py. Not thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "tests/integration/cluster.h"

namespace berth::testing {

struct GuestBootOptions {
  v1::EnrolmentConfig enrolment;
  // Lines of /config/test.env (see tests/e2e/guest/run-agent), e.g. "BERTH_FAULT_AFTER=mkfs".
  std::vector<std::string> env;
  // Kill the VM (SIGKILL: a power cut) as soon as this text is on its console.
  std::string kill_at_marker;
  // The guest's script (a file on the host); default tests/e2e/guest/run-agent.
  std::string run_script;
  // More disks after the node's state disk (/dev/vdb, /dev/vdc, ...), image files on the host.
  std::vector<std::string> extra_disks;
  // The initramfs to boot; default GuestInitramfs().
  std::string initramfs;
  int memory_mib = 512;
  int cpus = 1;
  std::chrono::seconds timeout{300};
};

struct GuestBoot {
  std::string outcome;  // berth_vm.py's: "poweroff", "killed-at-marker", "timeout", ...
  double seconds = 0;   // wall time of the VM
  double qemu_cpu_seconds = 0;  // QEMU's user + system time (the emulation's work under TCG)
  std::string machine;          // "microvm" or "q35"
  std::string serial;   // everything on the console
  // "berth-test: KEY=VALUE" lines: the last value of each key.
  std::map<std::string, std::string> reports;
  // "berth-kubeadm: ..." lines (the guest kubeadm stand-in's records), prefix removed.
  std::vector<std::string> kubeadm;

  std::string Report(const std::string& key) const;
  // The agent's exit code, or -1 if it did not finish.
  int agent_exit() const;
  // A description for assertion messages: outcome, time and the console's last lines.
  std::string Describe() const;
};

class GuestNode {
 public:
  // `dir` (absolute, existing) holds the node's disk image (a sparse, all-zero file of
  // `disk_mib` MiB) and its boot logs; `tpm_state` is the swtpm state directory.
  GuestNode(std::string dir, std::string tpm_state, int disk_mib = 64);
  GuestBoot Boot(const GuestBootOptions& options);
  const std::string& disk() const { return disk_; }
  int boots() const { return boots_; }

 private:
  std::string dir_, tpm_state_, disk_;
  int boots_ = 0;
};

// The guest's kernel (uncompressed, booted through PVH) and initramfs.
std::string GuestKernel();
std::string GuestInitramfs();
// The same with mdadm, LVM and the md driver (raid1), for making RAID and LVM members.
std::string GuestToolsInitramfs();

// A TPM for guests: a swtpm state directory, and the berthd policy that trusts it.
struct GuestTpm {
  std::string state_dir;
  std::string policy_yaml;
};
// Makes the TPM in `dir` (absolute): runs swtpm on the host once, on the state the guests will
// use, and reads its identity with `berth-agent --print-identity`: the same AK the agent uses
// in the guest (a primary key from the TPM's endorsement seed), and the PCRs as the guest will
// quote them: all zero, since the guests' firmware (qboot) measures nothing. The policy is
// written before the first boot, so no boot is spent on asking the guest.
GuestTpm MakeGuestTpm(const std::string& dir);

// Where the guests mount their state disk.
inline constexpr char kGuestMount[] = "/var/lib/berth/state";

// A berthd (with its kube-apiserver stand-in), every part a real process on the host, that
// trusts the guest's TPM.
struct GuestCluster {
  explicit GuestCluster(const GuestTpm& tpm);
  // The node's EnrolmentConfig: berthd at the host's loopback as the guest sees it
  // (10.0.2.2), its certificate checked for the name it was issued to ("localhost"), the
  // state disk /dev/vda mounted at kGuestMount.
  v1::EnrolmentConfig Enrolment(const std::string& node) const;
  std::string BerthdLog() const;
  // The key berthd derives for a disk (hex), to check it never reaches a log.
  std::string DiskKeyHex(const std::string& uuid) const;
  // SHA-256 (hex) of every bootstrap token the API server stored for `node`, in order.
  std::vector<std::string> TokenHashes(const std::string& node) const;

  HostCluster host;
  bool ok = false;  // the API server and berthd started
};

// The SHA-256 of a whole file, hex.
std::string Sha256File(const std::string& path);

// The values of "step=STEP result=ok duration_ms=N" lines in a console log, in order.
std::vector<std::pair<std::string, long>> StepDurations(const std::string& serial);
// The agent's "<event> ms_since_exec=N" line (event: started, ready); -1 if absent.
long MillisSinceExec(const std::string& serial, const std::string& event);

}  // namespace berth::testing
