// `berthctl enrolment write` and `show` as a subprocess: round trips, and bad input that
// exits 2 naming the line or field and leaves the output file as it was.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/enrolment.h"
#include "tests/cli/berthctl_run.h"
#include "tests/testing/testing.h"

namespace berth::cli {
namespace {

using testing::BerthctlRun;
using testing::MustRead;
using testing::MustWrite;
using testing::RunBerthctl;
using testing::TempDir;

// Text format as an operator writes it, without the CA (given with --cluster-ca).
constexpr char kConfigText[] = R"(# prod-eu1 workers
version: 1
cluster_id: "prod-eu1"
endpoints: "10.0.0.10:7443"
endpoints: "berthd.prod-eu1.example:7443"
role: NODE_ROLE_WORKER
attestation: ATTESTATION_KIND_TPM
pcr_selection { bank: HASH_ALGORITHM_SHA256 pcrs: [0, 2, 4, 7, 9, 14] }
state_disk { device: "/dev/vdb" mount_point: "/var/lib/berth/state" filesystem: "xfs" }
)";

class EnrolmentCliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    pki_ = testing::MakeTestPki(dir_.path());
    in_ = Write("enrolment.txtpb", kConfigText);
    out_ = dir_.Join("enrolment.binpb");
  }
  std::string Write(const std::string& name, const std::string& content) {
    MustWrite(dir_.Join(name), content);
    return dir_.Join(name);
  }
  bool Exists(const std::string& path) {
    struct stat st;
    return stat(path.c_str(), &st) == 0;
  }
  BerthctlRun WriteConfig(const std::string& in, const std::string& out) {
    return RunBerthctl(
        {"enrolment", "write", "--in", in, "--out", out, "--cluster-ca", pki_.ca_pem});
  }
  TempDir dir_;
  testing::TestPki pki_;
  std::string in_, out_;
};

