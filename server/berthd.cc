#include "server/berthd.h"

#include <absl/synchronization/mutex.h>
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <thread>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/enrolment.h"
#include "server/join_service.h"

namespace berth::server {

namespace {

constexpr size_t kMinMasterSecret = 32;

std::atomic<bool> g_signalled{false};
void OnSignal(int) { g_signalled = true; }

Status CheckConfig(const BerthdConfig& c) {
  auto need = [](const std::string& value, const char* flag) {
    return value.empty() ? InvalidArgument(std::string("--") + flag + " is required") : OkStatus();
  };
  BERTH_RETURN_IF_ERROR(need(c.tls_cert, "tls-cert"));
  BERTH_RETURN_IF_ERROR(need(c.tls_key, "tls-key"));
  BERTH_RETURN_IF_ERROR(need(c.policy, "policy"));
  BERTH_RETURN_IF_ERROR(need(c.master_secret_file, "master-secret-file"));
  BERTH_RETURN_IF_ERROR(need(c.cluster_id, "cluster-id"));
  BERTH_RETURN_IF_ERROR(need(c.api_server_endpoint, "api-server-endpoint"));
  if (!IsValidEndpoint(c.api_server_endpoint)) {
    return InvalidArgument("--api-server-endpoint " + c.api_server_endpoint + " is not host:port");
  }
  if (c.nonce_ttl.count() < 2) return InvalidArgument("--nonce-ttl must be at least 2 s");
  if (c.token_ttl.count() < 60) return InvalidArgument("--token-ttl must be at least 60 s");
  if (c.gate.max_in_flight < 1) return InvalidArgument("--max-inflight-joins must be at least 1");
  if (c.gate.max_per_source < 0) {
    return InvalidArgument("--max-joins-per-source must be 0 (no limit) or more");
  }
  return OkStatus();
}

}  // namespace

Status RunBerthd(const BerthdConfig& config, const std::atomic<bool>* stop, bool handle_signals) {
  // gRPC's absl mutexes check lock order on every acquisition unless told not to: measurable
  // on every call berthd answers, and a debugging aid rather than a safety net.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  BERTH_RETURN_IF_ERROR(CheckConfig(config));
  BERTH_ASSIGN_OR_RETURN(Policy policy, LoadPolicy(config.policy));
  BERTH_ASSIGN_OR_RETURN(SecretBytes master, ReadSecretFile(config.master_secret_file));
  if (master.size() < kMinMasterSecret) {
    return InvalidArgument(config.master_secret_file + ": the master secret must be at least " +
                           std::to_string(kMinMasterSecret) + " bytes");
  }
  BERTH_ASSIGN_OR_RETURN(std::string tls_cert, ReadFile(config.tls_cert));
  BERTH_ASSIGN_OR_RETURN(SecretBytes tls_key, ReadSecretFile(config.tls_key));
  if (auto c = CertFromPem(tls_cert); !c.ok()) return c.status().WithContext(config.tls_cert);
  if (auto k = PrivateKeyFromPem(tls_key.view()); !k.ok()) {
    return InvalidArgument(config.tls_key + ": not a PEM private key");
  }

  auto creds = config.kubeconfig.empty() ? LoadInClusterCredentials()
                                         : LoadKubeconfig(config.kubeconfig);
  if (!creds.ok()) return creds.status().WithContext("Kubernetes credentials");
  std::string kube_ca = creds->ca_pem;
  if (!config.kubernetes_ca.empty()) {
    BERTH_ASSIGN_OR_RETURN(kube_ca, ReadFile(config.kubernetes_ca));
  }
  BERTH_ASSIGN_OR_RETURN(auto hashes, KubeadmCaCertHashes(kube_ca));

  RealClock clock;
  BERTH_ASSIGN_OR_RETURN(NonceIssuer nonces, NonceIssuer::Create(master, &clock, config.nonce_ttl));
  std::unique_ptr<SnpService> snp;
  if (policy.sev_snp) {
    BERTH_ASSIGN_OR_RETURN(snp, SnpService::Create(config.snp, *policy.sev_snp, &clock));
  }
  const bool accepts_tpm = policy.has_tpm;
  RolePolicy roles = policy.roles;
  TpmEvidenceVerifier tpm_verifier(std::move(policy));
  EvidenceDispatcher verifier(accepts_tpm ? &tpm_verifier : nullptr,
                              snp ? snp->verifier() : nullptr);
  auto kube = MakeCurlKubeClient(std::move(*creds));
  KubeTokenIssuer tokens(kube.get(), &clock, config.token_ttl);
  JoinOptions options{.cluster_id = config.cluster_id,
                      .api_server_endpoint = config.api_server_endpoint,
                      .ca_cert_hashes = hashes,
                      .kubernetes_version = config.kubernetes_version};
  std::unique_ptr<EtcdServices> etcd;
  if (config.etcd.disabled) {
    BERTH_RETURN_IF_ERROR(CheckNoEtcd(config.etcd));
    spdlog::warn("--no-etcd: no node records, so no revocation, no rejoin checks and no control "
                 "planes");
  } else {
    BERTH_ASSIGN_OR_RETURN(etcd, EtcdServices::Start(config.etcd, std::move(roles), kube.get(),
                                                     &clock, tls_cert, tls_key));
  }
  JoinLogic logic(std::move(options), std::move(master), &nonces, &verifier, &tokens,
                  etcd ? etcd->registry() : nullptr);
  JoinGate gate(config.gate);
  JoinServiceImpl service(&logic, &gate);

  grpc::SslServerCredentialsOptions ssl(
      GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
  ssl.pem_key_cert_pairs.push_back({std::string(tls_key.view()), tls_cert});
  int port = 0;
  grpc::ServerBuilder builder;
  // Every node is a new connection that makes two calls: skip the per-connection bookkeeping
  // (channelz, bandwidth probes) that long-lived channels want (BENCHMARKS.md).
  builder.AddChannelArgument(GRPC_ARG_ENABLE_CHANNELZ, 0);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_BDP_PROBE, 0);
  builder.SetMaxReceiveMessageSize(kMaxJoinRequestBytes);
  builder.AddListeningPort(config.listen, grpc::SslServerCredentials(ssl), &port);
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  WipeString(ssl.pem_key_cert_pairs.front().private_key);
  if (server == nullptr || port == 0) {
    return Unavailable("cannot listen on " + config.listen);
  }
  if (!config.port_file.empty()) {
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(config.port_file, std::to_string(port) + "\n", 0644));
  }
  spdlog::info("berthd listening on {} (port {}), cluster {}, policy {}, kube CA {}",
               config.listen, port, config.cluster_id, config.policy, hashes.front());
  sd_notifyf(0, "READY=1\nSTATUS=serving JoinService on port %d", port);

  if (handle_signals) {
    signal(SIGTERM, OnSignal);
    signal(SIGINT, OnSignal);
  }
  while (!g_signalled && !(stop != nullptr && *stop)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
  spdlog::info("berthd shutting down");
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  server->Wait();
  return OkStatus();
}

}  // namespace berth::server
