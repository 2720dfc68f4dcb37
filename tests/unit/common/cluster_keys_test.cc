// The cluster keys berthd shares with the control planes it admits (common/cluster_keys.h):
// read from kubeadm's layout, checked on the node before anything is written, written with
// kubeadm's modes, wiped after use.
#include "common/cluster_keys.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>

#include "common/bytes.h"
#include "common/crypto.h"
#include "tests/testing/testing.h"

namespace berth {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

constexpr fs::perms kOwnerRw = fs::perms::owner_read | fs::perms::owner_write;
constexpr fs::perms kWorldRead = kOwnerRw | fs::perms::group_read | fs::perms::others_read;

class ClusterKeysTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(MakeDirs(pki_).ok());
    for (const auto& f : kSharedPkiFiles) {
      testing::MustWrite(pki_ + "/" + std::string(f.name), "content of " + std::string(f.name),
                         0600);
    }
  }

  v1::ClusterKeys Keys() {
    auto pki = ReadSharedPki(pki_);
    EXPECT_TRUE(pki.ok()) << pki.status().ToString();
    return MakeClusterKeys(master_, *pki);
  }

  testing::TempDir dir_;
  std::string pki_ = dir_.Join("kubeadm-pki");
  SecretBytes master_{Bytes(32, 0x4d).data(), 32};
};

TEST_F(ClusterKeysTest, WhatBerthdReadsIsWhatTheNodeWritesWithKubeadmsModes) {
  v1::ClusterKeys keys = Keys();
  ASSERT_TRUE(CheckClusterKeys(keys).ok()) << CheckClusterKeys(keys).ToString();
  ASSERT_EQ(keys.kubernetes_pki_size(), 6);
  const std::string node_pki = dir_.Join("node/etc/kubernetes/pki");
  const std::string master = dir_.Join("node/var/lib/berth/state/berthd/master.secret");
  ASSERT_TRUE(WriteClusterKeys(keys, node_pki, master).ok());
  for (const auto& f : kSharedPkiFiles) {
    const std::string path = node_pki + "/" + std::string(f.name);
    SCOPED_TRACE(path);
    EXPECT_EQ(testing::MustRead(path), "content of " + std::string(f.name));
    EXPECT_EQ(fs::status(path).permissions(), f.secret ? kOwnerRw : kWorldRead);
  }
  EXPECT_EQ(testing::MustRead(master), std::string(32, 0x4d));
  EXPECT_EQ(fs::status(master).permissions(), kOwnerRw);
  EXPECT_EQ(fs::status(fs::path(master).parent_path()).permissions(), fs::perms::owner_all);
  // Exactly kubeadm's six files: nothing else in the directory.
  EXPECT_EQ(std::distance(fs::directory_iterator(node_pki), fs::directory_iterator()), 6);
}

TEST_F(ClusterKeysTest, AMissingFileOnBerthdsSideIsNamed) {
  fs::remove(pki_ + "/front-proxy-ca.key");
  auto pki = ReadSharedPki(pki_);
  EXPECT_EQ(pki.status().code(), Code::kNotFound);
  EXPECT_THAT(pki.status().message(), HasSubstr(pki_ + "/front-proxy-ca.key"));
}

// What a node refuses before it writes anything: a name that would leave the PKI directory or
// is not kubeadm's, a file given twice or left out, an empty one, a short master secret. The
// content, a secret, is never in the message.
TEST_F(ClusterKeysTest, AMalformedSetIsRefusedNamingTheProblemAndNoSecret) {
  auto expect_refused = [](const v1::ClusterKeys& keys, const std::string& why) {
    Status st = CheckClusterKeys(keys);
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << why;
    EXPECT_EQ(st.message(), "malformed cluster keys in the join ticket: " + why);
    EXPECT_THAT(st.message(), ::testing::Not(HasSubstr("content of")));
  };
  v1::ClusterKeys escape = Keys();
  escape.mutable_kubernetes_pki(1)->set_name("../../../etc/shadow");
  expect_refused(escape, "a file name is not one of kubeadm's shared PKI files");
  v1::ClusterKeys other = Keys();
  other.mutable_kubernetes_pki(1)->set_name("apiserver.key");
  expect_refused(other, "\"apiserver.key\" is not one of kubeadm's shared PKI files");
  v1::ClusterKeys twice = Keys();
  *twice.add_kubernetes_pki() = twice.kubernetes_pki(0);
  expect_refused(twice, "ca.crt is given twice");
  v1::ClusterKeys missing = Keys();
  missing.mutable_kubernetes_pki()->RemoveLast();
  expect_refused(missing, "sa.pub is missing");
  v1::ClusterKeys empty = Keys();
  empty.mutable_kubernetes_pki(4)->clear_content();
  expect_refused(empty, "sa.key is empty");
  v1::ClusterKeys short_secret = Keys();
  short_secret.set_master_secret(std::string(31, 'x'));
  expect_refused(short_secret, "the master secret has 31 bytes, at least 32 expected");
  for (const char* endpoint : {"lb.example", "lb.example:0", "lb_1.example:6443",
                               "2001:db8::1:6443", "[lb.example]:6443", "lb.example:6443 --x"}) {
    v1::ClusterKeys bad_endpoint = Keys();
    bad_endpoint.set_control_plane_endpoint(endpoint);
    expect_refused(bad_endpoint, "its control plane endpoint is not host:port");
  }
  for (const char* endpoint : {"lb.example:6443", "192.0.2.10:443", "[2001:db8::1]:6443"}) {
    v1::ClusterKeys good = Keys();
    good.set_control_plane_endpoint(endpoint);
    EXPECT_TRUE(CheckClusterKeys(good).ok()) << endpoint;
  }
}

