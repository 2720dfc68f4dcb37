// A node booted from the node image (image/, docs/image.md) in QEMU with OVMF and swtpm, for
// the image e2e tests and the time-to-Ready benchmark: its own ESP disk (the image's UKI, its
// EnrolmentConfig, the test report's options), the shared read-only root disk, its state disk
// and TPM state, which persist across its boots. Each boot is one run of
// `qemu/berth_vm.py run --ovmf`; the image is built with --test, so berth-test-report.service
// prints the node's state on the serial console ("berth-test: KEY=VALUE") once berth-agent has
// finished, and powers off, or, with HOLD=1 among the options, keeps the node (and its
// kubelet) running until the test presses its ACPI power button.
// Not thread-safe.
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/subprocess.h"

namespace berth::testing {

// The image the e2e tests boot: BERTH_IMAGE_DIR, else <build>/image (the image_build test
// makes it).
std::string ImageDir();

struct ImageBootOptions {
  // Without one the ESP has no EnrolmentConfig and berth-agent does not start
  // (ConditionPathExists): the reference boot.
  const v1::EnrolmentConfig* enrolment = nullptr;
  // Lines of the ESP's /berth-test/options (WRITE=..., IDENTITY=1, HOLD=1; see image/test/).
  std::vector<std::string> options;
  // Another UKI to boot instead of the image's (e.g. with another command line).
  std::string uki;
  // Debian's other OVMF build (berth_vm.py --ovmf-2m): the same node with another firmware,
  // so another PCR 0.
  bool other_firmware = false;
  // More options of QEMU's user network, and host forwards.
  std::string netdev_opts;
  std::vector<std::string> hostfwds;
  // Instead of the user network: slot k (1..) of qemu/netns-bridge's segment, which the test
  // runs in (its tap device and MAC; the guest gets BridgeAddress(k) by DHCP). 0: user network.
  int bridge_slot = 0;
  int memory_mib = 2048;
  std::chrono::seconds timeout{900};
};

struct ImageBoot {
  std::string outcome;  // berth_vm.py's: "poweroff", "timeout", ...
  double seconds = 0;
  double power_button = -1;  // when the test pressed the power button (s after VM start)
  // When QEMU was started, on this host's CLOCK_MONOTONIC and wall clock (s; 0 if unknown).
  double started_monotonic = 0, started_realtime = 0;
  std::string serial;
  // "SECONDS LINE" for each console line: when it appeared, seconds after QEMU started.
  std::string serial_times;
  // "berth-test: KEY=VALUE" lines: the last value of each key.
  std::map<std::string, std::string> reports;
  // "berth-test: begin NAME" ... "berth-test: end NAME" blocks.
  std::map<std::string, std::string> blocks;

  std::string Report(const std::string& key) const;
  // How many console lines contain `text`.
  int Count(const std::string& text) const;
  std::string Describe() const;
};

// A boot in progress (ImageNode::Start); its VM is stopped when it goes out of scope.
class RunningBoot {
 public:
  // Whether the VM still runs.
  bool running();
  // What the console showed so far.
  std::string Serial() const;
  // Waits until the console shows `text` (true), the VM ends or `timeout` passes (false).
  bool WaitForSerial(const std::string& text, std::chrono::seconds timeout);
  // The guest's ACPI power button (berth_vm.py, SIGUSR1): its systemd shuts it down.
  void PressPowerButton();
  // Pulls the plug (berth_vm.py, SIGTERM: QEMU is killed, the guest flushes nothing; swtpm
  // keeps its state) and reads the console: outcome "interrupted".
  ImageBoot PullThePlug();
  // Waits for the VM to end (`timeout`, then it is killed) and reads its console.
  ImageBoot Finish(std::chrono::seconds timeout = std::chrono::seconds(300));

 private:
  friend class ImageNode;
  Subprocess vm_;
  std::string serial_, times_, log_;
};

class ImageNode {
 public:
  // `dir` (absolute, existing) holds the node's ESP, state disk (`disk_mib` MiB of zeros)
  // and serial logs; `tpm_state` its swtpm state directory.
  ImageNode(std::string dir, std::string tpm_state, int disk_mib = 256);
  // Boots and waits for the VM to end.
  ImageBoot Boot(const ImageBootOptions& options);
  // Boots in the background (null if the ESP could not be made or QEMU did not start: the
  // test has failed then).
  std::unique_ptr<RunningBoot> Start(const ImageBootOptions& options);
  const std::string& disk() const { return disk_; }

 private:
  std::string dir_, tpm_state_, disk_;
  int boots_ = 0;
};

// The address qemu/netns-bridge's DHCP gives the guest in slot k: 192.168.77.(10+k).
std::string BridgeAddress(int slot);
// Whether this process runs inside qemu/netns-bridge (it sets BERTH_BRIDGE).
bool OnBridge();

// An EnrolmentConfig for image nodes: `base` with the state disk (the virtio disk with serial
// berth-state, mounted at /var/lib/berth/state) and a PCR selection with the UKI's PCR 11
// (systemd-stub's measurements of its sections) next to the default ones.
v1::EnrolmentConfig ImageEnrolment(v1::EnrolmentConfig base);
// ImageEnrolment of a TPM worker `node` of `cluster_id` that names `berthds` and pins
// `join_ca_pem`.
v1::EnrolmentConfig ImageWorkerEnrolment(const std::string& cluster_id,
                                         const std::vector<std::string>& berthds,
                                         const std::string& join_ca_pem, const std::string& node);

}  // namespace berth::testing