TEST_F(EnrolmentCliTest, WriteThenShowRoundTrips) {
  BerthctlRun w = WriteConfig(in_, out_);
  ASSERT_EQ(w.exit_code, 0) << w.err;
  EXPECT_EQ(w.err, "");
  const std::string binary = MustRead(out_);
  EXPECT_EQ(w.out, "wrote " + out_ + " (" + std::to_string(binary.size()) + " bytes)\n");
  struct stat st;
  ASSERT_EQ(stat(out_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0644u);

  // What the agent will load: exactly the text's fields plus the CA from --cluster-ca.
  auto loaded = LoadEnrolmentConfig(out_);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  auto expected = ParseEnrolmentTextUnvalidated(kConfigText);
  ASSERT_TRUE(expected.ok());
  expected->set_cluster_ca_pem(pki_.ca_pem_text);
  EXPECT_EQ(loaded->SerializeAsString(), expected->SerializeAsString());

  BerthctlRun s = RunBerthctl({"enrolment", "show", out_});
  ASSERT_EQ(s.exit_code, 0) << s.err;
  EXPECT_EQ(s.err, "");
  auto ca = CertFromPem(pki_.ca_pem_text);
  const std::string ca_hash = HexEncode(*CertSpkiSha256(ca->get()));
  EXPECT_EQ(s.out.rfind(EnrolmentToText(*loaded), 0), 0u) << s.out;
  std::string trailer = s.out.substr(EnrolmentToText(*loaded).size());
  EXPECT_EQ(trailer.rfind("# cluster CA: CN=berth test cluster CA, expires ", 0), 0u) << trailer;
  EXPECT_NE(trailer.find(", sha256:" + ca_hash + "\n# valid\n"), std::string::npos) << trailer;

  // show's output is valid input to write: the same bytes come out again.
  const std::string again = dir_.Join("again.binpb");
  BerthctlRun w2 =
      RunBerthctl({"enrolment", "write", "--in", Write("shown.txtpb", s.out), "--out", again});
  ASSERT_EQ(w2.exit_code, 0) << w2.err;
  EXPECT_EQ(MustRead(again), binary);
}

TEST_F(EnrolmentCliTest, CaInTheTextIsUsedWhenNoCaFileIsGiven) {
  v1::EnrolmentConfig c = *ParseEnrolmentTextUnvalidated(kConfigText);
  c.set_cluster_ca_pem(pki_.ca_pem_text);
  const std::string in = Write("with-ca.txtpb", EnrolmentToText(c));
  BerthctlRun w = RunBerthctl({"enrolment", "write", "--in", in, "--out", out_});
  ASSERT_EQ(w.exit_code, 0) << w.err;
  EXPECT_EQ(LoadEnrolmentConfig(out_)->cluster_ca_pem(), pki_.ca_pem_text);
}

TEST_F(EnrolmentCliTest, ShowSpellsOutTheDefaultPcrSelection) {
  v1::EnrolmentConfig c = *ParseEnrolmentTextUnvalidated(kConfigText);
  c.clear_pcr_selection();
  c.set_cluster_ca_pem(pki_.ca_pem_text);
  const std::string path = Write("default-pcrs.binpb", c.SerializeAsString());
  BerthctlRun s = RunBerthctl({"enrolment", "show", path});
  EXPECT_EQ(s.exit_code, 0) << s.err;
  EXPECT_NE(s.out.find("\n# pcr_selection absent: the agent quotes sha256 PCRs "
                       "0,1,2,3,4,5,6,7,8,9,14,15\n# valid\n"),
            std::string::npos)
      << s.out;
}

TEST_F(EnrolmentCliTest, CaFileIsReducedToItsCertificates) {
  const std::string noisy =
      Write("noisy-ca.pem", "Bag Attributes\n    friendlyName: ca\n" + pki_.ca_pem_text);
  BerthctlRun w =
      RunBerthctl({"enrolment", "write", "--in", in_, "--out", out_, "--cluster-ca", noisy});
  ASSERT_EQ(w.exit_code, 0) << w.err;
  EXPECT_EQ(LoadEnrolmentConfig(out_)->cluster_ca_pem(), pki_.ca_pem_text);
}

TEST_F(EnrolmentCliTest, InvalidInputExitsTwoAndCreatesNothing) {
  struct Case {
    std::string text, message;
  } cases[] = {
      {"version: 1\nendpoints: \"10.0.0.10\"\nrole: NODE_ROLE_WORKER\n"
       "attestation: ATTESTATION_KIND_TPM\n",
       ": endpoint \"10.0.0.10\" is not host:port"},
      {"version: 1\nendpoints: \"10.0.0.10:7443\"\nattestation: ATTESTATION_KIND_TPM\n",
       ": role is not set (worker or control plane)"},
      {"version: 1\nendpoints: \"10.0.0.10:7443\"\nrole: NODE_ROLE_WORKER\n"
       "attestation: ATTESTATION_KIND_TPM\nnode_name: \"Node_1\"\n",
       ": node_name \"Node_1\" is not a valid DNS-1123 subdomain"},
      {"version: 1\nendpoints: \"10.0.0.10:7443\"\nrole: NODE_ROLE_WORKER\n"
       "attestation: ATTESTATION_KIND_TPM\npcr_selection { bank: HASH_ALGORITHM_SHA256 }\n",
       ": pcr_selection names a bank but no PCRs"},
      {"version: 1\nendpoints: \"10.0.0.10:7443\"\nrol: NODE_ROLE_WORKER\n",
       ": enrolment text does not parse: line 3 column 4: Message type "
       "\"berth.v1.EnrolmentConfig\" has no field named \"rol\"."},
      {"version: 1\nendpoints: \"10.0.0.10:7443\"\n}\n",
       ": enrolment text does not parse: line 3 column 1: Expected identifier, got: }"},
  };
  for (const Case& c : cases) {
    const std::string in = Write("bad.txtpb", c.text);
    BerthctlRun w = WriteConfig(in, out_);
    EXPECT_EQ(w.exit_code, 2) << c.text;
    EXPECT_EQ(w.out, "");
    EXPECT_EQ(w.err, "--in " + in + c.message + "\n");
    EXPECT_FALSE(Exists(out_)) << c.text;
  }
}

TEST_F(EnrolmentCliTest, InvalidInputLeavesAnExistingOutputByteForByte) {
  ASSERT_EQ(WriteConfig(in_, out_).exit_code, 0);
  const std::string before = MustRead(out_);
  std::string text = kConfigText;
  text.replace(text.find("version: 1"), 10, "version: 2");
  const std::string bad = Write("bad.txtpb", text);
  BerthctlRun w = WriteConfig(bad, out_);
  EXPECT_EQ(w.exit_code, 2);
  EXPECT_EQ(w.err, "--in " + bad + ": unsupported version 2 (expected 1)\n");
  EXPECT_EQ(MustRead(out_), before);
}

TEST_F(EnrolmentCliTest, MissingOrBadFilesExitTwoNamingThem) {
  const std::string missing = dir_.Join("missing.txtpb");
  BerthctlRun w = WriteConfig(missing, out_);
  EXPECT_EQ(w.exit_code, 2);
  EXPECT_EQ(w.err, "--in: open(" + missing + "): No such file or directory\n");

  const std::string garbage_ca = Write("garbage-ca.pem", "not a certificate\n");
  w = RunBerthctl({"enrolment", "write", "--in", in_, "--out", out_, "--cluster-ca", garbage_ca});
  EXPECT_EQ(w.exit_code, 2);
  EXPECT_EQ(w.err, "--cluster-ca " + garbage_ca + ": no PEM certificate found\n");

  w = RunBerthctl({"enrolment", "write", "--in", in_, "--out", out_});  // no CA at all
  EXPECT_EQ(w.exit_code, 2);
  EXPECT_EQ(w.err,
            "--in " + in_ + ": cluster_ca_pem is empty: berthd's TLS chain cannot be pinned\n");

  const std::string no_dir = dir_.Join("no/such/dir/enrolment.binpb");
  w = WriteConfig(in_, no_dir);
  EXPECT_EQ(w.exit_code, 2);
  EXPECT_EQ(w.err.rfind("--out: open(" + no_dir + ".tmp.", 0), 0u) << w.err;
  EXPECT_FALSE(Exists(out_));

  BerthctlRun usage = RunBerthctl({"enrolment", "write", "--in", in_});
  EXPECT_EQ(usage.exit_code, 2);
  EXPECT_NE(usage.err.find("--out is required"), std::string::npos) << usage.err;
}

TEST_F(EnrolmentCliTest, ShowRefusesMissingAndCorruptFiles) {
  const std::string missing = dir_.Join("missing.binpb");
  BerthctlRun s = RunBerthctl({"enrolment", "show", missing});
  EXPECT_EQ(s.exit_code, 2);
  EXPECT_EQ(s.out, "");
  EXPECT_EQ(s.err, "reading enrolment config: open(" + missing + "): No such file or directory\n");

  for (const std::string& content :
       {std::string(), std::string("\xff\xff\xff\xff", 4), std::string(kConfigText)}) {
    const std::string corrupt = Write("corrupt.binpb", content);
    s = RunBerthctl({"enrolment", "show", corrupt});
    EXPECT_EQ(s.exit_code, 2) << content;
    EXPECT_EQ(s.out, "");
    EXPECT_EQ(s.err, "enrolment config " + corrupt + " is corrupt: not a binary EnrolmentConfig\n");
  }
}

TEST_F(EnrolmentCliTest, ShowPrintsAnInvalidConfigAndExitsOne) {
  v1::EnrolmentConfig c = *ParseEnrolmentTextUnvalidated(kConfigText);  // no CA
  c.set_version(1);
  const std::string path = Write("invalid.binpb", c.SerializeAsString());
  BerthctlRun s = RunBerthctl({"enrolment", "show", path});
  EXPECT_EQ(s.exit_code, 1);
  EXPECT_EQ(s.out, EnrolmentToText(c) +
                       "# invalid: cluster_ca_pem is empty: berthd's TLS chain cannot be pinned\n");
  EXPECT_EQ(s.err, path +
                       " is not a valid EnrolmentConfig: cluster_ca_pem is empty: berthd's TLS "
                       "chain cannot be pinned\n");
}

}  // namespace
}  // namespace berth::cli
