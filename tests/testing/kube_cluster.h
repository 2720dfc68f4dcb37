// A real Kubernetes control plane for tests: kube/control-plane (etcd, kube-apiserver and
// kube-controller-manager of the pinned release, kube/build, on loopback, set up by kubeadm's
// own phases) with berthd's identity applied (kube/berthd-rbac.yaml and a client certificate
// for the user berthd). See kube/README.md and docs/kubernetes.md.
//
// Starting one costs 15-50 s on this machine, so a test process shares one (Shared()): tests
// run one after the other in a process, and each starts from a cluster with no bootstrap token
// of berth's (DeleteBerthTokens()); nothing else a test does to it (identities, Roles) is seen
// by another. ctest runs a binary whose tests use it as one process (berth_test's ONE_PROCESS
// in tests/CMakeLists.txt), so the binary pays for one control plane, not each test.
//
// The control plane's processes are not children of the test (kube/control-plane detaches
// them), so test_main.cc's child killer cannot reach them: a guardian process, detached too,
// waits on a pipe this process holds, and brings the control plane down and removes its
// directory when the pipe closes without a word, that is, when the test process died.
//
// Not thread-safe, except Shared().
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/subprocess.h"
#include "tests/testing/testing.h"

namespace berth::testing {

class KubeCluster {
 public:
  // Builds the binaries if needed (`kube/build`: instant once built) and brings up a control
  // plane of its own in a fresh temporary directory. ok() is false and error() says why (with
  // kube/control-plane's output) if it could not.
  KubeCluster();
  // `kube/control-plane down`, then the directory goes.
  ~KubeCluster();
  KubeCluster(const KubeCluster&) = delete;
  KubeCluster& operator=(const KubeCluster&) = delete;

  // The control plane this process shares, started by the first call; stopped when the
  // tests end (a GoogleTest Environment) or, if the process dies, by its guardian.
  static KubeCluster& Shared();

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  const std::string& dir() const { return dir_; }          // kube/control-plane's DIR
  const std::string& bin_dir() const { return bin_; }      // kube/build's: kubeadm, kubectl...
  std::string Binary(const std::string& name) const { return bin_ + "/" + name; }
  const std::string& api_server() const { return api_server_; }  // https://127.0.0.1:PORT
  const std::string& api_server_endpoint() const { return endpoint_; }  // 127.0.0.1:PORT
  const std::string& ca_cert() const { return ca_cert_; }  // the cluster CA's PEM file
  const std::string& ca_cert_hash() const { return ca_cert_hash_; }  // sha256:<hex>, kubeadm's pin
  const std::string& release() const { return release_; }  // v1.37.2
  const std::string& admin_kubeconfig() const { return admin_kubeconfig_; }
  // berthd's least-privileged identity: kube/berthd-rbac.yaml, exactly.
  const std::string& berthd_kubeconfig() const { return berthd_kubeconfig_; }

  // kubectl with `kubeconfig` (admin.conf when empty); stdout only in `output` (kubectl's
  // stderr, warnings included, is appended after a line "--- stderr" when it said anything).
  ProcessResult Kubectl(const std::vector<std::string>& args,
                        const std::string& kubeconfig = "") const;
  // `kubectl <args> -o json` as admin, parsed; a failure fails the test and returns null.
  nlohmann::json KubectlJson(const std::vector<std::string>& args) const;

  // The bootstrap-token Secrets berth made (label app.kubernetes.io/managed-by=berth) in
  // kube-system, for `node` (every node when empty), as the admin reads them, oldest first,
  // each with its `data` base64-decoded.
  std::vector<nlohmann::json> BerthTokens(const std::string& node = "") const;
  // Deletes all of them, so that a test sharing the cluster starts from none.
  void DeleteBerthTokens() const;
  // `kubeadm token list -o json` (as admin): every bootstrap token kubeadm sees, with the
  // token itself replaced by its "id" (the secret half never leaves this function).
  std::vector<nlohmann::json> KubeadmTokens() const;

  // A kubeconfig for the user `name` (a client certificate kubeadm signs, the first time),
  // bound to Roles that are kube/berthd-rbac.yaml's with each {resource, verb} of `drop`
  // taken out (its admission policy stays berthd's); called again, it changes the Roles.
  // Waits until the API server's authorizer says so. Empty (and the test failed) on error.
  std::string IdentityWithout(const std::string& name,
                              const std::vector<std::pair<std::string, std::string>>& drop);

 private:
  bool Up();

  TempDir temp_;
  std::string dir_, bin_, api_server_, endpoint_, ca_cert_, ca_cert_hash_, release_;
  std::string admin_kubeconfig_, berthd_kubeconfig_;
  std::string error_;
  int guardian_fd_ = -1;  // write end of the guardian's pipe
  bool up_ = false;
};

// berth-agent's --kubeadm on the host: the real kubeadm's `join --dry-run`
// (kube/kubeadm-join-dry-run), and the environment that points it at `cluster`'s kubeadm and
// records each join in `record_dir`.
std::string KubeadmJoinDryRun();
std::vector<std::string> KubeadmJoinDryRunEnv(const KubeCluster& cluster,
                                              const std::string& record_dir);
// The joins recorded in `record_dir`, in order: record.json of each, plus "output" (what
// kubeadm printed) and "dir" (the join's directory; dry-run/ in it holds what kubeadm would
// have written).
std::vector<nlohmann::json> KubeadmJoinRecords(const std::string& record_dir);

// The bootstrap-token Secrets the stand-in API server created, from its request records.
std::vector<nlohmann::json> StandinTokenSecrets(const std::vector<nlohmann::json>& records);

}  // namespace berth::testing
