// The parts of a bootstrap that need no device (agent/bootstrap.h): the request's checks, the
// join CA and berthd's certificate, and the files berthd and kubeadm read. The whole bootstrap
// runs in tests/integration/etcd_join_test.cc (real berthctl, swtpm, kubeadm, etcd, LUKS2).
#include "agent/bootstrap.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/x509v3.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>

#include "common/crypto.h"
#include "tests/fakes/agent_fakes.h"

namespace berth::agent {
namespace {

using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kPolicy =
    "tpm:\n  trusted_aks:\n    - name: cp-1\n      sha256: " + std::string(64, 'a') +
    "\n  pcrs:\n    sha256:\n      0: " + std::string(64, 'b') + "\n";

v1::BootstrapRequest GoodRequest() {
  v1::BootstrapRequest r;
  r.set_cluster_id("prod-eu1");
  r.set_recovery_public_key(std::string(32, '\x07'));
  r.set_policy_yaml(kPolicy);
  r.add_api_server_addresses("192.0.2.10");
  r.add_api_server_addresses("api.prod-eu1.example");
  r.mutable_cold_start()->set_bank(v1::HASH_ALGORITHM_SHA256);
  for (uint32_t p : {0, 1, 2, 3, 4, 5, 6, 7}) r.mutable_cold_start()->add_pcrs(p);
  return r;
}

TEST(BootstrapRequestTest, AGoodRequestCarriesThePolicysColdStartPcrs) {
  auto p = CheckBootstrapRequest(GoodRequest());
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->cluster_id, "prod-eu1");
  EXPECT_EQ(p->recovery_public_key, Bytes(32, 7));
  EXPECT_EQ(p->policy_yaml, kPolicy);
  EXPECT_EQ(p->cold_start_bank, DigestAlg::kSha256);
  EXPECT_THAT(p->cold_start_pcrs, ElementsAre(0, 1, 2, 3, 4, 5, 6, 7));
  EXPECT_THAT(p->api_server_addresses, ElementsAre("192.0.2.10", "api.prod-eu1.example"));

