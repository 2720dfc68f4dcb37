#include "tests/bench/load.h"

#include <grpcpp/grpcpp.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <thread>

#include "agent/join_client.h"
#include "agent/state_disk.h"
#include "berth/v1/berth.grpc.pb.h"
#include "common/binding.h"
#include "common/bytes.h"
#include "common/rpc.h"

namespace berth::bench {

double LoadResult::Percentile(double p) const {
  if (latencies_ms.empty()) return 0;
  double rank = p / 100.0 * static_cast<double>(latencies_ms.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(rank));
  size_t hi = std::min(lo + 1, latencies_ms.size() - 1);
  double frac = rank - static_cast<double>(lo);
  return latencies_ms[lo] * (1 - frac) + latencies_ms[hi] * frac;
}

Result<double> ProcessCpuSeconds(pid_t pid) {
  BERTH_ASSIGN_OR_RETURN(std::vector<std::string> stat, ReadProcStat(std::to_string(pid)));
  if (stat.size() <= 15) return InvalidArgument("unexpected /proc/<pid>/stat format");
  double utime = std::stod(stat[14]), stime = std::stod(stat[15]);
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

namespace {

using Clock = std::chrono::steady_clock;

struct NodeStats {
  std::vector<double> latencies_ms;
  std::map<std::string, int64_t> errors;
  std::map<std::string, std::string> first_error;
};

// One simulated node, joining again and again until `stop`.
void NodeLoop(const LoadOptions& options, const SoftAk& ak, int index,
              const std::atomic<bool>& measuring, const std::atomic<bool>& stop,
              NodeStats& stats) {
  for (int64_t seq = 0; !stop; ++seq) {
    std::string name = "bench-" + std::to_string(index) + "-" + std::to_string(seq);
    bool counted = measuring.load();
    JoinAttempt attempt = JoinOnce(options, ak, name);
    if (!counted || !measuring) continue;  // warm-up, or finished after the window closed
    if (attempt.status.ok()) {
      stats.latencies_ms.push_back(attempt.ms);
    } else {
      stats.errors[attempt.error_class]++;
      stats.first_error.emplace(attempt.error_class, attempt.status.message());
    }
  }
}

}  // namespace

Result<LoadResult> RunLoad(const LoadOptions& options, const SoftAk& ak) {
  if (options.concurrency < 1) return InvalidArgument("concurrency must be at least 1");
  std::atomic<bool> measuring{false}, stop{false};
  std::vector<NodeStats> stats(static_cast<size_t>(options.concurrency));
  std::vector<std::thread> threads;
  threads.reserve(stats.size());
  for (int i = 0; i < options.concurrency; ++i) {
    threads.emplace_back(NodeLoop, std::cref(options), std::cref(ak), i, std::cref(measuring),
                         std::cref(stop), std::ref(stats[static_cast<size_t>(i)]));
  }
  std::this_thread::sleep_for(options.warmup);
  double cpu_start = -1;
  if (options.server_pid > 0) {
    auto cpu = ProcessCpuSeconds(options.server_pid);
    if (cpu.ok()) cpu_start = *cpu;
  }
  Clock::time_point start = Clock::now();
  measuring = true;
  std::this_thread::sleep_for(options.duration);
  measuring = false;
  Clock::time_point end = Clock::now();
  LoadResult result;
  if (cpu_start >= 0) {
    auto cpu = ProcessCpuSeconds(options.server_pid);
    if (cpu.ok()) result.server_cpu_seconds = *cpu - cpu_start;
  }
  stop = true;
  for (auto& t : threads) t.join();
  result.seconds = std::chrono::duration<double>(end - start).count();
  for (auto& s : stats) {
    result.latencies_ms.insert(result.latencies_ms.end(), s.latencies_ms.begin(),
                               s.latencies_ms.end());
    for (const auto& [code, n] : s.errors) result.errors[code] += n;
    for (const auto& [code, message] : s.first_error) result.first_error.emplace(code, message);
  }
  std::sort(result.latencies_ms.begin(), result.latencies_ms.end());
  result.joins = static_cast<int64_t>(result.latencies_ms.size());
  return result;
}

JoinAttempt JoinOnce(const LoadOptions& options, const SoftAk& ak, const std::string& name) {
  JoinAttempt out;
  auto identity = agent::MakeClientIdentity(name);
  if (!identity.ok()) {
    out.status = identity.status();
    out.error_class = "client-key";
    return out;
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.ca_pem;
  ssl.pem_private_key = std::string(identity->key_pem.view());
  ssl.pem_cert_chain = identity->cert_pem;
  grpc::ChannelArguments args = ClientChannelArguments();  // as the agent's
  if (!options.server_name.empty()) args.SetSslTargetNameOverride(options.server_name);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);  // a connection of its own, like a node
  auto channel = grpc::CreateCustomChannel(options.endpoint, grpc::SslCredentials(ssl), args);
  WipeString(ssl.pem_private_key);
  auto stub = v1::JoinService::NewStub(channel);

  Clock::time_point start = Clock::now();
  auto deadline = std::chrono::system_clock::now() + std::chrono::seconds(30);
  grpc::ClientContext challenge_ctx;
  challenge_ctx.set_deadline(deadline);
  v1::ChallengeRequest challenge_request;
  challenge_request.set_ak_public(ToString(ak.public_area()));
  v1::ChallengeResponse challenge;
  grpc::Status st = stub->Challenge(&challenge_ctx, challenge_request, &challenge);
  if (st.ok()) {
    Bytes binding = ComputeBinding(AsBytes(challenge.nonce()), identity->spki_sha256);
    auto evidence = ak.Quote(binding);
    if (!evidence.ok()) {
      out.status = evidence.status();
      out.error_class = "quote";
      return out;
    }
    v1::JoinRequest request;
    *request.mutable_evidence() = std::move(*evidence);
    request.set_nonce(challenge.nonce());
    request.set_node_name(name);
    request.set_role(v1::NODE_ROLE_WORKER);
    if (options.with_disk) request.set_disk_uuid(agent::NewDiskUuid());
    grpc::ClientContext join_ctx;
    join_ctx.set_deadline(deadline);
    v1::JoinTicket ticket;
    st = stub->IssueJoinTicket(&join_ctx, request, &ticket);
    WipeString(*ticket.mutable_disk_key());
    WipeString(*ticket.mutable_kubeadm()->mutable_token());
  }
  out.ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
  out.finished = Clock::now();
  if (!st.ok()) {
    out.status = Status(static_cast<Code>(st.error_code()), st.error_message());
    out.error_class = std::string(CodeName(static_cast<Code>(st.error_code())));
  }
  return out;
}

// ---- the crypto floor ----

namespace {

struct SslCtxFree { void operator()(SSL_CTX* p) const { SSL_CTX_free(p); } };
struct SslFree { void operator()(SSL* p) const { SSL_free(p); } };
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;
using SslPtr = std::unique_ptr<SSL, SslFree>;

double ThreadCpuSeconds() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) / 1e9;
}

int AcceptAnyClientCert(int, X509_STORE_CTX*) { return 1; }

// One in-memory TLS 1.3 handshake, with ECDHE on `group` (a NID); returns the CPU seconds the
// server side spent in it.
Result<double> OneHandshake(SSL_CTX* server_ctx, SSL_CTX* client_ctx, int group) {
  SslPtr server(SSL_new(server_ctx)), client(SSL_new(client_ctx));
  if (!server || !client) return OpenSslError("SSL_new");
  BIO *server_bio = nullptr, *client_bio = nullptr;
  if (BIO_new_bio_pair(&server_bio, 0, &client_bio, 0) != 1) return OpenSslError("BIO pair");
  SSL_set_bio(server.get(), server_bio, server_bio);
  SSL_set_bio(client.get(), client_bio, client_bio);
  SSL_set_accept_state(server.get());
  SSL_set_connect_state(client.get());
  SSL_set_tlsext_host_name(client.get(), "localhost");
  double server_cpu = 0;
  bool server_done = false, client_done = false;
  for (int round = 0; round < 20 && !(server_done && client_done); ++round) {
    if (!client_done) {
      int rc = SSL_do_handshake(client.get());
      if (rc == 1) client_done = true;
      else if (SSL_get_error(client.get(), rc) != SSL_ERROR_WANT_READ) {
        return OpenSslError("client handshake");
      }
    }
    if (!server_done) {
      double t0 = ThreadCpuSeconds();
      int rc = SSL_do_handshake(server.get());
      server_cpu += ThreadCpuSeconds() - t0;
      if (rc == 1) server_done = true;
      else if (SSL_get_error(server.get(), rc) != SSL_ERROR_WANT_READ) {
        return OpenSslError("server handshake");
      }
    }
  }
  // TLS 1.3 clients finish before the server has read the client's Finished (and
  // certificate): one more server read processes them, as a server does on its first read.
  char byte;
  double t0 = ThreadCpuSeconds();
  SSL_read(server.get(), &byte, 1);
  server_cpu += ThreadCpuSeconds() - t0;
  if (SSL_get0_peer_certificate(server.get()) == nullptr) {
    return Internal("the handshake finished without the client certificate");
  }
  if (int negotiated = SSL_get_negotiated_group(server.get()); negotiated != group) {
    return Internal(std::string("the handshake used ECDHE group ") + OBJ_nid2sn(negotiated) +
                    ", not " + OBJ_nid2sn(group));
  }
  return server_cpu;
}

}  // namespace

