// Writes the seed corpus of every fuzz target: fuzz_seeds <dir> makes <dir>/<target>/seed-*.
// The seeds are the real artefacts of the attestation testdata (read in place) and, for the
// structured targets, protobuf messages built from them the way the agent and berthd build
// them, for the fixed world of fuzz_support.h. tests/fuzz/run calls it before every run.
#include <filesystem>
#include <iostream>

#include "agent/etcd_join.h"
#include "berth/v1/berth.pb.h"
#include "common/crypto.h"
#include "common/enrolment.h"
#include "common/etcd_pki.h"
#include "common/snp/report.h"
#include "common/tpm/credential.h"
#include "common/tpm/quote.h"
#include "server/join/nonce.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fuzz/fuzz_support.h"

namespace fs = std::filesystem;
using namespace berth;

namespace {

fs::path out_dir;
int written = 0;

void Write(const std::string& target, const std::string& name, std::string_view data) {
  if (data.empty()) return;  // testdata absent
  fs::create_directories(out_dir / target);
  Status st = WriteFileAtomic((out_dir / target / ("seed-" + name)).string(), data, 0644);
  if (!st.ok()) {
    std::cerr << "fuzz_seeds: " << st.ToString() << "\n";
    exit(1);
  }
  ++written;
}
void Write(const std::string& target, const std::string& name, const Bytes& data) {
  Write(target, name, ToString(data));
}

template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) {
    std::cerr << "fuzz_seeds: " << what << ": " << r.status().ToString() << "\n";
    exit(1);
  }
  return std::move(*r);
}

// Every testdata file whose path ends in `suffix`, named by its folder and file.
void FromTestdata(const std::string& target, const std::string& suffix) {
  fs::path root = fuzz::TestdataDir();
  if (!fs::exists(root)) return;
  for (const auto& entry : fs::recursive_directory_iterator(root)) {
    std::string rel = fs::relative(entry.path(), root).string();
    if (!entry.is_regular_file() || !rel.ends_with(suffix)) continue;
    std::string seed = rel;
    std::replace(seed.begin(), seed.end(), '/', '_');
    Write(target, seed, fuzz::ReadTestdata(rel));
  }
}

Bytes CertDer(const std::string& rel) {
  Bytes file = fuzz::ReadTestdata(rel);
  if (file.empty()) return {};
  return Must(snp::CertificateToDer(ToString(file)), rel.c_str());
}

