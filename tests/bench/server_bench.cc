// What one join costs berthd's own code, without the network: the pieces JoinLogic runs for a
// worker join (Google Benchmark; prints figures, asserts nothing about speed). Compare with
// berth-bench's berthd CPU per join to see what gRPC, TLS and the Kubernetes API add.
//   build/tests/bench/server_bench
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>

#include <grpcpp/grpcpp.h>

#include <cstdio>
#include <cstdlib>
#include <optional>

#include "agent/attestation.h"
#include "agent/join_client.h"
#include "agent/hw/tpm.h"
#include "common/binding.h"
#include "common/enrolment.h"
#include "server/join/credential_issuer.h"
#include "verify/evidence.h"
#include "server/join/join_logic.h"
#include "server/join/join_service.h"
#include "verify/policy.h"
#include "verify/tpm_identity.h"
#include "tests/bench/soft_ak.h"
#include "tests/testing/swtpm.h"
#include "tests/testing/testing.h"

namespace berth::bench {
namespace {

const std::vector<uint32_t> kPcrs = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14};

struct Fixture {
  SoftAk ak = SoftAk::Create(kPcrs).value();
  verify::Policy policy = verify::ParsePolicy(ak.PolicyYaml().value()).value();
  agent::ClientIdentity client = agent::MakeClientIdentity("bench-node").value();
  SecretBytes master = SecretBytes(RandomBytes(32).data(), 32);
  RealClock clock;
};

Fixture& F() {
  static Fixture f;
  return f;
}

// A token issuer that mints tokens without an API server.
class LocalTokens : public server::TokenIssuer {
 public:
  Result<server::BootstrapToken> Issue(const std::string&) override {
    return server::GenerateBootstrapToken(2000000000);
  }
};

void BM_PeerCertificate(benchmark::State& state) {
  // What PeerFromContext does with the TLS client certificate of every call.
  for (auto _ : state) benchmark::DoNotOptimize(CertPemSpkiSha256(F().client.cert_pem));
}
BENCHMARK(BM_PeerCertificate);

void BM_AkPublicToKey(benchmark::State& state) {
  auto pub = tpm::ParsePublic(F().ak.public_area());
  for (auto _ : state) benchmark::DoNotOptimize(tpm::PublicToEvp(*pub));
}
BENCHMARK(BM_AkPublicToKey);

void BM_AkPublicToEvp(benchmark::State& state) {
  // The AK's TPMT_PUBLIC as an OpenSSL key, once per TPM evidence verified.
  auto pub = tpm::ParsePublic(F().ak.public_area());
  for (auto _ : state) benchmark::DoNotOptimize(tpm::PublicToEvp(*pub));
}
BENCHMARK(BM_AkPublicToEvp);

void BM_AkSpkiDer(benchmark::State& state) {
  auto pub = tpm::ParsePublic(F().ak.public_area());
  auto key = tpm::PublicToEvp(*pub);
  for (auto _ : state) benchmark::DoNotOptimize(PublicKeyToSpkiDer(key->get()));
}
BENCHMARK(BM_AkSpkiDer);

void BM_QuoteSignature(benchmark::State& state) {
  auto pub = tpm::ParsePublic(F().ak.public_area());
  auto key = tpm::PublicToEvp(*pub);
  v1::Evidence evidence = F().ak.Quote(Bytes(32, 7)).value();
  auto sig = tpm::ParseSignature(AsBytes(evidence.tpm().signature()));
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        tpm::VerifySignature(key->get(), AsBytes(evidence.tpm().quote()), *sig));
  }
}
BENCHMARK(BM_QuoteSignature);

void BM_Nonce(benchmark::State& state) {
  auto nonces = server::NonceIssuer::Create(F().master, &F().clock, std::chrono::seconds(60));
  for (auto _ : state) {
    Bytes n = nonces->Issue();
    benchmark::DoNotOptimize(nonces->Check(n));
  }
}
BENCHMARK(BM_Nonce);

void BM_VerifyTpmEvidence(benchmark::State& state) {
  verify::TpmEvidenceVerifier verifier(F().policy, &F().clock);
  Bytes binding = ComputeBinding(Bytes(56, 1), F().client.spki_sha256);
  v1::Evidence evidence = F().ak.Quote(binding).value();
  for (auto _ : state) {
    auto verified = verifier.Verify(evidence, binding);
    if (!verified.ok()) state.SkipWithError(verified.status().ToString().c_str());
    benchmark::DoNotOptimize(verified);
  }
}
BENCHMARK(BM_VerifyTpmEvidence);

