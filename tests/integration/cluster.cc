#include "tests/integration/cluster.h"

#include <algorithm>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "common/bytes.h"
#include "common/crypto.h"

namespace berth::testing {

namespace {

constexpr char kPython[] = "/usr/bin/python3";
constexpr char kAdminToken[] = "berth-test-admin-token";

std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

}  // namespace

HostCluster::HostCluster(const SwtpmOptions& tpm, const HostClusterNetwork& network)
    : network_(network) {
  EXPECT_TRUE(MakeDirs(dir_.Join("join")).ok());
  EXPECT_TRUE(MakeDirs(dir_.Join("kube")).ok());
  EXPECT_TRUE(MakeDirs(node_root()).ok());
  std::vector<std::string> berthd_ips, host_ips;
  if (!network_.netns.empty()) {
    berthd_ips = {network_.berthd_ip};
    host_ips = {network_.host_ip};
  }
  join_pki_ = MakeTestPki(dir_.Join("join"), "localhost", berthd_ips);
  kube_pki_ = MakeTestPki(dir_.Join("kube"), "localhost", host_ips);
  tpm_ = std::make_unique<Swtpm>(dir_.Join("tpm"), tpm);
  EXPECT_TRUE(tpm_->ok()) << tpm_->error();
  // The "boot" of this node: firmware and kernel measurements land in PCRs 0 and 4.
  EXPECT_TRUE(tpm_->ExtendPcr(0, std::string(64, 'a')));
  EXPECT_TRUE(tpm_->ExtendPcr(4, std::string(64, 'b')));
  MustWrite(dir_.Join("master.secret"), ToString(RandomBytes(32)), 0600);
  MustWrite(dir_.Join("kubeconfig"),
            "apiVersion: v1\nkind: Config\ncurrent-context: berth\n"
            "clusters:\n- name: test\n  cluster:\n    server: https://" +
                (network_.netns.empty() ? std::string("127.0.0.1") : network_.host_ip) +
                ":PORT\n"
            "    certificate-authority: " + kube_pki_.ca_pem + "\n"
            "contexts:\n- name: berth\n  context: {cluster: test, user: berthd}\n"
            "users:\n- name: berthd\n  user:\n    token: " + std::string(kAdminToken) + "\n");
}

HostCluster::~HostCluster() {
  berthd_.Stop();
  apiserver_.Stop();
  tpm_.reset();
}

bool HostCluster::StartKubeApiServer() {
  if (!network_.netns.empty()) {
    ADD_FAILURE() << "the real API server listens on the host's loopback only; berthd in a "
                     "network namespace reaches only the stand-in";
    return false;
  }
  kube_ = &KubeCluster::Shared();
  if (!kube_->ok()) {
    ADD_FAILURE() << "no Kubernetes control plane: " << kube_->error();
    return false;
  }
  kube_->DeleteBerthTokens();
  if (berthd_kubeconfig_.empty()) berthd_kubeconfig_ = kube_->berthd_kubeconfig();
  return true;
}

bool HostCluster::StartStandinApiServer(const std::vector<std::string>& extra_flags) {
  std::vector<std::string> argv = {kPython,
                                   SourceDir() + "/tests/standins/kube_apiserver.py",
                                   "--cert", kube_pki_.server_pem,
                                   "--key", kube_pki_.server_key,
                                   "--token", kAdminToken,
                                   "--port", "0",
                                   "--port-file", dir_.Join("apiserver.port"),
                                   "--record", dir_.Join("apiserver.jsonl")};
  // berthd in its namespace reaches the API server at the host's end of the veth pair.
  if (!network_.netns.empty()) argv.insert(argv.end(), {"--listen", "0.0.0.0"});
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  auto p = Subprocess::Start(argv, dir_.Join("apiserver.log"));
  if (!p.ok()) return false;
  apiserver_ = std::move(*p);
  apiserver_port_ = WaitForPortFile(dir_.Join("apiserver.port"), std::chrono::seconds(20));
  if (apiserver_port_ == 0) {
    ADD_FAILURE() << "kube-apiserver stand-in did not start:\n" << MustRead(dir_.Join("apiserver.log"));
    return false;
  }
  std::string kc = MustRead(dir_.Join("kubeconfig"));
  kc.replace(kc.find("PORT"), 4, std::to_string(apiserver_port_));
  MustWrite(dir_.Join("kubeconfig"), kc, 0600);
  berthd_kubeconfig_ = dir_.Join("kubeconfig");
  return true;
}

bool HostCluster::WritePolicyFromNode() {
  RealProcessRunner runner;
  auto r = runner.Run({BuildDir() + "/agent/berth-agent", "--root", node_root(), "--tcti",
                       tpm_->Tcti(), "--print-identity"});
  if (!r.ok() || !r->success()) {
    ADD_FAILURE() << "berth-agent --print-identity failed: " << (r.ok() ? r->output : r.status().ToString());
    return false;
  }
  // The output is a policy; log lines (if any) go to stderr, which Run interleaves: keep
  // from the first line of the policy.
  std::string out = r->output.substr(r->output.find("# berthd policy"));
  MustWrite(dir_.Join("policy.yaml"), out);
  return true;
}

bool HostCluster::StartBerthd(int port, const std::vector<std::string>& extra_flags) {
  std::filesystem::remove(dir_.Join("berthd.port"));
  const std::string listen_ip = network_.netns.empty() ? "127.0.0.1" : network_.berthd_ip;
  std::vector<std::string> argv = {BuildDir() + "/server/berthd",
                                   "--listen", listen_ip + ":" + std::to_string(port),
                                   "--port-file", dir_.Join("berthd.port"),
                                   "--tls-cert", join_pki_.server_pem,
                                   "--tls-key", join_pki_.server_key,
                                   "--policy", dir_.Join("policy.yaml"),
                                   "--master-secret-file", dir_.Join("master.secret"),
                                   "--cluster-id", "berth-test",
                                   "--kubeconfig", berthd_kubeconfig_,
                                   "--api-server-endpoint",
                                   kube_ ? kube_->api_server_endpoint() : "127.0.0.1:6443",
                                   "--kubernetes-version", kube_ ? kube_->release() : "v1.31.0"};
  const bool without = std::find(extra_flags.begin(), extra_flags.end(), "--no-etcd") !=
                       extra_flags.end();
  if (!network_.netns.empty() && !without) argv.push_back("--no-etcd");
  if (network_.netns.empty() && !without) {
    if (!etcd_) {
      std::filesystem::create_directories(dir_.Join("etcd"));
      etcd_ = std::make_unique<EtcdCluster>(dir_.Join("etcd"), 1);
      if (!etcd_->ok()) {
        ADD_FAILURE() << "berthd's etcd did not start: " << etcd_->error();
        return false;
      }
    }
    argv.insert(argv.end(), {"--etcd-endpoints", etcd_->ClientUrl(0), "--etcd-trusted-ca",
                             etcd_->ca_cert(), "--etcd-client-cert", etcd_->client_cert(),
                             "--etcd-client-key", etcd_->client_key()});
  }
  argv.insert(argv.end(), extra_flags.begin(), extra_flags.end());
  if (!network_.netns.empty()) argv.insert(argv.begin(), {"/usr/sbin/ip", "netns", "exec", network_.netns});
  auto p = Subprocess::Start(argv, berthd_log());
  if (!p.ok()) return false;
  berthd_ = std::move(*p);
  berthd_port_ = WaitForPortFile(dir_.Join("berthd.port"), std::chrono::seconds(20));
  if (berthd_port_ == 0) {
    ADD_FAILURE() << "berthd did not start:\n" << MustRead(berthd_log());
    return false;
  }
  return true;
}

void HostCluster::StopBerthd() { berthd_.Stop(); }

v1::EnrolmentConfig HostCluster::BaseEnrolment() const {
  v1::EnrolmentConfig c;
  c.set_version(1);
  c.set_cluster_id("berth-test");
  c.add_endpoints((network_.netns.empty() ? std::string("127.0.0.1") : network_.berthd_ip) + ":" +
                  std::to_string(berthd_port_));
  c.set_cluster_ca_pem(join_pki_.ca_pem_text);
  c.set_role(v1::NODE_ROLE_WORKER);
  c.set_attestation(v1::ATTESTATION_KIND_TPM);
  c.set_node_name("node-1");
  return c;
}

void HostCluster::WriteEnrolment(const v1::EnrolmentConfig& config) {
  EXPECT_TRUE(MakeDirs(node_root() + "/efi/berth").ok());
  MustWrite(node_root() + "/efi/berth/enrolment.binpb", config.SerializeAsString());
}

std::vector<std::string> HostCluster::AgentArgv(const std::vector<std::string>& extra) const {
  std::vector<std::string> argv = {BuildDir() + "/agent/berth-agent",
                                   "--root", node_root(),
                                   "--tcti", tpm_->Tcti(),
                                   "--kubeadm",
                                   kube_ ? KubeadmJoinDryRun()
                                         : SourceDir() + "/tests/standins/kubeadm",
                                   "--retry-initial-ms", "200",
                                   "--retry-max-ms", "1000"};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return argv;
}

std::vector<std::string> HostCluster::AgentEnv() const {
  if (kube_) return KubeadmJoinDryRunEnv(*kube_, dir_.Join("kubeadm"));
  return {"BERTH_STANDIN_KUBEADM_RECORD=" + dir_.Join("kubeadm.jsonl"),
          "BERTH_STANDIN_KUBEADM_APISERVER=https://127.0.0.1:" + std::to_string(apiserver_port_),
          "BERTH_STANDIN_KUBEADM_CA=" + kube_pki_.ca_pem,
          "BERTH_STANDIN_KUBEADM_ADMIN_TOKEN=" + std::string(kAdminToken)};
}

AgentRun HostCluster::RunAgent(const std::vector<std::string>& extra) {
  AgentRun run;
  const std::string log = dir_.Join("agent.log");
  std::filesystem::remove(log);
  auto p = Subprocess::Start(AgentArgv(extra), log, AgentEnv());
  EXPECT_TRUE(p.ok());
  if (!p.ok()) return run;
  run.result = p->Wait(std::chrono::seconds(60));
  run.log = MustRead(log);
  return run;
}

std::vector<nlohmann::json> HostCluster::TokenSecrets() const {
  if (kube_) return kube_->BerthTokens();
  return StandinTokenSecrets(StandinApiServerRecords());
}

std::vector<nlohmann::json> HostCluster::KubeadmJoins() const {
  if (kube_) return KubeadmJoinRecords(dir_.Join("kubeadm"));
  return ReadJsonLines(dir_.Join("kubeadm.jsonl"));
}

std::vector<nlohmann::json> HostCluster::StandinApiServerRecords() const {
  return ReadJsonLines(dir_.Join("apiserver.jsonl"));
}

std::vector<std::string> HostCluster::NodeFiles() const {
  std::vector<std::string> out;
  for (const auto& e : std::filesystem::recursive_directory_iterator(node_root())) {
    out.push_back(std::filesystem::relative(e.path(), node_root()).string());
  }
  std::sort(out.begin(), out.end());
  return out;
}

}  // namespace berth::testing
