#include "server/berthd_etcd.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include "common/bytes.h"
#include "common/crypto.h"
#include "server/nodes/admin.h"
#include "server/nodes/admin_service.h"
#include "server/nodes/membership.h"

namespace berth::server {

struct EtcdServices::Parts {
  std::unique_ptr<etcd::Client> raw_client;
  std::unique_ptr<etcd::Client> client;
  std::unique_ptr<GoldenTickets> golden;
  std::unique_ptr<NodeStore> store;
  std::unique_ptr<Membership> membership;
  std::unique_ptr<EtcdCa> ca;
  std::unique_ptr<Promoter> promoter;
  std::unique_ptr<NodeAdmin> admin;
  std::unique_ptr<AdminServiceImpl> admin_service;
  std::unique_ptr<grpc::Server> admin_server;
};

namespace {

Status CheckConfig(const BerthdEtcdConfig& c) {
  if (c.endpoints.empty()) {
    return InvalidArgument(
        "--etcd-endpoints is required (berthd keeps node records in etcd); "
        "--no-etcd runs without them, for workers only");
  }
  if (c.client_cert.empty() || c.client_key.empty()) {
    return InvalidArgument("--etcd-client-cert and --etcd-client-key are required");
  }
  if (c.trusted_ca.empty() && c.ca_cert.empty()) {
    return InvalidArgument("--etcd-trusted-ca (or --etcd-ca-cert) is required");
  }
  if (c.ca_cert.empty() != c.ca_key.empty()) {
    return InvalidArgument("--etcd-ca-cert and --etcd-ca-key go together");
  }
  if (!c.admin_listen.empty() && c.operator_ca.empty()) {
    return InvalidArgument(
        "--admin-listen needs --operator-ca: AdminService is served only to "
        "operators with a client certificate");
  }
  if (c.learner_timeout.count() < 10)
    return InvalidArgument("--etcd-learner-timeout must be at least 10 s");
  return OkStatus();
}

}  // namespace

Status CheckNoEtcd(const BerthdEtcdConfig& c) {
  if (!c.endpoints.empty() || !c.ca_cert.empty() || !c.client_cert.empty() ||
      !c.admin_listen.empty()) {
    return InvalidArgument("--no-etcd cannot be combined with --etcd-* or --admin-listen");
  }
  return OkStatus();
}

NodeStore* EtcdServices::store() { return parts_->store.get(); }
NodeAdmin* EtcdServices::admin() { return parts_->admin.get(); }
GoldenTickets* EtcdServices::golden() { return parts_->golden.get(); }

Result<std::unique_ptr<EtcdServices>> EtcdServices::Start(
    const BerthdEtcdConfig& config, const verify::PolicyHolder* policy, KubeClient* kube,
    Clock* clock, const std::string& tls_cert_pem, const SecretBytes& tls_key_pem, Metrics* metrics,
    AdmissionOptions admission, GoldenTicketsFactory golden, GoldenTicketOptions golden_options) {
  BERTH_RETURN_IF_ERROR(CheckConfig(config));
  std::unique_ptr<EtcdServices> s(new EtcdServices());
  s->parts_ = std::make_unique<Parts>();
  Parts& p = *s->parts_;

  etcd::ClientOptions options;
  options.endpoints = config.endpoints;
  BERTH_ASSIGN_OR_RETURN(options.ca_pem,
                         ReadFile(config.trusted_ca.empty() ? config.ca_cert : config.trusted_ca));
  BERTH_ASSIGN_OR_RETURN(options.cert_pem, ReadFile(config.client_cert));
  BERTH_ASSIGN_OR_RETURN(options.key_pem, ReadSecretFile(config.client_key));
  auto client = etcd::MakeGrpcClient(std::move(options));
  if (!client.ok()) return client.status().WithContext("etcd client");
  p.raw_client = std::move(*client);
  p.client = metrics != nullptr ? MeteredEtcdClient(p.raw_client.get(), metrics)
                                : std::move(p.raw_client);
  p.store = std::make_unique<NodeStore>(p.client.get());
  p.membership = std::make_unique<Membership>(p.client.get());
  if (!config.ca_cert.empty()) {
    BERTH_ASSIGN_OR_RETURN(p.ca, EtcdCa::Load(config.ca_cert, config.ca_key, config.cert_validity));
  } else {
    spdlog::warn("no etcd CA (--etcd-ca-cert/--etcd-ca-key): control-plane joins are refused");
  }
  s->registry_ = std::make_unique<NodeRegistry>(p.store.get(), p.membership.get(), p.ca.get(),
                                                policy, clock, admission);
  if (golden != nullptr) p.golden = golden(p.store.get(), clock, std::move(golden_options));
  p.admin = std::make_unique<NodeAdmin>(p.store.get(), p.membership.get(), p.ca.get(), kube, clock);
  PromoterOptions promoter_options;
  promoter_options.learner_timeout = config.learner_timeout;
  promoter_options.busy_interval = config.promote_interval;
  p.promoter =
      std::make_unique<Promoter>(p.membership.get(), p.store.get(), clock, promoter_options);

  if (!config.admin_listen.empty()) {
    BERTH_ASSIGN_OR_RETURN(std::string operator_ca, ReadFile(config.operator_ca));
    if (auto c = CertsFromPem(operator_ca); !c.ok())
      return c.status().WithContext(config.operator_ca);
    grpc::SslServerCredentialsOptions ssl(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY);
    ssl.pem_root_certs = operator_ca;
    ssl.pem_key_cert_pairs.push_back({std::string(tls_key_pem.view()), tls_cert_pem});
    p.admin_service = std::make_unique<AdminServiceImpl>(p.admin.get());
    p.admin_service->set_golden_tickets(p.golden.get());
    grpc::ServerBuilder builder;
    builder.AddListeningPort(config.admin_listen, grpc::SslServerCredentials(ssl), &s->admin_port_);
    builder.RegisterService(p.admin_service.get());
    p.admin_server = builder.BuildAndStart();
    WipeString(ssl.pem_key_cert_pairs.front().private_key);
    if (p.admin_server == nullptr || s->admin_port_ == 0) {
      return Unavailable("cannot listen on --admin-listen " + config.admin_listen);
    }
    if (!config.admin_port_file.empty()) {
      BERTH_RETURN_IF_ERROR(
          WriteFileAtomic(config.admin_port_file, std::to_string(s->admin_port_) + "\n", 0644));
    }
    spdlog::info("AdminService listening on {} (port {}), operators from {}", config.admin_listen,
                 s->admin_port_, config.operator_ca);
  }
  p.promoter->Start();
  std::string endpoints;
  for (const auto& e : config.endpoints) endpoints += (endpoints.empty() ? "" : ",") + e;
  spdlog::info("node records in etcd at {}; etcd CA {}", endpoints,
               config.ca_cert.empty() ? "-" : config.ca_cert);
  return s;
}

EtcdServices::~EtcdServices() {
  if (!parts_) return;
  if (parts_->admin_server) {
    parts_->admin_server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
    parts_->admin_server->Wait();
  }
  if (parts_->promoter) parts_->promoter->Stop();
}

}  // namespace berth::server
