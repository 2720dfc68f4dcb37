#include "tests/e2e/image_fixture.h"

#include <gmock/gmock.h>
#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cctype>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/subprocess.h"
#include "common/time.h"
#include "tests/testing/swtpm.h"

namespace berth::testing {

using ::testing::HasSubstr;

namespace {

std::string Indented(const std::string& text, int spaces) {
  std::string out, pad(static_cast<size_t>(spaces), ' ');
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    out += pad + text.substr(start, end - start) + "\n";
    start = end + 1;
  }
  return out;
}

// A TPM as a manufacturer ships it: swtpm_setup with EK certificates from the CA in
// `ca_dir`, its state in dir/state (what the VM's swtpm then runs on).
std::string ManufactureTpm(const std::string& dir, const std::string& ca_dir) {
  // stopped, state saved, when it goes out of scope
  Swtpm tpm(dir, {.ek_ca_dir = ca_dir, .pcr_banks = "sha256"});
  EXPECT_TRUE(tpm.ok()) << tpm.error();
  return dir + "/state";
}

}  // namespace

std::string WaitForReadyBoot(const KubectlAs& kubectl, const std::string& node, RunningBoot& boot,
                             const std::string& old_boot_id, std::chrono::seconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  std::pair<std::string, std::string> seen;
  while (std::chrono::steady_clock::now() < until && boot.running()) {
    // The agent gave up (the test image reports it and holds the VM): no use waiting.
    if (boot.Serial().find("berth-test: agent-ActiveState=failed") != std::string::npos) break;
    seen = kubectl.Ready(node);
    if (seen.first == "True" && !seen.second.empty() && seen.second != old_boot_id) {
      return seen.second;
    }
    std::this_thread::sleep_for(std::chrono::seconds(3));
  }
  ADD_FAILURE() << "node " << node << " is not Ready in a new boot (Ready \"" << seen.first
                << "\", boot ID \"" << seen.second << "\", the old one \"" << old_boot_id
                << "\"); its VM " << (boot.running() ? "still runs" : "has ended")
                << (boot.Serial().find("berth-test: agent-ActiveState=failed") != std::string::npos
                        ? ", its agent failed"
                        : "")
                << "; console (end):\n"
                << Tail(boot.Serial());
  return "";
}

std::string Tail(const std::string& text, size_t n) {
  return text.substr(text.size() > n ? text.size() - n : 0);
}

void Narrate(const std::string& test, const std::string& step, const std::string& seen) {
  std::printf("%s: %s\n%s", test.c_str(), step.c_str(), seen.c_str());
  std::fflush(stdout);
}

ImageOperator::ImageOperator(std::string dir) : dir_(std::move(dir)) {
  RealProcessRunner runner;
  auto key = runner.Run({BuildDir() + "/cli/berthctl", "operator", "key", "--out", dir_});
  if (!key.ok() || !key->success()) {
    ADD_FAILURE() << "berthctl operator key: "
                  << (key.ok() ? key->output : key.status().ToString());
    return;
  }
  constexpr std::string_view kPin = "operator_spki_sha256: ";
  const size_t at = key->output.find(kPin);
  if (at == std::string::npos || key->output.size() < at + kPin.size() + 64) {
    ADD_FAILURE() << "berthctl operator key printed no pin:\n" << key->output;
    return;
  }
  spki_ = key->output.substr(at + kPin.size(), 64);
}

ProcessResult ImageOperator::Run(const std::vector<std::string>& command, const std::string& node,
                                 const std::vector<std::string>& args) const {
  std::vector<std::string> argv = {BuildDir() + "/cli/berthctl"};
  argv.insert(argv.end(), command.begin(), command.end());
  argv.insert(argv.end(), {"--node", node, "--operator-cert", dir_ + "/operator.pem",
                           "--operator-key", dir_ + "/operator.key"});
  argv.insert(argv.end(), args.begin(), args.end());
  RealProcessRunner runner;
  auto r = runner.Run(argv);
  return r.ok() ? *r : ProcessResult{.exit_code = -1, .output = r.status().ToString()};
}

