#include "server/berthd.h"

#include <grpcpp/grpcpp.h>
#include <openssl/err.h>
#include <openssl/x509.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>

#include <thread>

#include "common/bytes.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/enrolment.h"
#include "common/recovery.h"
#include "server/join/join_server.h"
#include "server/join/join_service.h"
#include "server/join/tls_tickets.h"
#include "server/metrics.h"
#include "server/nodes/sns_endpoint.h"
#include "server/policy_watcher.h"

namespace berth::server {

namespace {

constexpr size_t kMinMasterSecret = 32;

std::atomic<bool> g_signalled{false};
std::atomic<bool> g_reload{false};
void OnSignal(int) { g_signalled = true; }
void OnHangup(int) { g_reload = true; }

// What a berthd without node records cannot honour (the policy's admission section).
Status CheckPolicyServable(const verify::Policy& policy, bool have_etcd) {
  if (!have_etcd &&
      (policy.admission.approval_required || policy.admission.ec2_preauthorized_only)) {
    return FailedPrecondition(
        "the policy's admission section (approval, EC2 pre-authorization) needs node records "
        "in etcd, and this berthd runs with --no-etcd");
  }
  return OkStatus();
}

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
  if (c.discovery != "token" && c.discovery != "file") {
    return InvalidArgument("--discovery must be \"token\" or \"file\"");
  }
  if (c.approval_hold.count() < 0 || c.approval_hold > std::chrono::seconds(25)) {
    return InvalidArgument("--approval-hold must be 0-25 s (below the agent's 30 s call timeout)");
  }
  if (!c.control_plane_endpoint.empty()) {
    auto host = ControlPlaneEndpointHost(c.control_plane_endpoint);
    if (!host.ok())
      return InvalidArgument("--control-plane-endpoint: " + std::string(host.status().message()));
    if (c.control_plane_pki.empty()) {
      return InvalidArgument(
          "--control-plane-endpoint is handed to control planes with --control-plane-pki, "
          "which is not given");
    }
  }
  if (!c.join_ca_key.empty() && c.control_plane_pki.empty()) {
    return InvalidArgument(
        "--join-ca-key is shared with control planes with --control-plane-pki, "
        "which is not given");
  }
  if (!c.sns.listen.empty() && c.etcd.disabled) {
    return InvalidArgument("--sns-listen needs etcd (pre-authorizations, revocations, replay "
                           "protection live there); it cannot run with --no-etcd");
  }
  return OkStatus();
}

// --join-ca-key, checked against the certificate it must have signed (--tls-cert), and the
// etcd CA's key; each ticket that shares them shares `policy`'s text in force then.
Result<JoinLogic::BerthdShare> ReadBerthdShare(const BerthdConfig& config,
                                               const std::string& tls_cert_pem,
                                               const verify::PolicyHolder* policy) {
  if (config.etcd.ca_key.empty()) {
    return InvalidArgument(
        "--join-ca-key: control planes that serve joins need the etcd CA "
        "(--etcd-ca-cert, --etcd-ca-key), which is not given");
  }
  if (policy->current_text().empty()) {
    return InvalidArgument("--join-ca-key: the policy " + config.policy +
                           " could not be read again to share it");
  }
  JoinLogic::BerthdShare share{.policy = policy};
  BERTH_ASSIGN_OR_RETURN(share.join_ca_key_pem, ReadSecretFile(config.join_ca_key));
  BERTH_ASSIGN_OR_RETURN(share.etcd_ca_key_pem, ReadSecretFile(config.etcd.ca_key));
  auto key = PrivateKeyFromPem(share.join_ca_key_pem.view());
  if (!key.ok()) return InvalidArgument(config.join_ca_key + ": not a PEM private key");
  BERTH_ASSIGN_OR_RETURN(X509Ptr cert, CertFromPem(tls_cert_pem));
  if (X509_verify(cert.get(), key->get()) != 1) {
    ERR_clear_error();
    return InvalidArgument("--join-ca-key " + config.join_ca_key + " did not sign --tls-cert " +
                           config.tls_cert +
                           ": nodes that pin this berthd's CA would not trust a control plane's "
                           "berthd made with it");
  }
  return share;
}

}  // namespace

