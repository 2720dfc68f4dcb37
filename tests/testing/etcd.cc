#include "tests/testing/etcd.h"

#include <signal.h>

#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>
#include <thread>

#include "common/bytes.h"
#include "common/crypto.h"
#include "tests/testing/testing.h"

namespace berth::testing {

namespace {

constexpr int kStartAttempts = 3;

std::string Tail(const std::string& text, size_t n) {
  return text.size() > n ? "..." + text.substr(text.size() - n) : text;
}

}  // namespace

const std::string& EtcdBinary() {
  static const std::string binary = [] {
    // kube/build prints its bin directory on stdout; instant once built (./tests/run builds it
    // before the tests).
    auto built = RealProcessRunner().Run(
        {"/bin/sh", "-c", "\"$0\" 2>/dev/null", SourceDir() + "/kube/build"});
    if (!built.ok() || !built->success()) {
      ADD_FAILURE() << "kube/build failed, so there is no etcd to run: "
                    << (built.ok() ? built->Describe() : built.status().ToString());
      return std::string();
    }
    return TrimWhitespace(built->output) + "/etcd";
  }();
  return binary;
}

EtcdCluster::EtcdCluster(const std::string& dir, int members) : dir_(dir) {
  // The etcd CA, one certificate for the members (server and peer: etcd checks both EKUs),
  // and a client certificate.
  auto ca_key = GenerateP256Key();
  auto member_key = GenerateP256Key();
  auto client_key = GenerateP256Key();
  if (!ca_key.ok() || !member_key.ok() || !client_key.ok()) {
    error_ = "generating keys failed";
    return;
  }
  auto ca = IssueCert({.common_name = "berth test etcd CA",
                       .is_ca = true,
                       .validity = std::chrono::hours(24 * 365)},
                      ca_key->get(), nullptr, ca_key->get());
  auto member = IssueCert({.common_name = "etcd-member",
                           .dns_names = {"localhost"},
                           .ip_addresses = {"127.0.0.1", "::1"},
                           .server_auth = true,
                           .client_auth = true},
                          member_key->get(), ca->get(), ca_key->get());
  auto client = IssueCert({.common_name = "berthd", .client_auth = true}, client_key->get(),
                          ca->get(), ca_key->get());
  if (!ca.ok() || !member.ok() || !client.ok()) {
    error_ = "issuing test certificates failed";
    return;
  }
  ca_cert_ = dir_ + "/etcd-ca.crt";
  ca_key_ = dir_ + "/etcd-ca.key";
  member_cert_ = dir_ + "/etcd-member.crt";
  member_key_ = dir_ + "/etcd-member.key";
  client_cert_ = dir_ + "/etcd-client.crt";
  client_key_ = dir_ + "/etcd-client.key";
  MustWrite(ca_cert_, *CertToPem(ca->get()));
  MustWrite(ca_key_, std::string((*PrivateKeyToPem(ca_key->get())).view()), 0600);
  MustWrite(member_cert_, *CertToPem(member->get()));
  MustWrite(member_key_, std::string((*PrivateKeyToPem(member_key->get())).view()), 0600);
  MustWrite(client_cert_, *CertToPem(client->get()));
  MustWrite(client_key_, std::string((*PrivateKeyToPem(client_key->get())).view()), 0600);

  members_.resize(static_cast<size_t>(members));
  for (int i = 0; i < members; ++i)
    members_[static_cast<size_t>(i)].name = "etcd-" + std::to_string(i);
  std::string error;
  for (int attempt = 0; attempt < kStartAttempts; ++attempt) {
    if (StartAll(error)) return;
  }
  error_ = error;
}

EtcdCluster::~EtcdCluster() {
  {
    std::lock_guard lock(extra_mu_);
    for (auto& [name, p] : extra_) p.Stop();
  }
  for (auto& m : members_) m.process.Stop();
}

std::string EtcdCluster::ca_pem() const { return MustRead(ca_cert_); }

bool EtcdCluster::StartAll(std::string& error) {
  for (auto& m : members_) {
    m.process.Stop();
    m.client_port = UnusedPort();
    m.peer_port = UnusedPort();
    m.dir = dir_ + "/" + m.name;
    std::filesystem::remove_all(m.dir);
  }
  initial_cluster_.clear();
  for (int i = 0; i < size(); ++i) {
    initial_cluster_ += (i ? "," : "") + Name(i) + "=" + PeerUrl(i);
  }
  for (auto& m : members_) {
    if (!StartMember(m, initial_cluster_)) {
      error = "cannot start " + m.name;
      return false;
    }
  }
  if (WaitHealthy(std::chrono::seconds(30))) {
    // WaitHealthy passes over members that are not running (tests stop some on purpose);
    // here each must be. A port UnusedPort() handed out can be taken by another test's
    // process before etcd binds it: that member exits, and the next attempt picks new ports.
    for (int i = 0; i < size(); ++i) {
      if (!running(i)) {
        error = Name(i) + " exited while the cluster started:\n" + LogTail(i);
        return false;
      }
    }
    return true;
  }
  std::ostringstream why;
  why << "etcd cluster of " << size() << " did not become healthy:";
  for (int i = 0; i < size(); ++i) why << "\n--- " << Name(i) << ":\n" << LogTail(i);
  error = why.str();
  return false;
}

bool EtcdCluster::StartMember(Member& m, const std::string& initial_cluster) {
  std::vector<std::string> argv = {
      EtcdBinary(), "--name", m.name, "--data-dir", m.dir, "--listen-client-urls",
      "https://127.0.0.1:" + std::to_string(m.client_port), "--advertise-client-urls",
      "https://127.0.0.1:" + std::to_string(m.client_port), "--listen-peer-urls",
      "https://127.0.0.1:" + std::to_string(m.peer_port), "--initial-advertise-peer-urls",
      "https://127.0.0.1:" + std::to_string(m.peer_port), "--initial-cluster", initial_cluster,
      "--initial-cluster-state", "new", "--initial-cluster-token", "berth-test", "--cert-file",
      member_cert_, "--key-file", member_key_, "--trusted-ca-file", ca_cert_, "--client-cert-auth",
      "--peer-cert-file", member_cert_, "--peer-key-file", member_key_, "--peer-trusted-ca-file",
      ca_cert_, "--peer-client-cert-auth", "--logger", "zap", "--log-outputs", "stderr",
      // Test data is thrown away; fsync only makes a loaded machine slower.
      "--unsafe-no-fsync"};
  auto p = Subprocess::Start(argv, m.dir + ".log");
  if (!p.ok()) return false;
  m.process = std::move(*p);
  return true;
}

std::vector<std::string> EtcdCluster::ClientUrls() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(ClientUrl(i));
  return out;
}