std::string DiskUuid(const std::string& disk) {
  RealProcessRunner runner;
  auto r = runner.Run({BuildDir() + "/cli/berthctl", "disk", "inspect", disk});
  if (!r.ok()) return "";
  std::istringstream lines(r->output);
  std::string line, uuid;
  while (std::getline(lines, line)) {
    if (line.rfind("uuid: ", 0) == 0) uuid = line.substr(6);
  }
  return uuid;
}

static Bytes Base64Decode(const std::string& text) {
  Bytes out(text.size() / 4 * 3 + 3);
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(text.data()),
                          static_cast<int>(text.size()));
  if (n < 0) return {};
  size_t pad = 0;
  for (size_t i = text.size(); i > 0 && text[i - 1] == '='; --i) ++pad;
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

static std::string NameEntry(X509_NAME* name, int nid) {
  char buf[256] = {0};
  return X509_NAME_get_text_by_NID(name, nid, buf, sizeof buf) < 0 ? "" : buf;
}

std::string DiskSha256(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return "";
  }
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_DigestInit_ex(ctx.get(), EVP_sha256(), nullptr);
  std::vector<char> buf(1 << 20);
  while (in.read(buf.data(), static_cast<std::streamsize>(buf.size())) || in.gcount() > 0) {
    EVP_DigestUpdate(ctx.get(), buf.data(), static_cast<size_t>(in.gcount()));
  }
  Bytes digest(32);
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx.get(), digest.data(), &n);
  return HexEncode(digest);
}

// The token ids berthd minted for `node`, in order (its audit lines of granted tickets).
std::vector<std::string> TokenIds(const ImageCluster& cluster, const std::string& node) {
  std::vector<std::string> out;
  for (const auto& line : cluster.AuditLines()) {
    if (line.find("call=IssueJoinTicket decision=granted node=" + node + " ") ==
        std::string::npos) {
      continue;
    }
    size_t at = line.find(" token_id=");
    if (at != std::string::npos) out.push_back(line.substr(at + 10, 6));
  }
  return out;
}

std::string TokenSecret(const ImageCluster& cluster, const std::string& token_id) {
  nlohmann::json secret =
      cluster.GetJson({"-n", "kube-system", "secret", "bootstrap-token-" + token_id});
  if (secret.is_null()) return "";
  return ToString(Base64Decode(secret["data"].value("token-secret", "")));
}

// Waits, while the node's VM runs, until the API server says the node is Ready; the test
// fails naming what it saw if the VM ends first or the deadline (generous: an emulated CPU on a
// shared machine) passes.
bool WaitForReady(const ImageCluster& cluster, const std::string& node, RunningBoot& boot,
                  std::chrono::seconds deadline) {
  const auto until = std::chrono::steady_clock::now() + deadline;
  std::string seen;
  while (std::chrono::steady_clock::now() < until) {
    seen = cluster.NodeReady(node);
    if (seen == "True") return true;
    if (!boot.running()) break;
    std::this_thread::sleep_for(std::chrono::seconds(2));
  }
  ADD_FAILURE() << "node " << node << " is not Ready (Ready condition: \"" << seen << "\"); its VM "
                << (boot.running() ? "still runs" : "has ended") << "; console (end):\n"
                << boot.Serial().substr(boot.Serial().size() > 6000 ? boot.Serial().size() - 6000
                                                                    : 0);
  return false;
}

