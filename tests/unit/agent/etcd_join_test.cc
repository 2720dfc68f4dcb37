// A control plane's etcd on the node: its keys and CSRs, the checks of the etcd material in a
// ticket, the files and the environment it writes, waiting for the member, and the kubeadm
// control-plane configuration. The whole flow runs against real etcd and berthd in
// tests/integration/etcd_join_test.cc.
#include "agent/etcd_join.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sys/stat.h>
#include <yaml-cpp/yaml.h>

#include <deque>

#include "agent/kubeadm.h"
#include "tests/fakes/agent_fakes.h"
#include "tests/fakes/fake_clock.h"
#include "tests/testing/testing.h"

namespace berth::agent {
namespace {

using ::testing::HasSubstr;

const std::string kPeerUrl = "https://10.0.0.5:2380";

mode_t ModeOf(const std::string& path) {
  struct stat st {};
  EXPECT_EQ(stat(path.c_str(), &st), 0) << path;
  return st.st_mode & 07777;
}

// An etcd CA and what berthd would send for `keys`.
class MaterialTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ca_key_ = std::move(GenerateP256Key()).value();
    ca_ = std::move(IssueCert({.common_name = "etcd-ca", .is_ca = true}, ca_key_.get(), nullptr,
                              ca_key_.get()))
              .value();
    auto keys = MakeEtcdKeys("cp-1");
    ASSERT_TRUE(keys.ok());
    keys_ = std::move(*keys);
    material_ = Material(keys_, "cp-1");
  }

  std::string Sign(EVP_PKEY* key, const std::string& cn, X509* ca, EVP_PKEY* ca_key) {
    auto cert =
        IssueCert({.common_name = cn, .server_auth = true, .client_auth = true}, key, ca, ca_key);
    return *CertToPem(cert->get());
  }

  std::string Crl(EVP_PKEY* signer, time_t last_update = 1'800'000'000) {
    X509_CRL* crl = X509_CRL_new();
    X509_CRL_set_version(crl, 1);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca_.get()));
    ASN1_TIME* t = ASN1_TIME_set(nullptr, last_update);
    X509_CRL_set1_lastUpdate(crl, t);
    ASN1_TIME_free(t);
    X509_CRL_sign(crl, signer, EVP_sha256());
    BIO* bio = BIO_new(BIO_s_mem());
    PEM_write_bio_X509_CRL(bio, crl);
    char* data = nullptr;
    long n = BIO_get_mem_data(bio, &data);
    std::string out(data, static_cast<size_t>(n));
    BIO_free(bio);
    X509_CRL_free(crl);
    return out;
  }

  // The CRL file at `path` is DER (no PEM armour), signed by the etcd CA, and made at
  // `last_update`.
  void ExpectDerCrl(const std::string& path, time_t last_update) {
    const std::string der = berth::testing::MustRead(path);
    EXPECT_EQ(der.rfind("-----BEGIN", 0), std::string::npos);
    const auto* p = reinterpret_cast<const unsigned char*>(der.data());
    X509_CRL* crl = d2i_X509_CRL(nullptr, &p, static_cast<long>(der.size()));
    ASSERT_NE(crl, nullptr) << path << " is not a DER CRL";
    EXPECT_EQ(p, reinterpret_cast<const unsigned char*>(der.data()) + der.size());
    EXPECT_EQ(X509_CRL_verify(crl, X509_get0_pubkey(ca_.get())), 1);
    EXPECT_EQ(ASN1_TIME_cmp_time_t(X509_CRL_get0_lastUpdate(crl), last_update), 0);
    X509_CRL_free(crl);
  }

  v1::EtcdMaterial Material(const EtcdKeys& keys, const std::string& name) {
    v1::EtcdMaterial m;
    m.set_ca_certificate(*CertToPem(ca_.get()));
    m.set_server_certificate(Sign(keys.server_key.get(), name, ca_.get(), ca_key_.get()));
    m.set_peer_certificate(Sign(keys.peer_key.get(), name, ca_.get(), ca_key_.get()));
    m.set_crl(Crl(ca_key_.get()));
    m.add_initial_cluster("etcd-0=https://10.0.0.1:2380");
    m.add_initial_cluster("cp-1=" + kPeerUrl);
    m.set_member_name(name);
    m.set_member_id(0x1234);
    return m;
  }

  EvpPkeyPtr ca_key_;
  X509Ptr ca_;
  EtcdKeys keys_;
  v1::EtcdMaterial material_;
};