std::string EtcdCluster::ClientUrl(int i) const {
  return "https://127.0.0.1:" + std::to_string(members_.at(static_cast<size_t>(i)).client_port);
}
std::string EtcdCluster::PeerUrl(int i) const {
  return "https://127.0.0.1:" + std::to_string(members_.at(static_cast<size_t>(i)).peer_port);
}
std::string EtcdCluster::Name(int i) const { return members_.at(static_cast<size_t>(i)).name; }

void EtcdCluster::Stop(int i) { members_.at(static_cast<size_t>(i)).process.Stop(); }

void EtcdCluster::Kill(int i) { members_.at(static_cast<size_t>(i)).process.Stop(SIGKILL); }

bool EtcdCluster::Restart(int i) {
  Member& m = members_.at(static_cast<size_t>(i));
  m.process.Stop();
  return StartMember(m, initial_cluster_);
}

bool EtcdCluster::running(int i) { return members_.at(static_cast<size_t>(i)).process.running(); }

bool EtcdCluster::StartFromEnvironment(const std::string& env_file, const std::string& name) {
  auto text = ReadFile(env_file);
  if (!text.ok()) {
    ADD_FAILURE() << text.status().ToString();
    return false;
  }
  std::vector<std::string> env;
  std::istringstream in(*text);
  std::string line;
  while (std::getline(in, line)) {
    line = TrimWhitespace(line);
    if (line.empty() || line[0] == '#') continue;
    if (line.rfind("ETCD_", 0) != 0 || line.find('=') == std::string::npos) {
      ADD_FAILURE() << env_file << ": not an ETCD_ variable: " << line;
      return false;
    }
    env.push_back(line);
  }
  env.push_back("ETCD_UNSAFE_NO_FSYNC=true");
  auto p = Subprocess::Start({EtcdBinary()}, dir_ + "/" + name + ".log", env);
  if (!p.ok()) {
    ADD_FAILURE() << p.status().ToString();
    return false;
  }
  std::lock_guard lock(extra_mu_);
  extra_.emplace_back(name, std::move(*p));
  return true;
}

void EtcdCluster::StopExtra(const std::string& name) {
  std::lock_guard lock(extra_mu_);
  for (auto& [n, p] : extra_) {
    if (n == name) p.Stop();
  }
}

bool EtcdCluster::ExtraRunning(const std::string& name) {
  std::lock_guard lock(extra_mu_);
  for (auto& [n, p] : extra_) {
    if (n == name && p.running()) return true;
  }
  return false;
}

std::unique_ptr<etcd::Client> EtcdCluster::NewClient() const {
  return NewClient(ClientUrls(), std::chrono::seconds(3));
}

std::unique_ptr<etcd::Client> EtcdCluster::NewClient(std::vector<std::string> endpoints,
                                                     std::chrono::milliseconds call_timeout) const {
  etcd::ClientOptions o;
  o.endpoints = std::move(endpoints);
  o.ca_pem = MustRead(ca_cert_);
  o.cert_pem = MustRead(client_cert_);
  auto key = ReadSecretFile(client_key_);
  if (key.ok()) o.key_pem = std::move(*key);
  o.call_timeout = call_timeout;
  auto client = etcd::MakeGrpcClient(std::move(o));
  if (!client.ok()) {
    ADD_FAILURE() << client.status().ToString();
    return nullptr;
  }
  return std::move(*client);
}

bool EtcdCluster::Healthy() const {
  auto client = NewClient();
  if (client == nullptr) return false;
  for (int i = 0; i < size(); ++i) {
    if (!const_cast<EtcdCluster*>(this)->running(i)) continue;
    auto st = client->Status(ClientUrl(i));
    if (!st.ok() || st->leader() == 0) return false;
  }
  etcdserverpb::RangeRequest r;
  r.set_key("/berth-test/health");
  return client->Range(r).ok();
}

bool EtcdCluster::WaitHealthy(std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Healthy()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return Healthy();
}

Result<etcdserverpb::MemberListResponse> EtcdCluster::Members() const {
  auto client = NewClient();
  if (client == nullptr) return Internal("no client");
  return client->MemberList();
}

std::string EtcdCluster::LogTail(int i) const {
  auto text = ReadFile(members_.at(static_cast<size_t>(i)).dir + ".log");
  return text.ok() ? Tail(*text, 3000) : text.status().ToString();
}

}  // namespace berth::testing
