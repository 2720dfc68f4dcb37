// The EnrolmentConfig: every validation rule, the binary file, and the text format.
#include "common/enrolment.h"

#include <google/protobuf/unknown_field_set.h>
#include <gtest/gtest.h>

#include "common/bytes.h"
#include "tests/testing/testing.h"

namespace berth {
namespace {

using berth::testing::TempDir;

class EnrolmentTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = testing::MakeTestPki(dir_.path());
    valid_.set_version(1);
    valid_.set_cluster_id("prod-eu1");
    valid_.add_endpoints("10.0.0.10:7443");
    valid_.add_endpoints("berthd.example:443");
    valid_.set_cluster_ca_pem(pki_.ca_pem_text);
    valid_.set_role(v1::NODE_ROLE_WORKER);
    valid_.set_attestation(v1::ATTESTATION_KIND_TPM);
  }

  // `mutate` applied to a valid config must fail validation with exactly `message`.
  void ExpectInvalid(const std::function<void(v1::EnrolmentConfig&)>& mutate,
                     const std::string& message) {
    v1::EnrolmentConfig c = valid_;
    mutate(c);
    Status st = ValidateEnrolmentConfig(c);
    EXPECT_EQ(st.code(), Code::kInvalidArgument) << message;
    EXPECT_EQ(st.message(), message);
  }

  TempDir dir_;
  testing::TestPki pki_;
  v1::EnrolmentConfig valid_;
};

TEST_F(EnrolmentTest, AValidConfigValidates) {
  EXPECT_TRUE(ValidateEnrolmentConfig(valid_).ok());
  v1::EnrolmentConfig full = valid_;
  full.set_role(v1::NODE_ROLE_CONTROL_PLANE);
  full.set_attestation(v1::ATTESTATION_KIND_SEV_SNP);
  full.set_tls_server_name("berthd.example");
  full.set_node_name("cp-1.rack7");
  full.mutable_state_disk()->set_device("/dev/vdb");
  full.mutable_state_disk()->set_mount_point("/var/lib/berth/state");
  full.mutable_state_disk()->set_filesystem("xfs");
  full.mutable_operator_access()->add_operator_spki_sha256(std::string(64, 'a'));
  full.mutable_operator_access()->set_port(7443);
  auto* sel = full.add_pcr_selection();
  sel->set_bank(v1::HASH_ALGORITHM_SHA384);
  sel->add_pcrs(0);
  sel->add_pcrs(23);
  EXPECT_TRUE(ValidateEnrolmentConfig(full).ok()) << ValidateEnrolmentConfig(full).ToString();
  full.mutable_state_disk()->set_filesystem("");  // ext4 by default
  EXPECT_TRUE(ValidateEnrolmentConfig(full).ok());
}