Status RunBerthd(const BerthdConfig& config, const std::atomic<bool>* stop, bool handle_signals) {
  BERTH_RETURN_IF_ERROR(CheckConfig(config));
  // Before any TLS server is made (the SNS endpoint's too); StartJoinServer checks it again.
  BERTH_RETURN_IF_ERROR(DisableTlsSessionTickets());
  BERTH_ASSIGN_OR_RETURN(verify::Policy loaded, verify::LoadPolicy(config.policy));
  BERTH_RETURN_IF_ERROR(
      CheckPolicyServable(loaded, !config.etcd.disabled).WithContext(config.policy));
  // Every consumer reads the policy through this holder, so a reload reaches all of them.
  verify::PolicyHolder policy(std::move(loaded), config.policy);
  Metrics metrics;
  policy.SetValidator(
      [&](const verify::Policy& p) { return CheckPolicyServable(p, !config.etcd.disabled); });
  policy.SetObserver([&](bool ok) { metrics.CountPolicyReload(ok); });
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
  std::optional<JoinLogic::BerthdShare> berthd_share;
  if (!config.join_ca_key.empty()) {
    BERTH_ASSIGN_OR_RETURN(berthd_share, ReadBerthdShare(config, tls_cert, &policy));
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
  // Both verifiers always exist: whether a kind is accepted is the current policy's to say.
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<SnpService> snp,
                         SnpService::Create(config.snp, &policy, &clock));
  verify::TpmEvidenceVerifier tpm_verifier(&policy);
  verify::EvidenceDispatcher verifier(&tpm_verifier, snp->verifier());
  auto raw_kube = MakeCurlKubeClient(std::move(*creds));
  auto kube = MeteredKubeClient(raw_kube.get(), &metrics);
  KubeTokenIssuer tokens(kube.get(), &clock, config.token_ttl);
  JoinOptions options{.cluster_id = config.cluster_id,
                      .api_server_endpoint = config.api_server_endpoint,
                      .control_plane_endpoint = config.control_plane_endpoint,
                      .ca_cert_hashes = hashes,
                      .kubernetes_version = config.kubernetes_version};
  if (!config.recovery_key.empty()) {
    BERTH_ASSIGN_OR_RETURN(std::string text, ReadFile(config.recovery_key, 4096));
    auto key = recovery::ParsePublicKeyFile(text);
    if (!key.ok()) return key.status().WithContext("--recovery-key " + config.recovery_key);
    options.recovery_public_key = std::move(*key);
    spdlog::info("control planes seal their recovery keyslot to recovery key sha256:{}...",
                 recovery::Fingerprint(options.recovery_public_key).substr(0, 16));
  }
  std::unique_ptr<EtcdServices> etcd;
  if (config.etcd.disabled) {
    BERTH_RETURN_IF_ERROR(CheckNoEtcd(config.etcd));
    spdlog::warn("--no-etcd: BENCHMARK AND TEST MODE, not for production: no node records, so "
                 "no revocation, no control planes and no disk keys (joins naming a state disk "
                 "and every rejoin are refused); every grant's audit line says records=none");
  } else {
    AdmissionOptions admission;
    admission.approval_hold = config.approval_hold;
    BERTH_ASSIGN_OR_RETURN(
        etcd, EtcdServices::Start(config.etcd, &policy, kube.get(), &clock, tls_cert, tls_key,
                                  &metrics, admission, config.golden_tickets,
                                  GoldenTicketOptions{.cluster_id = config.cluster_id}));
  }
  std::unique_ptr<DiscoveryKubeconfigs> discovery;
  if (config.discovery == "file") {
    discovery = std::make_unique<DiscoveryKubeconfigs>(kube.get(), hashes, &clock);
  }
  JoinLogic logic(std::move(options), std::move(master), &nonces, &verifier, &tokens,
                  etcd ? etcd->registry() : nullptr, etcd ? etcd->golden() : nullptr,
                  discovery.get());
  if (!config.control_plane_pki.empty()) {
    if (!etcd) {
      return InvalidArgument(
          "--control-plane-pki: control planes join through node records, "
          "which --no-etcd turns off");
    }
    BERTH_ASSIGN_OR_RETURN(std::vector<SharedPki> pki, ReadSharedPki(config.control_plane_pki));
    logic.ShareClusterKeys(std::move(pki), std::move(berthd_share));
    spdlog::info(
        "control planes get the cluster keys in {} and the master secret in their join "
        "tickets{}",
        config.control_plane_pki,
        config.join_ca_key.empty() ? ""
                                   : ", and the join CA's key, the etcd CA's key and the policy "
                                     "for their own berthd");
  }
  LoadGate gate(config.gate);
  JoinServiceImpl service(&logic, &metrics, &gate);
  PolicyWatcher watcher(&policy);
  BERTH_RETURN_IF_ERROR(watcher.Start().WithContext("watching the policy file"));
  std::unique_ptr<MetricsServer> metrics_server;
  if (!config.metrics_listen.empty()) {
    BERTH_ASSIGN_OR_RETURN(metrics_server, MetricsServer::Start(config.metrics_listen, &metrics));
    if (!config.metrics_port_file.empty()) {
      BERTH_RETURN_IF_ERROR(WriteFileAtomic(config.metrics_port_file,
                                            std::to_string(metrics_server->port()) + "\n", 0644));
    }
  }
  std::unique_ptr<SnsEndpoint> sns;
  if (!config.sns.listen.empty()) {
    SnsConfig sns_config = config.sns;
    if (sns_config.tls_cert.empty()) {
      sns_config.tls_cert = config.tls_cert;
      sns_config.tls_key = config.tls_key;
    }
    BERTH_ASSIGN_OR_RETURN(sns, SnsEndpoint::Start(sns_config, etcd->store(), etcd->admin(),
                                                   &clock, &metrics));
  }

  BERTH_ASSIGN_OR_RETURN(JoinServer serving,
                         StartJoinServer(config.listen, tls_cert, tls_key, &service));
  const int port = serving.port;
  if (!config.port_file.empty()) {
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(config.port_file, std::to_string(port) + "\n", 0644));
  }
  spdlog::info("berthd listening on {} (port {}), cluster {}, policy {}, kube CA {}",
               config.listen, port, config.cluster_id, config.policy, hashes.front());
  sd_notifyf(0, "READY=1\nSTATUS=serving JoinService on port %d", port);

  if (handle_signals) {
    signal(SIGTERM, OnSignal);
    signal(SIGINT, OnSignal);
    signal(SIGHUP, OnHangup);
  }
  while (!g_signalled && !(stop != nullptr && *stop)) {
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    if (g_reload.exchange(false)) (void)policy.Reload("SIGHUP");
  }
  sd_notify(0, "STOPPING=1\nSTATUS=shutting down");
  spdlog::info("berthd shutting down");
  serving.server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
  serving.server->Wait();
  watcher.Stop();
  return OkStatus();
}

}  // namespace berth::server
