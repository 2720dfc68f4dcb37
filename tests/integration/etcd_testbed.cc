#include "tests/integration/etcd_testbed.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "agent/attestation.h"
#include "agent/hw/tpm.h"
#include "agent/identity.h"
#include "agent/join_client.h"
#include "common/binding.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "common/enrolment.h"

namespace berth::testing {

namespace {

constexpr char kPython[] = "/usr/bin/python3";
constexpr char kAdminToken[] = "berth-test-admin-token";
constexpr char kMountPoint[] = "/var/lib/berth/state";

std::vector<nlohmann::json> ReadJsonLines(const std::string& path) {
  std::vector<nlohmann::json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(nlohmann::json::parse(line));
  }
  return out;
}

class FakeDisk : public agent::Disk {
 public:
  explicit FakeDisk(FakeDiskState* s) : s_(s) {}
  Result<agent::ProbeResult> Probe(const std::string& device) override {
    if (device.ends_with("/dev/mapper/berth-state")) {
      if (s_->has_filesystem) return agent::ProbeResult{agent::ProbeResult::Kind::kOther, "ext4"};
      return agent::ProbeResult{};
    }
    if (s_->kind == agent::ProbeResult::Kind::kLuks) {
      return agent::ProbeResult{agent::ProbeResult::Kind::kLuks, "crypto_LUKS"};
    }
    return agent::ProbeResult{};
  }
  Result<agent::LuksHeader> ReadLuksHeader(const std::string&) override {
    return agent::LuksHeader{"LUKS2", s_->uuid, agent::kLuksLabel, s_->subsystem};
  }
  Status WriteLuksSubsystem(const std::string&, const std::string& subsystem) override {
    s_->subsystem = subsystem;
    return OkStatus();
  }
  Status FormatIfBlank(const std::string&, const std::string& uuid,
                       const SecretBytes& key) override {
    if (s_->kind != agent::ProbeResult::Kind::kBlank) return FailedPrecondition("not blank");
    if (!s_->image.empty()) {
      std::ofstream(s_->image).close();
      std::filesystem::resize_file(s_->image, 32 << 20);
      BERTH_RETURN_IF_ERROR(real_->FormatIfBlank(s_->image, uuid, key));
    }
    s_->kind = agent::ProbeResult::Kind::kLuks;
    s_->uuid = uuid;
    s_->key = std::string(key.view());
    return OkStatus();
  }
  Status CheckKey(const std::string&, const SecretBytes& key) override {
    if (!s_->image.empty()) return real_->CheckKey(s_->image, key);
    return key.view() == s_->key ? OkStatus() : PermissionDenied("no keyslot opens with this key");
  }
  Status Open(const std::string&, const std::string&, const SecretBytes& key) override {
    return CheckKey("", key);
  }

 private:
  FakeDiskState* s_;
  std::unique_ptr<agent::Disk> real_ = agent::MakeLibDisk();
};

// The real keyslots of a FakeDiskState's image, whatever device the agent names.
class ImageKeyslots : public agent::LuksKeyslots {
 public:
  explicit ImageKeyslots(std::string image) : image_(std::move(image)) {}
  Result<int> AddKeyslotWithToken(const std::string&, const SecretBytes& existing_key,
                                  const SecretBytes& new_key, const std::string& type,
                                  const std::string& fields) override {
    return real_->AddKeyslotWithToken(image_, existing_key, new_key, type, fields);
  }
  Result<std::vector<agent::LuksToken>> Tokens(const std::string&,
                                               const std::string& type) override {
    return real_->Tokens(image_, type);
  }
  Status UpdateToken(const std::string&, int id, const std::string& fields) override {
    return real_->UpdateToken(image_, id, fields);
  }

 private:
  std::string image_;
  std::unique_ptr<agent::LuksKeyslots> real_ = agent::MakeLibLuksKeyslots();
};

class FakeMounter : public agent::Mounter {
 public:
  Result<bool> IsMountPoint(const std::string& path) override {
    return std::find(mounted_.begin(), mounted_.end(), path) != mounted_.end();
  }
  Status Mount(const std::string&, const std::string& target, const std::string&) override {
    mounted_.push_back(target);
    return OkStatus();
  }
  Status BindMount(const std::string&, const std::string& target) override {
    mounted_.push_back(target);
    return OkStatus();
  }