  v1::BootstrapRequest narrower = GoodRequest();
  narrower.mutable_cold_start()->set_bank(v1::HASH_ALGORITHM_SHA384);
  narrower.mutable_cold_start()->clear_pcrs();
  for (uint32_t pcr : {0, 2, 4}) narrower.mutable_cold_start()->add_pcrs(pcr);
  auto q = CheckBootstrapRequest(narrower);
  ASSERT_TRUE(q.ok()) << q.status().ToString();
  EXPECT_EQ(q->cold_start_bank, DigestAlg::kSha384);
  EXPECT_THAT(q->cold_start_pcrs, ElementsAre(0, 2, 4));
}

TEST(BootstrapRequestTest, EachBadFieldIsRefusedByName) {
  v1::BootstrapRequest r = GoodRequest();
  r.set_cluster_id("Prod_EU1");
  EXPECT_EQ(CheckBootstrapRequest(r).status().ToString(),
            "INVALID_ARGUMENT: bootstrap: cluster id \"Prod_EU1\" is not a DNS-1123 label "
            "(lower-case letters, digits and '-', at most 63)");
  r.set_cluster_id("prod.eu1");
  EXPECT_EQ(CheckBootstrapRequest(r).status().code(), Code::kInvalidArgument);
  r.set_cluster_id("");
  EXPECT_EQ(CheckBootstrapRequest(r).status().code(), Code::kInvalidArgument);

  r = GoodRequest();
  r.set_recovery_public_key(std::string(31, '\x07'));
  EXPECT_EQ(CheckBootstrapRequest(r).status().ToString(),
            "INVALID_ARGUMENT: bootstrap: the recovery public key is 31 bytes, not 32");

  r = GoodRequest();
  r.clear_policy_yaml();
  EXPECT_EQ(CheckBootstrapRequest(r).status().ToString(),
            "INVALID_ARGUMENT: bootstrap: no policy: berthd would admit no node");

  // The cold-start PCRs: what the node will let its TPM release the disk key for.
  auto cold = [](std::initializer_list<uint32_t> pcrs, v1::HashAlgorithm bank) {
    v1::BootstrapRequest c = GoodRequest();
    c.mutable_cold_start()->set_bank(bank);
    c.mutable_cold_start()->clear_pcrs();
    for (uint32_t p : pcrs) c.mutable_cold_start()->add_pcrs(p);
    return CheckBootstrapRequest(c).status().ToString();
  };
  EXPECT_EQ(cold({0, 15}, v1::HASH_ALGORITHM_SHA256),
            "INVALID_ARGUMENT: bootstrap: cold-start PCR 15 is not 0-14");
  EXPECT_EQ(cold({}, v1::HASH_ALGORITHM_SHA256),
            "INVALID_ARGUMENT: bootstrap: no cold-start PCRs: the TPM would release the key in "
            "any boot");
  EXPECT_EQ(cold({4, 4}, v1::HASH_ALGORITHM_SHA256),
            "INVALID_ARGUMENT: bootstrap: cold-start PCRs are not ascending and distinct");
  EXPECT_EQ(cold({0, 7}, v1::HASH_ALGORITHM_SHA1),
            "INVALID_ARGUMENT: bootstrap: cold-start bank sha1 is not sha256, sha384 or sha512");
  EXPECT_EQ(cold({0, 7}, v1::HASH_ALGORITHM_UNSPECIFIED),
            "INVALID_ARGUMENT: bootstrap: the cold-start PCR bank 0 is not a hash");

  r = GoodRequest();
  r.add_api_server_addresses("not an address");
  EXPECT_EQ(CheckBootstrapRequest(r).status().ToString(),
            "INVALID_ARGUMENT: bootstrap: API server address \"not an address\" is neither an "
            "IP address nor a DNS name");
}

// The operator's control plane endpoint (a load balancer): its host joins the certificates'
// SANs once, whatever form the host takes.
TEST(BootstrapRequestTest, AControlPlaneEndpointsHostIsAmongTheAddresses) {
  v1::BootstrapRequest r = GoodRequest();
  auto p = CheckBootstrapRequest(r);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->control_plane_endpoint, "");

  r.set_control_plane_endpoint("lb.prod-eu1.example:6443");
  p = CheckBootstrapRequest(r);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->control_plane_endpoint, "lb.prod-eu1.example:6443");
  EXPECT_THAT(p->api_server_addresses,
              ElementsAre("192.0.2.10", "api.prod-eu1.example", "lb.prod-eu1.example"));

  r.set_control_plane_endpoint("192.0.2.10:16443");  // already named: not twice
  p = CheckBootstrapRequest(r);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_THAT(p->api_server_addresses, ElementsAre("192.0.2.10", "api.prod-eu1.example"));

  r.set_control_plane_endpoint("[2001:db8::1]:6443");
  p = CheckBootstrapRequest(r);
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_THAT(p->api_server_addresses,
              ElementsAre("192.0.2.10", "api.prod-eu1.example", "2001:db8::1"));

  for (const char* bad : {"lb.prod-eu1.example", "lb.prod-eu1.example:0", "lb:65536",
                          "2001:db8::1:6443", "https://lb:6443", "lb :6443", "[lb]:6443"}) {
    r.set_control_plane_endpoint(bad);
    EXPECT_EQ(CheckBootstrapRequest(r).status().ToString(),
              "INVALID_ARGUMENT: bootstrap: control plane endpoint \"" + std::string(bad) +
                  "\" is not host:port (a name, an IPv4 address or a bracketed IPv6)")
        << bad;
  }
}