void BM_DeriveDiskKey(benchmark::State& state) {
  for (auto _ : state) {
    benchmark::DoNotOptimize(
        DeriveDiskKey(F().master, "bench", "0f0e0d0c-0b0a-4909-8807-060504030201"));
  }
}
BENCHMARK(BM_DeriveDiskKey);

// Challenge + IssueJoinTicket through JoinLogic, tokens minted locally, no node records:
// everything berthd does for a diskless worker join except TLS, gRPC and the two remote calls
// (without records berthd releases no disk keys; BM_DeriveDiskKey is that part alone).
void BM_WorkerJoinLogic(benchmark::State& state) {
  verify::TpmEvidenceVerifier tpm(F().policy, &F().clock);
  verify::EvidenceDispatcher verifier(&tpm, nullptr);
  auto nonces = server::NonceIssuer::Create(F().master, &F().clock, std::chrono::seconds(60));
  LocalTokens tokens;
  server::JoinLogic logic({.cluster_id = "bench", .api_server_endpoint = "10.0.0.1:6443",
                           .ca_cert_hashes = {"sha256:" + std::string(64, 'a')}},
                          F().master.Clone(), &*nonces, &verifier, &tokens);
  server::Peer peer{F().client.spki_sha256, "ipv4:127.0.0.1:1"};
  spdlog::set_level(spdlog::level::warn);  // the audit line is info: measure without the sink
  for (auto _ : state) {
    auto challenge = logic.Challenge(v1::ChallengeRequest(), peer);
    Bytes binding = ComputeBinding(AsBytes(challenge->nonce()), peer.spki_sha256);
    state.PauseTiming();  // the node's quote is not berthd's work
    v1::JoinRequest request;
    *request.mutable_evidence() = F().ak.Quote(binding).value();
    request.set_nonce(challenge->nonce());
    request.set_node_name("bench-node");
    request.set_role(v1::NODE_ROLE_WORKER);
    state.ResumeTiming();
    auto ticket = logic.IssueJoinTicket(request, peer);
    if (!ticket.ok()) state.SkipWithError(ticket.status().ToString().c_str());
    benchmark::DoNotOptimize(ticket);
  }
}
BENCHMARK(BM_WorkerJoinLogic);

// ---- Challenge (issue 22, section 6) ----
//
// What one unauthenticated Challenge costs berthd: a plain one (a nonce), and one that
// presents an EK under a policy that trusts EKs by their manufacturer's certificate (the EK
// chain is verified and MakeCredential run for whoever asks). "NoGate" is how berthd answered
// it before such challenges took a slot of the join gate; "Gated" is the same call admitted
// now; "Shed" is the same call when the gate is full, which is what a flood gets beyond
// --max-inflight-joins (and beyond --max-joins-per-source from one address).

struct EkFixture {
  testing::TempDir dir;
  testing::Swtpm tpm{dir.Join("tpm"), {.ek_ca_dir = dir.Join("ca")}};
  v1::ChallengeRequest request;
  std::unique_ptr<verify::Policy> policy;
  EkFixture() {
    auto opened = agent::OpenEsysTpm(tpm.Tcti());
    if (!tpm.ok() || !opened.ok()) {
      std::fprintf(stderr, "EK fixture: %s %s\n", tpm.error().c_str(),
                   opened.ok() ? "" : opened.status().ToString().c_str());
      std::abort();
    }
    agent::TpmAttester attester(opened->get(), DefaultPcrSelection(), "/nonexistent");
    request = attester.MakeChallengeRequest().value();
    std::string ca = testing::Swtpm::EkCaBundlePem(dir.Join("ca")), indented;
    for (size_t at = 0; at < ca.size();) {
      size_t end = ca.find('\n', at);
      if (end == std::string::npos) end = ca.size();
      indented += "    " + ca.substr(at, end - at) + "\n";
      at = end + 1;
    }
    policy = std::make_unique<verify::Policy>(
        verify::ParsePolicy("tpm:\n  ek_ca_pem: |\n" + indented + "  pcrs:\n    sha256:\n      0: " +
                            std::string(64, '0') + "\n")
            .value());
  }
};