// What the API server shows of a worker that has just turned Ready, the kubelet's TLS
// bootstrap with `token_id` among it; returns the SHA-256 (hex) of the DER of the client
// certificate its CSR was signed with.
std::string ExpectJoinedThroughAnApprovedCsr(const ImageCluster& cluster, const std::string& node,
                                             const std::string& token_id) {
  // kubectl get nodes -o wide: the node, Ready, the release, the guest's address.
  auto wide = cluster.Kubectl({"get", "nodes", "-o", "wide", "--no-headers"});
  EXPECT_TRUE(wide.ok() && wide->success());
  std::string row;
  if (wide.ok()) {
    std::istringstream lines(wide->output);
    std::string line;
    while (std::getline(lines, line)) {
      if (line.rfind(node + " ", 0) == 0) row = line;
    }
  }
  std::istringstream cols(row);
  std::vector<std::string> c{std::istream_iterator<std::string>(cols), {}};
  // NAME STATUS ROLES AGE VERSION INTERNAL-IP EXTERNAL-IP OS-IMAGE... CONTAINER-RUNTIME
  EXPECT_GE(c.size(), 9u) << (wide.ok() ? wide->output : "");
  if (c.size() >= 9) {
    EXPECT_EQ(c[1], "Ready") << row;
    EXPECT_EQ(c[2], "<none>") << row;
    EXPECT_EQ(c[4], "v1.37.2") << row;
    EXPECT_EQ(c[5], "10.0.2.15") << row;
    EXPECT_EQ(c.back(), "containerd://1.6.20") << row;
  }
  std::printf("image e2e: kubectl get nodes -o wide\n%s", wide.ok() ? wide->output.c_str() : "");

  nlohmann::json n = cluster.GetJson({"node", node});
  EXPECT_EQ(n["status"]["nodeInfo"].value("kubeletVersion", ""), "v1.37.2");
  EXPECT_EQ(n["status"]["nodeInfo"].value("containerRuntimeVersion", ""), "containerd://1.6.20");
  EXPECT_EQ(n["status"]["nodeInfo"].value("operatingSystem", ""), "linux");
  // The kubelet registered it as kubeadm's worker flags say: no taint, no role label.
  EXPECT_FALSE(n["spec"].contains("taints")) << n["spec"].dump();

  // The CSR: made by the bootstrap token's identity, for the kubelet's client signer, approved
  // by the controller-manager (kubeadm's auto-approval RBAC), signed.
  nlohmann::json csrs = cluster.GetJson({"csr"});
  std::vector<nlohmann::json> mine;
  for (const auto& csr : csrs.value("items", nlohmann::json::array())) {
    if (csr["spec"].value("username", "") == "system:bootstrap:" + token_id) mine.push_back(csr);
  }
  EXPECT_EQ(mine.size(), 1u) << csrs.dump();
  if (mine.size() != 1) return "";
  const nlohmann::json& csr = mine[0];
  EXPECT_EQ(csr["spec"].value("signerName", ""), "kubernetes.io/kube-apiserver-client-kubelet");
  EXPECT_THAT(csr["spec"].value("groups", std::vector<std::string>{}),
              ::testing::IsSupersetOf(
                  {"system:bootstrappers", "system:bootstrappers:kubeadm:default-node-token"}));
  std::vector<std::string> conditions;
  for (const auto& cond : csr["status"].value("conditions", nlohmann::json::array())) {
    conditions.push_back(cond.value("type", "") + "/" + cond.value("reason", "") + "/" +
                         cond.value("status", ""));
  }
  EXPECT_EQ(conditions, std::vector<std::string>{"Approved/AutoApproved/True"});

  // Its certificate: system:node:<node> in system:nodes, for client auth, issued by the
  // cluster CA.
  Bytes pem = Base64Decode(csr["status"].value("certificate", ""));
  auto cert = CertFromPem(ToString(pem));
  EXPECT_TRUE(cert.ok()) << csr.dump();
  if (!cert.ok()) return "";
  X509_NAME* subject = X509_get_subject_name(cert->get());
  EXPECT_EQ(NameEntry(subject, NID_commonName), "system:node:" + node);
  EXPECT_EQ(NameEntry(subject, NID_organizationName), "system:nodes");
  EXPECT_TRUE(X509_get_extended_key_usage(cert->get()) & XKU_SSL_CLIENT);
  auto ca = CertFromPem(MustRead(cluster.Env("KUBE_CA")));
  EXPECT_TRUE(ca.ok());
  if (ca.ok()) {
    EXPECT_EQ(X509_NAME_cmp(X509_get_issuer_name(cert->get()), X509_get_subject_name(ca->get())),
              0);
    EXPECT_EQ(X509_verify(cert->get(), X509_get0_pubkey(ca->get())), 1);
  }
  auto der = CertToDer(cert->get());
  return der.ok() ? HexEncode(Sha256(*der)) : "";
}

