#include "tests/e2e/image_cluster.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/bytes.h"
#include "common/crypto.h"
#include "tests/e2e/image_node.h"

namespace berth::testing {

namespace {

// A TCP forwarder (127.0.0.1:LISTEN -> 127.0.0.1:TARGET), as small as it can be.
constexpr char kForwarder[] = R"(
import asyncio, sys
listen, target = int(sys.argv[1]), int(sys.argv[2])
async def pipe(r, w):
    try:
        while data := await r.read(65536):
            w.write(data)
            await w.drain()
    finally:
        w.close()
async def handle(r, w):
    try:
        tr, tw = await asyncio.open_connection("127.0.0.1", target)
    except OSError:
        w.close()
        return
    await asyncio.gather(pipe(r, tw), pipe(tr, w), return_exceptions=True)
async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", listen)
    print("listening", flush=True)
    async with server:
        await server.serve_forever()
asyncio.run(main())
)";

}  // namespace

ImageCluster::ImageCluster(std::string dir)
    : dir_(std::move(dir)), cp_dir_(dir_ + "/control-plane") {
  if (!MakeDirs(dir_).ok()) {
    error_ = "cannot make " + dir_;
    return;
  }
  RealProcessRunner runner;
  auto up = runner.Run({SourceDir() + "/kube/control-plane", "up", cp_dir_, "--endpoint-address",
                        kGuestHostAddress});
  if (!up.ok() || !up->success()) {
    error_ = "kube/control-plane up failed: " + (up.ok() ? up->output : up.status().ToString());
    return;
  }
  auto env = runner.Run({SourceDir() + "/kube/control-plane", "env", cp_dir_});
  if (!env.ok() || !env->success()) {
    error_ = "kube/control-plane env failed";
    return;
  }
  std::istringstream lines(env->output);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.rfind("export ", 0) != 0) continue;
    size_t eq = line.find('=');
    if (eq != std::string::npos) env_.emplace_back(line.substr(7, eq - 7), line.substr(eq + 1));
  }
  if (!MakeDirs(dir_ + "/join-pki").ok()) {
    error_ = "cannot make " + dir_ + "/join-pki";
    return;
  }
  join_pki_ = MakeTestPki(dir_ + "/join-pki", "localhost");
  MustWrite(dir_ + "/master.secret", ToString(RandomBytes(32)), 0600);
}

ImageCluster::~ImageCluster() {
  StopBerthd();
  for (auto& f : forwarders_) f.Stop();
  RealProcessRunner runner;
  auto down = runner.Run({SourceDir() + "/kube/control-plane", "down", cp_dir_});
  if (!down.ok() || !down->success()) {
    ADD_FAILURE() << "kube/control-plane down failed: "
                  << (down.ok() ? down->output : down.status().ToString());
  }
}

std::string ImageCluster::Env(const std::string& name) const {
  for (const auto& [k, v] : env_) {
    if (k == name) return v;
  }
  return "";
}

bool ImageCluster::StartBerthd(const std::string& policy_yaml, int port,
                               const std::string& api_server_endpoint,
                               std::chrono::seconds token_ttl) {
  MustWrite(dir_ + "/policy.yaml", policy_yaml);
  std::filesystem::remove(dir_ + "/berthd.port");
  std::vector<std::string> argv = {
      BuildDir() + "/server/berthd", "--listen", "127.0.0.1:" + std::to_string(port), "--port-file",
      dir_ + "/berthd.port", "--tls-cert", join_pki_.server_pem, "--tls-key", join_pki_.server_key,
      "--policy", dir_ + "/policy.yaml", "--master-secret-file", dir_ + "/master.secret",
      "--cluster-id", "berth-image-test",
      // berthd's own least-privileged identity (kube/berthd-rbac.yaml, docs/kubernetes.md),
      // which kube/control-plane sets up, not the cluster's admin.
      "--kubeconfig", Env("BERTHD_KUBECONFIG"), "--api-server-endpoint",
      api_server_endpoint.empty() ? Env("KUBE_JOIN_ENDPOINT") : api_server_endpoint,
      "--kubernetes-version", Env("KUBE_RELEASE"), "--token-ttl", std::to_string(token_ttl.count()),
      // Node records (berthd releases a state disk's key only to a node it keeps a record of)
      // in the control plane's etcd, as its API server's etcd client: one etcd for the test
      // cluster; berthd's keys are under its own prefix. No etcd CA key: workers only
      // (etcd_join_test.cc covers control planes).
      "--etcd-endpoints", "https://127.0.0.1:" + Env("KUBE_ETCD_PORT"),
      "--etcd-trusted-ca", cp_dir_ + "/pki/etcd/ca.crt",
      "--etcd-client-cert", cp_dir_ + "/pki/apiserver-etcd-client.crt",
      "--etcd-client-key", cp_dir_ + "/pki/apiserver-etcd-client.key"};
  auto p = Subprocess::Start(argv, berthd_log());
  if (!p.ok()) {
    ADD_FAILURE() << "berthd did not start: " << p.status().ToString();
    return false;
  }
  berthd_ = std::move(*p);
  berthd_port_ = WaitForPortFile(dir_ + "/berthd.port", std::chrono::seconds(30));
  if (berthd_port_ == 0) {
    ADD_FAILURE() << "berthd did not start:\n" << MustRead(berthd_log());
    return false;
  }
  return true;
}

