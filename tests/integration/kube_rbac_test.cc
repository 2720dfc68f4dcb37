// berthd against the real Kubernetes API server with its least-privileged identity
// (kube/berthd-rbac.yaml, docs/kubernetes.md): what that identity may and may not do, that
// berthd works with exactly it, and that with one permission missing berthd fails cleanly:
// the API server's 403 in berthd's log, the node told UNAVAILABLE (it retries; another replica
// or a fixed Role serves it), and no bootstrap token left behind. Revocation deletes a node's
// tokens, and only berth's, with real deletes.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "tests/integration/cluster.h"
#include "tests/integration/etcd_testbed.h"
#include "tests/testing/kube_cluster.h"

namespace berth::testing {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// `text` as berthd's audit line quotes a reason.
std::string AuditQuoted(const std::string& text) {
  std::string out;
  for (char c : text) {
    if (c == '"' || c == '\\') out.push_back('\\');
    out.push_back(c);
  }
  return out;
}

constexpr char kPolicyDenied[] =
    "ValidatingAdmissionPolicy 'berth-berthd-bootstrap-tokens-only' with binding "
    "'berth-berthd-bootstrap-tokens-only' denied request: ";

// What `kubectl auth can-i` says for berthd's own identity.
bool BerthdCan(const KubeCluster& kube, const std::vector<std::string>& what) {
  std::vector<std::string> args = {"auth", "can-i"};
  args.insert(args.end(), what.begin(), what.end());
  ProcessResult r = kube.Kubectl(args, kube.berthd_kubeconfig());
  EXPECT_TRUE(r.output.rfind("yes\n", 0) == 0 || r.output.rfind("no\n", 0) == 0) << r.output;
  return r.output.rfind("yes\n", 0) == 0;
}

TEST(BerthdIdentityTest, ItMayDoWhatBerthdDoesAndNothingElse) {
  KubeCluster& kube = KubeCluster::Shared();
  ASSERT_TRUE(kube.ok()) << kube.error();
  ProcessResult whoami = kube.Kubectl({"auth", "whoami", "-o", "jsonpath={.status.userInfo.username}"},
                                      kube.berthd_kubeconfig());
  EXPECT_EQ(whoami.output, "berthd");
  // Bootstrap tokens: create (a join), list and delete (a node's, at revocation).
  for (const char* verb : {"create", "list", "delete"}) {
    EXPECT_TRUE(BerthdCan(kube, {verb, "secrets", "-n", "kube-system"})) << verb;
  }
  // Not reading one by name, watching, changing, or deleting them all at once.
  for (const char* verb : {"get", "watch", "update", "patch", "deletecollection"}) {
    EXPECT_FALSE(BerthdCan(kube, {verb, "secrets", "-n", "kube-system"})) << verb;
  }
  // Secrets nowhere else.
  for (const char* ns : {"default", "kube-public", "kube-node-lease"}) {
    EXPECT_FALSE(BerthdCan(kube, {"list", "secrets", "-n", ns})) << ns;
    EXPECT_FALSE(BerthdCan(kube, {"create", "secrets", "-n", ns})) << ns;
  }
  EXPECT_FALSE(BerthdCan(kube, {"list", "secrets", "--all-namespaces"}));
  // Discovery: cluster-info, read, and no other ConfigMap.
  EXPECT_TRUE(BerthdCan(kube, {"get", "configmaps/cluster-info", "-n", "kube-public"}));
  EXPECT_FALSE(BerthdCan(kube, {"update", "configmaps/cluster-info", "-n", "kube-public"}));
  EXPECT_FALSE(BerthdCan(kube, {"get", "configmaps/kube-root-ca.crt", "-n", "kube-public"}));
  EXPECT_FALSE(BerthdCan(kube, {"list", "configmaps", "-n", "kube-public"}));
  EXPECT_FALSE(BerthdCan(kube, {"get", "configmaps/kubeadm-config", "-n", "kube-system"}));
  // Nothing cluster-wide.
  EXPECT_FALSE(BerthdCan(kube, {"list", "nodes"}));
  EXPECT_FALSE(BerthdCan(kube, {"create", "certificatesigningrequests"}));
  EXPECT_FALSE(BerthdCan(kube, {"create", "serviceaccounts/token", "-n", "kube-system"}));
  EXPECT_FALSE(BerthdCan(kube, {"list", "namespaces"}));
  EXPECT_FALSE(BerthdCan(kube, {"create", "clusterrolebindings"}));
}

TEST(BerthdIdentityTest, ItsAdmissionPolicyLetsItWriteBerthsBootstrapTokensOnly) {
  KubeCluster& kube = KubeCluster::Shared();
  ASSERT_TRUE(kube.ok()) << kube.error();
  kube.DeleteBerthTokens();
  TempDir dir;
  // `kubectl create -f` of `yaml` as berthd: its output.
  auto create_as_berthd = [&](const std::string& name, const std::string& yaml) {
    MustWrite(dir.Join(name + ".yaml"), yaml);
    return kube.Kubectl({"create", "-f", dir.Join(name + ".yaml")}, kube.berthd_kubeconfig());
  };
  auto token_yaml = [](const std::string& id, const std::string& labels,
                       const std::string& extra) {
    return "apiVersion: v1\nkind: Secret\ntype: bootstrap.kubernetes.io/token\n"
           "metadata: {name: bootstrap-token-" + id + ", namespace: kube-system, labels: {" +
           labels + "}}\nstringData: {token-id: " + id + ", token-secret: 0123456789abcdef, "
           "usage-bootstrap-authentication: 'true', usage-bootstrap-signing: 'true'" + extra + "}\n";
  };
  const std::string berth_labels = "app.kubernetes.io/managed-by: berth, berth.dev/node: n1";
  const std::string expiry = ", expiration: '2099-01-01T00:00:00Z'";
  const std::string node_group =
      ", auth-extra-groups: 'system:bootstrappers:kubeadm:default-node-token'";

  ProcessResult opaque = kube.Kubectl(
      {"-n", "kube-system", "create", "secret", "generic", "berth-probe", "--from-literal=k=v"},
      kube.berthd_kubeconfig());
  EXPECT_FALSE(opaque.success());
  EXPECT_THAT(opaque.output,
              HasSubstr(std::string(kPolicyDenied) +
                        "berthd may only write Secrets of type bootstrap.kubernetes.io/token, "
                        "not Opaque"));
  // A ServiceAccount token Secret would be filled by the token controller with a token of a
  // kube-system account: the way from "create secrets" to that account's powers. Refused.
  ProcessResult sa = create_as_berthd(
      "sa", "apiVersion: v1\nkind: Secret\ntype: kubernetes.io/service-account-token\n"
            "metadata: {name: berth-probe-sa, namespace: kube-system, annotations: "
            "{kubernetes.io/service-account.name: clusterrole-aggregation-controller}}\n");
  EXPECT_FALSE(sa.success());
  EXPECT_THAT(sa.output, HasSubstr(std::string(kPolicyDenied) +
                                   "berthd may only write Secrets of type "
                                   "bootstrap.kubernetes.io/token, not "
                                   "kubernetes.io/service-account-token"));
  // A token for another group than kubeadm's joining nodes.
  ProcessResult group = create_as_berthd(
      "group", token_yaml("rbac01", berth_labels,
                          expiry + ", auth-extra-groups: 'system:bootstrappers:kubeadm:"
                                   "default-node-token,system:bootstrappers:elsewhere'"));
  EXPECT_FALSE(group.success());
  EXPECT_THAT(group.output, HasSubstr(std::string(kPolicyDenied) +
                                      "berthd's bootstrap tokens carry exactly the group "
                                      "system:bootstrappers:kubeadm:default-node-token"));
  // A token that never expires.
  ProcessResult forever = create_as_berthd("forever", token_yaml("rbac02", berth_labels, node_group));
  EXPECT_FALSE(forever.success());
  EXPECT_THAT(forever.output, HasSubstr(std::string(kPolicyDenied) +
                                        "berthd's bootstrap tokens must expire"));
  // One without berth's label.
  ProcessResult unlabelled =
      create_as_berthd("unlabelled", token_yaml("rbac03", "berth.dev/node: n1", expiry + node_group));
  EXPECT_FALSE(unlabelled.success());
  EXPECT_THAT(unlabelled.output,
              HasSubstr(std::string(kPolicyDenied) +
                        "berthd may only write bootstrap tokens labelled "
                        "app.kubernetes.io/managed-by=berth"));
  EXPECT_TRUE(kube.BerthTokens().empty());
  // kubeadm's own token (kube/control-plane's `kubeadm init phase bootstrap-token`) is not
  // berth's: berthd may not delete it.
  nlohmann::json all = kube.KubectlJson(
      {"-n", "kube-system", "get", "secrets", "--field-selector", "type=bootstrap.kubernetes.io/token",
       "-l", "!app.kubernetes.io/managed-by"});
  ASSERT_TRUE(all.is_object());
  ASSERT_GE(all["items"].size(), 1u);
  const std::string kubeadms = all["items"][0]["metadata"]["name"];
  ProcessResult theirs = kube.Kubectl({"-n", "kube-system", "delete", "secret", kubeadms},
                                      kube.berthd_kubeconfig());
  EXPECT_FALSE(theirs.success());
  EXPECT_THAT(theirs.output, HasSubstr(std::string(kPolicyDenied) +
                                       "berthd may only write bootstrap tokens labelled "
                                       "app.kubernetes.io/managed-by=berth"));
  EXPECT_TRUE(kube.Kubectl({"-n", "kube-system", "get", "secret", kubeadms}).success());
  // A token as berthd makes them: created, and deleted.
  ProcessResult ours =
      create_as_berthd("ours", token_yaml("rbac04", berth_labels, expiry + node_group));
  EXPECT_TRUE(ours.success()) << ours.output;
  ASSERT_EQ(kube.BerthTokens().size(), 1u);
  ProcessResult gone = kube.Kubectl({"-n", "kube-system", "delete", "secret", "bootstrap-token-rbac04"},
                                    kube.berthd_kubeconfig());
  EXPECT_TRUE(gone.success()) << gone.output;
  EXPECT_TRUE(kube.BerthTokens().empty());
}

// A node joining through a berthd that runs as `identity`; the agent retries without limit.
class MissingPermissionTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(cluster_.StartKubeApiServer());
    ASSERT_TRUE(cluster_.WritePolicyFromNode());
  }
  bool StartBerthdAs(const std::string& identity,
                     const std::vector<std::pair<std::string, std::string>>& drop,
                     const std::vector<std::string>& flags = {}) {
    const std::string kubeconfig = cluster_.kube().IdentityWithout(identity, drop);
    if (kubeconfig.empty()) return false;
    cluster_.UseBerthdKubeconfig(kubeconfig);
    if (!cluster_.StartBerthd(0, flags)) return false;
    cluster_.WriteEnrolment(cluster_.BaseEnrolment());
    return true;
  }
  std::string AgentLog() const { return cluster_.dir().Join("agent.log"); }
  HostCluster cluster_;
};

