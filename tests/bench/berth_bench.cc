// berth-bench: how many nodes per second berthd admits, and what that costs it.
//
//   berth-bench keygen --ak-key ak.pem --policy policy.yaml
//       a software attestation key, and the berthd policy that trusts it and its "boot"
//   berth-bench kube-api --cert C --key K --token T --port-file F
//       a fast stand-in for kube-apiserver's bootstrap-token Secrets (so the API server is not
//       what the benchmark measures); NOT kube-apiserver
//   berth-bench run --endpoint H:P --ca CA --ak-key ak.pem --concurrency N --duration S
//                   [--server-pid PID] [--histogram out.png] [--server-cert C --server-key K]
//       N simulated nodes joining over real TLS; joins/s, latency percentiles, errors, the
//       server's (berthd's) CPU per join beside the crypto floor measured on this machine
//   berth-bench floor --server-cert C --server-key K
//       the crypto floor alone
//   berth-bench null-server --cert C --key K --port-file F
//       a JoinService that verifies nothing, served as berthd serves its own: the CPU of
//       berthd's transport alone (tests/bench/null_join.h); NOT berthd, it admits anyone
#include <httplib.h>
#include <signal.h>

#include <CLI/CLI.hpp>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>

#include "common/bytes.h"
#include "common/log.h"
#include "common/subprocess.h"
#include "server/join/join_server.h"
#include "tests/bench/load.h"
#include "tests/bench/null_join.h"

namespace berth::bench {
namespace {

const std::vector<uint32_t> kPcrs = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 14};

int Fail(const Status& st) {
  std::fprintf(stderr, "berth-bench: %s\n", st.ToString().c_str());
  return 1;
}

int Keygen(const std::string& key_path, const std::string& policy_path) {
  auto ak = SoftAk::Create(kPcrs);
  if (!ak.ok()) return Fail(ak.status());
  auto pem = ak->KeyPem();
  if (!pem.ok()) return Fail(pem.status());
  auto policy = ak->PolicyYaml();
  if (!policy.ok()) return Fail(policy.status());
  Status st = WriteFileAtomic(key_path, pem->span(), 0600);
  if (st.ok()) st = WriteFileAtomic(policy_path, *policy, 0644);
  return st.ok() ? 0 : Fail(st);
}

Result<SoftAk> LoadAk(const std::string& path) {
  BERTH_ASSIGN_OR_RETURN(SecretBytes pem, ReadSecretFile(path));
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, PrivateKeyFromPem(pem.view()));
  return SoftAk::FromKey(std::move(key), kPcrs);
}

