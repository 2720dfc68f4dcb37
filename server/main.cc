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
  app.add_flag("-v,--verbose", verbose, "debug logging");
  CLI11_PARSE(app, argc, argv);
  c.nonce_ttl = std::chrono::seconds(nonce_ttl);
  c.token_ttl = std::chrono::seconds(token_ttl);
  berth::InitLogging("berthd", verbose);
  berth::Status status = berth::server::RunBerthd(c);
  if (!status.ok()) {
    spdlog::critical("berthd: {}", status.ToString());
    return 1;
  }
  return 0;
}