TEST_F(MissingPermissionTest, WithoutCreateTheNodeIsToldUnavailableAndJoinsOnceItIsGranted) {
  ASSERT_TRUE(StartBerthdAs("berthd-no-create", {{"secrets", "create"}}));
  auto agent = Subprocess::Start(cluster_.AgentArgv(), AgentLog(), cluster_.AgentEnv());
  ASSERT_TRUE(agent.ok());
  const std::string forbidden =
      "secrets is forbidden: User \"berthd-no-create\" cannot create resource \"secrets\" in API "
      "group \"\" in the namespace \"kube-system\"";
  // berthd says which permission its identity lacks, in the API server's words.
  ASSERT_TRUE(WaitForText(cluster_.berthd_log(),
                          "Kubernetes API refused berthd's identity: POST "
                          "/api/v1/namespaces/kube-system/secrets answered 403: " + forbidden,
                          std::chrono::seconds(60)))
      << MustRead(cluster_.berthd_log());
  // The node is told to come back (UNAVAILABLE), and does.
  ASSERT_TRUE(WaitForText(AgentLog(), "retrying in", std::chrono::seconds(30))) << MustRead(AgentLog());
  std::string log = MustRead(cluster_.berthd_log());
  EXPECT_THAT(log, HasSubstr("audit call=IssueJoinTicket decision=refused node=node-1"));
  EXPECT_THAT(log, HasSubstr("code=UNAVAILABLE reason=\"creating bootstrap token: Kubernetes API "
                             "answered 403: " + AuditQuoted(forbidden) + "\"\n"));
  EXPECT_THAT(MustRead(AgentLog()), HasSubstr("UNAVAILABLE"));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
  EXPECT_TRUE(cluster_.KubeadmJoins().empty());

  // The operator grants it: the node, still retrying, joins.
  ASSERT_FALSE(cluster_.kube().IdentityWithout("berthd-no-create", {}).empty());
  ProcessResult done = agent->Wait(std::chrono::seconds(120));
  ASSERT_EQ(done.exit_code, 0) << MustRead(AgentLog());
  auto tokens = cluster_.TokenSecrets();
  ASSERT_EQ(tokens.size(), 1u);
  EXPECT_EQ(tokens[0]["metadata"]["labels"]["berth.dev/node"], "node-1");
  auto joins = cluster_.KubeadmJoins();
  ASSERT_EQ(joins.size(), 1u);
  EXPECT_EQ(joins[0]["ok"], true) << joins[0]["output"];
  EXPECT_THAT(MustRead(cluster_.berthd_log()),
              HasSubstr("audit call=IssueJoinTicket decision=granted node=node-1"));
}

