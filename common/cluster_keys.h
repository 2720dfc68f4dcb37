// The cluster keys berthd shares with the control planes it admits (docs/cluster-lifecycle.md):
// its master secret and the files of kubeadm's /etc/kubernetes/pki that a control-plane join
// needs. berthd reads them from a directory laid out as kubeadm's (ReadSharedPki); berth-agent
// checks what a ticket carries (CheckClusterKeys) before it writes anything, then writes them
// (WriteClusterKeys). Both sides take exactly the files below, by these names: a ticket naming
// anything else is malformed, so a path in it can never leave /etc/kubernetes/pki.
#pragma once

#include <array>
#include <string>
#include <string_view>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/secret.h"
#include "common/status.h"

namespace berth {

struct SharedPkiFile {
  std::string_view name;
  bool secret;  // a private key (0600, wiped after use) rather than a certificate or public key
};

// kubeadm's names (its certs phase): the cluster CA, the front-proxy CA, the service-account
// signing key pair. Not the etcd CA's key: berth's etcd CA signs on-node CSRs in berthd (which
// may share it, for the control plane's own berthd only: v1::BerthdKeys).
inline constexpr std::array<SharedPkiFile, 6> kSharedPkiFiles = {{
    {"ca.crt", false},
    {"ca.key", true},
    {"front-proxy-ca.crt", false},
    {"front-proxy-ca.key", true},
    {"sa.key", true},
    {"sa.pub", false},
}};

struct SharedPki {
  std::string name;
  SecretBytes content;
};

// Every file of kSharedPkiFiles from `dir`; NOT_FOUND naming the first one missing.
Result<std::vector<SharedPki>> ReadSharedPki(const std::string& dir);

// A state disk's key (DESIGN.md): HKDF-SHA256(master secret, salt = cluster id,
// info = "berth-disk-v1" || disk UUID). berthd derives it for every node it admits; the first
// control plane derives its own at bootstrap.
Result<SecretBytes> DeriveDiskKey(const SecretBytes& master_secret, const std::string& cluster_id,
                                  const std::string& disk_uuid);

// What a control plane's ticket carries: `master_secret` and `pki`.
v1::ClusterKeys MakeClusterKeys(const SecretBytes& master_secret,
                                const std::vector<SharedPki>& pki);

// INVALID_ARGUMENT naming what is wrong: a master secret under 32 bytes, a file not in
// kSharedPkiFiles, one given twice or missing, an empty one; berthd's keys, when present, with
// a key that is not a PEM private key or an empty policy. Never echoes a file's content.
Status CheckClusterKeys(const v1::ClusterKeys& keys);

// berthd's keys against the certificates the node already trusts: the join CA it pins
// (`join_ca_pem`) and the etcd CA of its ticket (`etcd_ca_pem`). INVALID_ARGUMENT naming the
// key that is not its CA's. REQUIRES: CheckClusterKeys(keys) passed and keys.has_berthd().
Status CheckBerthdKeys(const v1::BerthdKeys& keys, const std::string& join_ca_pem,
                       const std::string& etcd_ca_pem);

// Writes the PKI files into `pki_dir` (made 0755; private keys 0600, the rest 0644) and the
// master secret to `master_secret_path` (0600). REQUIRES: CheckClusterKeys(keys) passed.
Status WriteClusterKeys(const v1::ClusterKeys& keys, const std::string& pki_dir,
                        const std::string& master_secret_path);

// Wipes every secret in `keys` (the master secret, the private keys, berthd's keys).
void ScrubClusterKeys(v1::ClusterKeys& keys);

}  // namespace berth
