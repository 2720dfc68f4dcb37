#include "tests/testing/kube_cluster.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <sstream>

#include "common/bytes.h"
#include "common/secret.h"

namespace berth::testing {

namespace {

std::string ControlPlaneScript() { return SourceDir() + "/kube/control-plane"; }

std::string Tail(const std::string& text, size_t n = 3000) {
  return text.size() > n ? "..." + text.substr(text.size() - n) : text;
}

// The guardian: a shell, detached from this process (its own session, and a grandchild, so
// test_main.cc's killer of children does not take it first), reading a pipe whose only
// writer is this process: "up PID" while `kube/control-plane up` runs, "up-done" once it
// returned, "done" once this process stopped the control plane itself. End of file without
// "done" means the test process is gone: stop a running `up` (its own trap stops what it had
// started), bring the control plane down and remove its directory (unless BERTH_KEEP_TEMP).
constexpr char kGuardianScript[] = R"(exec >/dev/null 2>&1
up=
while read -r word arg; do
  case $word in
    done) exit 0 ;;
    up) up=$arg ;;
    up-done) up= ;;
  esac
done
if [ -n "$up" ] && tr '\0' ' ' <"/proc/$up/cmdline" | grep -qF "control-plane up $1 "; then
  kill -TERM "$up"
  i=0
  while kill -0 "$up" && [ $i -lt 600 ]; do sleep 0.1; i=$((i + 1)); done
fi
"$0" down "$1"
[ -n "$BERTH_KEEP_TEMP" ] || rm -rf "$2")";

// Starts the guardian; returns the pipe's write end, or -1.
int StartGuardian(const std::string& dir, const std::string& temp_root) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) return -1;
  // Everything the child needs is made before fork: after it, only async-signal-safe calls.
  const std::string script = ControlPlaneScript();
  std::vector<const char*> argv = {"/bin/sh", "-c", kGuardianScript, script.c_str(),
                                   dir.c_str(), temp_root.c_str(), nullptr};
  pid_t child = fork();
  if (child < 0) {
    close(fds[0]);
    close(fds[1]);
    return -1;
  }
  if (child == 0) {
    setsid();
    if (fork() != 0) _exit(0);  // the grandchild goes on, adopted by init
    dup2(fds[0], 0);           // clears close-on-exec on stdin
    close_range(3, ~0U, 0);    // the write end among them: only the test process holds it
    execv(argv[0], const_cast<char* const*>(argv.data()));
    _exit(127);
  }
  int status = 0;
  waitpid(child, &status, 0);
  close(fds[0]);
  return fds[1];
}