TEST_F(EnrolmentTest, EveryRuleNamesItsField) {
  ExpectInvalid([](auto& c) { c.set_version(0); }, "unsupported version 0 (expected 1)");
  ExpectInvalid([](auto& c) { c.set_version(2); }, "unsupported version 2 (expected 1)");
  ExpectInvalid([](auto& c) { c.clear_endpoints(); }, "no endpoints: the node has nowhere to join");
  ExpectInvalid([](auto& c) { c.add_endpoints("berthd.example"); },
                "endpoint \"berthd.example\" is not host:port");
  ExpectInvalid([](auto& c) { c.clear_cluster_ca_pem(); },
                "cluster_ca_pem is empty: berthd's TLS chain cannot be pinned");
  ExpectInvalid([](auto& c) { c.set_cluster_ca_pem("-----BEGIN CERTIFICATE-----\nAAAA\n"); },
                "cluster_ca_pem holds no valid certificate");
  ExpectInvalid([](auto& c) { c.clear_role(); }, "role is not set (worker or control plane)");
  ExpectInvalid([](auto& c) { c.set_role(static_cast<v1::NodeRole>(9)); },
                "role is not set (worker or control plane)");
  ExpectInvalid([](auto& c) { c.clear_attestation(); },
                "attestation kind is not set (tpm or sev-snp)");
  ExpectInvalid(
      [](auto& c) {
        c.mutable_state_disk()->set_device("vdb");
        c.mutable_state_disk()->set_mount_point("/var/lib/berth/state");
      },
      "state_disk.device must be an absolute path");
  ExpectInvalid([](auto& c) { c.mutable_state_disk()->set_mount_point("/mnt"); },
                "state_disk.device must be an absolute path");
  ExpectInvalid([](auto& c) { c.mutable_state_disk()->set_device("/dev/vdb"); },
                "state_disk.mount_point must be an absolute path");
  ExpectInvalid(
      [](auto& c) {
        c.mutable_state_disk()->set_device("/dev/vdb");
        c.mutable_state_disk()->set_mount_point("state");
      },
      "state_disk.mount_point must be an absolute path");
  ExpectInvalid(
      [](auto& c) {
        c.mutable_state_disk()->set_device("/dev/vdb");
        c.mutable_state_disk()->set_mount_point("/mnt");
        c.mutable_state_disk()->set_filesystem("btrfs");
      },
      "state_disk.filesystem \"btrfs\" is not ext4 or xfs");
  ExpectInvalid(
      [](auto& c) {
        auto* s = c.add_pcr_selection();
        s->set_bank(static_cast<v1::HashAlgorithm>(7));
        s->add_pcrs(0);
      },
      "pcr_selection has an unknown bank 7");
  ExpectInvalid(
      [](auto& c) {
        auto* s = c.add_pcr_selection();
        s->add_pcrs(0);
      },
      "pcr_selection has an unknown bank 0");
  ExpectInvalid([](auto& c) { c.add_pcr_selection()->set_bank(v1::HASH_ALGORITHM_SHA256); },
                "pcr_selection names a bank but no PCRs");
  ExpectInvalid(
      [](auto& c) {
        auto* s = c.add_pcr_selection();
        s->set_bank(v1::HASH_ALGORITHM_SHA1);
        s->add_pcrs(24);
      },
      "pcr_selection names PCR 24 (0-23)");
  ExpectInvalid([](auto& c) { c.set_node_name("Node_1"); },
                "node_name \"Node_1\" is not a valid DNS-1123 subdomain");
  ExpectInvalid(
      [](auto& c) { c.mutable_operator_access()->add_operator_spki_sha256("abcd"); },
      "operator_access.operator_spki_sha256 \"abcd\" is not 64 hex digits (berthctl operator "
      "key prints it)");
  ExpectInvalid([](auto& c) { c.mutable_operator_access()->set_port(70000); },
                "operator_access.port 70000 is not a TCP port");
}

// The first control plane makes the cluster: it names no berthd and pins no CA yet, but it must
// be a control plane with a state disk that an operator it pins bootstraps.
TEST_F(EnrolmentTest, ABootstrapConfigNamesNoBerthdButNeedsAControlPlaneDiskAndOperator) {
  v1::EnrolmentConfig c = valid_;
  c.clear_endpoints();
  c.clear_cluster_ca_pem();
  c.set_role(v1::NODE_ROLE_CONTROL_PLANE);
  c.mutable_state_disk()->set_device("/dev/vdb");
  c.mutable_state_disk()->set_mount_point("/var/lib/berth/state");
  c.mutable_operator_access()->set_bootstrap(true);
  c.mutable_operator_access()->add_operator_spki_sha256(std::string(64, 'a'));
  EXPECT_TRUE(ValidateEnrolmentConfig(c).ok()) << ValidateEnrolmentConfig(c).ToString();

  const std::string needs =
      "operator_access.bootstrap needs a control plane with a state disk and at least one pinned "
      "operator (operator_access.operator_spki_sha256)";
  v1::EnrolmentConfig worker = c;
  worker.set_role(v1::NODE_ROLE_WORKER);
  EXPECT_EQ(ValidateEnrolmentConfig(worker).message(), needs);
  v1::EnrolmentConfig diskless = c;
  diskless.clear_state_disk();
  EXPECT_EQ(ValidateEnrolmentConfig(diskless).message(), needs);
  v1::EnrolmentConfig unpinned = c;
  unpinned.mutable_operator_access()->clear_operator_spki_sha256();
  EXPECT_EQ(ValidateEnrolmentConfig(unpinned).message(), needs);
  // Without bootstrap the same config has nowhere to join.
  v1::EnrolmentConfig joining = c;
  joining.mutable_operator_access()->set_bootstrap(false);
  EXPECT_EQ(ValidateEnrolmentConfig(joining).message(), "no endpoints: the node has nowhere to join");
  // Once it names a berthd (an operator adds the endpoints after the bootstrap), it must pin
  // its CA: an unpinned berthd would be checked against the system's roots.
  v1::EnrolmentConfig named = c;
  named.add_endpoints("192.0.2.10:7400");
  EXPECT_EQ(ValidateEnrolmentConfig(named).message(),
            "cluster_ca_pem is empty: berthd's TLS chain cannot be pinned");
  named.set_cluster_ca_pem(valid_.cluster_ca_pem());
  EXPECT_TRUE(ValidateEnrolmentConfig(named).ok()) << ValidateEnrolmentConfig(named).ToString();
  // A CA it does pin must still parse.
  c.set_cluster_ca_pem("not a certificate");
  EXPECT_EQ(ValidateEnrolmentConfig(c).message(), "cluster_ca_pem holds no valid certificate");
}

