// What the node image's QEMU tests share (image_e2e_test.cc, image_full_e2e_test.cc): the
// reference boot that berthd's policy comes from, nodes with manufactured TPMs, and the
// checks of a worker that joined the real control plane (docs/kubernetes-node.md).
#pragma once

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/subprocess.h"
#include "tests/e2e/image_cluster.h"
#include "tests/e2e/image_node.h"
#include "tests/testing/testing.h"

namespace berth::testing {

// The LUKS UUID of a state disk image (berthctl disk inspect), "" if it has none.
std::string DiskUuid(const std::string& disk);

// SHA-256 (hex) of a whole disk image, read in pieces.
std::string DiskSha256(const std::string& path);

// The token ids berthd minted for `node`, in order (its audit lines of granted join tickets).
std::vector<std::string> TokenIds(const ImageCluster& cluster, const std::string& node);

// The secret half of a bootstrap token, read from its Secret ("" once it is gone): to check
// that it appears in no log.
std::string TokenSecret(const ImageCluster& cluster, const std::string& token_id);

// Waits, while the node's VM runs, until the API server says the node is Ready; fails the
// test naming what it saw if the VM ends first or the deadline (generous: an emulated CPU on a
// shared machine) passes.
bool WaitForReady(const ImageCluster& cluster, const std::string& node, RunningBoot& boot,
                  std::chrono::seconds deadline = std::chrono::seconds(900));

// What the API server shows of a worker that has just turned Ready through the kubelet's TLS
// bootstrap with `token_id`: `kubectl get nodes -o wide` (Ready, v1.37.2, 10.0.2.15,
// containerd), and exactly one CSR by system:bootstrap:<token_id> for the kubelet's client
// signer, auto-approved, signed by the cluster CA for system:node:<node>. Returns the SHA-256
// (hex) of the DER of that certificate.
std::string ExpectJoinedThroughAnApprovedCsr(const ImageCluster& cluster, const std::string& node,
                                             const std::string& token_id);

// The bootstrap token: its expiration is its creation plus `ttl_seconds`, and the
// controller-manager's token cleaner deletes it once expired (waits for that).
void ExpectTokenExpiresAndIsCleanedUp(const ImageCluster& cluster, const std::string& token_id,
                                      int64_t ttl_seconds);

// Waits, while `boot` runs, for `node` Ready with a boot ID other than `old_boot_id`; returns
// its boot ID ("" after a failure, which names what was last seen and ends the console).
std::string WaitForReadyBoot(const KubectlAs& kubectl, const std::string& node, RunningBoot& boot,
                             const std::string& old_boot_id, std::chrono::seconds deadline);
// The last `n` characters of a console.
std::string Tail(const std::string& text, size_t n = 6000);
// What a test shows as it goes (./demo/run prints it): "<test>: <step>" and what it saw.
void Narrate(const std::string& test, const std::string& step, const std::string& seen = "");

// The operator of a cluster made from nothing: its key (`berthctl operator key` into `dir`)
// and berthctl's calls to a node's operator endpoint with it.
class ImageOperator {
 public:
  // Makes the key; spki() is empty if that failed (the test has failed then).
  explicit ImageOperator(std::string dir);
  // The SHA-256 of its key's SPKI (hex), which EnrolmentConfigs pin.
  const std::string& spki() const { return spki_; }
  // `berthctl COMMAND... --node NODE --operator-cert ... --operator-key ... ARGS...`; exit
  // code -1 with the error as output if berthctl could not be run.
  ProcessResult Run(const std::vector<std::string>& command, const std::string& node,
                    const std::vector<std::string>& args) const;

 private:
  std::string dir_, spki_;
};

class ImageE2eTest : public ::testing::Test {
 protected:
  void SetUp() override;

  // The reference boot: the image on a node with no EnrolmentConfig (berth-agent does not
  // start), which prints its firmware event log; berthd's policy accepts exactly that boot,
  // and TPMs with an EK certificate from the manufacturer CA.
  std::string ReferencePolicy();
  // The same from a boot of `reference` itself (its state disk stays blank; on the other OVMF
  // build when `other_firmware`), and the node's `berth-agent --print-identity` (its AK among
  // it) into `identity` when not null.
  std::string ReferencePolicy(ImageNode& reference, std::string* identity,
                              bool other_firmware = false);

  // A node with a TPM from the manufacturer and a blank state disk of `disk_mib` MiB.
  std::unique_ptr<ImageNode> NewNode(const std::string& name, int disk_mib = 256);

  // What the node's own report says of a boot that joined (or rejoined), whose kubelet runs,
  // and which the test powered off: the agent's unit, the state disk's mounts, the kubelet's
  // files and where it talks to.
  void ExpectJoinedNodeReport(const ImageBoot& boot, const ImageCluster& cluster);

  TempDir dir_;
  double reference_seconds_ = 0;
};

}  // namespace berth::testing