void ImageCluster::StopBerthd() { berthd_.Stop(); }

std::vector<std::string> ImageCluster::AuditLines() const {
  std::vector<std::string> out;
  std::ifstream log(berthd_log());
  std::string line;
  while (std::getline(log, line)) {
    size_t at = line.find("audit call=");
    if (at != std::string::npos) out.push_back(line.substr(at));
  }
  return out;
}

bool ImageCluster::StartApiForwarder(int listen_port) {
  const std::string log = dir_ + "/forwarder-" + std::to_string(listen_port) + ".log";
  auto p = Subprocess::Start({"/usr/bin/python3", "-c", kForwarder, std::to_string(listen_port),
                              Env("KUBE_APISERVER_PORT")},
                             log);
  if (!p.ok()) {
    ADD_FAILURE() << "the forwarder did not start: " << p.status().ToString();
    return false;
  }
  forwarders_.push_back(std::move(*p));
  if (!WaitForText(log, "listening", std::chrono::seconds(20))) {
    ADD_FAILURE() << "the forwarder does not listen:\n" << MustRead(log);
    return false;
  }
  return true;
}

v1::EnrolmentConfig ImageCluster::Enrolment(const std::string& node) const {
  v1::EnrolmentConfig c;
  c.set_version(1);
  c.set_cluster_id("berth-image-test");
  c.add_endpoints(std::string(kGuestHostAddress) + ":" + std::to_string(berthd_port_));
  c.set_tls_server_name("localhost");
  c.set_cluster_ca_pem(join_pki_.ca_pem_text);
  c.set_role(v1::NODE_ROLE_WORKER);
  c.set_attestation(v1::ATTESTATION_KIND_TPM);
  c.set_node_name(node);
  return ImageEnrolment(c);
}

Result<ProcessResult> KubectlAs::Run(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = prefix_;
  argv.insert(argv.end(), {"--request-timeout", "30s"});
  argv.insert(argv.end(), args.begin(), args.end());
  RealProcessRunner runner;
  return runner.Run(argv);
}

nlohmann::json KubectlAs::Get(const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {"get"};
  argv.insert(argv.end(), args.begin(), args.end());
  argv.insert(argv.end(), {"-o", "json"});
  auto r = Run(argv);
  if (!r.ok() || !r->success()) return nullptr;
  auto j = nlohmann::json::parse(r->output, nullptr, false);
  return j.is_discarded() ? nlohmann::json() : j;
}

std::pair<std::string, std::string> KubectlAs::Ready(const std::string& node) const {
  nlohmann::json n = Get({"node", node});
  nlohmann::json ready = ReadyCondition(n);
  if (ready.is_null()) return {"", ""};
  return {ready.value("status", ""), n["status"]["nodeInfo"].value("bootID", "")};
}

std::vector<std::string> KubectlAs::Nodes() const {
  nlohmann::json list = Get({"nodes"});
  if (list.is_null()) return {"(kubectl failed)"};
  std::vector<std::string> names;
  for (const auto& n : list["items"]) names.push_back(n["metadata"].value("name", ""));
  std::sort(names.begin(), names.end());
  return names;
}

Result<ProcessResult> ImageCluster::Kubectl(const std::vector<std::string>& args) const {
  return KubectlAs({Env("KUBE_BIN") + "/kubectl", "--kubeconfig", Env("KUBECONFIG")}).Run(args);
}

nlohmann::json ImageCluster::GetJson(const std::vector<std::string>& args) const {
  return KubectlAs({Env("KUBE_BIN") + "/kubectl", "--kubeconfig", Env("KUBECONFIG")}).Get(args);
}

std::string ImageCluster::NodeReady(const std::string& node) const {
  nlohmann::json n = GetJson({"node", node});
  if (n.is_null()) return "";
  nlohmann::json ready = ReadyCondition(n);
  return ready.is_null() ? "" : ready.value("status", "");
}

nlohmann::json ReadyCondition(const nlohmann::json& node) {
  if (!node.is_object() || !node.contains("status")) return nullptr;
  for (const auto& c : node["status"].value("conditions", nlohmann::json::array())) {
    if (c.value("type", "") == "Ready") return c;
  }
  return nullptr;
}

}  // namespace berth::testing
