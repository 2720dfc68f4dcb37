// A real etcd cluster for tests: N members of Debian's etcd (v3.4) on loopback, TLS for
// clients and peers with client-certificate authentication, in a temporary directory.
//
// etcd cannot bind port 0, so the ports are picked unused beforehand; if another process takes
// one in between, the cluster is started again on fresh ports. Destroying the cluster stops
// every etcd it started (including members started from an agent's environment file).
// Not thread-safe.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/etcd_client.h"
#include "common/subprocess.h"

namespace berth::testing {

class EtcdCluster {
 public:
  // Starts `members` members in `dir` (absolute) and waits until they agree on a leader.
  // On failure ok() is false and error() says why (with the members' log tails).
  EtcdCluster(const std::string& dir, int members);
  ~EtcdCluster();
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  bool ok() const { return error_.empty(); }
  const std::string& error() const { return error_; }

  // The etcd CA (it signed the members' certificates; berthd signs new members' with it) and a
  // client certificate for berthd and the tests (CN "berthd").
  const std::string& ca_cert() const { return ca_cert_; }
  const std::string& ca_key() const { return ca_key_; }
  const std::string& client_cert() const { return client_cert_; }
  const std::string& client_key() const { return client_key_; }
  std::string ca_pem() const;

  int size() const { return static_cast<int>(members_.size()); }
  // https://127.0.0.1:<port> of the original members, in order.
  std::vector<std::string> ClientUrls() const;
  std::string ClientUrl(int i) const;
  std::string PeerUrl(int i) const;
  std::string Name(int i) const;

  // Stops member i (SIGTERM) and starts it again from its data directory.
  void Stop(int i);
  // Kills member i (SIGKILL: no shutdown, as a crash or a power cut); Restart brings it back.
  void Kill(int i);
  bool Restart(int i);
  bool running(int i);

  // Starts an etcd whose whole configuration is an environment file (KEY=VALUE lines of ETCD_*
  // variables) as berth-agent writes it; returns false if etcd could not be started.
  bool StartFromEnvironment(const std::string& env_file, const std::string& name);
  void StopExtra(const std::string& name);
  bool ExtraRunning(const std::string& name);

  // A client of the running original members.
  std::unique_ptr<etcd::Client> NewClient() const;
  // A client with these members' credentials of other endpoints (a proxy in front of one).
  std::unique_ptr<etcd::Client> NewClient(std::vector<std::string> endpoints,
                                          std::chrono::milliseconds call_timeout) const;
  // Whether every running original member answers Status and knows a leader, and a
  // linearizable read succeeds.
  bool Healthy() const;
  bool WaitHealthy(std::chrono::milliseconds timeout) const;

  // Members as the cluster reports them (ok() false on error).
  Result<etcdserverpb::MemberListResponse> Members() const;

  std::string LogTail(int i) const;

 private:
  struct Member {
    std::string name, dir;
    int client_port = 0, peer_port = 0;
    Subprocess process;
  };
  bool StartAll(std::string& error);
  bool StartMember(Member& m, const std::string& initial_cluster);

  std::string dir_, error_;
  std::string ca_cert_, ca_key_, client_cert_, client_key_, member_cert_, member_key_;
  std::vector<Member> members_;
  // Started by the test's thread, checked by an agent's (its etcd service): under extra_mu_.
  std::mutex extra_mu_;
  std::vector<std::pair<std::string, Subprocess>> extra_;
  std::string initial_cluster_;
};

// The etcd binary the tests run: the release berth's control planes run (kube/build's, pinned
// with Kubernetes'; kube/README.md), found once per process. Fails the test and returns "" if
// kube/build fails. (Until 2026-12-07 the tests ran Debian's 3.4, which hid that etcd 3.6 and
// later read only a DER CRL.)
const std::string& EtcdBinary();

}  // namespace berth::testing
