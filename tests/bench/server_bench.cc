// What one join costs berthd's own code, without the network: the pieces JoinLogic runs for a
// worker join (Google Benchmark; prints figures, asserts nothing about speed). Compare with
// berth-bench's berthd CPU per join to see what gRPC, TLS and the Kubernetes API add.
//   build/tests/bench/server_bench
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>

#include "agent/join_client.h"
#include "common/binding.h"
#include "server/evidence.h"
#include "server/join_logic.h"
#include "server/policy.h"
#include "tests/bench/soft_ak.h"

namespace berth::bench {
namespace {

const std::vector<uint32_t> kPcrs = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14};

struct Fixture {
  SoftAk ak = SoftAk::Create(kPcrs).value();
  server::Policy policy = server::ParsePolicy(ak.PolicyYaml().value()).value();
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
    benchmark::DoNotOptimize(tpm::VerifySignature(key->get(), AsBytes(evidence.tpm().quote()), *sig));
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
  server::TpmEvidenceVerifier verifier(F().policy, &F().clock);
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
        server::DeriveDiskKey(F().master, "bench", "0f0e0d0c-0b0a-4909-8807-060504030201"));
  }
}
BENCHMARK(BM_DeriveDiskKey);

// Challenge + IssueJoinTicket through JoinLogic, tokens minted locally, no node records:
// everything berthd does for a diskless worker join except TLS, gRPC and the two remote calls
// (without records berthd releases no disk keys; BM_DeriveDiskKey is that part alone).
void BM_WorkerJoinLogic(benchmark::State& state) {
  server::TpmEvidenceVerifier tpm(F().policy, &F().clock);
  server::EvidenceDispatcher verifier(&tpm, nullptr);
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

}  // namespace
}  // namespace berth::bench

BENCHMARK_MAIN();
