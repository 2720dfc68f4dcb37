#include "agent/kubeadm.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <filesystem>
#include <functional>
#include <set>

#include "tests/fakes/agent_fakes.h"
#include "tests/testing/testing.h"

namespace berth::agent {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::string kToken = "abcdef.0123456789abcdef";
const std::string kHashA = "sha256:" + std::string(64, 'a');
const std::string kHashB =
    "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

std::set<std::string> KeysOf(const YAML::Node& map) {
  std::set<std::string> keys;
  for (const auto& kv : map) keys.insert(kv.first.as<std::string>());
  return keys;
}

std::string Text(const SecretBytes& s) { return std::string(s.view()); }

// ---- RenderJoinConfiguration ----

TEST(RenderJoinConfigurationTest, EveryFieldRoundTripsAndNothingElseIsRendered) {
  v1::KubeadmJoin join;
  join.set_api_server_endpoint("10.0.0.10:6443");
  join.set_token(kToken);
  join.add_ca_cert_hashes(kHashA);
  join.add_ca_cert_hashes(kHashB);
  join.set_kubernetes_version("v1.31.2");  // kubeadm takes it from the cluster, not from here

  YAML::Node doc = YAML::Load(Text(RenderJoinConfiguration(join, "node-1")));

  ASSERT_TRUE(doc.IsMap());
  EXPECT_EQ(KeysOf(doc), (std::set<std::string>{"apiVersion", "kind", "discovery",
                                                "nodeRegistration", "timeouts"}));
  EXPECT_EQ(doc["apiVersion"].as<std::string>(), "kubeadm.k8s.io/v1beta4");
  EXPECT_EQ(doc["kind"].as<std::string>(), "JoinConfiguration");

  ASSERT_TRUE(doc["discovery"].IsMap());
  EXPECT_EQ(KeysOf(doc["discovery"]), (std::set<std::string>{"bootstrapToken"}));
  YAML::Node bt = doc["discovery"]["bootstrapToken"];
  ASSERT_TRUE(bt.IsMap());
  EXPECT_EQ(KeysOf(bt), (std::set<std::string>{"apiServerEndpoint", "token", "caCertHashes"}));
  EXPECT_EQ(bt["apiServerEndpoint"].as<std::string>(), "10.0.0.10:6443");
  EXPECT_EQ(bt["token"].as<std::string>(), kToken);
  ASSERT_TRUE(bt["caCertHashes"].IsSequence());
  EXPECT_EQ(bt["caCertHashes"].as<std::vector<std::string>>(),
            (std::vector<std::string>{kHashA, kHashB}));

  ASSERT_TRUE(doc["nodeRegistration"].IsMap());
  EXPECT_EQ(KeysOf(doc["nodeRegistration"]), (std::set<std::string>{"name"}));
  EXPECT_EQ(doc["nodeRegistration"]["name"].as<std::string>(), "node-1");

  // One attempt's discovery is bounded; berth-agent retries the join itself.
  ASSERT_TRUE(doc["timeouts"].IsMap());
  EXPECT_EQ(KeysOf(doc["timeouts"]), (std::set<std::string>{"discovery"}));
  EXPECT_EQ(doc["timeouts"]["discovery"].as<std::string>(), "1m0s");
}

TEST(RenderJoinConfigurationTest, BracketedIpv6EndpointRoundTrips) {
  v1::KubeadmJoin join = GoodKubeadmJoin();
  join.set_api_server_endpoint("[fd00::10]:6443");
  YAML::Node doc = YAML::Load(Text(RenderJoinConfiguration(join, "node-1")));
  EXPECT_EQ(doc["discovery"]["bootstrapToken"]["apiServerEndpoint"].as<std::string>(),
            "[fd00::10]:6443");
}

// kubeadm decodes its config by converting YAML to JSON without type hints, so a plain
// scalar that YAML resolves to a number or a boolean ("123", "1e3", "no", "on") would reach
// kubeadm as a non-string and break the join. Valid node names can look like that; every
// string must therefore be rendered as an explicitly quoted scalar (yaml-cpp tag "!").
TEST(RenderJoinConfigurationTest, ScalarsThatLookLikeNumbersOrBooleansStayStrings) {
  for (const std::string name : {"123", "1e3", "1.5", "no", "on", "y", "true", "null", "0x1f"}) {
    SCOPED_TRACE(name);
    v1::KubeadmJoin join = GoodKubeadmJoin();
    join.set_token("123456.1234567890123456");
    YAML::Node doc = YAML::Load(Text(RenderJoinConfiguration(join, name)));
    YAML::Node node_name = doc["nodeRegistration"]["name"];
    EXPECT_EQ(node_name.Tag(), "!");
    EXPECT_EQ(node_name.as<std::string>(), name);
    YAML::Node token = doc["discovery"]["bootstrapToken"]["token"];
    EXPECT_EQ(token.Tag(), "!");
    EXPECT_EQ(token.as<std::string>(), "123456.1234567890123456");
  }
}

// ---- ValidateJoinTicket ----

v1::JoinTicket GoodTicket() {
  v1::JoinTicket t;
  *t.mutable_kubeadm() = GoodKubeadmJoin();
  return t;
}

TEST(ValidateJoinTicketTest, WellFormedDisklessTicketIsAccepted) {
  EXPECT_TRUE(ValidateJoinTicket(GoodTicket(), /*want_disk_key=*/false).ok());
}

TEST(ValidateJoinTicketTest, WellFormedTicketWithA32ByteDiskKeyIsAcceptedWhenWanted) {
  v1::JoinTicket t = GoodTicket();
  t.set_disk_key(std::string(32, '\x5a'));
  EXPECT_TRUE(ValidateJoinTicket(t, /*want_disk_key=*/true).ok());
}

TEST(ValidateJoinTicketTest, BracketedIpv6EndpointAndSeveralHashesAreAccepted) {
  v1::JoinTicket t = GoodTicket();
  t.mutable_kubeadm()->set_api_server_endpoint("[fd00::10]:6443");
  t.mutable_kubeadm()->add_ca_cert_hashes(kHashB);
  EXPECT_TRUE(ValidateJoinTicket(t, false).ok());
}

struct MalformedCase {
  std::string name;
  bool want_disk_key;
  std::function<void(v1::JoinTicket&)> mutate;
  std::string message;  // the whole expected message
};

std::vector<MalformedCase> MalformedCases() {
  auto token = [](std::string t) {
    return [t](v1::JoinTicket& x) { x.mutable_kubeadm()->set_token(t); };
  };
  auto endpoint = [](std::string e) {
    return [e](v1::JoinTicket& x) { x.mutable_kubeadm()->set_api_server_endpoint(e); };
  };
  auto hash = [](std::string h) {
    return [h](v1::JoinTicket& x) {
      x.mutable_kubeadm()->clear_ca_cert_hashes();
      x.mutable_kubeadm()->add_ca_cert_hashes(kHashA);
      x.mutable_kubeadm()->add_ca_cert_hashes(h);
    };
  };
  const std::string kTokenMsg =
      "malformed join ticket: bootstrap token is not [a-z0-9]{6}.[a-z0-9]{16}";
  auto hash_msg = [](const std::string& h) {
    return "malformed join ticket: CA certificate hash \"" + h + "\" is not sha256:<hex>";
  };
  auto endpoint_msg = [](const std::string& e) {
    return "malformed join ticket: API server endpoint \"" + e + "\" is not host:port";
  };
  return {
      {"missing kubeadm", false, [](v1::JoinTicket& t) { t.clear_kubeadm(); },
       "malformed join ticket: no kubeadm section"},
      {"empty endpoint", false, endpoint(""), endpoint_msg("")},
      {"endpoint without port", false, endpoint("10.0.0.10"), endpoint_msg("10.0.0.10")},
      {"endpoint port 0", false, endpoint("10.0.0.10:0"), endpoint_msg("10.0.0.10:0")},
      {"endpoint port 65536", false, endpoint("10.0.0.10:65536"), endpoint_msg("10.0.0.10:65536")},
      {"endpoint with a newline", false, endpoint("a:1\nkind: x"), endpoint_msg("a:1\nkind: x")},
      {"empty token", false, token(""), kTokenMsg},
      {"token without dot", false, token("abcdef0123456789abcdef"), kTokenMsg},
      {"token upper case", false, token("ABCDEF.0123456789ABCDEF"), kTokenMsg},
      {"token id too short", false, token("abcde.0123456789abcdef"), kTokenMsg},
      {"token secret too long", false, token("abcdef.0123456789abcdef0"), kTokenMsg},
      {"token trailing newline", false, token("abcdef.0123456789abcdef\n"), kTokenMsg},
      {"token with yaml", false, token("abcdef.0123456789abcdef\"\nkind: x"), kTokenMsg},
      {"no ca hashes", false,
       [](v1::JoinTicket& t) { t.mutable_kubeadm()->clear_ca_cert_hashes(); },
       "malformed join ticket: no CA certificate hashes"},
      {"hash without prefix", false, hash(std::string(64, 'a')), hash_msg(std::string(64, 'a'))},
      {"hash sha1 prefix", false, hash("sha1:" + std::string(40, 'a')),
       hash_msg("sha1:" + std::string(40, 'a'))},
      {"hash too short", false, hash("sha256:" + std::string(63, 'a')),
       hash_msg("sha256:" + std::string(63, 'a'))},
      {"hash upper case", false, hash("sha256:" + std::string(64, 'A')),
       hash_msg("sha256:" + std::string(64, 'A'))},
      {"empty hash", false, hash(""), hash_msg("")},
      {"disk key for diskless", false,
       [](v1::JoinTicket& t) { t.set_disk_key(std::string(32, '\x01')); },
       "malformed join ticket: a disk key for a diskless node"},
      {"disk key missing", true, [](v1::JoinTicket& t) { t.clear_disk_key(); },
       "malformed join ticket: disk key has 0 bytes, expected 32"},
      {"disk key too short", true,
       [](v1::JoinTicket& t) { t.set_disk_key(std::string(16, '\x01')); },
       "malformed join ticket: disk key has 16 bytes, expected 32"},
      {"disk key too long", true,
       [](v1::JoinTicket& t) { t.set_disk_key(std::string(33, '\x01')); },
       "malformed join ticket: disk key has 33 bytes, expected 32"},
  };
}

TEST(ValidateJoinTicketTest, MalformedTicketsAreInvalidArgumentNamingTheFieldButNeverTheToken) {
  for (const MalformedCase& c : MalformedCases()) {
    SCOPED_TRACE(c.name);
    v1::JoinTicket t = GoodTicket();
    if (c.want_disk_key) t.set_disk_key(std::string(32, '\x5a'));
    c.mutate(t);
    Status st = ValidateJoinTicket(t, c.want_disk_key);
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_THAT(st.message(), StartsWith("malformed join ticket: "));
    EXPECT_EQ(st.message(), c.message);
    // Neither the token under test nor its secret half may leak into the message.
    if (t.has_kubeadm() && !t.kubeadm().token().empty()) {
      EXPECT_THAT(st.message(), Not(HasSubstr(t.kubeadm().token())));
      EXPECT_THAT(st.message(), Not(HasSubstr("0123456789")));
    }
  }
}

// ---- RunKubeadmJoin ----

class RunKubeadmJoinTest : public ::testing::Test {
 protected:
  std::string ConfigPath() const { return root_.path() + "/run/berth/kubeadm-join.yaml"; }
  SecretBytes Config() const { return RenderJoinConfiguration(GoodKubeadmJoin(), "node-1"); }

