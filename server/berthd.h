// berthd as a whole: reads its configuration files, builds the join logic and serves
// JoinService over TLS until told to stop. main.cc only parses flags into BerthdConfig.
#pragma once

#include <atomic>
#include <chrono>
#include <memory>
#include <string>

#include "common/status.h"
#include "server/berthd_etcd.h"
#include "server/cloud/sns.h"
#include "server/join/load_gate.h"
#include "server/nodes/golden_ticket.h"
#include "server/snp_service.h"

namespace berth::server {

struct BerthdConfig {
  std::string listen = "0.0.0.0:7443";
  std::string port_file;          // written (atomically) with the bound port once listening
  std::string tls_cert;           // server certificate chain, chained to the cluster CA
  std::string tls_key;
  std::string policy;             // YAML, see policy.h
  std::string master_secret_file; // at least 32 bytes of key material
  std::string cluster_id;
  std::string kubeconfig;         // empty: in-cluster service account
  std::string api_server_endpoint;
  // The cluster's control plane endpoint (a load balancer or DNS name; berthctl cluster init
  // --control-plane-endpoint): handed, with the cluster keys, to the control planes it admits,
  // whose API servers then serve it too; empty: none was named.
  std::string control_plane_endpoint;
  std::string kubernetes_ca;      // empty: the kubeconfig's CA
  std::string kubernetes_version;
  std::chrono::seconds nonce_ttl{60};  // a challenge lives this long and admits one call
  std::chrono::seconds token_ttl{900};
  SnpServerConfig snp;            // SEV-SNP certificates and verification time (snp_service.h)
  BerthdEtcdConfig etcd;  // node records, etcd membership, AdminService (docs/etcd.md)
  JoinGateLimits gate;  // concurrent ticket calls, overall and per source (server/join/load_gate.h)
  // Node lifecycle (docs/lifecycle.md).
  std::string metrics_listen;     // host:port of the Prometheus endpoint; empty: none
  std::string metrics_port_file;  // written with its bound port
  std::string discovery = "token";  // kubeadm discovery: "token" or "file" (a kubeconfig)
  // kubeadm's /etc/kubernetes/pki whose CA keys (common/cluster_keys.h), with the master
  // secret, go to each authorized control plane in its join ticket; empty: none are shared.
  std::string control_plane_pki;
  // The join CA's key (the CA of --tls-cert, which EnrolmentConfigs pin): with
  // control_plane_pki and the etcd CA, control planes also get it, the etcd CA's key and the
  // policy, so that berthd serves joins on each of them; empty: not shared.
  std::string join_ca_key;
  // The recovery-key.txt of `berthctl cluster init`: control planes' recovery keyslots are
  // sealed to its public key (docs/cluster-lifecycle.md "Recovery"); empty: none handed out.
  std::string recovery_key;
  std::chrono::milliseconds approval_hold{20000};  // how long a pending node's call is held
  // Golden tickets: main.cc passes the factory of the flavour it links (golden_ticket.h);
  // null behaves as a release build.
  GoldenTicketsFactory golden_tickets = nullptr;
  SnsConfig sns;  // the Amazon SNS endpoint (sns.h); empty listen: none
};

// Validates the configuration and serves until `stop` becomes true (checked every 200 ms)
// or SIGTERM/SIGINT arrives when `handle_signals` is set. Reports READY=1/STOPPING=1 to
// systemd. Returns an error naming the problem if the configuration is unusable.
Status RunBerthd(const BerthdConfig& config, const std::atomic<bool>* stop = nullptr,
                 bool handle_signals = true);

}  // namespace berth::server