// The bootstrap token berthd minted: short-lived (its expiration is its creation plus
// berthd's --token-ttl), and deleted by the controller-manager's token cleaner once expired.
void ExpectTokenExpiresAndIsCleanedUp(const ImageCluster& cluster, const std::string& token_id,
                                      int64_t ttl_seconds) {
  nlohmann::json secret =
      cluster.GetJson({"-n", "kube-system", "secret", "bootstrap-token-" + token_id});
  if (!secret.is_null()) {
    auto expiration = ParseRfc3339(ToString(Base64Decode(secret["data"].value("expiration", ""))));
    auto created = ParseRfc3339(secret["metadata"].value("creationTimestamp", ""));
    ASSERT_TRUE(expiration.ok() && created.ok()) << secret.dump();
    EXPECT_GE(*expiration - *created, ttl_seconds - 2);
    EXPECT_LE(*expiration - *created, ttl_seconds + 2);
    // Wait for the cleaner, past the expiration.
    const bool gone = WaitFor(
        [&] {
          return cluster.GetJson({"-n", "kube-system", "secret", "bootstrap-token-" + token_id})
              .is_null();
        },
        std::chrono::seconds(ttl_seconds + 120));
    EXPECT_TRUE(gone) << "bootstrap-token-" << token_id << " outlived its expiration";
  }
  auto r = cluster.Kubectl({"-n", "kube-system", "get", "secret", "bootstrap-token-" + token_id});
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->success());
  EXPECT_THAT(r->output, HasSubstr("NotFound"));
}

void ImageE2eTest::SetUp() {
  ASSERT_TRUE(std::filesystem::exists(ImageDir() + "/berth.efi"))
      << "no node image in " << ImageDir() << " (the image_build test makes it)";
  ASSERT_TRUE(std::filesystem::exists("/usr/share/OVMF/OVMF_CODE_4M.fd"));
}

// The reference boot: the image on a node with no EnrolmentConfig (berth-agent does not
// start), which prints its firmware event log; berthd's policy accepts exactly that boot,
// and TPMs with an EK certificate from the manufacturer CA.
std::string ImageE2eTest::ReferencePolicy() {
  EXPECT_TRUE(MakeDirs(dir_.Join("reference")).ok());
  ImageNode reference(dir_.Join("reference"),
                      ManufactureTpm(dir_.Join("reference-tpm"), dir_.Join("manufacturer")));
  return ReferencePolicy(reference, nullptr);
}

std::string ImageE2eTest::ReferencePolicy(ImageNode& reference, std::string* identity,
                                          bool other_firmware) {
  ImageBoot boot = reference.Boot({.options = {"IDENTITY=1"}, .other_firmware = other_firmware});
  if (identity != nullptr) *identity = boot.blocks["identity"];
  EXPECT_EQ(boot.outcome, "poweroff") << boot.Describe();
  // Skipped, not failed: the ESP holds no EnrolmentConfig. The kubelet stays down.
  EXPECT_EQ(boot.Report("agent-ActiveState"), "inactive") << boot.Describe();
  EXPECT_EQ(boot.Report("agent-Result"), "success");
  EXPECT_EQ(boot.Report("kubelet-ActiveState"), "inactive");
  EXPECT_EQ(boot.Report("containerd-ActiveState"), "active");
  EXPECT_EQ(boot.Report("mount /"), "/dev/mapper/root squashfs");
  EXPECT_EQ(boot.Report("dm root"), "verity 1");
  std::string hex;
  for (char c : boot.blocks["eventlog"]) {
    if (!std::isspace(static_cast<unsigned char>(c))) hex += c;
  }
  std::string log;
  auto decoded = HexDecode(hex);
  EXPECT_TRUE(decoded.ok() && !decoded->empty()) << "no event log in hex: " << boot.Describe();
  if (decoded.ok()) log = ToString(*decoded);
  const std::string log_path = dir_.Join("reference-eventlog.bin");
  MustWrite(log_path, log);
  RealProcessRunner runner;
  auto policy =
      runner.Run({BuildDir() + "/cli/berthctl", "policy", "from", "--eventlog", log_path});
  EXPECT_TRUE(policy.ok() && policy->success())
      << (policy.ok() ? policy->output : policy.status().ToString());
  if (!policy.ok()) return "";
  // The boot is constrained by the log's events, the UKI's among them (PCR 4, PCR 11).
  EXPECT_THAT(policy->output, HasSubstr("\\EFI\\BOOT\\BOOTX64.EFI"));
  EXPECT_THAT(policy->output, HasSubstr(".cmdline"));
  reference_seconds_ = boot.seconds;
  return policy->output + "  ek_ca_pem: |\n" +
         Indented(Swtpm::EkCaBundlePem(dir_.Join("manufacturer")), 4);
}