  berth::testing::TempDir root_;
  FakeProcessRunner runner_;
};

TEST_F(RunKubeadmJoinTest, KubeadmReadsAPrivateConfigThatIsGoneAfterwards) {
  SecretBytes config = Config();
  Status st = RunKubeadmJoin(runner_, "/usr/bin/kubeadm", root_.path(), config);
  ASSERT_TRUE(st.ok()) << st.ToString();

  ASSERT_EQ(runner_.argvs.size(), 1u);
  EXPECT_THAT(runner_.argvs[0], ElementsAre("/usr/bin/kubeadm", "join", "--config", ConfigPath()));
  EXPECT_TRUE(runner_.envs[0].empty());
  const auto& seen = runner_.seen_configs[0];
  EXPECT_TRUE(seen.regular_file);
  EXPECT_EQ(seen.mode, 0600);
  EXPECT_EQ(seen.dir_mode, 0700);
  EXPECT_EQ(seen.content, Text(config));

  EXPECT_FALSE(std::filesystem::exists(ConfigPath()));
  // No temporary file of the atomic write is left beside it either.
  EXPECT_TRUE(std::filesystem::is_empty(root_.path() + "/run/berth"));
}

// The token's bytes are overwritten before the file is removed: a second link to the file,
// made while kubeadm ran, reads zeros afterwards.
TEST_F(RunKubeadmJoinTest, TheConfigsBytesAreZeroedBeforeItIsRemoved) {
  const std::string linked = root_.path() + "/linked";
  runner_.on_run = [&](const std::vector<std::string>& argv) {
    ASSERT_EQ(link(argv.back().c_str(), linked.c_str()), 0);
  };
  SecretBytes config = Config();
  ASSERT_TRUE(RunKubeadmJoin(runner_, "/usr/bin/kubeadm", root_.path(), config).ok());
  EXPECT_FALSE(std::filesystem::exists(ConfigPath()));
  EXPECT_EQ(berth::testing::MustRead(linked), std::string(config.size(), '\0'));
}

TEST_F(RunKubeadmJoinTest, AStaleConfigFromAnEarlierBootIsReplaced) {
  ASSERT_TRUE(MakeDirs(root_.path() + "/run/berth", 0700).ok());
  berth::testing::MustWrite(ConfigPath(), "stale: true\n", 0644);
  SecretBytes config = Config();
  ASSERT_TRUE(RunKubeadmJoin(runner_, "/usr/bin/kubeadm", root_.path(), config).ok());
  ASSERT_EQ(runner_.seen_configs.size(), 1u);
  EXPECT_EQ(runner_.seen_configs[0].mode, 0600);
  EXPECT_EQ(runner_.seen_configs[0].content, Text(config));
  EXPECT_FALSE(std::filesystem::exists(ConfigPath()));
}

TEST_F(RunKubeadmJoinTest, NonZeroExitIsAnErrorWithKubeadmsOutputAndTheFileIsStillRemoved) {
  runner_.result =
      ProcessResult{.exit_code = 1,
                    .signal = 0,
                    .output = "\n[preflight] Running pre-flight checks\nerror: boom\n\n"};
  Status st = RunKubeadmJoin(runner_, "/usr/bin/kubeadm", root_.path(), Config());
  // UNAVAILABLE: a join that failed may be tried again (berth-agent does, after clearing it).
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_EQ(
      st.message(),
      "kubeadm join failed (exit code 1): [preflight] Running pre-flight checks\nerror: boom");
  EXPECT_EQ(runner_.argvs.size(), 1u);
  EXPECT_EQ(runner_.seen_configs[0].mode, 0600);
  EXPECT_FALSE(std::filesystem::exists(ConfigPath()));
}

TEST_F(RunKubeadmJoinTest, KilledKubeadmIsAnError) {
  runner_.result = ProcessResult{.exit_code = -1, .signal = 9, .output = ""};
  Status st = RunKubeadmJoin(runner_, "/usr/bin/kubeadm", root_.path(), Config());
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_EQ(st.message(), "kubeadm join failed (killed by signal 9): ");
  EXPECT_FALSE(std::filesystem::exists(ConfigPath()));
}

TEST_F(RunKubeadmJoinTest, OnlyTheLast2000CharactersOfLongOutputAreKept) {
  std::string tail = std::string(1996, 'b') + "TAIL";
  runner_.result =
      ProcessResult{.exit_code = 2, .signal = 0, .output = std::string(5000, 'a') + tail};
  Status st = RunKubeadmJoin(runner_, "/usr/bin/kubeadm", root_.path(), Config());
  EXPECT_EQ(st.message(), "kubeadm join failed (exit code 2): " + tail);
}

// kubeadm quotes what it was given in some errors; the token never reaches a log or a status.
TEST_F(RunKubeadmJoinTest, SecretsInKubeadmsOutputAreRedacted) {
  runner_.result = ProcessResult{
      .exit_code = 1,
      .signal = 0,
      .output = "token " + kToken + " refused; again: " + kToken + kToken + "\n"};
  Status st = RunKubeadmJoin(runner_, "/usr/bin/kubeadm", root_.path(), Config(), nullptr,
                             {kToken, ""});
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_EQ(st.message(), "kubeadm join failed (exit code 1): token <redacted> refused; again: "
                          "<redacted><redacted>");
}

TEST_F(RunKubeadmJoinTest, KubeadmThatCannotStartIsAnErrorAndTheFileIsStillRemoved) {
  runner_.result = NotFound("starting /nonexistent/kubeadm: No such file or directory");
  Status st = RunKubeadmJoin(runner_, "/nonexistent/kubeadm", root_.path(), Config());
  EXPECT_EQ(st.code(), Code::kNotFound);
  EXPECT_EQ(st.message(),
            "running kubeadm: starting /nonexistent/kubeadm: No such file or directory");
  ASSERT_EQ(runner_.argvs.size(), 1u);
  EXPECT_EQ(runner_.argvs[0][0], "/nonexistent/kubeadm");
  EXPECT_FALSE(std::filesystem::exists(ConfigPath()));
}

TEST_F(RunKubeadmJoinTest, AnUnwritableRootFailsBeforeKubeadmRuns) {
  berth::testing::MustWrite(root_.path() + "/run", "a file where a directory should be");
  Status st = RunKubeadmJoin(runner_, "/usr/bin/kubeadm", root_.path(), Config());
  EXPECT_FALSE(st.ok());
  EXPECT_THAT(st.message(), HasSubstr(root_.path() + "/run"));
  EXPECT_TRUE(runner_.argvs.empty());
}

// ---- ClearFailedJoin, StartKubelet ----

class ClearFailedJoinTest : public ::testing::Test {
 protected:
  void Write(const std::string& path) {
    ASSERT_TRUE(MakeDirs(root_.path() + path.substr(0, path.rfind('/'))).ok());
    berth::testing::MustWrite(root_.path() + path, "x");
  }
  bool Exists(const std::string& path) const {
    return std::filesystem::exists(root_.path() + path);
  }

