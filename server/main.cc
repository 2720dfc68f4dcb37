// berthd: flags -> BerthdConfig -> RunBerthd. Nothing else lives here.
#include <CLI/CLI.hpp>
#include <cstdio>

#include "common/log.h"
#include "server/berthd.h"
#include "server/cloud/ec2_tags.h"
#include "server/nodes/golden_ticket.h"

int main(int argc, char** argv) {
  berth::server::BerthdConfig c;
  bool verbose = false;
  int64_t nonce_ttl = c.nonce_ttl.count(), token_ttl = c.token_ttl.count();
  CLI::App app{"berthd: the berth join service (attested node enrolment)"};
  app.add_option("--listen", c.listen, "address:port to serve JoinService on")
      ->capture_default_str();
  app.add_option("--port-file", c.port_file, "write the bound port here once listening");
  app.add_option("--tls-cert", c.tls_cert,
                 "server certificate chain (PEM), chained to the cluster CA")
      ->required();
  app.add_option("--tls-key", c.tls_key, "server private key (PEM)")->required();
  app.add_option("--policy", c.policy, "attestation policy (YAML)")->required();
  app.add_option("--master-secret-file", c.master_secret_file,
                 "master secret (>= 32 bytes) shared by all replicas")
      ->required();
  app.add_option("--cluster-id", c.cluster_id, "cluster identifier (disk-key salt)")->required();
  app.add_option("--kubeconfig", c.kubeconfig, "kubeconfig for the Kubernetes API (default: in-cluster service account)");
  app.add_option("--api-server-endpoint", c.api_server_endpoint, "host:port nodes join (kubeadm discovery)")->required();
  app.add_option("--control-plane-endpoint", c.control_plane_endpoint,
                 "host:port of the load balancer or DNS name in front of the control planes, "
                 "which the control planes this berthd admits (with --control-plane-pki) serve "
                 "too: kubeadm's controlPlaneEndpoint (docs/cluster-lifecycle.md)");
  app.add_option("--kubernetes-ca", c.kubernetes_ca, "Kubernetes cluster CA (PEM) for caCertHashes (default: the kubeconfig's CA)");
  app.add_option("--kubernetes-version", c.kubernetes_version, "Kubernetes version announced to nodes");
  app.add_option("--control-plane-pki", c.control_plane_pki,
                 "kubeadm's pki directory: its CA keys (ca, front-proxy-ca, sa) and this berthd's "
                 "master secret go to every attested, authorized control plane in its join ticket "
                 "(docs/cluster-lifecycle.md; default: none are shared)");
  app.add_option("--join-ca-key", c.join_ca_key,
                 "the key of the CA that signed --tls-cert (the CA EnrolmentConfigs pin): with "
                 "--control-plane-pki, control planes also get it, the etcd CA's key and the "
                 "policy, so that berthd serves joins on each of them (docs/cluster-lifecycle.md)");
  app.add_option("--recovery-key", c.recovery_key,
                 "the recovery-key.txt of `berthctl cluster init`: every control plane seals its "
                 "recovery keyslot to its public key (docs/cluster-lifecycle.md)");
  app.add_option("--nonce-ttl", nonce_ttl, "challenge lifetime, seconds (a challenge admits one ticket call; docs/nonces.md)")->capture_default_str();
  app.add_option("--token-ttl", token_ttl, "bootstrap token lifetime, seconds")->capture_default_str();
  app.add_option("--snp-cert-cache", c.snp.cert_cache, "directory caching verified AMD SEV-SNP certificates (ASK, VCEKs)");
  app.add_option("--snp-kds-url", c.snp.kds_url, "AMD KDS to fetch missing SEV-SNP certificates from, e.g. https://kdsintf.amd.com (default: never fetch)");
#if BERTH_TEST_HOOKS
  // Test builds only (berthd-debug, or -DBERTH_GOLDEN_TICKETS=ON): a release berthd has no way
  // to check certificates at any other time than now.
  app.add_option("--snp-verify-at", c.snp.verify_at, "check SEV-SNP certificate validity at this RFC 3339 time instead of now (test builds only)");
#endif
  app.add_option("--insecure-test-snp-ark", c.snp.insecure_test_arks, "PRODUCT=FILE: trust FILE as the ARK of PRODUCT instead of AMD's (test chains only)");
  app.add_option("--max-inflight-joins", c.gate.max_in_flight, "ticket calls served at once; more are refused with RESOURCE_EXHAUSTED (the agent retries)")->capture_default_str();
  app.add_option("--max-joins-per-source", c.gate.max_per_source, "ticket calls served at once from one source address (0: no limit)")->capture_default_str();
  // etcd (docs/etcd.md)
  int64_t learner_timeout = c.etcd.learner_timeout.count();
  app.add_flag("--no-etcd", c.etcd.disabled, "benchmarks and tests only: no node records in etcd, so diskless workers only (no disk keys, no revocation, no control planes)");
  app.add_option("--etcd-endpoints", c.etcd.endpoints, "etcd members, https://host:port (comma-separated or repeated)")->delimiter(',');
  app.add_option("--etcd-trusted-ca", c.etcd.trusted_ca, "CA of the etcd members' certificates (default: --etcd-ca-cert)");
  app.add_option("--etcd-client-cert", c.etcd.client_cert, "berthd's etcd client certificate (PEM)");
  app.add_option("--etcd-client-key", c.etcd.client_key, "berthd's etcd client key (PEM)");
  app.add_option("--etcd-ca-cert", c.etcd.ca_cert,
                 "the etcd CA that signs control planes' etcd certificates (PEM)");
  app.add_option("--etcd-ca-key", c.etcd.ca_key, "its private key (PEM; never leaves this host)");
  app.add_option("--etcd-learner-timeout", learner_timeout,
                 "seconds before a learner that never started is removed")
      ->capture_default_str();
  app.add_option("--admin-listen", c.etcd.admin_listen,
                 "address:port to serve AdminService on (mutual TLS)");
  app.add_option("--admin-port-file", c.etcd.admin_port_file,
                 "write the AdminService port here once listening");
  app.add_option("--operator-ca", c.etcd.operator_ca, "CA of operators' client certificates (PEM)");
  // Node lifecycle (docs/lifecycle.md)
  int64_t approval_hold_ms = c.approval_hold.count(), sns_max_age = c.sns.max_age.count(),
          preauth_ttl = c.sns.preauth_ttl.count();
  app.add_option("--metrics-listen", c.metrics_listen,
                 "host:port to serve Prometheus metrics on (plain HTTP)");
  app.add_option("--metrics-port-file", c.metrics_port_file,
                 "write the metrics port here once listening");
  app.add_option("--discovery", c.discovery,
                 "kubeadm discovery for nodes: token or file (a kubeconfig from cluster-info)")
      ->capture_default_str();
  app.add_option("--approval-hold-ms", approval_hold_ms,
                 "how long a node pending approval is held before it is told to call again")
      ->capture_default_str();
  app.add_option("--sns-listen", c.sns.listen,
                 "host:port of the HTTPS endpoint for Amazon SNS notifications");
  app.add_option("--sns-port-file", c.sns.port_file,
                 "write the SNS endpoint's port here once listening");
  app.add_option("--sns-tls-cert", c.sns.tls_cert, "its certificate (default: --tls-cert)");
  app.add_option("--sns-tls-key", c.sns.tls_key, "its key (default: --tls-key)");
  app.add_option("--sns-topic-arn", c.sns.topic_arns, "accept messages of this topic (repeatable)");
  app.add_option("--sns-cert-host-pattern", c.sns.cert_host_pattern,
                 "regex the SigningCertURL/SubscribeURL host[:port] must match")
      ->capture_default_str();
  app.add_option("--sns-signing-cert-sha256", c.sns.cert_sha256,
                 "pinned SNS signing certificate, SHA-256 of its DER (repeatable)");
  app.add_option("--sns-signing-ca", c.sns.signing_ca,
                 "or: CA bundle (PEM) the SNS signing certificate must chain to");
  app.add_option("--sns-fetch-ca", c.sns.fetch_ca,
                 "CA bundle for fetching certificates and SubscribeURLs (default: the system's)");
  app.add_option("--sns-min-signature-version", c.sns.min_signature_version,
                 "lowest SignatureVersion accepted (2: SHA256withRSA only)")
      ->capture_default_str();
  app.add_option("--sns-max-age", sns_max_age, "oldest message Timestamp accepted, seconds")
      ->capture_default_str();
  app.add_option("--ec2-preauth-ttl", preauth_ttl,
                 "how long an EC2 running event pre-authorizes a join, seconds")
      ->capture_default_str();
  std::vector<std::string> required_tags;
  app.add_option("--ec2-require-tag", required_tags,
                 "KEY=VALUE: pre-authorize only instances with this tag (repeatable; AWS "
                 "credentials from the environment)");
  app.add_option("--ec2-endpoint", c.sns.ec2_endpoint,
                 "EC2 API endpoint for DescribeTags (default https://ec2.{region}.amazonaws.com)");
  app.add_flag("-v,--verbose", verbose, "debug logging");
  CLI11_PARSE(app, argc, argv);
  c.nonce_ttl = std::chrono::seconds(nonce_ttl);
  c.token_ttl = std::chrono::seconds(token_ttl);
  c.etcd.learner_timeout = std::chrono::seconds(learner_timeout);
  c.approval_hold = std::chrono::milliseconds(approval_hold_ms);
  c.sns.max_age = std::chrono::seconds(sns_max_age);
  c.sns.preauth_ttl = std::chrono::seconds(preauth_ttl);
  auto tags = berth::server::ParseRequiredTags(required_tags);
  if (!tags.ok()) {
    std::fprintf(stderr, "berthd: %s\n", tags.status().ToString().c_str());
    return 2;
  }
  c.sns.required_tags = std::move(*tags);
  c.golden_tickets = berth::server::MakeGoldenTickets;  // the flavour this binary links
  berth::InitLogging("berthd", verbose);
  berth::Status status = berth::server::RunBerthd(c);
  if (!status.ok()) {
    spdlog::critical("berthd: {}", status.ToString());
    return 1;
  }
  return 0;
}