Result<CryptoFloor> MeasureCryptoFloor(const std::string& server_cert_pem,
                                       const std::string& server_key_pem, int iterations) {
  CryptoFloor floor;
  BERTH_ASSIGN_OR_RETURN(X509Ptr server_cert, CertFromPem(server_cert_pem));
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr server_key, PrivateKeyFromPem(server_key_pem));
  BERTH_ASSIGN_OR_RETURN(auto client, agent::MakeClientIdentity("floor"));
  BERTH_ASSIGN_OR_RETURN(X509Ptr client_cert, CertFromPem(client.cert_pem));
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr client_key, PrivateKeyFromPem(client.key_pem.view()));

  SslCtxPtr server_ctx(SSL_CTX_new(TLS_server_method()));
  SslCtxPtr client_ctx(SSL_CTX_new(TLS_client_method()));
  if (!server_ctx || !client_ctx) return OpenSslError("SSL_CTX_new");
  SSL_CTX_set_min_proto_version(server_ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_min_proto_version(client_ctx.get(), TLS1_3_VERSION);
  if (SSL_CTX_use_certificate(server_ctx.get(), server_cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(server_ctx.get(), server_key.get()) != 1 ||
      SSL_CTX_check_private_key(server_ctx.get()) != 1) {
    ERR_clear_error();
    return InvalidArgument("berthd's key does not match its certificate");
  }
  // As berthd: a client certificate is required but not chain-verified (it is the binding
  // key); its CertificateVerify signature is still checked by TLS.
  SSL_CTX_set_verify(server_ctx.get(), SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                     AcceptAnyClientCert);
  SSL_CTX_set_session_cache_mode(server_ctx.get(), SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(server_ctx.get(), 0);
  if (SSL_CTX_use_certificate(client_ctx.get(), client_cert.get()) != 1 ||
      SSL_CTX_use_PrivateKey(client_ctx.get(), client_key.get()) != 1) {
    return OpenSslError("the client's certificate and key");
  }
  SSL_CTX_set_verify(client_ctx.get(), SSL_VERIFY_NONE, nullptr);

  auto handshakes = [&](int group) -> Result<double> {
    double total = 0;
    for (int i = 0; i < iterations; ++i) {
      BERTH_ASSIGN_OR_RETURN(double cpu, OneHandshake(server_ctx.get(), client_ctx.get(), group));
      total += cpu;
    }
    return total / iterations * 1e6;
  };
  BERTH_ASSIGN_OR_RETURN(floor.tls_handshake_server_us, handshakes(NID_X25519));
  if (SSL_CTX_set1_groups_list(server_ctx.get(), "P-256") != 1 ||
      SSL_CTX_set1_groups_list(client_ctx.get(), "P-256") != 1) {
    return OpenSslError("selecting the P-256 group");
  }
  BERTH_ASSIGN_OR_RETURN(floor.tls_handshake_p256_server_us, handshakes(NID_X9_62_prime256v1));

  BERTH_ASSIGN_OR_RETURN(SoftAk ak, SoftAk::Create({0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14}));
  BERTH_ASSIGN_OR_RETURN(v1::Evidence evidence, ak.Quote(Bytes(32, 0x5a)));
  BERTH_ASSIGN_OR_RETURN(TPMT_PUBLIC pub, tpm::ParsePublic(ak.public_area()));
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr ak_key, tpm::PublicToEvp(pub));
  BERTH_ASSIGN_OR_RETURN(TPMT_SIGNATURE sig,
                         tpm::ParseSignature(AsBytes(evidence.tpm().signature())));
  double t0 = ThreadCpuSeconds();
  for (int i = 0; i < iterations; ++i) {
    BERTH_RETURN_IF_ERROR(tpm::VerifySignature(ak_key.get(), AsBytes(evidence.tpm().quote()), sig));
  }
  floor.quote_verify_us = (ThreadCpuSeconds() - t0) / iterations * 1e6;

  CertSpec spec{.common_name = "node", .dns_names = {"node", "localhost"},
                .ip_addresses = {"127.0.0.1"}, .server_auth = true, .client_auth = true};
  t0 = ThreadCpuSeconds();
  for (int i = 0; i < iterations; ++i) {
    BERTH_ASSIGN_OR_RETURN(X509Ptr cert,
                           IssueCert(spec, client_key.get(), server_cert.get(), server_key.get()));
  }
  floor.cert_sign_us = (ThreadCpuSeconds() - t0) / iterations * 1e6;
  return floor;
}

}  // namespace berth::bench