TEST(EndpointTest, HostPortForms) {
  for (const char* ok : {"10.0.0.1:7443", "berthd.example:443", "[::1]:7443", "[fd00::10]:1",
                         "localhost:65535", "a:1"}) {
    EXPECT_TRUE(IsValidEndpoint(ok)) << ok;
  }
  for (const char* bad :
       {"", ":7443", "host", "host:", "host:0", "host:65536", "host:123456", "host:12a", "ho st:1",
        "[]:1", "[::1:1", "::1:7443", "host:-1", "https://host:443"}) {
    EXPECT_FALSE(IsValidEndpoint(bad)) << bad;
  }
}

TEST(NodeNameTest, Dns1123Subdomains) {
  for (const std::string& ok :
       {std::string("a"), std::string("node-1"), std::string("cp-1.rack7.example"),
        std::string("0node"), std::string(253, 'a')}) {
    EXPECT_TRUE(IsValidNodeName(ok)) << ok;
  }
  for (const std::string& bad :
       {std::string(""), std::string("-a"), std::string("a-"), std::string("Node"),
        std::string("a_b"), std::string("a..b"), std::string(".a"), std::string("a."),
        std::string("a-.b"), std::string("a.-b"), std::string(254, 'a')}) {
    EXPECT_FALSE(IsValidNodeName(bad)) << bad;
  }
}

TEST(DefaultSelectionTest, Sha256BootPcrs) {
  auto sel = DefaultPcrSelection();
  ASSERT_EQ(sel.size(), 1u);
  EXPECT_EQ(sel[0].bank(), v1::HASH_ALGORITHM_SHA256);
  EXPECT_EQ(std::vector<uint32_t>(sel[0].pcrs().begin(), sel[0].pcrs().end()),
            (std::vector<uint32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14, 15}));
}

TEST_F(EnrolmentTest, BinaryFileLoadsAndValidates) {
  const std::string path = dir_.Join("enrolment.binpb");
  testing::MustWrite(path, valid_.SerializeAsString());
  auto loaded = LoadEnrolmentConfig(path);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->SerializeAsString(), valid_.SerializeAsString());
  EXPECT_EQ(ReadEnrolmentConfigUnvalidated(path)->SerializeAsString(), valid_.SerializeAsString());
}

TEST_F(EnrolmentTest, MissingCorruptOrInvalidFilesAreRefusedNamingTheFile) {
  const std::string missing = dir_.Join("missing.binpb");
  EXPECT_EQ(
      LoadEnrolmentConfig(missing).status().ToString(),
      "NOT_FOUND: reading enrolment config: open(" + missing + "): No such file or directory");

  const std::string empty = dir_.Join("empty.binpb");
  testing::MustWrite(empty, "");
  EXPECT_EQ(
      LoadEnrolmentConfig(empty).status().ToString(),
      "INVALID_ARGUMENT: enrolment config " + empty + " is corrupt: not a binary EnrolmentConfig");

  const std::string garbage = dir_.Join("garbage.binpb");
  testing::MustWrite(garbage, std::string("\xff\xff\xff\xff", 4));
  EXPECT_EQ(LoadEnrolmentConfig(garbage).status().ToString(),
            "INVALID_ARGUMENT: enrolment config " + garbage +
                " is corrupt: not a binary EnrolmentConfig");
  EXPECT_EQ(ReadEnrolmentConfigUnvalidated(garbage).status().code(), Code::kInvalidArgument);

  const std::string invalid = dir_.Join("invalid.binpb");
  v1::EnrolmentConfig v2 = valid_;
  v2.set_version(2);
  testing::MustWrite(invalid, v2.SerializeAsString());
  EXPECT_EQ(
      LoadEnrolmentConfig(invalid).status().ToString(),
      "INVALID_ARGUMENT: enrolment config " + invalid + ": unsupported version 2 (expected 1)");
  // Unvalidated reading hands it over as it is.
  auto raw = ReadEnrolmentConfigUnvalidated(invalid);
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(raw->version(), 2u);
}