// Accepts what berthd sends: bootstrap-token Secrets (created, checked for the fields kubeadm
// needs) and their deletion. Everything is kept in memory.
int KubeApi(const std::string& cert, const std::string& key, const std::string& token,
            const std::string& port_file) {
  httplib::SSLServer server(cert.c_str(), key.c_str());
  if (!server.is_valid()) return Fail(InvalidArgument("cannot load " + cert + " / " + key));
  std::mutex mu;
  int64_t created = 0;
  auto authorised = [&](const httplib::Request& req, httplib::Response& res) {
    if (req.get_header_value("Authorization") == "Bearer " + token) return true;
    res.status = 401;
    res.set_content(
        R"({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Unauthorized","code":401})",
        "application/json");
    return false;
  };
  server.Post(R"(/api/v1/namespaces/([a-z0-9-]+)/secrets)",
              [&](const httplib::Request& req, httplib::Response& res) {
                if (!authorised(req, res)) return;
                auto body = nlohmann::json::parse(req.body, nullptr, false);
                // berthd sends stringData; kube-apiserver would merge it into data.
                const char* field =
                    body.is_object() && body.contains("stringData") ? "stringData" : "data";
                const bool ok = body.is_object() && body.value("kind", "") == "Secret" &&
                                body.value("type", "") == "bootstrap.kubernetes.io/token" &&
                                body["metadata"].is_object() && body[field].is_object() &&
                                body[field].contains("token-id") &&
                                body[field].contains("token-secret");
                if (!ok) {
                  res.status = 422;
                  res.set_content(
                      R"({"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Invalid","code":422})",
                      "application/json");
                  return;
                }
                int64_t n;
                {
                  std::lock_guard<std::mutex> lock(mu);
                  n = ++created;
                }
                body["metadata"]["uid"] = "bench-" + std::to_string(n);
                body["metadata"]["resourceVersion"] = std::to_string(n);
                body["metadata"]["namespace"] = req.matches[1].str();
                body.erase("stringData");  // never echo the token back
                res.status = 201;
                res.set_content(body.dump(), "application/json");
              });
  server.Delete(R"(/api/v1/namespaces/([a-z0-9-]+)/secrets/(.+))",
                [&](const httplib::Request& req, httplib::Response& res) {
                  if (!authorised(req, res)) return;
                  res.set_content(
                      R"({"kind":"Status","apiVersion":"v1","status":"Success","code":200})",
                      "application/json");
                });
  server.Get("/version", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"major":"1","minor":"31","gitVersion":"v1.31.0"})", "application/json");
  });
  // berthd keeps its connections alive (a pool of curl handles); so does a real API server.
  // httplib serves each kept-alive connection on one thread of its pool (8 by default): with
  // fewer threads than berthd's connections, the rest would wait for a handshake until curl's
  // connect timeout.
  server.new_task_queue = [] { return new httplib::ThreadPool(512); };
  // httplib writes a response's headers and body separately and leaves Nagle's algorithm on
  // by default: the body then waits for the client's delayed ACK of the headers (40 ms on
  // Linux). kube-apiserver (Go) sets TCP_NODELAY on every connection.
  server.set_tcp_nodelay(true);
  server.set_keep_alive_max_count(1 << 30);
  server.set_keep_alive_timeout(300);
  int port = server.bind_to_any_port("127.0.0.1");
  if (port <= 0) return Fail(Unavailable("cannot listen on 127.0.0.1"));
  if (!port_file.empty()) {
    Status st = WriteFileAtomic(port_file, std::to_string(port) + "\n", 0644);
    if (!st.ok()) return Fail(st);
  }
  std::fprintf(stderr, "berth-bench kube-api (a stand-in, not kube-apiserver) on 127.0.0.1:%d\n",
               port);
  server.listen_after_bind();
  return 0;
}

// Serves NullJoinService on 127.0.0.1 until SIGTERM or SIGINT.
int NullServer(const std::string& cert, const std::string& key, const std::string& port_file) {
  // Blocked before gRPC starts its threads, which inherit the mask: only sigwait sees them.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);
  auto cert_pem = ReadFile(cert);
  if (!cert_pem.ok()) return Fail(cert_pem.status());
  auto key_pem = ReadSecretFile(key);
  if (!key_pem.ok()) return Fail(key_pem.status());
  NullJoinService service;
  auto serving = server::StartJoinServer("127.0.0.1:0", *cert_pem, *key_pem, &service);
  if (!serving.ok()) return Fail(serving.status());
  if (!port_file.empty()) {
    Status st = WriteFileAtomic(port_file, std::to_string(serving->port) + "\n", 0644);
    if (!st.ok()) return Fail(st);
  }
  std::fprintf(stderr, "berth-bench null-server (verifies nothing, NOT berthd) on 127.0.0.1:%d\n",
               serving->port);
  int signal_number = 0;
  sigwait(&stop_signals, &signal_number);
  serving->server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  std::fprintf(stderr, "berth-bench null-server: %lld challenges, %lld tickets\n",
               static_cast<long long>(service.challenges()),
               static_cast<long long>(service.tickets()));
  return 0;
}