  berth::testing::TempDir root_;
  FakeProcessRunner runner_;
};

TEST_F(ClearFailedJoinTest, StopsTheKubeletAndRemovesExactlyWhatAJoinLeavesBeforeItsBootstrap) {
  for (const char* f : kJoinLeftovers) Write(f);
  // Not kubeadm's: the kubelet's own keys (a kubelet-client-current.pem would make the node
  // joined), the state disk's other files, etcd's PKI.
  Write("/var/lib/kubelet/pki/kubelet.crt");
  Write("/etc/kubernetes/pki/etcd/ca.crt");
  Write("/etc/kubernetes/other.conf");

  Status st = ClearFailedJoin(runner_, root_.path(), "/bin/systemctl", "kubelet.service");
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_THAT(runner_.argvs, ElementsAre(ElementsAre("/bin/systemctl", "stop", "kubelet.service")));
  for (const char* f : kJoinLeftovers) EXPECT_FALSE(Exists(f)) << f;
  EXPECT_TRUE(Exists("/var/lib/kubelet/pki/kubelet.crt"));
  EXPECT_TRUE(Exists("/etc/kubernetes/pki/etcd/ca.crt"));
  EXPECT_TRUE(Exists("/etc/kubernetes/other.conf"));
  EXPECT_TRUE(Exists("/etc/kubernetes/pki"));
}

TEST_F(ClearFailedJoinTest, NothingLeftAndNoKubeletUnitIsFine) {
  Status st = ClearFailedJoin(runner_, root_.path(), "/bin/systemctl", "");
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_TRUE(runner_.argvs.empty());
}

TEST_F(ClearFailedJoinTest, AJoinedNodeIsNeverCleared) {
  for (const char* f : kJoinLeftovers) Write(f);
  Write(kKubeletClientCertPath);
  EXPECT_TRUE(KubeletBootstrapped(root_.path()));
  Status st = ClearFailedJoin(runner_, root_.path(), "/bin/systemctl", "kubelet.service");
  EXPECT_EQ(st.code(), Code::kFailedPrecondition);
  EXPECT_EQ(st.message(), root_.path() + "/etc/kubernetes/kubelet.conf and " + root_.path() +
                              "/var/lib/kubelet/pki/kubelet-client-current.pem exist: this node "
                              "has joined; not clearing it");
  EXPECT_TRUE(runner_.argvs.empty());
  for (const char* f : kJoinLeftovers) EXPECT_TRUE(Exists(f)) << f;
  EXPECT_TRUE(Exists(kKubeletClientCertPath));
}

// The kubelet writes kubelet.conf before the certificate it names: alone, it is a leftover.
TEST_F(ClearFailedJoinTest, AKubeletConfWithoutItsCertificateIsALeftover) {
  Write(kKubeletConfPath);
  EXPECT_FALSE(KubeletBootstrapped(root_.path()));
  ASSERT_TRUE(ClearFailedJoin(runner_, root_.path(), "/bin/systemctl", "").ok());
  EXPECT_FALSE(Exists(kKubeletConfPath));
}

TEST_F(ClearFailedJoinTest, AKubeletThatDoesNotStopIsUnavailableAndNothingIsRemoved) {
  for (const char* f : kJoinLeftovers) Write(f);
  runner_.result = ProcessResult{.exit_code = 1, .signal = 0, .output = "Failed to stop\n"};
  Status st = ClearFailedJoin(runner_, root_.path(), "/bin/systemctl", "kubelet.service");
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_EQ(st.message(),
            "/bin/systemctl stop kubelet.service failed (exit code 1): Failed to stop");
  for (const char* f : kJoinLeftovers) EXPECT_TRUE(Exists(f)) << f;
}

TEST(StartKubeletTest, StartsTheUnitAndSaysWhySystemctlFailed) {
  FakeProcessRunner runner;
  ASSERT_TRUE(StartKubelet(runner, "/bin/systemctl", "kubelet.service").ok());
  EXPECT_THAT(runner.argvs, ElementsAre(ElementsAre("/bin/systemctl", "start", "kubelet.service")));

  runner.result = ProcessResult{.exit_code = 5, .signal = 0, .output = "Unit not found.\n"};
  Status st = StartKubelet(runner, "/bin/systemctl", "kubelet.service");
  EXPECT_EQ(st.code(), Code::kUnavailable);
  EXPECT_EQ(st.message(),
            "/bin/systemctl start kubelet.service failed (exit code 5): Unit not found.");
}

}  // namespace
}  // namespace berth::agent