Result<std::string> Base64Decode(const std::string& in) {
  if (in.size() % 4 != 0) return InvalidArgument("not base64");
  std::string out(in.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return InvalidArgument("not base64");
  size_t pad = (!in.empty() && in.back() == '=') + (in.size() > 1 && in[in.size() - 2] == '=');
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

}  // namespace

KubeCluster::KubeCluster() {
  dir_ = temp_.Join("control-plane");
  if (!Up() && error_.empty()) error_ = "kube/control-plane up failed";
}

bool KubeCluster::Up() {
  RealProcessRunner runner;
  // The binaries: kube/build prints their directory (and nothing else on stdout).
  auto built = runner.Run({"/bin/sh", "-c", "\"$0\" 2>\"$1\"", SourceDir() + "/kube/build",
                           temp_.Join("kube-build.log")});
  if (!built.ok() || !built->success()) {
    error_ = "kube/build failed: " + (built.ok() ? Tail(MustRead(temp_.Join("kube-build.log")))
                                                 : built.status().ToString());
    return false;
  }
  bin_ = TrimWhitespace(built->output);

  guardian_fd_ = StartGuardian(dir_, temp_.path());
  if (guardian_fd_ < 0) {
    error_ = "could not start the control plane's guardian";
    return false;
  }
  // `up` runs as long as it takes (up to its own timeouts); the guardian knows it meanwhile.
  const std::string up_log = temp_.Join("control-plane-up.log");
  auto up = Subprocess::Start({ControlPlaneScript(), "up", dir_, "--bin", bin_}, up_log);
  if (!up.ok()) {
    error_ = "kube/control-plane up: " + up.status().ToString();
    return false;
  }
  const std::string started = "up " + std::to_string(up->pid()) + "\n";
  (void)!write(guardian_fd_, started.data(), started.size());
  ProcessResult result = up->Wait(std::chrono::minutes(10));
  (void)!write(guardian_fd_, "up-done\n", 8);
  up_ = true;  // whatever it started, down stops
  if (!result.success()) {
    error_ = "kube/control-plane up " + dir_ + " failed (" + result.Describe() + "):\n" +
             Tail(MustRead(up_log));
    return false;
  }
  auto env = runner.Run({ControlPlaneScript(), "env", dir_});
  if (!env.ok() || !env->success()) {
    error_ = "kube/control-plane env failed: " + (env.ok() ? env->output : env.status().ToString());
    return false;
  }
  // "export NAME=VALUE" lines; our values are paths, URLs and hashes, which %q leaves bare.
  std::map<std::string, std::string> vars;
  size_t at = 0;
  while (at < env->output.size()) {
    size_t end = env->output.find('\n', at);
    if (end == std::string::npos) end = env->output.size();
    std::string line = env->output.substr(at, end - at);
    at = end + 1;
    if (line.rfind("export ", 0) != 0) continue;
    size_t eq = line.find('=');
    if (eq == std::string::npos) continue;
    vars[line.substr(7, eq - 7)] = line.substr(eq + 1);
  }
  for (const char* name : {"KUBECONFIG", "BERTHD_KUBECONFIG", "KUBE_APISERVER",
                           "KUBE_APISERVER_ENDPOINT", "KUBE_CA", "KUBE_CA_CERT_HASH", "KUBE_RELEASE"}) {
    const std::string& v = vars[name];
    if (v.empty() || v.find_first_of("'\"\\$ ") != std::string::npos) {
      error_ = std::string("kube/control-plane env gave no plain ") + name + ":\n" + env->output;
      return false;
    }
  }
  admin_kubeconfig_ = vars["KUBECONFIG"];
  berthd_kubeconfig_ = vars["BERTHD_KUBECONFIG"];
  api_server_ = vars["KUBE_APISERVER"];
  endpoint_ = vars["KUBE_APISERVER_ENDPOINT"];
  ca_cert_ = vars["KUBE_CA"];
  ca_cert_hash_ = vars["KUBE_CA_CERT_HASH"];
  release_ = vars["KUBE_RELEASE"];
  return true;
}

KubeCluster::~KubeCluster() {
  if (up_) {
    RealProcessRunner runner;
    auto down = runner.Run({ControlPlaneScript(), "down", dir_});
    if (!down.ok() || !down->success()) {
      ADD_FAILURE() << "kube/control-plane down " << dir_ << ": "
                    << (down.ok() ? down->output : down.status().ToString());
    }
  }
  if (guardian_fd_ >= 0) {
    // Stopped here (or never started): the guardian has nothing to do.
    (void)!write(guardian_fd_, "done\n", 5);
    close(guardian_fd_);
  }
}

namespace {

std::mutex shared_mu;
std::unique_ptr<KubeCluster> shared;  // GUARDED_BY(shared_mu)

// Stops the shared control plane when the tests of this process are over.
class SharedKubeClusterEnvironment : public ::testing::Environment {
 public:
  void TearDown() override {
    std::lock_guard lock(shared_mu);
    shared.reset();
  }
};

}  // namespace

KubeCluster& KubeCluster::Shared() {
  std::lock_guard lock(shared_mu);
  if (!shared) {
    static bool registered = false;
    if (!registered) {
      ::testing::AddGlobalTestEnvironment(new SharedKubeClusterEnvironment);
      registered = true;
    }
    shared = std::make_unique<KubeCluster>();
  }
  return *shared;
}

ProcessResult KubeCluster::Kubectl(const std::vector<std::string>& args,
                                   const std::string& kubeconfig) const {
  const std::string err = temp_.Join("kubectl.stderr");
  std::vector<std::string> argv = {"/bin/sh", "-c", "\"$@\" 2>\"$0\"", err, Binary("kubectl"),
                                   "--kubeconfig",
                                   kubeconfig.empty() ? admin_kubeconfig_ : kubeconfig,
                                   "--request-timeout", "30s"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = RealProcessRunner().Run(argv);
  if (!r.ok()) {
    ADD_FAILURE() << "kubectl: " << r.status().ToString();
    return {};
  }
  auto said = ReadFile(err);
  if (said.ok() && !TrimWhitespace(*said).empty()) r->output += "--- stderr\n" + *said;
  return *r;
}

nlohmann::json KubeCluster::KubectlJson(const std::vector<std::string>& args) const {
  std::vector<std::string> with = args;
  with.insert(with.end(), {"-o", "json"});
  ProcessResult r = Kubectl(with);
  std::string json = r.output.substr(0, r.output.find("--- stderr\n"));
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (!r.success() || j.is_discarded()) {
    ADD_FAILURE() << "kubectl " << ::testing::PrintToString(args) << ": " << r.Describe() << "\n"
                  << r.output;
    return nullptr;
  }
  return j;
}

std::vector<nlohmann::json> KubeCluster::BerthTokens(const std::string& node) const {
  std::string selector = "app.kubernetes.io/managed-by=berth";
  if (!node.empty()) selector += ",berth.dev/node=" + node;
  nlohmann::json list = KubectlJson({"-n", "kube-system", "get", "secrets", "-l", selector});
  std::vector<nlohmann::json> out;
  if (!list.is_object() || !list["items"].is_array()) return out;
  for (nlohmann::json item : list["items"]) {
    if (item.contains("data") && item["data"].is_object()) {
      for (auto& [key, value] : item["data"].items()) {
        auto decoded = Base64Decode(value.get<std::string>());
        EXPECT_TRUE(decoded.ok()) << "data." << key << " of " << item["metadata"]["name"];
        value = decoded.ok() ? *decoded : "";
      }
    }
    out.push_back(std::move(item));
  }
  std::stable_sort(out.begin(), out.end(), [](const nlohmann::json& a, const nlohmann::json& b) {
    return a["metadata"]["creationTimestamp"].get<std::string>() <
           b["metadata"]["creationTimestamp"].get<std::string>();
  });
  return out;
}

void KubeCluster::DeleteBerthTokens() const {
  ProcessResult r = Kubectl({"-n", "kube-system", "delete", "secrets", "-l",
                             "app.kubernetes.io/managed-by=berth", "--ignore-not-found"});
  EXPECT_TRUE(r.success()) << r.output;
}

std::vector<nlohmann::json> KubeCluster::KubeadmTokens() const {
  auto r = RealProcessRunner().Run({"/bin/sh", "-c", "\"$@\" 2>/dev/null", "sh", Binary("kubeadm"),
                                    "token", "list", "-o", "json", "--kubeconfig",
                                    admin_kubeconfig_});
  std::vector<nlohmann::json> out;
  if (!r.ok() || !r->success()) {
    ADD_FAILURE() << "kubeadm token list failed";
    return out;
  }
  // A stream of JSON objects, one per token.
  std::istringstream in(r->output);
  while (in >> std::ws && in.peek() != EOF) {
    nlohmann::json j;
    try {
      in >> j;
    } catch (const nlohmann::json::exception&) {
      ADD_FAILURE() << "kubeadm token list -o json: not a stream of JSON objects";
      break;
    }
    std::string token = j.value("token", "");
    j["id"] = token.substr(0, token.find('.'));
    j.erase("token");
    WipeString(token);
    out.push_back(std::move(j));
  }
  WipeString(r->output);
  return out;
}

std::string KubeCluster::IdentityWithout(
    const std::string& name, const std::vector<std::pair<std::string, std::string>>& drop) {
  const std::string identities = temp_.Join("identities");
  EXPECT_TRUE(MakeDirs(identities, 0700).ok());
  const std::string kubeconfig = identities + "/" + name + ".conf";
  if (!std::filesystem::exists(kubeconfig)) {  // minted once; later calls change its RBAC
    auto minted = RealProcessRunner().Run({SourceDir() + "/kube/berthd-kubeconfig", "--out",
                                           kubeconfig, "--name", name, "--config",
                                           dir_ + "/kubeadm.yaml", "--bin", bin_});
    if (!minted.ok() || !minted->success()) {
      ADD_FAILURE() << "kube/berthd-kubeconfig --name " << name << ": "
                    << (minted.ok() ? minted->output : minted.status().ToString());
      return "";
    }
  }
  // kube/berthd-rbac.yaml's Roles and RoleBindings, for `name`, without `drop`.
  std::vector<YAML::Node> docs;
  try {
    docs = YAML::LoadAllFromFile(SourceDir() + "/kube/berthd-rbac.yaml");
  } catch (const YAML::Exception& e) {
    ADD_FAILURE() << "kube/berthd-rbac.yaml: " << e.what();
    return "";
  }
  // What the identity may do, as {verb, resource, namespace, name} for `kubectl auth can-i`.
  std::vector<std::pair<std::vector<std::string>, bool>> expect;
  YAML::Emitter out;
  for (YAML::Node doc : docs) {
    const std::string kind = doc["kind"].as<std::string>();
    if (kind != "Role" && kind != "RoleBinding") continue;
    std::string role = doc["metadata"]["name"].as<std::string>();
    const std::string suffix = role.substr(role.rfind(':'));
    doc["metadata"]["name"] = "berth:" + name + suffix;
    if (kind == "RoleBinding") {
      doc["roleRef"]["name"] = "berth:" + name + suffix;
      doc["subjects"][0]["name"] = name;
    } else {
      const std::string ns = doc["metadata"]["namespace"].as<std::string>();
      YAML::Node rules(YAML::NodeType::Sequence);
      for (YAML::Node rule : doc["rules"]) {
        YAML::Node verbs(YAML::NodeType::Sequence);
        const std::string resource = rule["resources"][0].as<std::string>();
        const std::string resource_name =
            rule["resourceNames"] ? rule["resourceNames"][0].as<std::string>() : "";
        for (const auto& v : rule["verbs"]) {
          const std::string verb = v.as<std::string>();
          const bool dropped =
              std::find(drop.begin(), drop.end(), std::make_pair(resource, verb)) != drop.end();
          if (!dropped) verbs.push_back(verb);
          std::string what = resource + (resource_name.empty() ? "" : "/" + resource_name);
          expect.push_back({{verb, what, "-n", ns}, !dropped});
        }
        rule["verbs"] = verbs;
        if (verbs.size() > 0) rules.push_back(rule);  // a rule needs a verb
      }
      doc["rules"] = rules;
    }
    out << doc;
  }
  MustWrite(identities + "/" + name + "-rbac.yaml", out.c_str());
  ProcessResult applied = Kubectl({"apply", "-f", identities + "/" + name + "-rbac.yaml"});
  if (!applied.success()) {
    ADD_FAILURE() << "kubectl apply (" << name << "'s RBAC): " << applied.output;
    return "";
  }
  // RBAC takes effect once the API server's informers have it.
  bool in_force = WaitFor(
      [&] {
        for (const auto& [can_i, allowed] : expect) {
          std::vector<std::string> args = {"auth", "can-i"};
          args.insert(args.end(), can_i.begin(), can_i.end());
          args.insert(args.end(), {"--as", name});
          ProcessResult r = Kubectl(args);
          if ((r.output.rfind("yes", 0) == 0) != allowed) return false;
        }
        return true;
      },
      std::chrono::seconds(30));
  EXPECT_TRUE(in_force) << "the RBAC of " << name << " did not take effect";
  return in_force ? kubeconfig : "";
}

std::string KubeadmJoinDryRun() { return SourceDir() + "/kube/kubeadm-join-dry-run"; }

std::vector<std::string> KubeadmJoinDryRunEnv(const KubeCluster& cluster,
                                              const std::string& record_dir) {
  return {"BERTH_KUBEADM=" + cluster.Binary("kubeadm"), "BERTH_KUBEADM_RECORD_DIR=" + record_dir};
}

std::vector<nlohmann::json> StandinTokenSecrets(const std::vector<nlohmann::json>& records) {
  std::vector<nlohmann::json> created;
  for (const auto& r : records) {
    if (r["method"] == "POST" && r["code"] == 201 &&
        r["object"].value("type", "") == "bootstrap.kubernetes.io/token") {
      created.push_back(r["object"]);
    }
  }
  return created;
}

std::vector<nlohmann::json> KubeadmJoinRecords(const std::string& record_dir) {
  std::vector<nlohmann::json> out;
  for (int n = 1;; ++n) {
    const std::string dir = record_dir + "/join-" + std::to_string(n);
    if (!std::filesystem::exists(dir)) break;
    auto text = ReadFile(dir + "/record.json");
    // A join still running (or killed) has no record.json yet.
    nlohmann::json j = text.ok() ? nlohmann::json::parse(*text, nullptr, false) : nlohmann::json();
    if (j.is_discarded() || !j.is_object()) j = nlohmann::json::object();
    auto said = ReadFile(dir + "/output.txt");
    j["output"] = said.ok() ? *said : "";
    j["dir"] = dir;
    out.push_back(std::move(j));
  }
  return out;
}

}  // namespace berth::testing