// A latency histogram as a PNG, drawn by gnuplot.
Status DrawHistogram(const LoadResult& r, int concurrency, const std::string& png) {
  std::string data = png + ".dat";
  {
    std::ofstream out(data);
    for (double ms : r.latencies_ms) out << ms << "\n";
    if (!out) return ErrnoStatus("write(" + data + ")");
  }
  double bin = std::max(0.1, r.Percentile(99.9) / 60.0);
  std::string script =
      "set terminal png size 900,500\n"
      "set output '" + png + "'\n"
      "set title 'join latency, " + std::to_string(concurrency) + " concurrent nodes, " +
      std::to_string(r.joins) + " joins'\n"
      "set xlabel 'latency (ms), Challenge + IssueJoinTicket incl. TLS handshake'\n"
      "set ylabel 'joins'\nset style fill solid 0.6\nset boxwidth " + std::to_string(bin) + "\n"
      "bin(x)=" + std::to_string(bin) + "*floor(x/" + std::to_string(bin) + ")+" +
      std::to_string(bin / 2) + "\n"
      "set xrange [0:" + std::to_string(r.Percentile(99.9) * 1.05) + "]\n"
      "plot '" + data + "' using (bin($1)):(1.0) smooth freq with boxes title ''\n";
  std::string script_path = png + ".gp";
  BERTH_RETURN_IF_ERROR(WriteFileAtomic(script_path, script, 0644));
  RealProcessRunner runner;
  BERTH_ASSIGN_OR_RETURN(ProcessResult pr, runner.Run({"/usr/bin/gnuplot", script_path}));
  std::remove(data.c_str());
  std::remove(script_path.c_str());
  if (!pr.success()) return Internal("gnuplot failed (" + pr.Describe() + "): " + pr.output);
  return OkStatus();
}

void PrintFloor(const CryptoFloor& f) {
  std::printf("crypto floor (OpenSSL, one core, CPU per operation)\n");
  std::printf("  TLS 1.3 handshake, server side   %8.1f us\n", f.tls_handshake_server_us);
  std::printf("    with P-256 ECDHE, as gRPC's    %8.1f us\n", f.tls_handshake_p256_server_us);
  std::printf("  quote signature verify (P-256)   %8.1f us\n", f.quote_verify_us);
  std::printf("  certificate signing (each)       %8.1f us\n", f.cert_sign_us);
  std::printf("  worker join floor                %8.1f us\n", f.WorkerJoinUs());
}

}  // namespace
}  // namespace berth::bench