// berthd --discovery file reads cluster-info before it mints the token: without that
// permission the ticket is refused with nothing minted (a token made first would be left).
TEST_F(MissingPermissionTest, WithoutClusterInfoFileDiscoveryIsRefusedBeforeATokenIsMade) {
  ASSERT_TRUE(StartBerthdAs("berthd-no-cluster-info", {{"configmaps", "get"}},
                            {"--discovery", "file"}));
  AgentRun run = cluster_.RunAgent({"--max-attempts", "2"});
  EXPECT_EQ(run.result.exit_code, 1) << run.log;
  EXPECT_THAT(run.log, HasSubstr("UNAVAILABLE"));
  EXPECT_THAT(run.log, HasSubstr("giving up after 2 attempts"));
  const std::string forbidden =
      "configmaps \"cluster-info\" is forbidden: User \"berthd-no-cluster-info\" cannot get "
      "resource \"configmaps\" in API group \"\" in the namespace \"kube-public\"";
  std::string log = MustRead(cluster_.berthd_log());
  EXPECT_THAT(log, HasSubstr("Kubernetes API refused berthd's identity: GET "
                             "/api/v1/namespaces/kube-public/configmaps/cluster-info answered "
                             "403: " + forbidden));
  EXPECT_THAT(log, HasSubstr("code=UNAVAILABLE reason=\"discovery kubeconfig for node node-1: "
                             "reading cluster-info: Kubernetes API answered 403: " +
                             AuditQuoted(forbidden) + "\"\n"));
  EXPECT_TRUE(cluster_.TokenSecrets().empty());
  EXPECT_TRUE(cluster_.KubeadmJoins().empty());
}