 private:
  std::vector<std::string> mounted_;
};

// mkfs marks the fake disk; everything else (the kubeadm stand-in) really runs.
class NodeRunner : public ProcessRunner {
 public:
  NodeRunner(FakeDiskState* disk, std::vector<std::string> env)
      : disk_(disk), env_(std::move(env)) {}
  Result<ProcessResult> Run(const std::vector<std::string>& argv,
                            const std::vector<std::string>& env) override {
    if (argv[0].ends_with("/sbin/mkfs.ext4")) {
      disk_->has_filesystem = true;
      return ProcessResult{.exit_code = 0};
    }
    std::vector<std::string> all = env;
    all.insert(all.end(), env_.begin(), env_.end());
    return RealProcessRunner().Run(argv, all);
  }

 private:
  FakeDiskState* disk_;
  std::vector<std::string> env_;
};

class RecordingNotifier : public agent::Notifier {
 public:
  void Status(const std::string& s) override { events.push_back("STATUS=" + s); }
  void Ready(const std::string& s) override {
    events.push_back("READY=1");
    events.push_back("STATUS=" + s);
  }
  std::vector<std::string> events;
};

// The node's etcd: a real etcd process configured only by the environment file the agent
// wrote (systemctl start etcd in production).
class TestEtcdService : public agent::EtcdService {
 public:
  TestEtcdService(EtcdCluster* cluster, TestNode* node) : cluster_(cluster), node_(node) {}
  Status Start() override {
    if (cluster_->ExtraRunning(node_->name)) return OkStatus();
    if (!cluster_->StartFromEnvironment(node_->Path(agent::kEtcdEnvPath), node_->name)) {
      return Unavailable("could not start etcd for " + node_->name);
    }
    return OkStatus();
  }

 private:
  EtcdCluster* cluster_;
  TestNode* node_;
};

// A bootstrapped node's services, as the node image's units run them: the real programs with
// the flags the agent wrote (bootstrap.h ControlPlaneServices).
class TestControlPlaneServices : public agent::ControlPlaneServices {
 public:
  TestControlPlaneServices(EtcdTestbed* bed, TestNode* node) : bed_(bed), node_(node) {}
  Status Start(const std::string& name) override { return bed_->StartService(*node_, name); }

 private:
  EtcdTestbed* bed_;
  TestNode* node_;
};

v1::EnrolmentConfig Enrolment(const TestNode& node, bool control_plane,
                              const std::vector<std::string>& endpoints, const std::string& ca) {
  v1::EnrolmentConfig c;
  c.set_version(1);
  c.set_cluster_id("berth-test");
  for (const auto& e : endpoints) c.add_endpoints(e);
  c.set_cluster_ca_pem(node.cluster_ca_pem.empty() ? ca : node.cluster_ca_pem);
  c.set_role(control_plane ? v1::NODE_ROLE_CONTROL_PLANE : v1::NODE_ROLE_WORKER);
  c.set_attestation(v1::ATTESTATION_KIND_TPM);
  c.set_node_name(node.name);
  c.mutable_state_disk()->set_device("/dev/vdb");
  c.mutable_state_disk()->set_mount_point(kMountPoint);
  if (node.golden) *c.mutable_golden_ticket() = *node.golden;
  if (node.operator_access.operator_spki_sha256_size() > 0 || node.operator_access.bootstrap()) {
    *c.mutable_operator_access() = node.operator_access;
  }
  return c;
}

}  // namespace

// ---- HealthWatch ----