TEST_F(MaterialTest, KeysAreDistinctP256WithCsrsNamingTheNode) {
  EXPECT_NE(EVP_PKEY_eq(keys_.server_key.get(), keys_.peer_key.get()), 1);
  for (const Bytes* der : {&keys_.server_csr, &keys_.peer_csr}) {
    const unsigned char* p = der->data();
    X509_REQ* req = d2i_X509_REQ(nullptr, &p, static_cast<long>(der->size()));
    ASSERT_NE(req, nullptr);
    EXPECT_EQ(X509_REQ_verify(req, X509_REQ_get0_pubkey(req)), 1);
    char cn[64] = {0};
    X509_NAME_get_text_by_NID(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof cn);
    EXPECT_STREQ(cn, "cp-1");
    EXPECT_EQ(EVP_PKEY_get_bits(X509_REQ_get0_pubkey(req)), 256);
    X509_REQ_free(req);
  }
}

TEST_F(MaterialTest, GoodMaterialPasses) {
  Status st = ValidateEtcdMaterial(material_, keys_, "cp-1", kPeerUrl);
  EXPECT_TRUE(st.ok()) << st.ToString();
}

TEST_F(MaterialTest, EachBadPartIsNamed) {
  auto check = [&](const v1::EtcdMaterial& m) {
    return ValidateEtcdMaterial(m, keys_, "cp-1", kPeerUrl).ToString();
  };
  v1::EtcdMaterial m = material_;
  m.set_member_name("cp-2");
  EXPECT_EQ(check(m),
            "INVALID_ARGUMENT: malformed join ticket: etcd member name \"cp-2\" is not "
            "this node's name");
  m = material_;
  m.set_member_id(0);
  EXPECT_EQ(check(m), "INVALID_ARGUMENT: malformed join ticket: etcd member ID is missing");
  // Certificates for someone else's keys.
  auto other = MakeEtcdKeys("cp-1");
  m = material_;
  m.set_server_certificate(Material(*other, "cp-1").server_certificate());
  EXPECT_EQ(check(m),
            "INVALID_ARGUMENT: malformed join ticket: etcd server certificate is not for "
            "this node's server key");
  // Swapped: the peer certificate carries the server key.
  m = material_;
  m.set_peer_certificate(material_.server_certificate());
  EXPECT_EQ(check(m),
            "INVALID_ARGUMENT: malformed join ticket: etcd peer certificate is not for "
            "this node's peer key");
  // Signed by another CA.
  EvpPkeyPtr rogue = std::move(GenerateP256Key()).value();
  X509Ptr rogue_ca = std::move(IssueCert({.common_name = "etcd-ca", .is_ca = true}, rogue.get(),
                                         nullptr, rogue.get()))
                         .value();
  m = material_;
  m.set_server_certificate(Sign(keys_.server_key.get(), "cp-1", rogue_ca.get(), rogue.get()));
  EXPECT_EQ(check(m),
            "INVALID_ARGUMENT: malformed join ticket: etcd server certificate is not "
            "signed by the etcd CA in the ticket");
  m = material_;
  m.set_peer_certificate(Sign(keys_.peer_key.get(), "cp-9", ca_.get(), ca_key_.get()));
  EXPECT_EQ(check(m),
            "INVALID_ARGUMENT: malformed join ticket: etcd peer certificate names "
            "\"cp-9\", not this node");
  m = material_;
  m.set_crl(Crl(rogue.get()));
  EXPECT_EQ(check(m),
            "INVALID_ARGUMENT: malformed join ticket: etcd CRL is not signed by the etcd CA");
  m = material_;
  m.set_crl("nope");
  EXPECT_EQ(check(m), "INVALID_ARGUMENT: malformed join ticket: etcd CRL does not parse");
  m = material_;
  m.clear_initial_cluster();
  m.add_initial_cluster("etcd-0=https://10.0.0.1:2380");
  EXPECT_EQ(check(m),
            "INVALID_ARGUMENT: malformed join ticket: etcd initial cluster does not list "
            "this node at https://10.0.0.5:2380");
  m.add_initial_cluster("cp-1=" + kPeerUrl + ",evil=https://6.6.6.6:2380");
  EXPECT_THAT(check(m), HasSubstr("is not name=https://host:port"));
}