TEST(JoinPkiTest, BerthdsCertificateChainsToTheJoinCaAndNamesEveryAddress) {
  auto pki = MakeJoinPki("prod-eu1", "cp-1", {"192.0.2.10", "api.prod-eu1.example"});
  ASSERT_TRUE(pki.ok()) << pki.status().ToString();
  auto ca = CertFromPem(pki->ca_pem);
  auto tls = CertFromPem(pki->tls_pem);
  ASSERT_TRUE(ca.ok() && tls.ok());
  EXPECT_EQ(X509_check_ca(ca->get()), 1);
  EXPECT_EQ(X509_check_ca(tls->get()), 0);
  EXPECT_EQ(X509_verify(tls->get(), X509_get0_pubkey(ca->get())), 1);
  EXPECT_EQ(X509_check_host(tls->get(), "cp-1", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_host(tls->get(), "api.prod-eu1.example", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(tls->get(), "192.0.2.10", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(tls->get(), "192.0.2.11", 0), 0);
  EXPECT_EQ(X509_check_purpose(tls->get(), X509_PURPOSE_SSL_SERVER, 0), 1);
  // Each key is its certificate's.
  auto ca_key = PrivateKeyFromPem(pki->ca_key_pem.view());
  auto tls_key = PrivateKeyFromPem(pki->tls_key_pem.view());
  ASSERT_TRUE(ca_key.ok() && tls_key.ok());
  EXPECT_EQ(X509_check_private_key(ca->get(), ca_key->get()), 1);
  EXPECT_EQ(X509_check_private_key(tls->get(), tls_key->get()), 1);
}

TEST(BootstrapFilesTest, KubeadmsConfigurationPutsItsPkiWhereTheAgentSaysAndNamesTheNode) {
  const std::string text = RenderKubeadmInitConfig({.pki_dir = "/run/berth/bootstrap/pki",
                                                    .kubeconfig_dir = "/root/etc/kubernetes",
                                                    .cluster_id = "prod-eu1",
                                                    .node_name = "cp-1",
                                                    .advertise_address = "192.0.2.10",
                                                    .api_port = 16443,
                                                    .sans = {"192.0.2.10", "api.example"},
                                                    .etcd_client_url = "https://192.0.2.10:2379",
                                                    .kubernetes_version = "v1.37.2"});
  std::vector<YAML::Node> docs = YAML::LoadAll(text);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[0]["kind"].as<std::string>(), "InitConfiguration");
  EXPECT_EQ(docs[0]["localAPIEndpoint"]["advertiseAddress"].as<std::string>(), "192.0.2.10");
  EXPECT_EQ(docs[0]["nodeRegistration"]["name"].as<std::string>(), "cp-1");
  EXPECT_EQ(docs[1]["kind"].as<std::string>(), "ClusterConfiguration");
  EXPECT_EQ(docs[1]["clusterName"].as<std::string>(), "prod-eu1");
  EXPECT_EQ(docs[1]["kubernetesVersion"].as<std::string>(), "v1.37.2");
  EXPECT_EQ(docs[1]["certificatesDir"].as<std::string>(), "/run/berth/bootstrap/pki");
  EXPECT_EQ(docs[0]["localAPIEndpoint"]["bindPort"].as<int>(), 16443);
  EXPECT_EQ(docs[1]["controlPlaneEndpoint"].as<std::string>(), "192.0.2.10:16443");
  EXPECT_EQ(docs[1]["apiServer"]["extraArgs"][0]["name"].as<std::string>(), "etcd-servers");
  EXPECT_EQ(docs[1]["apiServer"]["extraArgs"][0]["value"].as<std::string>(),
            "https://192.0.2.10:2379");
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(docs[1]["controllerManager"]["extraArgs"][i]["value"].as<std::string>(),
              "/root/etc/kubernetes/controller-manager.conf");
  }
  EXPECT_EQ(docs[1]["controllerManager"]["extraArgs"][3]["value"].as<std::string>(), "10257");
  for (size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(docs[1]["scheduler"]["extraArgs"][i]["value"].as<std::string>(),
              "/root/etc/kubernetes/scheduler.conf");
  }
  EXPECT_EQ(docs[1]["scheduler"]["extraArgs"][3]["name"].as<std::string>(), "secure-port");
  EXPECT_EQ(docs[1]["scheduler"]["extraArgs"][3]["value"].as<std::string>(), "10259");
  EXPECT_FALSE(docs[1]["etcd"]["external"]);
  EXPECT_EQ(docs[1]["apiServer"]["certSANs"].as<std::vector<std::string>>(),
            (std::vector<std::string>{"192.0.2.10", "api.example"}));
  EXPECT_EQ(docs[1]["etcd"]["local"]["serverCertSANs"].as<std::vector<std::string>>(),
            (std::vector<std::string>{"cp-1", "192.0.2.10"}));
}

// Behind a load balancer, kubeadm's controlPlaneEndpoint (admin.conf's and cluster-info's
// server) is the operator's; the node still advertises and binds its own address.
TEST(BootstrapFilesTest, AControlPlaneEndpointIsKubeadmsAndTheNodeStillAdvertisesItself) {
  const std::string text = RenderKubeadmInitConfig({.pki_dir = "/etc/kubernetes/pki",
                                                    .kubeconfig_dir = "/etc/kubernetes",
                                                    .cluster_id = "prod-eu1",
                                                    .node_name = "cp-1",
                                                    .advertise_address = "192.0.2.10",
                                                    .api_port = 6443,
                                                    .sans = {"192.0.2.10", "lb.example"},
                                                    .control_plane_endpoint = "lb.example:443",
                                                    .etcd_client_url = "https://192.0.2.10:2379",
                                                    .kubernetes_version = "v1.37.2"});
  std::vector<YAML::Node> docs = YAML::LoadAll(text);
  ASSERT_EQ(docs.size(), 2u);
  EXPECT_EQ(docs[1]["controlPlaneEndpoint"].as<std::string>(), "lb.example:443");
  EXPECT_EQ(docs[0]["localAPIEndpoint"]["advertiseAddress"].as<std::string>(), "192.0.2.10");
  EXPECT_EQ(docs[0]["localAPIEndpoint"]["bindPort"].as<int>(), 6443);
}

// A control plane that joined has no etcd CA key: its etcd member's certificate is the API
// server's etcd client identity, and kubeadm, told etcd is external, makes no etcd certificate.
TEST(BootstrapFilesTest, AJoinedControlPlanesConfigurationNamesItsEtcdMembersCertificate) {
  const std::string text =
      RenderKubeadmInitConfig({.pki_dir = "/etc/kubernetes/pki",
                               .kubeconfig_dir = "/etc/kubernetes",
                               .cluster_id = "prod-eu1",
                               .node_name = "cp-2",
                               .advertise_address = "192.0.2.11",
                               .controller_manager_port = 11257,
                               .sans = {"192.0.2.11"},
                               .etcd_client_url = "https://192.0.2.11:2379",
                               .etcd_cert_file = "/etc/kubernetes/pki/etcd/server.crt",
                               .etcd_key_file = "/etc/kubernetes/pki/etcd/server.key",
                               .kubernetes_version = "v1.37.2"});
  std::vector<YAML::Node> docs = YAML::LoadAll(text);
  ASSERT_EQ(docs.size(), 2u);
  const YAML::Node etcd = docs[1]["etcd"];
  EXPECT_FALSE(etcd["local"]);
  EXPECT_EQ(etcd["external"]["endpoints"].as<std::vector<std::string>>(),
            (std::vector<std::string>{"https://192.0.2.11:2379"}));
  EXPECT_EQ(etcd["external"]["caFile"].as<std::string>(), "/etc/kubernetes/pki/etcd/ca.crt");
  EXPECT_EQ(etcd["external"]["certFile"].as<std::string>(), "/etc/kubernetes/pki/etcd/server.crt");
  EXPECT_EQ(etcd["external"]["keyFile"].as<std::string>(), "/etc/kubernetes/pki/etcd/server.key");
  // kubeadm names the endpoints in --etcd-servers itself.
  EXPECT_FALSE(docs[1]["apiServer"]["extraArgs"]);
  EXPECT_EQ(docs[1]["controllerManager"]["extraArgs"][3]["name"].as<std::string>(), "secure-port");
  EXPECT_EQ(docs[1]["controllerManager"]["extraArgs"][3]["value"].as<std::string>(), "11257");
}

TEST(BootstrapFilesTest, BerthdsFlagsNameEveryFileOnTheStateDiskAndReadBack) {
  const std::string env = RenderBerthdEnvironment({.dir = "/var/lib/berth/state/berthd",
                                                   .pki_dir = "/etc/kubernetes/pki",
                                                   .etcd_ca_key = "/etc/kubernetes/pki/etcd/ca.key",
                                                   .cluster_id = "prod-eu1",
                                                   .listen = "0.0.0.0:7400",
                                                   .api_server_endpoint = "192.0.2.10:6443",
                                                   .etcd_client_url = "https://192.0.2.10:2379"});
  auto args = ArgsFromEnvironment(env, "BERTHD_ARGS");
  ASSERT_TRUE(args.ok()) << args.status().ToString();
  const std::string d = "/var/lib/berth/state/berthd";
  EXPECT_EQ(*args, (std::vector<std::string>{"--listen",
                                             "0.0.0.0:7400",
                                             "--cluster-id",
                                             "prod-eu1",
                                             "--api-server-endpoint",
                                             "192.0.2.10:6443",
                                             "--tls-cert",
                                             d + "/tls.pem",
                                             "--tls-key",
                                             d + "/tls.key",
                                             "--policy",
                                             d + "/policy.yaml",
                                             "--master-secret-file",
                                             d + "/master.secret",
                                             "--recovery-key",
                                             d + "/recovery-key.txt",
                                             "--kubeconfig",
                                             d + "/kubeconfig",
                                             "--control-plane-pki",
                                             "/etc/kubernetes/pki",
                                             "--join-ca-key",
                                             d + "/join-ca.key",
                                             "--etcd-endpoints",
                                             "https://192.0.2.10:2379",
                                             "--etcd-ca-cert",
                                             "/etc/kubernetes/pki/etcd/ca.crt",
                                             "--etcd-ca-key",
                                             "/etc/kubernetes/pki/etcd/ca.key",
                                             "--etcd-client-cert",
                                             d + "/etcd-client.pem",
                                             "--etcd-client-key",
                                             d + "/etcd-client.key"}));
  EXPECT_EQ(ArgsFromEnvironment("# nothing\n", "BERTHD_ARGS").status().ToString(),
            "INVALID_ARGUMENT: no BERTHD_ARGS= line in the environment file");
  // A control plane that joined keeps the etcd CA's key in berthd's directory, and without a
  // recovery key from the berthd that admitted it, its berthd hands none out either.
  auto joined =
      ArgsFromEnvironment(RenderBerthdEnvironment({.dir = d,
                                                   .pki_dir = "/etc/kubernetes/pki",
                                                   .etcd_ca_key = d + "/etcd-ca.key",
                                                   .recovery_key = false,
                                                   .cluster_id = "prod-eu1",
                                                   .listen = "0.0.0.0:7400",
                                                   .api_server_endpoint = "192.0.2.11:6443",
                                                   .etcd_client_url = "https://192.0.2.11:2379"}),
                          "BERTHD_ARGS");
  ASSERT_TRUE(joined.ok());
  EXPECT_THAT(*joined, Not(Contains("--recovery-key")));
  auto key = std::find(joined->begin(), joined->end(), "--etcd-ca-key");
  ASSERT_NE(key, joined->end());
  EXPECT_EQ(*(key + 1), d + "/etcd-ca.key");
  EXPECT_THAT(*joined, Not(Contains("--control-plane-endpoint")));  // none was named
  // A cluster behind a load balancer: berthd's tickets name it, and berthd hands it on to the
  // control planes it admits.
  auto behind_lb = ArgsFromEnvironment(
      RenderBerthdEnvironment({.dir = d,
                               .pki_dir = "/etc/kubernetes/pki",
                               .etcd_ca_key = d + "/etcd-ca.key",
                               .cluster_id = "prod-eu1",
                               .listen = "0.0.0.0:7400",
                               .api_server_endpoint = "lb.prod-eu1.example:6443",
                               .control_plane_endpoint = "lb.prod-eu1.example:6443",
                               .etcd_client_url = "https://192.0.2.11:2379"}),
      "BERTHD_ARGS");
  ASSERT_TRUE(behind_lb.ok());
  auto endpoint = std::find(behind_lb->begin(), behind_lb->end(), "--control-plane-endpoint");
  ASSERT_NE(endpoint, behind_lb->end());
  EXPECT_EQ(*(endpoint + 1), "lb.prod-eu1.example:6443");
}

// berthd on a control plane that joined gets its TLS certificate from the join CA whose key
// was shared with it: the certificate the nodes that pin that CA accept.
TEST(JoinPkiTest, AJoinedControlPlanesBerthdCertificateChainsToTheSharedJoinCa) {
  auto pki = MakeJoinPki("prod-eu1", "cp-1", {"192.0.2.10"});
  ASSERT_TRUE(pki.ok()) << pki.status().ToString();
  SecretBytes ca_key(pki->ca_key_pem.data(), pki->ca_key_pem.size());
  auto joined = IssueBerthdTls(pki->ca_pem, std::move(ca_key), "cp-2", {"192.0.2.11"});
  ASSERT_TRUE(joined.ok()) << joined.status().ToString();
  EXPECT_EQ(joined->ca_pem, pki->ca_pem);
  auto ca = CertFromPem(pki->ca_pem);
  auto tls = CertFromPem(joined->tls_pem);
  ASSERT_TRUE(ca.ok() && tls.ok());
  EXPECT_EQ(X509_verify(tls->get(), X509_get0_pubkey(ca->get())), 1);
  EXPECT_EQ(X509_check_host(tls->get(), "cp-2", 0, 0, nullptr), 1);
  EXPECT_EQ(X509_check_ip_asc(tls->get(), "192.0.2.11", 0), 1);
  EXPECT_EQ(X509_check_ip_asc(tls->get(), "192.0.2.10", 0), 0);
  EXPECT_NE(joined->tls_key_pem.view(), pki->tls_key_pem.view());
  // A key that is not a PEM key is refused, naming nothing of it.
  SecretBytes junk("not a key", 9);
  Status refused = IssueBerthdTls(pki->ca_pem, std::move(junk), "cp-2", {"192.0.2.11"}).status();
  EXPECT_EQ(refused.code(), Code::kInvalidArgument) << refused.ToString();
  EXPECT_THAT(refused.message(), Not(HasSubstr("not a key")));
}

// The node image's units: berthd on a control plane is berthd-control-plane.service (its files
// on the state disk), never berthd.service (an operator's berthd under /etc/berth); a failed
// start names the unit and systemctl's words.
TEST(ControlPlaneServicesTest, EachServiceIsItsUnitAndAFailedStartNamesIt) {
  FakeProcessRunner runner;
  SystemdControlPlaneServices services(&runner, "/bin/systemctl");
  for (const char* name : {"kube-apiserver", "kube-controller-manager", "berthd"}) {
    EXPECT_TRUE(services.Start(name).ok()) << name;
  }
  ASSERT_EQ(runner.argvs.size(), 3u);
  EXPECT_EQ(runner.argvs[0], (std::vector<std::string>{"/bin/systemctl", "start", "--no-block",
                                                       "kube-apiserver.service"}));
  EXPECT_EQ(runner.argvs[1].back(), "kube-controller-manager.service");
  EXPECT_EQ(runner.argvs[2].back(), "berthd-control-plane.service");
  runner.result = ProcessResult{
      .exit_code = 5, .signal = 0, .output = "Unit berthd-control-plane.service not found.\n"};
  Status failed = services.Start("berthd");
  EXPECT_EQ(failed.code(), Code::kUnavailable);
  EXPECT_EQ(failed.message(),
            "systemctl start berthd-control-plane.service failed (exit code 5): Unit "
            "berthd-control-plane.service not found.\n");
}

// berthd-control-plane.service names the state disk's mount point: a control plane that
// runs the control plane must mount it there, or the unit would never find berthd's files.
TEST(ControlPlaneServicesTest, TheStateDiskMustBeWhereTheUnitsLook) {
  EXPECT_TRUE(CheckControlPlaneMount("/var/lib/berth/state").ok());
  EXPECT_EQ(CheckControlPlaneMount("/srv/state").ToString(),
            "FAILED_PRECONDITION: a control plane that runs the control plane mounts its state "
            "disk at /var/lib/berth/state, where berthd-control-plane.service reads berthd's "
            "files; the EnrolmentConfig says /srv/state");
}

// kubeadm's static Pod manifests give the flags; the node image's units run the binaries.
TEST(BootstrapFilesTest, AComponentsFlagsComeFromItsManifestAndPassThroughItsUnitUnchanged) {
  const std::string manifest =
      "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  containers:\n"
      "  - command:\n    - kube-apiserver\n    - --advertise-address=192.0.2.10\n"
      "    - --etcd-servers=https://192.0.2.10:2379\n    image: registry.k8s.io/x\n"
      "    name: kube-apiserver\n";
  auto args = ManifestCommand(manifest, "kube-apiserver");
  ASSERT_TRUE(args.ok()) << args.status().ToString();
  EXPECT_THAT(*args, ElementsAre("--advertise-address=192.0.2.10",
                                 "--etcd-servers=https://192.0.2.10:2379"));
  auto env = RenderArgsEnvironment("ARGS", *args);
  ASSERT_TRUE(env.ok());
  auto back = ArgsFromEnvironment(*env, "ARGS");
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, *args);

  EXPECT_EQ(ManifestCommand(manifest, "kube-controller-manager").status().ToString(),
            "INVALID_ARGUMENT: the kube-controller-manager manifest's first container does not "
            "run kube-controller-manager");
  EXPECT_EQ(ManifestCommand("spec: {}\n", "kube-apiserver").status().code(),
            Code::kInvalidArgument);
  EXPECT_EQ(ManifestCommand("{[", "kube-apiserver").status().code(), Code::kInvalidArgument);
  // A command entry that is not a string is refused, not thrown.
  EXPECT_EQ(ManifestCommand("spec:\n  containers:\n  - command: [{a: 1}]\n", "kube-apiserver")
                .status()
                .ToString(),
            "INVALID_ARGUMENT: the kube-apiserver manifest's first container does not run "
            "kube-apiserver");
  EXPECT_EQ(ManifestCommand("spec:\n  containers:\n  - command: [kube-apiserver, [x]]\n",
                            "kube-apiserver")
                .status()
                .ToString(),
            "INVALID_ARGUMENT: the kube-apiserver manifest's command has an argument that is not "
            "a string (number 1)");
  // systemd splits $ARGS at whitespace: an argument holding some is refused, not split.
  EXPECT_EQ(RenderArgsEnvironment("ARGS", {"--a=b c"}).status().ToString(),
            "INVALID_ARGUMENT: argument \"--a=b c\" cannot be passed through ARGS");
}

TEST(BootstrapFilesTest, BerthdsKubeconfigNamesItsKeyFileAndHoldsNoKey) {
  const std::string k = RenderKubeconfig("prod-eu1", "192.0.2.10:6443", "/pki/ca.crt", "berthd",
                                         "/d/kube-client.pem", "/d/kube-client.key");
  YAML::Node y = YAML::Load(k);
  EXPECT_EQ(y["clusters"][0]["cluster"]["server"].as<std::string>(), "https://192.0.2.10:6443");
  EXPECT_EQ(y["clusters"][0]["cluster"]["certificate-authority"].as<std::string>(),
            "/pki/ca.crt");
  EXPECT_EQ(y["users"][0]["name"].as<std::string>(), "berthd");
  EXPECT_EQ(y["users"][0]["user"]["client-key"].as<std::string>(), "/d/kube-client.key");
  EXPECT_EQ(y["current-context"].as<std::string>(), "berthd@prod-eu1");
}

}  // namespace
}  // namespace berth::agent