HealthWatch::HealthWatch(const EtcdCluster& cluster) : cluster_(cluster) {
  thread_ = std::thread([this] {
    auto client = cluster_.NewClient();
    const auto start = std::chrono::steady_clock::now();
    while (!stop_) {
      auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                    std::chrono::steady_clock::now() - start)
                    .count();
      etcdserverpb::RangeRequest r;
      r.set_key("/berth-test/health");
      auto read = client->Range(r);
      if (!read.ok()) failures_.push_back(std::to_string(ms) + " ms: " + read.status().ToString());
      for (const auto& url : cluster_.ClientUrls()) {
        auto st = client->Status(url);
        if (!st.ok() || st->leader() == 0) {
          failures_.push_back(std::to_string(ms) + " ms: " + url + ": " +
                              (st.ok() ? "no leader" : st.status().ToString()));
        }
      }
      polls_++;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
}

HealthWatch::~HealthWatch() { Stop(); }

std::vector<std::string> HealthWatch::Stop() {
  stop_ = true;
  if (thread_.joinable()) thread_.join();
  return failures_;
}

// ---- EtcdTestbed ----

EtcdTestbed::EtcdTestbed(const EtcdTestbedOptions& options) : options_(options) {
  etcd_ = std::make_unique<EtcdCluster>(dir_.path(), 3);
  if (!etcd_->ok()) {
    error_ = etcd_->error();
    return;
  }
  EXPECT_TRUE(MakeDirs(dir_.Join("join")).ok());
  EXPECT_TRUE(MakeDirs(dir_.Join("kube")).ok());
  EXPECT_TRUE(MakeDirs(dir_.Join("operator")).ok());
  join_pki_ = MakeTestPki(dir_.Join("join"));
  kube_pki_ = MakeTestPki(dir_.Join("kube"));
  // Operators: their own CA, and a client certificate from it.
  TestPki op = MakeTestPki(dir_.Join("operator"));
  auto op_ca_key = PrivateKeyFromPem(MustRead(op.ca_key));
  auto op_ca = CertFromPem(op.ca_pem_text);
  auto key = GenerateP256Key();
  auto cert = IssueCert({.common_name = "alice", .client_auth = true}, key->get(), op_ca->get(),
                        op_ca_key->get());
  operator_cert_ = dir_.Join("operator/alice.pem");
  operator_key_ = dir_.Join("operator/alice.key");
  MustWrite(operator_cert_, *CertToPem(cert->get()));
  MustWrite(operator_key_, std::string((*PrivateKeyToPem(key->get())).view()), 0600);
  MustWrite(dir_.Join("master.secret"), ToString(RandomBytes(32)), 0600);

  if (options_.api_delay_ms == 0) {
    kube_ = &KubeCluster::Shared();
    if (!kube_->ok()) {
      error_ = "no Kubernetes control plane: " + kube_->error();
      return;
    }
    kube_->DeleteBerthTokens();  // tests share it, one after the other
    return;
  }
  auto p = Subprocess::Start(
      {kPython, SourceDir() + "/tests/standins/kube_apiserver.py", "--cert", kube_pki_.server_pem,
       "--key", kube_pki_.server_key, "--token", kAdminToken, "--port", "0", "--port-file",
       dir_.Join("apiserver.port"), "--record", dir_.Join("apiserver.jsonl"), "--delay-ms",
       std::to_string(options_.api_delay_ms)},
      dir_.Join("apiserver.log"));
  if (!p.ok()) {
    error_ = p.status().ToString();
    return;
  }
  apiserver_ = std::move(*p);
  apiserver_port_ = WaitForPortFile(dir_.Join("apiserver.port"), std::chrono::seconds(20));
  if (apiserver_port_ == 0) {
    error_ = "kube-apiserver stand-in did not start: " + MustRead(dir_.Join("apiserver.log"));
    return;
  }
  MustWrite(dir_.Join("kubeconfig"),
            "apiVersion: v1\nkind: Config\ncurrent-context: berth\n"
            "clusters:\n- name: test\n  cluster:\n    server: https://127.0.0.1:" +
                std::to_string(apiserver_port_) +
                "\n    certificate-authority: " + kube_pki_.ca_pem +
                "\n"
                "contexts:\n- name: berth\n  context: {cluster: test, user: berthd}\n"
                "users:\n- name: berthd\n  user:\n    token: " +
                std::string(kAdminToken) + "\n",
            0600);
}

EtcdTestbed::~EtcdTestbed() {
  {
    std::lock_guard lock(services_mu_);
    for (auto& [name, p] : services_) p.Stop();
  }
  for (auto& [i, p] : berthd_) p.Stop();
  apiserver_.Stop();
  etcd_.reset();  // stops every etcd, the nodes' too
  nodes_.clear();
}

namespace {
// Every node boots the same firmware and kernel.
void MeasureBoot(TestNode& node) {
  EXPECT_TRUE(node.tpm->ExtendPcr(0, std::string(64, 'a')));
  EXPECT_TRUE(node.tpm->ExtendPcr(4, std::string(64, 'b')));
  for (const auto& [pcr, digest] : node.extra_measurements) {
    EXPECT_TRUE(node.tpm->ExtendPcr(pcr, digest));
  }
}

// Each agent run or hand-made request is a boot of its own: the TPM restarts (PCR 15 holds
// nothing of an earlier boot's EnrolmentConfig or released keys) and the firmware measures
// again. The first boot is the one AddNode measured.
void BootNode(TestNode& node) {
  node.started.clear();
  if (node.boots++ == 0) return;
  EXPECT_TRUE(node.tpm->Reboot());
  MeasureBoot(node);
}
}  // namespace

TestNode& EtcdTestbed::AddNode(const std::string& name, bool control_plane) {
  auto node = std::make_unique<TestNode>();
  node->name = name;
  node->root = dir_.Join("nodes/" + name);
  EXPECT_TRUE(MakeDirs(node->root).ok());
  node->tpm = std::make_unique<Swtpm>(dir_.Join("tpm-" + name));
  EXPECT_TRUE(node->tpm->ok()) << node->tpm->error();
  MeasureBoot(*node);
  node->etcd_peer_port = UnusedPort();
  node->etcd_client_port = UnusedPort();
  agent::AgentOptions o;
  o.root = node->root;
  o.tcti = node->tpm->Tcti();
  agent::AgentDeps deps{};
  deps.open_tpm = agent::OpenEsysTpm;
  auto identity = agent::DescribeIdentity(o, deps);
  EXPECT_TRUE(identity.ok()) << identity.status().ToString();
  if (identity.ok()) {
    size_t at = identity->find("sha256: ") + 8;
    node->ak_sha256 = identity->substr(at, 64);
    node->policy_pcrs = identity->substr(identity->find("  pcrs:\n"));
  }
  if (control_plane) control_planes_.push_back(name);
  TestNode& ref = *node;
  nodes_[name] = std::move(node);
  return ref;
}

std::string EtcdTestbed::WritePolicy() {
  if (!options_.policy.empty()) {
    MustWrite(dir_.Join("policy.yaml"), options_.policy);
    return dir_.Join("policy.yaml");
  }
  std::string policy = "tpm:\n  trusted_aks:\n";
  std::string pcrs;
  for (const auto& [name, node] : nodes_) {
    pcrs = node->policy_pcrs;
    if (left_out_of_policy.count(name) != 0) continue;
    policy += "    - name: " + name + "\n      sha256: " + node->ak_sha256 + "\n";
  }
  policy += pcrs;
  if (!control_planes_.empty()) {
    policy += "roles:\n  control_plane:\n";
    for (const auto& name : control_planes_) {
      if (left_out_of_policy.count(name) == 0) policy += "    - ak: " + name + "\n";
    }
  }
  policy += policy_extra;
  const std::string path = dir_.Join("policy.yaml");
  MustWrite(path, policy);
  return path;
}

bool EtcdTestbed::StartBerthd(int replica, int port) {
  const std::string policy = WritePolicy();
  const std::string tag = "berthd-" + std::to_string(replica);
  std::string endpoints;
  for (const auto& u : etcd_->ClientUrls()) endpoints += (endpoints.empty() ? "" : ",") + u;
  std::vector<std::string> argv = {BuildDir() + "/" + berthd_binary,
                                   "--listen",
                                   "127.0.0.1:" + std::to_string(port),
                                   "--port-file",
                                   dir_.Join(tag + ".port"),
                                   "--tls-cert",
                                   join_pki_.server_pem,
                                   "--tls-key",
                                   join_pki_.server_key,
                                   "--policy",
                                   policy,
                                   "--master-secret-file",
                                   dir_.Join("master.secret"),
                                   "--cluster-id",
                                   "berth-test",
                                   "--kubeconfig",
                                   !kube_ ? dir_.Join("kubeconfig")
                                   : berthd_kubeconfig.empty() ? kube_->berthd_kubeconfig()
                                                               : berthd_kubeconfig,
                                   "--api-server-endpoint",
                                   kube_ ? kube_->api_server_endpoint() : "127.0.0.1:6443",
                                   "--kubernetes-version",
                                   kube_ ? kube_->release() : "v1.31.0",
                                   "--etcd-endpoints",
                                   endpoints,
                                   "--etcd-client-cert",
                                   etcd_->client_cert(),
                                   "--etcd-client-key",
                                   etcd_->client_key(),
                                   "--etcd-ca-cert",
                                   etcd_->ca_cert(),
                                   "--etcd-ca-key",
                                   etcd_->ca_key(),
                                   "--admin-listen",
                                   "127.0.0.1:0",
                                   "--admin-port-file",
                                   dir_.Join(tag + ".admin-port"),
                                   "--operator-ca",
                                   dir_.Join("operator/ca.pem"),
                                   "--metrics-listen",
                                   "127.0.0.1:0",
                                   "--metrics-port-file",
                                   dir_.Join(tag + ".metrics-port")};
  argv.insert(argv.end(), berthd_flags.begin(), berthd_flags.end());
  std::remove(dir_.Join(tag + ".port").c_str());
  std::remove(dir_.Join(tag + ".admin-port").c_str());
  auto p = Subprocess::Start(argv, BerthdLog(replica));
  if (!p.ok()) return false;
  berthd_[replica] = std::move(*p);
  berthd_ports_[replica] = WaitForPortFile(dir_.Join(tag + ".port"), std::chrono::seconds(20));
  admin_ports_[replica] = WaitForPortFile(dir_.Join(tag + ".admin-port"), std::chrono::seconds(5));
  metrics_ports_[replica] =
      WaitForPortFile(dir_.Join(tag + ".metrics-port"), std::chrono::seconds(5));
  if (berthd_ports_[replica] == 0 || admin_ports_[replica] == 0 || metrics_ports_[replica] == 0) {
    ADD_FAILURE() << "berthd did not start:\n" << MustRead(BerthdLog(replica));
    return false;
  }
  return true;
}

void EtcdTestbed::KillBerthd(int replica) { berthd_.at(replica).Stop(SIGKILL); }

std::string EtcdTestbed::BerthdEndpoint(int replica) const {
  return "127.0.0.1:" + std::to_string(berthd_ports_.at(replica));
}

std::string EtcdTestbed::BerthdLog(int replica) const {
  return dir_.Join("berthd-" + std::to_string(replica) + ".log");
}

AgentOutcome EtcdTestbed::RunAgent(TestNode& node, bool control_plane,
                                   const std::vector<std::string>& endpoints) {
  BootNode(node);
  EXPECT_TRUE(MakeDirs(node.root + "/efi/berth").ok());
  MustWrite(node.root + "/efi/berth/enrolment.binpb",
            Enrolment(node, control_plane, endpoints, join_pki_.ca_pem_text).SerializeAsString());
  agent::AgentOptions o;
  o.root = node.root;
  o.tcti = node.tpm->Tcti();
  // Workers against the real API server run the real kubeadm; control planes the stand-in
  // (see etcd_testbed.h), checking the configuration only.
  const bool real_kubeadm = kube_ != nullptr && !control_plane;
  o.kubeadm = real_kubeadm ? KubeadmJoinDryRun() : SourceDir() + "/tests/standins/kubeadm";
  if (!node.kubeadm.empty()) o.kubeadm = node.kubeadm;
  o.retry = agent::RetryPolicy{.initial_backoff = std::chrono::milliseconds(200),
                               .max_backoff = std::chrono::milliseconds(1000),
                               .max_attempts = node.agent_attempts};
  o.call_timeout = std::chrono::seconds(30);
  o.node_addresses =
      node.addresses.empty() ? std::vector<std::string>{"127.0.0.1"} : node.addresses;
  o.etcd_peer_port = node.etcd_peer_port;
  o.etcd_client_port = node.etcd_client_port;
  o.etcd_wait = std::chrono::seconds(90);
  if (node.api_server_port != 0) o.api_server_port = node.api_server_port;
  if (node.controller_manager_port != 0) o.controller_manager_port = node.controller_manager_port;
  if (node.scheduler_port != 0) o.scheduler_port = node.scheduler_port;
  if (node.berthd_port != 0) o.berthd_port = node.berthd_port;
  o.control_plane_units = node.control_plane_units;
  if (kube_ != nullptr) o.kubectl = kube_->Binary("kubectl");
  o.berthd_rbac = SourceDir() + "/kube/berthd-rbac.yaml";
  o.control_plane_wait = node.control_plane_wait;
  o.ec2_instance_id = node.ec2_instance_id;
  if (!node.ec2_imds_url.empty()) o.ec2_imds_url = node.ec2_imds_url;

  RealClock clock;
  std::vector<std::string> kubeadm_env;
  if (real_kubeadm) {
    kubeadm_env = KubeadmJoinDryRunEnv(*kube_, dir_.Join("kubeadm"));
  } else {
    kubeadm_env = {"BERTH_STANDIN_KUBEADM_RECORD=" + dir_.Join("kubeadm.jsonl")};
    if (!kube_) {  // the stand-in kubeadm checks the token against the stand-in API server
      kubeadm_env.insert(kubeadm_env.end(),
                         {"BERTH_STANDIN_KUBEADM_APISERVER=https://127.0.0.1:" +
                              std::to_string(apiserver_port_),
                          "BERTH_STANDIN_KUBEADM_CA=" + kube_pki_.ca_pem,
                          "BERTH_STANDIN_KUBEADM_ADMIN_TOKEN=" + std::string(kAdminToken)});
    }
  }
  NodeRunner runner(&node.disk, kubeadm_env);
  RecordingNotifier notifier;
  FakeDisk disk(&node.disk);
  FakeMounter mounter;
  TestEtcdService etcd_service(etcd_.get(), &node);
  agent::AgentDeps deps{&clock, &runner, &notifier, agent::OpenEsysTpm, nullptr};
  deps.make_transport = [](const agent::ClientIdentity& id, const v1::EnrolmentConfig& config) {
    return agent::MakeGrpcJoinTransport(id, config.cluster_ca_pem(), "", std::chrono::seconds(30));
  };
  deps.disk = &disk;
  deps.mounter = &mounter;
  ImageKeyslots keyslots(node.disk.image);
  if (!node.disk.image.empty()) deps.keyslots = &keyslots;
  deps.etcd = &etcd_service;
  deps.make_etcd_client = etcd::MakeGrpcClient;
  TestControlPlaneServices services(this, &node);
  deps.control_plane = &services;
  deps.read_golden_ticket = golden_reader;
  AgentOutcome out;
  out.status = agent::RunAgent(o, deps);
  out.notifications = notifier.events;
  return out;
}

Result<v1::JoinTicket> EtcdTestbed::RequestJoinTicket(TestNode& node, bool control_plane,
                                                      const std::string& challenge_endpoint,
                                                      const std::string& ticket_endpoint,
                                                      agent::EtcdKeys* keys) {
  BootNode(node);
  BERTH_ASSIGN_OR_RETURN(agent::ClientIdentity id, agent::MakeClientIdentity(node.name));
  auto transport =
      agent::MakeGrpcJoinTransport(id, join_pki_.ca_pem_text, "", std::chrono::seconds(30));
  v1::JoinRequest r;
  if (node.golden) {
    *r.mutable_golden_ticket() = *node.golden;  // instead of a challenge and evidence
  } else {
    BERTH_ASSIGN_OR_RETURN(v1::ChallengeResponse challenge,
                           transport->Challenge(challenge_endpoint, v1::ChallengeRequest()));
    BERTH_ASSIGN_OR_RETURN(std::unique_ptr<agent::Tpm> tpm, agent::OpenEsysTpm(node.tpm->Tcti()));
    Bytes binding = ComputeBinding(AsBytes(challenge.nonce()), id.spki_sha256);
    BERTH_ASSIGN_OR_RETURN(
        v1::Evidence evidence,
        agent::CollectTpmEvidence(*tpm, DefaultPcrSelection(), binding, "/nonexistent"));
    tpm.reset();
    *r.mutable_evidence() = evidence;
    r.set_nonce(challenge.nonce());
  }
  r.set_ec2_instance_id(node.ec2_instance_id);
  if (node.ec2_identity.has_value()) *r.mutable_ec2_identity() = *node.ec2_identity;
  r.set_node_name(node.name);
  r.set_role(control_plane ? v1::NODE_ROLE_CONTROL_PLANE : v1::NODE_ROLE_WORKER);
  if (node.disk.uuid.empty()) node.disk.uuid = agent::NewDiskUuid();
  r.set_disk_uuid(node.disk.uuid);
  if (control_plane) {
    agent::EtcdKeys made;
    if (keys == nullptr) {
      BERTH_ASSIGN_OR_RETURN(made, agent::MakeEtcdKeys(node.name));
      keys = &made;
    }
    r.add_node_addresses("127.0.0.1");
    r.set_etcd_csr(ToString(keys->server_csr));
    r.set_etcd_peer_csr(ToString(keys->peer_csr));
    r.set_etcd_peer_url(node.PeerUrl());
    r.set_etcd_client_url(node.ClientUrl());
  }
  return transport->IssueJoinTicket(ticket_endpoint, r);
}

Result<v1::RejoinTicket> EtcdTestbed::RequestRejoinTicket(TestNode& node,
                                                          const std::string& endpoint) {
  BERTH_ASSIGN_OR_RETURN(PreparedRejoin prepared, PrepareRejoin(node, endpoint));
  return SendRejoin(prepared, endpoint);
}

Result<EtcdTestbed::PreparedRejoin> EtcdTestbed::PrepareRejoin(TestNode& node,
                                                               const std::string& endpoint) {
  BootNode(node);
  PreparedRejoin out;
  BERTH_ASSIGN_OR_RETURN(out.id, agent::MakeClientIdentity(node.name));
  auto transport =
      agent::MakeGrpcJoinTransport(out.id, join_pki_.ca_pem_text, "", std::chrono::seconds(30));
  BERTH_ASSIGN_OR_RETURN(v1::ChallengeResponse challenge,
                         transport->Challenge(endpoint, v1::ChallengeRequest()));
  BERTH_ASSIGN_OR_RETURN(std::unique_ptr<agent::Tpm> tpm, agent::OpenEsysTpm(node.tpm->Tcti()));
  Bytes binding = ComputeBinding(AsBytes(challenge.nonce()), out.id.spki_sha256);
  BERTH_ASSIGN_OR_RETURN(
      v1::Evidence evidence,
      agent::CollectTpmEvidence(*tpm, DefaultPcrSelection(), binding, "/nonexistent"));
  tpm.reset();
  *out.request.mutable_evidence() = evidence;
  out.request.set_nonce(challenge.nonce());
  out.request.set_node_name(node.name);
  out.request.set_disk_uuid(node.disk.uuid);
  return out;
}

Result<v1::RejoinTicket> EtcdTestbed::SendRejoin(const PreparedRejoin& prepared,
                                                 const std::string& endpoint) {
  auto transport = agent::MakeGrpcJoinTransport(prepared.id, join_pki_.ca_pem_text, "",
                                                std::chrono::seconds(30));
  return transport->IssueRejoinTicket(endpoint, prepared.request);
}

bool EtcdTestbed::StartNodeEtcd(TestNode& node, const v1::JoinTicket& ticket,
                                const agent::EtcdKeys& keys) {
  agent::EtcdEndpoints e{.addresses = {"127.0.0.1"},
                         .peer_port = node.etcd_peer_port,
                         .client_port = node.etcd_client_port};
  Status st =
      agent::WriteEtcdFiles(node.root, ticket.etcd(), keys, e, node.root + kMountPoint + "/etcd");
  if (!st.ok()) {
    ADD_FAILURE() << st.ToString();
    return false;
  }
  return etcd_->StartFromEnvironment(node.Path(agent::kEtcdEnvPath), node.name);
}

bool EtcdTestbed::NodeEtcdRunning(const std::string& name) { return etcd_->ExtraRunning(name); }

ProcessResult EtcdTestbed::Berthctl(const std::vector<std::string>& args, int replica) {
  std::vector<std::string> argv = {BuildDir() + "/cli/berthctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  for (const std::string& a :
       {std::string("--server"), "127.0.0.1:" + std::to_string(admin_ports_.at(replica)),
        std::string("--ca"), join_pki_.ca_pem, std::string("--cert"), operator_cert_,
        std::string("--key"), operator_key_}) {
    argv.push_back(a);
  }
  auto r = RealProcessRunner().Run(argv);
  if (!r.ok()) {
    ADD_FAILURE() << r.status().ToString();
    return {};
  }
  return *r;
}

nlohmann::json EtcdTestbed::ListNodes(int replica) {
  ProcessResult r = Berthctl({"nodes", "list", "--json"}, replica);
  EXPECT_TRUE(r.success()) << r.output;
  auto j = nlohmann::json::parse(r.output, nullptr, false);
  EXPECT_FALSE(j.is_discarded()) << r.output;
  return j;
}

std::vector<nlohmann::json> EtcdTestbed::TokenSecrets() const {
  if (kube_) return kube_->BerthTokens();
  return StandinTokenSecrets(StandinApiServerRecords());
}

std::vector<nlohmann::json> EtcdTestbed::KubeadmJoins() const {
  std::vector<nlohmann::json> joins = ReadJsonLines(dir_.Join("kubeadm.jsonl"));
  for (auto& j : KubeadmJoinRecords(dir_.Join("kubeadm"))) joins.push_back(std::move(j));
  return joins;
}

std::vector<nlohmann::json> EtcdTestbed::StandinApiServerRecords() const {
  return ReadJsonLines(dir_.Join("apiserver.jsonl"));
}

}  // namespace berth::testing

namespace berth::testing {

std::string EtcdTestbed::ServiceLog(const TestNode& node, const std::string& name) const {
  return dir_.Join(node.name + "-" + name + ".log");
}

bool EtcdTestbed::ServiceRunning(const TestNode& node, const std::string& name) {
  std::lock_guard lock(services_mu_);
  return ServiceRunningLocked(node, name);
}

bool EtcdTestbed::ServiceRunningLocked(const TestNode& node, const std::string& name) {
  auto it = services_.find(node.name + "/" + name);
  return it != services_.end() && it->second.running();
}

void EtcdTestbed::KillServices(const TestNode& node) {
  std::lock_guard lock(services_mu_);
  for (auto& [key, p] : services_) {
    if (key.rfind(node.name + "/", 0) == 0) p.Stop(SIGKILL);
  }
}

Status EtcdTestbed::StartService(TestNode& node, const std::string& name) {
  std::lock_guard lock(services_mu_);
  if (ServiceRunningLocked(node, name)) return OkStatus();
  std::string env_file, var = "ARGS", binary;
  if (name == "berthd") {
    env_file = node.Path(std::string(kMountPoint) + agent::kBerthdDirOnDisk + "/berthd.env");
    var = "BERTHD_ARGS";
    binary = BuildDir() + "/" + berthd_binary;
  } else {
    env_file = node.Path(std::string(agent::kControlPlaneArgsDir) + "/" + name + ".env");
    if (kube_ == nullptr) return FailedPrecondition("no Kubernetes binaries");
    binary = kube_->Binary(name);
  }
  BERTH_ASSIGN_OR_RETURN(std::string text, ReadFile(env_file));
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> args, agent::ArgsFromEnvironment(text, var));
  std::vector<std::string> argv = {binary};
  argv.insert(argv.end(), args.begin(), args.end());
  BERTH_ASSIGN_OR_RETURN(Subprocess p, Subprocess::Start(argv, ServiceLog(node, name)));
  services_[node.name + "/" + name] = std::move(p);
  std::string started = name;
  if (name == "kube-controller-manager" || name == "kube-scheduler") {
    started += ApiServerReady(node) ? " (API server ready)" : " (API server not ready)";
  }
  node.started.push_back(started);
  return OkStatus();
}

bool EtcdTestbed::ApiServerReady(const TestNode& node) const {
  const std::string address = node.addresses.empty() ? "127.0.0.1" : node.addresses.front();
  auto r = RealProcessRunner().Run(
      {kube_->Binary("kubectl"), "--kubeconfig", node.Path("/etc/kubernetes/admin.conf"),
       "--server", "https://" + address + ":" + std::to_string(node.api_server_port),
       "--request-timeout", "10s", "get", "--raw", "/readyz"});
  return r.ok() && r->success() && r->output == "ok";
}

}  // namespace berth::testing