EkFixture& Ek() {
  static EkFixture f;
  return f;
}

// Calls JoinServiceImpl::Challenge (the gRPC adapter berthd serves) in-process.
void RunChallenges(benchmark::State& state, const v1::ChallengeRequest& request,
                   server::LoadGate* gate, bool hold_gate, bool expect_ok) {
  verify::TpmEvidenceVerifier tpm(*Ek().policy, &F().clock);
  verify::EvidenceDispatcher verifier(&tpm, nullptr);
  auto nonces = server::NonceIssuer::Create(F().master, &F().clock, std::chrono::seconds(60));
  LocalTokens tokens;
  server::JoinLogic logic({.cluster_id = "bench", .api_server_endpoint = "10.0.0.1:6443"},
                          F().master.Clone(), &*nonces, &verifier, &tokens);
  server::JoinServiceImpl service(&logic, nullptr, gate);
  std::optional<server::LoadGate::Pass> held;
  if (hold_gate) held.emplace(std::move(gate->Enter("ipv4:10.9.9.9:1").value()));
  spdlog::set_level(spdlog::level::warn);
  for (auto _ : state) {
    grpc::ServerContext context;
    v1::ChallengeResponse response;
    grpc::Status st = service.Challenge(&context, &request, &response);
    if (st.ok() != expect_ok) state.SkipWithError(st.error_message().c_str());
    if (expect_ok && !request.ek_public().empty() && response.credential_blob().empty()) {
      state.SkipWithError("no credential was made");
    }
    benchmark::DoNotOptimize(response);
  }
}

// Where an EK challenge's time goes: the EK trust decision (parse, chain to the manufacturer
// CA) and MakeCredential, each alone.
void BM_ChallengeEkTrustAlone(benchmark::State& state) {
  Ek();  // made before the clock is read: its CA starts now
  for (auto _ : state) {
    auto ek = verify::TrustEndorsementKey(Ek().policy->tpm_trust, Ek().request.ek_public(),
                                          Ek().request.ek_certificate(), F().clock.NowUnix());
    if (!ek.ok()) state.SkipWithError(ek.status().ToString().c_str());
    benchmark::DoNotOptimize(ek);
  }
}
BENCHMARK(BM_ChallengeEkTrustAlone);

void BM_ChallengeMakeCredentialAlone(benchmark::State& state) {
  Ek();
  auto ek = verify::TrustEndorsementKey(Ek().policy->tpm_trust, Ek().request.ek_public(),
                                        Ek().request.ek_certificate(), F().clock.NowUnix());
  if (!ek.ok()) {
    state.SkipWithError(ek.status().ToString().c_str());
    return;
  }
  auto ak = tpm::ParsePublic(AsBytes(Ek().request.ak_public()));
  auto ak_name = tpm::PublicName(*ak);
  server::CredentialIssuer issuer(F().master);
  Bytes nonce(56, 7);
  for (auto _ : state) {
    auto made = issuer.Make(ek->pub, ek->name, *ak_name, nonce);
    if (!made.ok()) state.SkipWithError(made.status().ToString().c_str());
    benchmark::DoNotOptimize(made);
  }
}
BENCHMARK(BM_ChallengeMakeCredentialAlone);

void BM_ChallengePlain(benchmark::State& state) {
  server::LoadGate gate({});
  RunChallenges(state, v1::ChallengeRequest(), &gate, false, true);
}
BENCHMARK(BM_ChallengePlain);

void BM_ChallengeEkCredentialNoGate(benchmark::State& state) {
  RunChallenges(state, Ek().request, nullptr, false, true);
}
BENCHMARK(BM_ChallengeEkCredentialNoGate);

void BM_ChallengeEkCredentialGated(benchmark::State& state) {
  server::LoadGate gate({});
  RunChallenges(state, Ek().request, &gate, false, true);
}
BENCHMARK(BM_ChallengeEkCredentialGated);

void BM_ChallengeEkCredentialShed(benchmark::State& state) {
  server::LoadGate gate({.max_in_flight = 1, .max_per_source = 0});
  RunChallenges(state, Ek().request, &gate, true, false);
}
BENCHMARK(BM_ChallengeEkCredentialShed);

}  // namespace
}  // namespace berth::bench

BENCHMARK_MAIN();
