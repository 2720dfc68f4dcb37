#include "tests/fuzz/fuzz_support.h"

#include <google/protobuf/stubs/logging.h>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <sstream>

#include "common/crypto.h"
#include "common/tpm/quote.h"
#include "verify/policy.h"

namespace berth::fuzz {

namespace {

// Test keys for the ticket target; they protect nothing.
constexpr char kServerKeyPem[] = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgn/Gzcsic4lh6xT/K
9t8APZCeExlWLD63nwXRyxMQiauhRANCAARIRPRUzXF/BumA7dLnIuN0bt6qNi5F
tmEjYhz18LnXuXa4pW/W//b99OLdSdmdVYODiPrjacfOcy+DllZfN0kM
-----END PRIVATE KEY-----
)";
constexpr char kPeerKeyPem[] = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQg/RakhzleOmOrZRj/
qJZn2gtX/0omcSy+5bpWwfWTBT6hRANCAASdm/SThvPuOMSckTiBSsMbZKpUpHvK
j7C4I7hxSf8/7+XVd4YGkSUZnsR43fGTeuwlPGdPriqZvAowt5xReJ1q
-----END PRIVATE KEY-----
)";

constexpr char kVirteeMeasurement[] =
    "7a1e5c266c0108dbc9bb94fa926951320940915d0aafb42464bd88b579ea158d3e1a0dc39b2c60bd95b9c480cd81"
    "841f";

template <typename T>
T Must(Result<T> r, const char* what) {
  if (!r.ok()) {
    fprintf(stderr, "fuzz setup: %s: %s\n", what, r.status().ToString().c_str());
    abort();
  }
  return std::move(*r);
}

// "INDEX HEX" lines -> values.
std::map<uint32_t, Bytes> ReadPcrLines(const std::string& text) {
  std::map<uint32_t, Bytes> out;
  std::istringstream in(text);
  uint32_t index;
  std::string hex;
  while (in >> index >> hex) out[index] = Must(HexDecode(hex), "PCR line");
  return out;
}

}  // namespace

std::string TestdataDir() {
  const char* env = getenv("BERTH_TESTDATA");
  return env != nullptr && *env != '\0' ? env : BERTH_TESTDATA_DEFAULT;
}

Bytes ReadTestdata(const std::string& rel) {
  auto data = ReadFile(TestdataDir() + "/" + rel);
  return data.ok() ? ToBytes(*data) : Bytes{};
}

void Quiet() {
  spdlog::set_level(spdlog::level::off);
  google::protobuf::SetLogHandler(nullptr);  // "invalid UTF-8 in a string field" on every parse
}

void Outcome(const char* what, const Status& status) {
  static const bool verbose = getenv("BERTH_FUZZ_VERBOSE") != nullptr;
  if (verbose) fprintf(stderr, "%s: %s\n", what, status.ToString().c_str());
}

SecretBytes MasterSecret() { return SecretBytes(std::string(32, '\x42').data(), 32); }

Bytes PeerSpki() { return Bytes(32, 0x17); }

Bytes EvidenceBinding() { return Bytes{0x90, 0x09}; }

agent::EtcdKeys FixedEtcdKeys() {
  agent::EtcdKeys keys;
  keys.server_key = Must(PrivateKeyFromPem(kServerKeyPem), "server key");
  keys.peer_key = Must(PrivateKeyFromPem(kPeerKeyPem), "peer key");
  keys.server_csr = Must(agent::MakeCsr(keys.server_key.get(), kNodeName), "server CSR");
  keys.peer_csr = Must(agent::MakeCsr(keys.peer_key.get(), kNodeName), "peer CSR");
  return keys;
}

v1::Evidence GceTpmEvidence(const std::string& folder, const std::string& bank) {
  v1::Evidence evidence;
  auto* tpm = evidence.mutable_tpm();
  tpm->set_ak_public(ToString(ReadTestdata(folder + "/ak_pub.tpmt_public")));
  tpm->set_quote(ToString(ReadTestdata(folder + "/quote_" + bank + ".tpms_attest")));
  tpm->set_signature(ToString(ReadTestdata(folder + "/quote_" + bank + ".tpmt_signature")));
  tpm->set_event_log(ToString(ReadTestdata(folder + "/event_log.bin")));
  auto alg = Must(DigestFromName(bank), "bank");
  auto* pcrs = tpm->add_pcrs();
  pcrs->set_bank(static_cast<v1::HashAlgorithm>(tpm::TpmAlgFromDigest(alg)));
  for (const auto& [index, value] :
       ReadPcrLines(ToString(ReadTestdata(folder + "/pcrs_" + bank + ".txt")))) {
    auto* v = pcrs->add_values();
    v->set_index(index);
    v->set_digest(ToString(value));
  }
  return evidence;
}

EvidenceWorld& EvidenceWorld::Get() {
  static EvidenceWorld* world = new EvidenceWorld();
  return *world;
}

EvidenceWorld::EvidenceWorld() {
  // The GCE AK, trusted by its SPKI hash; its sha256 PCR 0 pinned.
  std::string ak_hash(64, '0');
  std::string pcr0(64, '0');
  Bytes ak_public = ReadTestdata("tpm-gce-cos85-nonce9009/ak_pub.tpmt_public");
  if (!ak_public.empty()) {
    auto pub = Must(tpm::ParsePublic(ak_public), "GCE AK");
    auto key = Must(tpm::PublicToEvp(pub), "GCE AK key");
    ak_hash = HexEncode(Sha256(Must(PublicKeyToSpkiDer(key.get()), "GCE AK SPKI")));
    pcr0 = HexEncode(
        ReadPcrLines(ToString(ReadTestdata("tpm-gce-cos85-nonce9009/pcrs_sha256.txt")))[0]);
  }
  std::string yaml = "tpm:\n  trusted_aks:\n    - name: gce\n      sha256: " + ak_hash +
                     "\n  pcrs:\n    sha256:\n      0: " + pcr0 + "\nsev_snp:\n  measurements: [" +
                     kVirteeMeasurement + "]\n";
  verify::Policy policy = Must(verify::ParsePolicy(yaml), "policy");
  verify::SnpPolicy snp_policy = *policy.sev_snp;
  tpm_ = std::make_unique<verify::TpmEvidenceVerifier>(std::move(policy), &clock_);
  anchors_ = Must(verify::SnpTrustAnchors::Amd(), "AMD anchors");
  snp_ = std::make_unique<verify::SnpVerifier>(std::move(snp_policy), &anchors_, nullptr,
                                               verify::SnpVerifierOptions{.verify_at_unix = kNow});
  dispatcher_ = std::make_unique<verify::EvidenceDispatcher>(tpm_.get(), snp_.get());
}

}  // namespace berth::fuzz