// With exactly berthd's identity, file discovery works end to end: berthd reads cluster-info,
// the node's kubeadm (the real one) takes the cluster and the token from the kubeconfig.
TEST_F(MissingPermissionTest, WithItsWholeIdentityFileDiscoveryJoins) {
  ASSERT_TRUE(cluster_.StartBerthd(0, {"--discovery", "file"}));
  cluster_.WriteEnrolment(cluster_.BaseEnrolment());
  AgentRun run = cluster_.RunAgent();
  ASSERT_EQ(run.result.exit_code, 0) << run.log << MustRead(cluster_.berthd_log());
  auto tokens = cluster_.TokenSecrets();
  ASSERT_EQ(tokens.size(), 1u);
  auto joins = cluster_.KubeadmJoins();
  ASSERT_EQ(joins.size(), 1u);
  const std::string said = joins[0]["output"];
  EXPECT_EQ(joins[0]["ok"], true) << said;
  EXPECT_THAT(said, HasSubstr("This node has joined the cluster"));
  EXPECT_THAT(MustRead(std::string(joins[0]["dir"]) + "/dry-run/bootstrap-kubelet.conf"),
              HasSubstr("server: https://" + cluster_.kube().api_server_endpoint()));
  EXPECT_THAT(MustRead(cluster_.berthd_log()), HasSubstr(" discovery=file"));
  EXPECT_THAT(MustRead(cluster_.berthd_log()), Not(HasSubstr("refused berthd's identity")));
}