int main(int argc, char** argv) {
  using namespace berth;
  using namespace berth::bench;
  CLI::App app{"berth-bench: load generator and crypto floor for berthd"};
  app.require_subcommand(1);
  std::string ak_key, policy, cert, key, token, port_file, endpoint, ca, server_name, histogram;
  LoadOptions load;
  int64_t duration = 10, warmup = 2;
  int iterations = 2000;

  auto* keygen = app.add_subcommand("keygen", "make a software AK and the policy that trusts it");
  keygen->add_option("--ak-key", ak_key)->required();
  keygen->add_option("--policy", policy)->required();

  auto* api = app.add_subcommand("kube-api",
                                 "fast stand-in for bootstrap-token Secrets (not kube-apiserver)");
  api->add_option("--cert", cert)->required();
  api->add_option("--key", key)->required();
  api->add_option("--token", token)->required();
  api->add_option("--port-file", port_file);

  auto* run = app.add_subcommand("run", "simulated nodes joining a running berthd");
  run->add_option("--endpoint", endpoint)->required();
  run->add_option("--ca", ca, "cluster CA (PEM) berthd's certificate chains to")->required();
  run->add_option("--server-name", server_name);
  run->add_option("--ak-key", ak_key)->required();
  run->add_option("--concurrency", load.concurrency)->capture_default_str();
  run->add_option("--duration", duration, "measured seconds")->capture_default_str();
  run->add_option("--warmup", warmup, "seconds before measuring")->capture_default_str();
  run->add_option("--server-pid", load.server_pid, "read the server's CPU time from /proc");
  run->add_option("--histogram", histogram, "write a latency histogram PNG here");
  run->add_option("--server-cert", cert, "berthd's certificate, to measure the crypto floor");
  run->add_option("--server-key", key, "berthd's key, to measure the crypto floor");
  bool no_disk = false;
  run->add_flag("--no-disk", no_disk,
                "diskless workers: name no state disk (berthd --no-etcd releases no disk keys)");

  auto* null_cmd =
      app.add_subcommand("null-server", "a JoinService that verifies nothing (NOT berthd)");
  null_cmd->add_option("--cert", cert)->required();
  null_cmd->add_option("--key", key)->required();
  null_cmd->add_option("--port-file", port_file);

  auto* floor_cmd = app.add_subcommand("floor", "the crypto floor of a join on this machine");
  floor_cmd->add_option("--server-cert", cert)->required();
  floor_cmd->add_option("--server-key", key)->required();
  floor_cmd->add_option("--iterations", iterations)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  InitLogging("berth-bench");

  if (*keygen) return Keygen(ak_key, policy);
  if (*api) return KubeApi(cert, key, token, port_file);
  if (*null_cmd) return NullServer(cert, key, port_file);

  auto read_floor = [&]() -> Result<CryptoFloor> {
    BERTH_ASSIGN_OR_RETURN(std::string c, ReadFile(cert));
    BERTH_ASSIGN_OR_RETURN(SecretBytes k, ReadSecretFile(key));
    return MeasureCryptoFloor(c, std::string(k.view()), iterations);
  };
  if (*floor_cmd) {
    auto f = read_floor();
    if (!f.ok()) return Fail(f.status());
    PrintFloor(*f);
    return 0;
  }

  auto ak = LoadAk(ak_key);
  if (!ak.ok()) return Fail(ak.status());
  auto ca_pem = ReadFile(ca);
  if (!ca_pem.ok()) return Fail(ca_pem.status());
  load.endpoint = endpoint;
  load.ca_pem = *ca_pem;
  load.server_name = server_name;
  load.duration = std::chrono::seconds(duration);
  load.warmup = std::chrono::seconds(warmup);
  load.with_disk = !no_disk;
  auto r = RunLoad(load, *ak);
  if (!r.ok()) return Fail(r.status());
  int64_t errors = 0;
  for (const auto& [code, n] : r->errors) errors += n;
  std::printf("concurrency %d, %.1f s measured\n", load.concurrency, r->seconds);
  std::printf("  joins            %lld (%.0f joins/s)\n", static_cast<long long>(r->joins),
              static_cast<double>(r->joins) / r->seconds);
  std::printf("  errors           %lld", static_cast<long long>(errors));
  for (const auto& [code, n] : r->errors)
    std::printf("  %s=%lld", code.c_str(), static_cast<long long>(n));
  for (const auto& [code, message] : r->first_error) {
    std::printf("\n    first %s: %s", code.c_str(), message.c_str());
  }
  std::printf("\n  latency ms       p50 %.2f  p90 %.2f  p99 %.2f  max %.2f\n", r->Percentile(50),
              r->Percentile(90), r->Percentile(99),
              r->latencies_ms.empty() ? 0 : r->latencies_ms.back());
  if (r->server_cpu_seconds >= 0 && r->joins > 0) {
    double per_join_us = r->server_cpu_seconds / static_cast<double>(r->joins) * 1e6;
    std::printf("  server CPU       %.2f s, %.1f us per join\n", r->server_cpu_seconds,
                per_join_us);
    if (!cert.empty() && !key.empty()) {
      auto f = read_floor();
      if (!f.ok()) return Fail(f.status());
      PrintFloor(*f);
      std::printf("  server CPU per join / worker join floor = %.2f\n",
                  per_join_us / f->WorkerJoinUs());
    }
  }
  if (!histogram.empty()) {
    Status st = DrawHistogram(*r, load.concurrency, histogram);
    if (!st.ok()) return Fail(st);
    std::printf("  histogram        %s\n", histogram.c_str());
  }
  return errors == 0 ? 0 : 3;
}
