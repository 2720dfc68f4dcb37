// berthd's etcd side, built from its flags: the etcd client, node records, membership, the
// etcd CA, the promotion loop and the AdminService on its own mutual-TLS port. RunBerthd
// (berthd.cc) starts it and hands JoinLogic its NodeRegistry.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/secret.h"
#include "server/cloud/kube_client.h"
#include "server/metrics.h"
#include "server/nodes/admin.h"
#include "server/nodes/golden_ticket.h"
#include "server/nodes/registry.h"
#include "verify/policy_holder.h"
#include "verify/role_policy.h"

namespace berth::server {

struct BerthdEtcdConfig {
  // --no-etcd: run without node records (workers only; no revocation, no rejoin checks, no
  // control planes). An explicit choice, never a default: without etcd a revoked node would
  // still be served.
  bool disabled = false;
  std::vector<std::string> endpoints;   // https://host:port of etcd members
  std::string trusted_ca;               // CA of the members' server certificates (default: ca_cert)
  std::string client_cert, client_key;  // berthd's etcd client certificate
  std::string ca_cert, ca_key;          // the etcd CA berthd signs members' certificates with
  std::chrono::seconds cert_validity{std::chrono::hours(24 * 365)};
  std::chrono::seconds learner_timeout{600};
  std::chrono::milliseconds promote_interval{1000};
  std::string admin_listen;     // host:port of AdminService; empty: not served
  std::string admin_port_file;  // written with the bound port
  std::string operator_ca;      // operators' client certificates must chain to it
};

// With --no-etcd, no other etcd or AdminService flag may be given (INVALID_ARGUMENT): they would
// be silently ignored.
Status CheckNoEtcd(const BerthdEtcdConfig& config);

class EtcdServices {
 public:
  // Checks the configuration, reads the certificates and keys (the etcd CA key stays in this
  // process), starts the promotion loop and, if configured, the AdminService with berthd's
  // TLS certificate. etcd itself may be unreachable at this point: calls then fail with
  // UNAVAILABLE until it answers. `kube` and `clock` outlive the returned object.
  // `policy` (roles, admission) and `metrics` (may be null: etcd errors are not counted)
  // outlive it. `golden` (null: a release build) makes the golden tickets AdminService issues
  // and joins consume.
  static Result<std::unique_ptr<EtcdServices>> Start(
      const BerthdEtcdConfig& config, const verify::PolicyHolder* policy, KubeClient* kube,
      Clock* clock, const std::string& tls_cert_pem, const SecretBytes& tls_key_pem,
      Metrics* metrics = nullptr, AdmissionOptions admission = {},
      GoldenTicketsFactory golden = nullptr, GoldenTicketOptions golden_options = {});
  ~EtcdServices();

  NodeRegistry* registry() { return registry_.get(); }
  NodeStore* store();
  NodeAdmin* admin();
  GoldenTickets* golden();  // null in release builds
  int admin_port() const { return admin_port_; }

 private:
  EtcdServices() = default;
  struct Parts;
  std::unique_ptr<Parts> parts_;
  std::unique_ptr<NodeRegistry> registry_;
  int admin_port_ = 0;
};

}  // namespace berth::server