// Revocation with real deletes: berthd lists a node's tokens by label and deletes them.
class TokenRevocationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(bed_.ok()) << bed_.error();
    bed_.AddNode("w-1", false);
    bed_.AddNode("w-2", false);
  }
  // Both workers join (the real kubeadm); their token Secrets' names.
  void JoinBoth() {
    for (const char* name : {"w-1", "w-2"}) {
      AgentOutcome out = bed_.RunAgent(bed_.node(name), false, {bed_.BerthdEndpoint()});
      ASSERT_TRUE(out.status.ok()) << name << ": " << out.status.ToString() << "\n"
                                   << MustRead(bed_.BerthdLog());
    }
    ASSERT_EQ(kube().BerthTokens("w-1").size(), 1u);
    ASSERT_EQ(kube().BerthTokens("w-2").size(), 1u);
    w1_token_ = kube().BerthTokens("w-1")[0]["metadata"]["name"];
    w2_token_ = kube().BerthTokens("w-2")[0]["metadata"]["name"];
  }
  KubeCluster& kube() { return *bed_.kube(); }
  bool Exists(const std::string& secret) {
    return kube().Kubectl({"-n", "kube-system", "get", "secret", secret}).success();
  }
  EtcdTestbed bed_;
  std::string w1_token_, w2_token_;
};

TEST_F(TokenRevocationTest, RevokingANodeDeletesItsTokensAndNoOneElses) {
  ASSERT_TRUE(bed_.StartBerthd());
  JoinBoth();
  // A Secret an operator labelled with the node, not berth's: not berth's to delete.
  ASSERT_TRUE(kube().Kubectl({"-n", "kube-system", "create", "secret", "generic", "w-1-notes",
                              "--from-literal=k=v"}).success());
  ASSERT_TRUE(kube().Kubectl({"-n", "kube-system", "label", "secret", "w-1-notes",
                              "berth.dev/node=w-1"}).success());

  ProcessResult revoked = bed_.Berthctl({"nodes", "revoke", "w-1"});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.output << MustRead(bed_.BerthdLog());
  EXPECT_THAT(revoked.output, HasSubstr("bootstrap token deleted: " + w1_token_));
  EXPECT_FALSE(Exists(w1_token_));
  EXPECT_TRUE(Exists(w2_token_));
  EXPECT_TRUE(Exists("w-1-notes"));
  EXPECT_TRUE(kube().BerthTokens("w-1").empty());
  EXPECT_EQ(kube().BerthTokens().size(), 1u);
  // kubeadm no longer lists it.
  for (const auto& t : kube().KubeadmTokens()) {
    EXPECT_NE("bootstrap-token-" + std::string(t["id"]), w1_token_);
  }
  // Revoked again: nothing left to delete, nothing else touched.
  ProcessResult again = bed_.Berthctl({"nodes", "revoke", "w-1"});
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, Not(HasSubstr("bootstrap token deleted")));
  EXPECT_TRUE(Exists(w2_token_));
  EXPECT_TRUE(Exists("w-1-notes"));
  EXPECT_TRUE(kube().Kubectl({"-n", "kube-system", "delete", "secret", "w-1-notes"}).success());
}