TEST_F(EnrolmentTest, TextRoundTrip) {
  v1::EnrolmentConfig c = valid_;
  c.mutable_state_disk()->set_device("/dev/vdb");
  c.mutable_state_disk()->set_mount_point("/var/lib/berth/state");
  auto* s = c.add_pcr_selection();
  s->set_bank(v1::HASH_ALGORITHM_SHA256);
  s->add_pcrs(7);
  std::string text = EnrolmentToText(c);
  EXPECT_NE(text.find("endpoints: \"10.0.0.10:7443\""), std::string::npos) << text;
  EXPECT_NE(text.find("role: NODE_ROLE_WORKER"), std::string::npos) << text;
  auto parsed = ParseEnrolmentText(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  EXPECT_EQ(parsed->SerializeAsString(), c.SerializeAsString());
}

// Found by fuzz_enrolment: a binary config carrying fields this berth does not know (here 99
// at the top level and 9 in state_disk) printed them as "99: 5" lines, so `berthctl enrolment
// show` wrote text that `write` refused ("Expected identifier, got: 99").
TEST_F(EnrolmentTest, TextOfAConfigWithUnknownFieldsParsesBackAndNamesThem) {
  v1::EnrolmentConfig c = valid_;
  c.mutable_state_disk()->set_device("/dev/vdb");
  v1::StateDiskConfig* disk = c.mutable_state_disk();
  disk->GetReflection()->MutableUnknownFields(disk)->AddVarint(9, 7);
  std::string binary = c.SerializeAsString() + std::string("\x98\x06\x05", 3);   // 99: 5
  v1::EnrolmentConfig read;
  ASSERT_TRUE(read.ParseFromString(binary));
  std::string text = EnrolmentToText(read);
  EXPECT_EQ(text.find("99:"), std::string::npos) << text;
  EXPECT_NE(text.find("\n# fields unknown to this berth, not shown: 99, state_disk.9\n"),
            std::string::npos)
      << text;
  auto parsed = ParseEnrolmentTextUnvalidated(text);
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString() << "\n" << text;
  v1::EnrolmentConfig known = valid_;
  known.mutable_state_disk()->set_device("/dev/vdb");
  EXPECT_EQ(parsed->SerializeAsString(), known.SerializeAsString());
}

TEST_F(EnrolmentTest, TextErrorsNameTheLineOrTheField) {
  // protobuf reports a bad value where the next token starts (here: the next line), so the
  // message also names the field and the value.
  auto bad_enum = ParseEnrolmentText("version: 1\nendpoints: \"a:1\"\nrole: NODE_ROLE_WORKR\n");
  EXPECT_EQ(bad_enum.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(bad_enum.status().message(),
            "enrolment text does not parse: line 4 column 1: Unknown enumeration value of "
            "\"NODE_ROLE_WORKR\" for field \"role\".");
  auto bad_syntax = ParseEnrolmentText("version: 1\nendpoints: \"a:1\nrole: NODE_ROLE_WORKER\n");
  EXPECT_EQ(bad_syntax.status().message(),
            "enrolment text does not parse: line 2 column 16: String literals cannot cross line "
            "boundaries.");
  auto unknown_field = ParseEnrolmentText("version: 1\n\nendpoint: \"a:1\"\n");
  EXPECT_EQ(unknown_field.status().message(),
            "enrolment text does not parse: line 3 column 9: Message type "
            "\"berth.v1.EnrolmentConfig\" has no field named \"endpoint\".");
  // Parses, but fails validation: the message names the field.
  auto invalid = ParseEnrolmentText("version: 1\n");
  EXPECT_EQ(invalid.status().ToString(),
            "INVALID_ARGUMENT: no endpoints: the node has nowhere to join");
  auto unvalidated = ParseEnrolmentTextUnvalidated("version: 1\n");
  ASSERT_TRUE(unvalidated.ok());
  EXPECT_EQ(unvalidated->version(), 1u);
}

}  // namespace
}  // namespace berth