TEST_F(MaterialTest, FilesAreWrittenInKubeadmsLayoutWithKeys0600) {
  berth::testing::TempDir root;
  EtcdEndpoints e{.addresses = {"10.0.0.5"}, .peer_port = 2380, .client_port = 2379};
  const std::string data = root.Join("var/lib/berth/state/etcd");
  ASSERT_TRUE(WriteEtcdFiles(root.path(), material_, keys_, e, data).ok());
  const std::string pki = root.Join("etc/kubernetes/pki/etcd");
  EXPECT_EQ(ModeOf(pki + "/server.key"), 0600u);
  EXPECT_EQ(ModeOf(pki + "/peer.key"), 0600u);
  EXPECT_EQ(ModeOf(pki + "/server.crt"), 0644u);
  EXPECT_EQ(ModeOf(pki + "/peer.crt"), 0644u);
  EXPECT_EQ(ModeOf(pki + "/ca.crt"), 0644u);
  EXPECT_EQ(ModeOf(pki + "/crl.der"), 0644u);
  ExpectDerCrl(pki + "/crl.der", 1'800'000'000);
  EXPECT_EQ(ModeOf(data), 0700u);
  EXPECT_FALSE(ReadFile(pki + "/ca.key").ok());  // the CA key never reaches a node
  auto key = PrivateKeyFromPem(berth::testing::MustRead(pki + "/server.key"));
  ASSERT_TRUE(key.ok());
  EXPECT_EQ(EVP_PKEY_eq(key->get(), keys_.server_key.get()), 1);
  EXPECT_EQ(berth::testing::MustRead(pki + "/peer.crt"), material_.peer_certificate());
  EXPECT_EQ(berth::testing::MustRead(root.Join("etc/kubernetes/etcd.env")),
            RenderEtcdEnvironment(root.path(), material_, e, data));
  // A rejoin replaces the CRL only where a PKI exists, and only with one the etcd CA signed;
  // anything else changes nothing.
  ASSERT_TRUE(WriteEtcdCrl(root.path(), Crl(ca_key_.get(), 1'900'000'000)).ok());
  ExpectDerCrl(pki + "/crl.der", 1'900'000'000);
  auto rogue = GenerateP256Key();
  ASSERT_TRUE(rogue.ok());
  EXPECT_EQ(WriteEtcdCrl(root.path(), Crl(rogue->get(), 2'000'000'000)).ToString(),
            "INVALID_ARGUMENT: CRL is not signed by the etcd CA");
  EXPECT_EQ(WriteEtcdCrl(root.path(), "new crl").ToString(),
            "INVALID_ARGUMENT: CRL does not parse");
  ExpectDerCrl(pki + "/crl.der", 1'900'000'000);
  berth::testing::TempDir empty;
  EXPECT_EQ(WriteEtcdCrl(empty.path(), Crl(ca_key_.get())).code(), Code::kNotFound);
}

TEST_F(MaterialTest, EnvironmentJoinsTheExistingCluster) {
  EtcdEndpoints e{.addresses = {"10.0.0.5", "fd00::5"}, .peer_port = 2380, .client_port = 2379};
  EXPECT_EQ(
      RenderEtcdEnvironment("/", material_, e, "/var/lib/berth/state/etcd"),
      "# Written by berth-agent from its join ticket (docs/etcd.md); etcd reads ETCD_* as flags.\n"
      "ETCD_NAME=cp-1\n"
      "ETCD_DATA_DIR=/var/lib/berth/state/etcd\n"
      "ETCD_INITIAL_CLUSTER=etcd-0=https://10.0.0.1:2380,cp-1=https://10.0.0.5:2380\n"
      "ETCD_INITIAL_CLUSTER_STATE=existing\n"
      "ETCD_INITIAL_ADVERTISE_PEER_URLS=https://10.0.0.5:2380\n"
      "ETCD_LISTEN_PEER_URLS=https://10.0.0.5:2380\n"
      "ETCD_ADVERTISE_CLIENT_URLS=https://10.0.0.5:2379\n"
      "ETCD_LISTEN_CLIENT_URLS=https://10.0.0.5:2379,https://127.0.0.1:2379\n"
      "ETCD_TRUSTED_CA_FILE=/etc/kubernetes/pki/etcd/ca.crt\n"
      "ETCD_CERT_FILE=/etc/kubernetes/pki/etcd/server.crt\n"
      "ETCD_KEY_FILE=/etc/kubernetes/pki/etcd/server.key\n"
      "ETCD_CLIENT_CERT_AUTH=true\n"
      "ETCD_CLIENT_CRL_FILE=/etc/kubernetes/pki/etcd/crl.der\n"
      "ETCD_PEER_TRUSTED_CA_FILE=/etc/kubernetes/pki/etcd/ca.crt\n"
      "ETCD_PEER_CERT_FILE=/etc/kubernetes/pki/etcd/peer.crt\n"
      "ETCD_PEER_KEY_FILE=/etc/kubernetes/pki/etcd/peer.key\n"
      "ETCD_PEER_CLIENT_CERT_AUTH=true\n"
      "ETCD_PEER_CRL_FILE=/etc/kubernetes/pki/etcd/crl.der\n"
      "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL=5s\n"
      "ETCD_FEATURE_GATES=InitialCorruptCheck=true\n");
  EtcdEndpoints v6{.addresses = {"fd00::5"}, .peer_port = 12380, .client_port = 12379};
  EXPECT_EQ(v6.PeerUrl(), "https://[fd00::5]:12380");
  EXPECT_EQ(v6.ClientUrl(), "https://[fd00::5]:12379");
}

// Status answers from a script: each call takes the next one (the last one repeats). The
// node's agent asks its own member nothing else.
class ScriptedStatus : public etcd::Client {
 public:
  std::deque<Result<etcdserverpb::StatusResponse>> script;
  std::vector<std::string> endpoints;

  Result<etcdserverpb::StatusResponse> Status(const std::string& endpoint) override {
    endpoints.push_back(endpoint);
    Result<etcdserverpb::StatusResponse> next = script.front();
    if (script.size() > 1) script.pop_front();
    return next;
  }
  Result<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest&) override {
    return No();
  }
  Result<etcdserverpb::PutResponse> Put(const etcdserverpb::PutRequest&) override { return No(); }
  Result<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest&) override {
    return No();
  }
  Result<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest&) override { return No(); }
  Result<etcdserverpb::MemberListResponse> MemberList() override { return No(); }
  Result<etcdserverpb::MemberAddResponse> MemberAdd(const std::vector<std::string>&,
                                                    bool) override {
    return No();
  }
  Result<etcdserverpb::MemberRemoveResponse> MemberRemove(uint64_t) override { return No(); }
  Result<etcdserverpb::MemberPromoteResponse> MemberPromote(uint64_t) override { return No(); }

 private:
  static berth::Status No() { return berth::Status(Code::kUnimplemented, "not used by the agent"); }
};

TEST(WaitForEtcdMemberTest, WaitsThroughStartingAndLearnerUntilVoting) {
  ScriptedStatus etcd;
  auto answer = [](uint64_t id, uint64_t leader, bool learner) {
    etcdserverpb::StatusResponse r;
    r.mutable_header()->set_member_id(id);
    r.set_leader(leader);
    r.set_islearner(learner);
    return Result<etcdserverpb::StatusResponse>(r);
  };
  etcd.script = {Unavailable("connection refused"), answer(7, 0, true), answer(7, 1, true),
                 answer(7, 1, true), answer(7, 1, false)};
  FakeClock clock(1000);
  std::vector<std::string> seen;
  Status st = WaitForEtcdMember(etcd, "https://10.0.0.5:2379", 7, clock, std::chrono::seconds(60),
                                [&](const std::string& s) { seen.push_back(s); });
  ASSERT_TRUE(st.ok()) << st.ToString();
  EXPECT_EQ(seen, (std::vector<std::string>{"starting", "started, no leader yet",
                                            "learner, waiting for promotion", "voting member"}));
  EXPECT_EQ(etcd.endpoints, std::vector<std::string>(5, "https://10.0.0.5:2379"));
  EXPECT_EQ(clock.slept_ms(), 1000 * 1000 + 4 * 500);
}

TEST(WaitForEtcdMemberTest, GivesUpAfterTheTimeoutSayingWhatItSaw) {
  ScriptedStatus etcd;
  etcdserverpb::StatusResponse learner;
  learner.mutable_header()->set_member_id(7);
  learner.set_leader(1);
  learner.set_islearner(true);
  etcd.script = {learner};
  FakeClock clock(1000);
  Status st = WaitForEtcdMember(etcd, "https://10.0.0.5:2379", 7, clock, std::chrono::seconds(10),
                                [](const std::string&) {});
  EXPECT_EQ(st.ToString(),
            "UNAVAILABLE: etcd at https://10.0.0.5:2379 is not a voting member after "
            "10 s (learner, waiting for promotion)");
  // Another member answering at that URL is a mistake, not a wait.
  etcdserverpb::StatusResponse other = learner;
  other.mutable_header()->set_member_id(8);
  etcd.script = {other};
  EXPECT_EQ(WaitForEtcdMember(etcd, "https://10.0.0.5:2379", 7, clock, std::chrono::seconds(10),
                              [](const std::string&) {})
                .code(),
            Code::kFailedPrecondition);
}

TEST(SystemdEtcdServiceTest, QueuesTheStartWithoutWaitingForIt) {
  FakeProcessRunner runner;
  SystemdEtcdService service(&runner);
  ASSERT_TRUE(service.Start().ok());
  ASSERT_EQ(runner.argvs.size(), 1u);
  EXPECT_EQ(runner.argvs[0], (std::vector<std::string>{"/bin/systemctl", "start", "--no-block",
                                                       "etcd.service"}));
  runner.result = ProcessResult{.exit_code = 1, .signal = 0, .output = "Unit not found\n"};
  EXPECT_EQ(service.Start().ToString(),
            "UNAVAILABLE: systemctl start --no-block etcd.service failed (exit code 1): Unit not "
            "found");
}

TEST(ControlPlaneJoinConfigurationTest, AddsTheEndpointAndSkipsKubeadmsEtcdPhase) {
  ControlPlaneJoin cp{.advertise_address = "10.0.0.5"};
  SecretBytes text = RenderJoinConfiguration(GoodKubeadmJoin(), "cp-1", &cp);
  YAML::Node doc = YAML::Load(std::string(text.view()));
  EXPECT_EQ(doc["controlPlane"]["localAPIEndpoint"]["advertiseAddress"].as<std::string>(),
            "10.0.0.5");
  EXPECT_EQ(doc["controlPlane"]["localAPIEndpoint"]["bindPort"].as<int>(), 6443);
  EXPECT_EQ(doc["skipPhases"].as<std::vector<std::string>>(),
            std::vector<std::string>{"etcd-join"});
  EXPECT_EQ(doc["nodeRegistration"]["name"].as<std::string>(), "cp-1");
  // A worker's configuration has neither.
  YAML::Node worker =
      YAML::Load(std::string(RenderJoinConfiguration(GoodKubeadmJoin(), "w").view()));
  EXPECT_FALSE(worker["controlPlane"]);
  EXPECT_FALSE(worker["skipPhases"]);
}

}  // namespace
}  // namespace berth::agent
