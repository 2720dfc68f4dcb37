// A control plane's etcd (docs/etcd.md): the keys made on the node (only CSRs leave it), the
// checks of the etcd material in the join ticket, the files in kubeadm's layout under
// /etc/kubernetes/pki/etcd/, the environment etcd starts from, starting etcd (behind an
// interface: `systemctl start etcd` in production), and waiting until it is a voting member.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/etcd_client.h"
#include "common/subprocess.h"

namespace berth::agent {

// kubeadm's layout (under --root): ca.crt, server.crt, server.key, peer.crt, peer.key; and
// berth's CRL beside them (kEtcdCrlFile). The etcd CA's key is not among them: a control
// plane that runs berthd keeps it in berthd's directory.
inline constexpr char kEtcdPkiDir[] = "/etc/kubernetes/pki/etcd";
// The CRL etcd checks every client and peer certificate against, in DER: etcd 3.6 and later
// read it with Go's x509.ParseRevocationList, which takes DER only, and refuse every TLS
// connection while it does not parse (etcd 3.4 took PEM too). berthd sends it in PEM.
inline constexpr char kEtcdCrlFile[] = "crl.der";
// etcd's configuration as ETCD_* variables (etcd reads them as its flags). On the state disk
// with the rest of /etc/kubernetes; berth's systemd/etcd.service reads it.
inline constexpr char kEtcdEnvPath[] = "/etc/kubernetes/etcd.env";
// etcd's data directory, relative to the state disk's mount point: it must survive reboots.
inline constexpr char kEtcdDataSubdir[] = "etcd";

// This boot's etcd keys (P-256, one for the server certificate and one for the peer
// certificate, as kubeadm keeps them) and their CSRs (CN = node name).
struct EtcdKeys {
  EvpPkeyPtr server_key, peer_key;
  Bytes server_csr, peer_csr;  // DER PKCS#10
};
Result<EtcdKeys> MakeEtcdKeys(const std::string& node_name);
// A DER PKCS#10 request for `key` with subject CN=`common_name`, signed with SHA-256.
Result<Bytes> MakeCsr(EVP_PKEY* key, const std::string& common_name);

// Where this node's etcd serves: the first address is the one it advertises.
struct EtcdEndpoints {
  std::vector<std::string> addresses;
  int peer_port = 2380;
  int client_port = 2379;
  std::string PeerUrl() const;  // https://<addresses[0]>:<peer_port> ([v6] bracketed)
  std::string ClientUrl() const;
};

// The node's global addresses (IPv4 first; no loopback or link-local), from getifaddrs.
Result<std::vector<std::string>> DetectNodeAddresses();

// The etcd part of a join ticket is still input: the CA, certificates and CRL must parse, the
// certificates must be signed by the CA and carry this boot's keys and the node's name, the CRL
// must be signed by the CA, the member must be named after the node with a member ID, and the
// initial cluster must list the node at its peer URL. INVALID_ARGUMENT ("malformed join ticket:
// etcd ...") naming the problem.
Status ValidateEtcdMaterial(const v1::EtcdMaterial& material, const EtcdKeys& keys,
                            const std::string& node_name, const std::string& peer_url);

// The ETCD_* environment: name, data dir, --initial-cluster with
// --initial-cluster-state=existing (`new_cluster`: new, the first member of a bootstrapped
// cluster), URLs, and TLS for clients and peers with client certificates required and the CRL
// checked. Paths are under `root`.
std::string RenderEtcdEnvironment(const std::string& root, const v1::EtcdMaterial& material,
                                  const EtcdEndpoints& endpoints, const std::string& data_dir,
                                  bool new_cluster = false);

// Writes the PKI files (keys 0600, certificates 0644; each atomically, keys first) and then
// the environment file, and makes the data directory (0700).
Status WriteEtcdFiles(const std::string& root, const v1::EtcdMaterial& material,
                      const EtcdKeys& keys, const EtcdEndpoints& endpoints,
                      const std::string& data_dir);

// Replaces the CRL (kEtcdCrlFile; a rejoin ticket carries the current one, and a bootstrap
// makes the first) with `crl_pem` in DER. NOT_FOUND if the node has no etcd PKI;
// INVALID_ARGUMENT, changing nothing, if it does not parse or the node's etcd CA did not sign it.
Status WriteEtcdCrl(const std::string& root, const std::string& crl_pem);

// Starting the node's etcd, behind an interface (tests start a real etcd process from the
// environment file instead of systemd).
class EtcdService {
 public:
  virtual ~EtcdService() = default;
  // Starts etcd if it is not running (idempotent).
  virtual Status Start() = 0;
};

// `systemctl start --no-block etcd.service` (berth's systemd/etcd.service): the
// start job is queued, and the agent watches etcd itself (WaitForEtcdMember, --etcd-wait),
// saying what it sees. etcd tells systemd it is ready only once it serves with a quorum: a
// member that joins catches up with the leader first, and after a power loss it waits for the
// other control planes, however long they take to boot. A blocking start would fail after
// systemd's start timeout, and the agent with it.
class SystemdEtcdService : public EtcdService {
 public:
  SystemdEtcdService(ProcessRunner* runner, std::string systemctl = "/bin/systemctl")
      : runner_(runner), systemctl_(std::move(systemctl)) {}
  Status Start() override;

 private:
  ProcessRunner* runner_;
  std::string systemctl_;
};

// An etcd client of the node's own member: the CA and the node's server certificate and key
// (its EKU includes clientAuth) from the PKI directory under `root`.
Result<etcd::ClientOptions> LocalEtcdClientOptions(const std::string& root,
                                                   const std::string& client_url);

// Polls the member at `client_url` (every 500 ms of `clock`) until it answers as member
// `member_id` (0: any), knows a leader, and is a voting member; UNAVAILABLE naming what it last
// saw after `timeout`. `progress` is told about each change of state.
Status WaitForEtcdMember(etcd::Client& client, const std::string& client_url, uint64_t member_id,
                         Clock& clock, std::chrono::seconds timeout,
                         const std::function<void(const std::string&)>& progress);

}  // namespace berth::agent