std::unique_ptr<ImageNode> ImageE2eTest::NewNode(const std::string& name, int disk_mib) {
  EXPECT_TRUE(MakeDirs(dir_.Join(name)).ok());
  return std::make_unique<ImageNode>(
      dir_.Join(name), ManufactureTpm(dir_.Join(name + "-tpm"), dir_.Join("manufacturer")),
      disk_mib);
}

// What the node's own report says of a boot that joined (or rejoined) and whose kubelet
// runs: the agent's unit, the state disk's mounts, the kubelet's files and certificate.
void ImageE2eTest::ExpectJoinedNodeReport(const ImageBoot& boot, const ImageCluster& cluster) {
  EXPECT_EQ(boot.outcome, "poweroff") << boot.Describe();
  EXPECT_GT(boot.power_button, 0) << boot.Describe();
  EXPECT_EQ(boot.Report("agent-ActiveState"), "active") << boot.Describe();
  EXPECT_EQ(boot.Report("agent-StatusText"), "node joined");
  EXPECT_EQ(boot.Report("mount /var/lib/berth/state"), "/dev/mapper/berth-state ext4");
  EXPECT_EQ(boot.Report("mount /etc/kubernetes"), "/dev/mapper/berth-state ext4");
  EXPECT_EQ(boot.Report("mount /var/lib/kubelet"), "/dev/mapper/berth-state ext4");
  EXPECT_EQ(boot.Report("dm berth-state"), "crypt aes-xts-plain64");
  EXPECT_EQ(boot.Report("progress"), R"({"join_started":true,"joined":true,"version":1})");
  EXPECT_EQ(boot.Report("containerd-ActiveState"), "active");
  EXPECT_EQ(boot.Report("kubelet-ActiveState"), "active") << boot.Describe();
  EXPECT_EQ(boot.Report("kubelet-NRestarts"), "0");
  // kubeadm's leftovers: the bootstrap kubeconfig (it held the token) and the
  // JoinConfiguration are gone; the kubelet talks to the API server at 10.0.2.2 with its own
  // client certificate.
  EXPECT_EQ(boot.Report("exists /etc/kubernetes/bootstrap-kubelet.conf"), "0");
  EXPECT_EQ(boot.Report("exists /run/berth/kubeadm-join.yaml"), "0");
  EXPECT_EQ(boot.Report("exists /etc/kubernetes/pki/ca.crt"), "1");
  EXPECT_EQ(boot.Report("exists /var/lib/kubelet/config.yaml"), "1");
  EXPECT_EQ(boot.Report("kubelet-conf server"),
            "https://" + std::string(kGuestHostAddress) + ":" + cluster.Env("KUBE_APISERVER_PORT"));
  EXPECT_EQ(boot.Report("kubelet-conf client-certificate"),
            "/var/lib/kubelet/pki/kubelet-client-current.pem");
}

}  // namespace berth::testing