TEST_F(TokenRevocationTest, WithoutDeleteRevocationNamesThePermissionAndAgainDeletesOnceGranted) {
  const std::string kubeconfig = kube().IdentityWithout("berthd-no-delete", {{"secrets", "delete"}});
  ASSERT_FALSE(kubeconfig.empty());
  bed_.berthd_kubeconfig = kubeconfig;
  ASSERT_TRUE(bed_.StartBerthd());
  JoinBoth();  // joining needs no delete

  // UNAVAILABLE: berthctl's exit 2, a failure to retry (cli/admin_client.cc).
  ProcessResult revoked = bed_.Berthctl({"nodes", "revoke", "w-1"});
  EXPECT_EQ(revoked.exit_code, 2) << revoked.output;
  const std::string forbidden = "secrets \"" + w1_token_ +
                                "\" is forbidden: User \"berthd-no-delete\" cannot delete "
                                "resource \"secrets\" in API group \"\" in the namespace "
                                "\"kube-system\"";
  EXPECT_THAT(revoked.output,
              HasSubstr("UNAVAILABLE: RevokeNode at 127.0.0.1:" + std::to_string(bed_.admin_port()) + ": node w-1 is "
                        "revoked and its certificates are on the CRL, but its "
                        "bootstrap tokens are not deleted; revoke again: deleting " +
                        w1_token_ + ": Kubernetes API answered 403: " + forbidden));
  EXPECT_THAT(MustRead(bed_.BerthdLog()),
              HasSubstr("Kubernetes API refused berthd's identity: DELETE "
                        "/api/v1/namespaces/kube-system/secrets/" + w1_token_ +
                        " answered 403: " + forbidden));
  EXPECT_TRUE(Exists(w1_token_));  // still there, as said
  EXPECT_TRUE(Exists(w2_token_));

  // Granted, revoked again: deleted.
  ASSERT_FALSE(kube().IdentityWithout("berthd-no-delete", {}).empty());
  ProcessResult again = bed_.Berthctl({"nodes", "revoke", "w-1"});
  EXPECT_EQ(again.exit_code, 0) << again.output;
  EXPECT_THAT(again.output, HasSubstr("bootstrap token deleted: " + w1_token_));
  EXPECT_FALSE(Exists(w1_token_));
  EXPECT_TRUE(Exists(w2_token_));
}

TEST_F(TokenRevocationTest, WithoutListRevocationNamesThePermissionAndDeletesNothing) {
  const std::string kubeconfig = kube().IdentityWithout("berthd-no-list", {{"secrets", "list"}});
  ASSERT_FALSE(kubeconfig.empty());
  bed_.berthd_kubeconfig = kubeconfig;
  ASSERT_TRUE(bed_.StartBerthd());
  JoinBoth();

  // UNAVAILABLE: berthctl's exit 2, a failure to retry (cli/admin_client.cc).
  ProcessResult revoked = bed_.Berthctl({"nodes", "revoke", "w-1"});
  EXPECT_EQ(revoked.exit_code, 2) << revoked.output;
  EXPECT_THAT(revoked.output,
              HasSubstr("bootstrap tokens are not deleted; revoke again: listing the bootstrap "
                        "tokens of node w-1: Kubernetes API answered 403: secrets is forbidden: "
                        "User \"berthd-no-list\" cannot list resource \"secrets\" in API group "
                        "\"\" in the namespace \"kube-system\""));
  EXPECT_TRUE(Exists(w1_token_));
  EXPECT_TRUE(Exists(w2_token_));
}

}  // namespace
}  // namespace berth::testing
