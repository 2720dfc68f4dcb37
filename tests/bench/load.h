// The load generator's two measurements: nodes joining a running berthd over real TLS, and the
// CPU floor of the public-key operations one join costs the server, measured with OpenSSL on
// this machine.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <map>
#include <string>
#include <vector>

#include "common/status.h"
#include "tests/bench/soft_ak.h"

namespace berth::bench {

struct LoadOptions {
  std::string endpoint;        // host:port of berthd
  std::string ca_pem;          // cluster CA that berthd's certificate chains to
  std::string server_name;     // TLS name to check (empty: the endpoint's host)
  int concurrency = 64;        // simulated nodes in flight at once (closed loop)
  std::chrono::seconds warmup{2};
  std::chrono::seconds duration{10};
  pid_t server_pid = 0;        // when set, the server's CPU time is read from /proc/<pid>/stat
  bool with_disk = true;       // each join names a fresh disk UUID (berthd derives a key)
};

struct LoadResult {
  int64_t joins = 0;                   // completed in the measured window
  std::map<std::string, int64_t> errors;  // gRPC status name -> count
  std::map<std::string, std::string> first_error;  // gRPC status name -> its first message
  double seconds = 0;                  // measured window
  std::vector<double> latencies_ms;    // one per successful join in the window, sorted
  double server_cpu_seconds = -1;      // in the measured window; -1 when not measured
  double Percentile(double p) const;   // p in [0, 100]
};

// One node's join: a fresh TLS key and connection, Challenge, a quote bound to the nonce and
// the key, IssueJoinTicket (a worker, named `name`). The ticket's secrets are wiped unread.
struct JoinAttempt {
  Status status;                // OK, or the first failed call's gRPC status
  std::string error_class;      // the status's code name ("client-key"/"quote": local failures)
  double ms = 0;                // from the first call to the answer
  std::chrono::steady_clock::time_point finished;
};
JoinAttempt JoinOnce(const LoadOptions& options, const SoftAk& ak, const std::string& name);

// Runs `options.concurrency` threads, each a node joining over and over: a fresh TLS key and
// connection (as a booting node has), Challenge, a quote bound to the nonce and the key,
// IssueJoinTicket. Latency runs from the connection's first call to the ticket.
Result<LoadResult> RunLoad(const LoadOptions& options, const SoftAk& ak);

// The crypto floor, in microseconds of CPU per operation on one core.
struct CryptoFloor {
  double tls_handshake_server_us = 0;  // TLS 1.3, server side, client certificate requested
  // The same with ECDHE on P-256, the only group gRPC's TLS offers and accepts (X25519, which
  // OpenSSL picks by default, is cheaper): what berthd's handshakes cannot go below.
  double tls_handshake_p256_server_us = 0;
  double quote_verify_us = 0;          // ECDSA P-256 / SHA-256 over a TPMS_ATTEST
  double cert_sign_us = 0;             // one certificate signed (control-plane joins sign two)
  double WorkerJoinUs() const { return tls_handshake_server_us + quote_verify_us; }
};

// Measures with the server's own certificate and key (PEM files) so the handshake does what
// berthd's does.
Result<CryptoFloor> MeasureCryptoFloor(const std::string& server_cert_pem,
                                       const std::string& server_key_pem, int iterations);

// CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat.
Result<double> ProcessCpuSeconds(pid_t pid);

}  // namespace berth::bench