v1::Evidence SnpEvidence(const std::string& report, const std::string& vcek,
                         const std::string& ask) {
  v1::Evidence e;
  e.mutable_sev_snp()->set_report(ToString(fuzz::ReadTestdata(report)));
  e.mutable_sev_snp()->set_vcek(ToString(CertDer(vcek)));
  e.mutable_sev_snp()->set_ask(ToString(CertDer(ask)));
  return e;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::cerr << "usage: fuzz_seeds <corpus dir>\n";
    return 2;
  }
  out_dir = argv[1];
  fuzz::Quiet();

  // ---- TPM structures and event logs: the files as they are ----
  FromTestdata("fuzz_tpm_attest", ".tpms_attest");
  FromTestdata("fuzz_tpm_signature", ".tpmt_signature");
  FromTestdata("fuzz_tpm_public", ".tpmt_public");
  Write("fuzz_tpm_public", "ek-rsa2048-template",
        Must(tpm::MarshalPublic(tpm::EkTemplateRsa2048()), "EK"));
  Write("fuzz_tpm_public", "ek-p256-template",
        Must(tpm::MarshalPublic(tpm::EkTemplateEccP256()), "EK"));
  FromTestdata("fuzz_eventlog", "/event_log.bin");
  for (const char* log : {"arch-linux-workstation", "debian-10", "gdc-host", "glinux-alex",
                          "rhel8-uefi", "ubuntu-2404-amd-sevsnp"}) {
    FromTestdata("fuzz_eventlog", std::string("eventlogs-gotpmtools/") + log + ".bin");
  }

  // ---- SEV-SNP ----
  FromTestdata("fuzz_snp_report", "report.bin");
  FromTestdata("fuzz_snp_report", "report_milan.bin");
  FromTestdata("fuzz_snp_report", "report_INVALID_SIGNATURE.bin");
  FromTestdata("fuzz_snp_cert", ".pem");
  FromTestdata("fuzz_snp_cert", ".der");
  for (const auto& [name, vcek, ask, ark] :
       {std::tuple{"virtee", "snp-virtee-milan/vcek_milan.der", "snp-virtee-milan/ask_milan.pem",
                   "snp-virtee-milan/ark_milan.pem"},
        std::tuple{"cmc", "snp-cmc-milan/vcek.pem", "snp-cmc-milan/ask_milan.pem",
                   "snp-cmc-milan/ark_milan.pem"}}) {
    snp::CertTable table{.vcek = CertDer(vcek), .ask = CertDer(ask), .ark = CertDer(ark)};
    if (table.vcek.empty()) continue;
    Write("fuzz_snp_cert_table", name, snp::MakeCertTable(table));
    snp::CertTable vlek{.vlek = table.vcek, .ask = CertDer("amd-roots/asvk_milan.pem")};
    Write("fuzz_snp_cert_table", std::string(name) + "-vlek", snp::MakeCertTable(vlek));
  }

  // ---- evidence, as a join request carries it ----
  std::vector<std::pair<std::string, v1::Evidence>> evidence;
  for (const char* bank : {"sha1", "sha256", "sha384"}) {
    evidence.emplace_back(std::string("gce-nonce9009-") + bank,
                          fuzz::GceTpmEvidence("tpm-gce-cos85-nonce9009", bank));
  }
  evidence.emplace_back("gce-no-nonce-sha256",
                        fuzz::GceTpmEvidence("tpm-gce-cos85-no-nonce", "sha256"));
  evidence.emplace_back("snp-virtee", SnpEvidence("snp-virtee-milan/report_milan.bin",
                                                  "snp-virtee-milan/vcek_milan.der",
                                                  "snp-virtee-milan/ask_milan.pem"));
  evidence.emplace_back("snp-cmc", SnpEvidence("snp-cmc-milan/report.bin", "snp-cmc-milan/vcek.pem",
                                               "snp-cmc-milan/ask_milan.pem"));
  bool have_testdata = !fuzz::ReadTestdata("tpm-gce-cos85-nonce9009/event_log.bin").empty();
  if (have_testdata) {
    for (const auto& [name, e] : evidence) Write("fuzz_evidence", name, e.SerializeAsString());
  }

  // ---- etcd CSRs, as the agent makes them ----
  agent::EtcdKeys keys = fuzz::FixedEtcdKeys();
  Write("fuzz_etcd_csr", "p256-server", keys.server_csr);
  Write("fuzz_etcd_csr", "p256-peer", keys.peer_csr);
  auto rsa = Must(GenerateRsaKey(2048), "RSA key");
  Write("fuzz_etcd_csr", "rsa2048", Must(agent::MakeCsr(rsa.get(), fuzz::kNodeName), "RSA CSR"));

  // ---- the EnrolmentConfig ----
  auto ca_key = Must(GenerateP256Key(), "CA key");
  auto ca_cert = Must(
      IssueCert({.common_name = "fuzz CA", .is_ca = true, .validity = std::chrono::hours(24 * 365)},
                ca_key.get(), nullptr, ca_key.get()),
      "CA");
  std::string ca_pem = Must(CertToPem(ca_cert.get()), "CA PEM");
  v1::EnrolmentConfig worker;
  worker.set_version(1);
  worker.set_cluster_id("prod-eu1");
  worker.add_endpoints("10.0.0.10:7443");
  worker.add_endpoints("[fd00::1]:443");
  worker.set_cluster_ca_pem(ca_pem);
  worker.set_role(v1::NODE_ROLE_WORKER);
  worker.set_attestation(v1::ATTESTATION_KIND_TPM);
  Write("fuzz_enrolment", "tpm-worker-diskless", worker.SerializeAsString());
  v1::EnrolmentConfig cp = worker;
  cp.set_role(v1::NODE_ROLE_CONTROL_PLANE);
  cp.set_attestation(v1::ATTESTATION_KIND_SEV_SNP);
  cp.set_tls_server_name("berthd.example");
  cp.set_node_name("cp-1.rack7");
  cp.mutable_state_disk()->set_device("/dev/vdb");
  cp.mutable_state_disk()->set_mount_point("/var/lib/berth/state");
  cp.mutable_state_disk()->set_filesystem("xfs");
  auto* sel = cp.add_pcr_selection();
  sel->set_bank(v1::HASH_ALGORITHM_SHA384);
  sel->add_pcrs(0);
  sel->add_pcrs(23);
  Write("fuzz_enrolment", "snp-control-plane-disk", cp.SerializeAsString());

  // ---- join requests with nonces the join target accepts ----
  FakeClock clock(fuzz::kNow);
  auto nonces =
      Must(server::NonceIssuer::Create(fuzz::MasterSecret(), &clock, std::chrono::seconds(300)),
           "nonce issuer");
  for (const auto& [name, e] : evidence) {
    if (!have_testdata) break;
    v1::JoinRequest request;
    *request.mutable_evidence() = e;
    request.set_nonce(ToString(nonces.Issue()));
    request.set_node_name(fuzz::kNodeName);
    request.set_role(v1::NODE_ROLE_WORKER);
    request.set_disk_uuid("0b9f2c1e-3d4a-4b5c-8d6e-7f8091a2b3c4");
    Write("fuzz_join_request", "worker-" + name, request.SerializeAsString());
    request.set_role(v1::NODE_ROLE_CONTROL_PLANE);
    request.add_node_addresses("10.0.0.1");
    request.set_etcd_csr(ToString(keys.server_csr));
    request.set_etcd_peer_csr(ToString(keys.peer_csr));
    request.set_etcd_peer_url(fuzz::kPeerUrl);
    request.set_etcd_client_url("https://10.0.0.1:2379");
    Write("fuzz_join_request", "control-plane-" + name, request.SerializeAsString());
  }

  // ---- join tickets as berthd issues them, for the fixed etcd keys ----
  auto etcd_ca_key = Must(GenerateP256Key(), "etcd CA key");
  auto etcd_ca_cert = Must(
      IssueCert({.common_name = "etcd-ca", .is_ca = true, .validity = std::chrono::hours(24 * 365)},
                etcd_ca_key.get(), nullptr, etcd_ca_key.get()),
      "etcd CA");
  auto etcd_ca = Must(EtcdCa::FromPem(Must(CertToPem(etcd_ca_cert.get()), "etcd CA PEM"),
                                      Must(PrivateKeyToPem(etcd_ca_key.get()), "key PEM"),
                                      std::chrono::hours(24 * 365)),
                      "etcd CA");
  int64_t now = RealClock().NowUnix();
  v1::JoinTicket ticket;
  ticket.set_disk_key(std::string(32, '\x5a'));
  auto* kubeadm = ticket.mutable_kubeadm();
  kubeadm->set_api_server_endpoint("10.0.0.1:6443");
  kubeadm->set_token("abcdef.0123456789abcdef");
  kubeadm->add_ca_cert_hashes("sha256:" + std::string(64, 'a'));
  kubeadm->set_kubernetes_version("v1.31.2");
  Write("fuzz_join_ticket", "worker-disk", ticket.SerializeAsString());
  auto* etcd = ticket.mutable_etcd();
  etcd->set_ca_certificate(etcd_ca->cert_pem());
  etcd->set_server_certificate(
      Must(etcd_ca->Issue("server", keys.server_key.get(), fuzz::kNodeName, {"10.0.0.1"}, now),
           "server cert")
          .pem);
  etcd->set_peer_certificate(
      Must(etcd_ca->Issue("peer", keys.peer_key.get(), fuzz::kNodeName, {"10.0.0.1"}, now),
           "peer cert")
          .pem);
  etcd->set_crl(Must(etcd_ca->MakeCrl({}, now, 1), "CRL"));
  etcd->add_initial_cluster("cp-0=https://10.0.0.2:2380");
  etcd->add_initial_cluster(std::string(fuzz::kNodeName) + "=" + fuzz::kPeerUrl);
  etcd->set_member_name(fuzz::kNodeName);
  etcd->set_member_id(0x8e9e05c52164694d);
  Write("fuzz_join_ticket", "control-plane-disk", ticket.SerializeAsString());

  // ---- SNS notifications, in the format AWS documents (signatures are not valid here) ----
  const std::string sns_common =
      R"("MessageId":"22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",)"
      R"("TopicArn":"arn:aws:sns:eu-west-1:123456789012:berth",)"
      R"("Timestamp":"2025-01-01T00:00:00.000Z","SignatureVersion":"2",)"
      R"("Signature":"EXAMPLEpH+DcEwjAPg8O9mY8dReBSwksfg2S7WKQcikcNKWLQjwu6A4VbeS0QHVCkhRS7fUQvi2egU3N858fiTDN6bkkOxYDVrY0Ad8L10Hs3zH81mtnPk5uvvolIC1CXGu43obcgFxeL3khZl8IKvO61GWB6jI9b5+gLPoBc1Q=",)"
      R"("SigningCertURL":"https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-0123456789abcdef.pem")";
  Write(
      "fuzz_sns_message", "notification-running",
      R"({"Type":"Notification",)" + sns_common +
          R"(,"Subject":"EC2","Message":"{\"detail-type\":\"EC2 Instance State-change Notification\",\"source\":\"aws.ec2\",\"detail\":{\"instance-id\":\"i-0123456789abcdef0\",\"state\":\"running\"}}",)"
          R"("UnsubscribeURL":"https://sns.eu-west-1.amazonaws.com/?Action=Unsubscribe"})");
  Write(
      "fuzz_sns_message", "subscription-confirmation",
      R"({"Type":"SubscriptionConfirmation",)" + sns_common +
          R"(,"Token":"2336412f37fb687f5d51e6e241d09c805a5a57b30d712f794cc5f6a988666d92768dd60a747ba6f3beb71854e285d6ad02428b09ceece29417f1f02d609c582afbacc99c583a916b9981dd2728f4ae6fdb82efd087cc3b7849e05798d2d2785c03b0879594eeac82c01f235d0e717736",)"
          R"("Message":"You have chosen to subscribe to the topic.",)"
          R"("SubscribeURL":"https://sns.eu-west-1.amazonaws.com/?Action=ConfirmSubscription&TopicArn=arn:aws:sns:eu-west-1:123456789012:berth&Token=2336412f"})");

  std::cout << "fuzz_seeds: " << written << " seeds in " << out_dir.string() << "\n";
  return 0;
}