TEST_F(ClusterKeysTest, ScrubWipesTheSecretsAndKeepsThePublicParts) {
  v1::ClusterKeys keys = Keys();
  ScrubClusterKeys(keys);
  EXPECT_EQ(keys.master_secret(), "");
  for (const auto& f : keys.kubernetes_pki()) {
    EXPECT_EQ(f.content(), f.name().ends_with(".key") ? "" : "content of " + f.name()) << f.name();
  }
  EXPECT_FALSE(keys.has_berthd());  // scrubbing adds nothing
  v1::ClusterKeys with_berthd = Keys();
  with_berthd.mutable_berthd()->set_join_ca_key("join key");
  with_berthd.mutable_berthd()->set_etcd_ca_key("etcd key");
  with_berthd.mutable_berthd()->set_policy("tpm: {}");
  ScrubClusterKeys(with_berthd);
  EXPECT_EQ(with_berthd.berthd().join_ca_key(), "");
  EXPECT_EQ(with_berthd.berthd().etcd_ca_key(), "");
  EXPECT_EQ(with_berthd.berthd().policy(), "tpm: {}");
}

// A CA and its key, PEM.
struct TestCa {
  std::string cert_pem;
  std::string key_pem;
};
TestCa MakeCa(const std::string& name) {
  auto key = GenerateP256Key();
  EXPECT_TRUE(key.ok());
  auto cert = IssueCert({.common_name = name, .is_ca = true, .validity = std::chrono::hours(24)},
                        key->get(), nullptr, key->get());
  EXPECT_TRUE(cert.ok());
  auto key_pem = PrivateKeyToPem(key->get());
  return {*CertToPem(cert->get()), std::string(key_pem->view())};
}

// berthd's keys for a control plane's own berthd: each is checked to be a PEM key, and then to
// be the key of the CA the node already trusts (the join CA it pins, the ticket's etcd CA); a
// key for another CA is refused, naming which, never its content.
TEST_F(ClusterKeysTest, BerthdsKeysMustBeTheKeysOfTheCasTheNodeTrusts) {
  const TestCa join = MakeCa("join"), etcd = MakeCa("etcd"), other = MakeCa("other");
  v1::ClusterKeys keys = Keys();
  v1::BerthdKeys* b = keys.mutable_berthd();
  b->set_join_ca_key(join.key_pem);
  b->set_etcd_ca_key(etcd.key_pem);
  b->set_policy("tpm: {}\n");
  ASSERT_TRUE(CheckClusterKeys(keys).ok()) << CheckClusterKeys(keys).ToString();
  EXPECT_TRUE(CheckBerthdKeys(*b, join.cert_pem, etcd.cert_pem).ok());

  Status swapped = CheckBerthdKeys(*b, etcd.cert_pem, join.cert_pem);
  EXPECT_EQ(swapped.ToString(),
            "INVALID_ARGUMENT: malformed cluster keys in the join ticket: berthd's key for the "
            "join CA this node pins is not that CA's key");
  Status wrong_etcd = CheckBerthdKeys(*b, join.cert_pem, other.cert_pem);
  EXPECT_EQ(wrong_etcd.ToString(),
            "INVALID_ARGUMENT: malformed cluster keys in the join ticket: berthd's key for the "
            "ticket's etcd CA is not that CA's key");

  v1::ClusterKeys junk = keys;
  junk.mutable_berthd()->set_etcd_ca_key("content of a secret");
  Status st = CheckClusterKeys(junk);
  EXPECT_EQ(st.ToString(),
            "INVALID_ARGUMENT: malformed cluster keys in the join ticket: berthd's etcd CA key "
            "is not a PEM private key");
  v1::ClusterKeys no_policy = keys;
  no_policy.mutable_berthd()->clear_policy();
  EXPECT_EQ(CheckClusterKeys(no_policy).ToString(),
            "INVALID_ARGUMENT: malformed cluster keys in the join ticket: berthd's policy is "
            "empty");
  v1::ClusterKeys no_join = keys;
  no_join.mutable_berthd()->clear_join_ca_key();
  EXPECT_EQ(CheckClusterKeys(no_join).ToString(),
            "INVALID_ARGUMENT: malformed cluster keys in the join ticket: berthd's join CA key "
            "is not a PEM private key");
}

}  // namespace
}  // namespace berth
