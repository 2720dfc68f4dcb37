// berthd: flags -> BerthdConfig -> RunBerthd. Nothing else lives here.
#include <CLI/CLI.hpp>

#include "common/log.h"
#include "server/berthd.h"

int main(int argc, char** argv) {
  berth::server::BerthdConfig c;
  bool verbose = false;
  int64_t nonce_ttl = c.nonce_ttl.count(), token_ttl = c.token_ttl.count();
  CLI::App app{"berthd: the berth join service (attested node enrolment)"};
  app.add_option("--listen", c.listen, "address:port to serve JoinService on")->capture_default_str();
  app.add_option("--port-file", c.port_file, "write the bound port here once listening");
  app.add_option("--tls-cert", c.tls_cert, "server certificate chain (PEM), chained to the cluster CA")->required();
  app.add_option("--tls-key", c.tls_key, "server private key (PEM)")->required();
  app.add_option("--policy", c.policy, "attestation policy (YAML)")->required();
  app.add_option("--master-secret-file", c.master_secret_file, "master secret (>= 32 bytes) shared by all replicas")->required();
  app.add_option("--cluster-id", c.cluster_id, "cluster identifier (disk-key salt)")->required();
  app.add_option("--kubeconfig", c.kubeconfig, "kubeconfig for the Kubernetes API (default: in-cluster service account)");
  app.add_option("--api-server-endpoint", c.api_server_endpoint, "host:port nodes join (kubeadm discovery)")->required();
  app.add_option("--kubernetes-ca", c.kubernetes_ca, "Kubernetes cluster CA (PEM) for caCertHashes (default: the kubeconfig's CA)");
  app.add_option("--kubernetes-version", c.kubernetes_version, "Kubernetes version announced to nodes");
  app.add_option("--nonce-ttl", nonce_ttl, "challenge lifetime, seconds")->capture_default_str();
  app.add_option("--token-ttl", token_ttl, "bootstrap token lifetime, seconds")->capture_default_str();
  app.add_option("--snp-cert-cache", c.snp.cert_cache, "directory caching verified AMD SEV-SNP certificates (ASK, VCEKs)");
  app.add_option("--snp-kds-url", c.snp.kds_url, "AMD KDS to fetch missing SEV-SNP certificates from, e.g. https://kdsintf.amd.com (default: never fetch)");
  app.add_option("--snp-verify-at", c.snp.verify_at, "check SEV-SNP certificate validity at this RFC 3339 time instead of now (tests)");
  app.add_option("--insecure-test-snp-ark", c.snp.insecure_test_arks, "PRODUCT=FILE: trust FILE as the ARK of PRODUCT instead of AMD's (test chains only)");
  app.add_option("--max-inflight-joins", c.gate.max_in_flight, "ticket calls served at once; more are refused with RESOURCE_EXHAUSTED (the agent retries)")->capture_default_str();
  app.add_option("--max-joins-per-source", c.gate.max_per_source, "ticket calls served at once from one source address (0: no limit)")->capture_default_str();
  // etcd (docs/etcd.md)
  int64_t learner_timeout = c.etcd.learner_timeout.count();
  app.add_flag("--no-etcd", c.etcd.disabled, "run without node records in etcd (workers only; no revocation)");
  app.add_option("--etcd-endpoints", c.etcd.endpoints, "etcd members, https://host:port (comma-separated or repeated)")->delimiter(',');
  app.add_option("--etcd-trusted-ca", c.etcd.trusted_ca, "CA of the etcd members' certificates (default: --etcd-ca-cert)");
  app.add_option("--etcd-client-cert", c.etcd.client_cert, "berthd's etcd client certificate (PEM)");
  app.add_option("--etcd-client-key", c.etcd.client_key, "berthd's etcd client key (PEM)");
  app.add_option("--etcd-ca-cert", c.etcd.ca_cert, "the etcd CA that signs control planes' etcd certificates (PEM)");
  app.add_option("--etcd-ca-key", c.etcd.ca_key, "its private key (PEM; never leaves this host)");
  app.add_option("--etcd-learner-timeout", learner_timeout, "seconds before a learner that never started is removed")->capture_default_str();
  app.add_option("--admin-listen", c.etcd.admin_listen, "address:port to serve AdminService on (mutual TLS)");
  app.add_option("--admin-port-file", c.etcd.admin_port_file, "write the AdminService port here once listening");
  app.add_option("--operator-ca", c.etcd.operator_ca, "CA of operators' client certificates (PEM)");
  app.add_flag("-v,--verbose", verbose, "debug logging");
  CLI11_PARSE(app, argc, argv);
  c.nonce_ttl = std::chrono::seconds(nonce_ttl);
  c.token_ttl = std::chrono::seconds(token_ttl);
  c.etcd.learner_timeout = std::chrono::seconds(learner_timeout);
  berth::InitLogging("berthd", verbose);
  berth::Status status = berth::server::RunBerthd(c);
  if (!status.ok()) {
    spdlog::critical("berthd: {}", status.ToString());
    return 1;
  }
  return 0;
}
