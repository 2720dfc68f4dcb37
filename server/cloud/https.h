// berthd's one HTTPS client (libcurl): the Kubernetes API, AMD's KDS, SNS signing certificates
// and subscription confirmations, and EC2 all go through it. It owns what every caller would
// otherwise repeat: libcurl's global initialisation, the options every request shares, body
// collection with a size cap, conversion of libcurl's errors (in this file only), and a pool of
// handles, so that a client keeps its connections and TLS sessions to a server between
// requests instead of paying a TCP and TLS handshake each time.
//
// Never redirected; https only unless a test stand-in on loopback is allowed plain http.
// Secrets handed to it (a client key, an Authorization header) are wiped when it is destroyed.
// Thread-safe: each request takes a handle of its own from the pool.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/secret.h"
#include "common/status.h"

typedef void CURL;
struct curl_slist;

namespace berth::server {

struct HttpsOptions {
  std::string service;  // named in errors: "Kubernetes API", "AMD KDS"
  // Trust: `ca_pem` (PEM text), else `ca_file`, else the system's store.
  std::string ca_pem;
  std::string ca_file;
  // Client certificate authentication (both or neither).
  std::string client_cert_pem;
  SecretBytes client_key_pem;
  // Headers sent with every request ("Name: value"); may carry a bearer token.
  std::vector<std::string> headers;
  bool allow_plain_http = false;  // loopback test stand-ins only: the caller checks the URL
  long timeout_ms = 10000;
  long connect_timeout_ms = 5000;
  size_t max_body_bytes = 1 << 20;  // a longer answer is an error, not truncated
};

struct HttpsResponse {
  long status = 0;
  std::string body;
};

class HttpsClient {
 public:
  explicit HttpsClient(HttpsOptions options);
  ~HttpsClient();
  HttpsClient(const HttpsClient&) = delete;
  HttpsClient& operator=(const HttpsClient&) = delete;

  // One request. `body` is sent when not empty (the caller keeps it alive and owns any secret
  // in it); `headers` are added to the client's own for this request. Any HTTP status is an
  // answer; UNAVAILABLE when the server could not be reached or the answer was cut off, naming
  // the service and the URL (never a header or a body).
  Result<HttpsResponse> Send(std::string_view method, const std::string& url,
                             std::string_view body = {},
                             const std::vector<std::string>& headers = {});

  const HttpsOptions& options() const { return options_; }

 private:
  CURL* Acquire();
  void Release(CURL* c);

  HttpsOptions options_;  // immutable after construction, but for the wipe at destruction
  curl_slist* headers_ = nullptr;  // immutable after construction
  std::mutex mu_;
  std::vector<CURL*> idle_;  // GUARDED_BY(mu_)
};

// An HTTPS GET that wants a 200 answer's body (UNAVAILABLE otherwise): what SNS and EC2 need,
// behind an interface so tests can answer in its place.
class HttpsFetcher {
 public:
  virtual ~HttpsFetcher() = default;
  // `headers` are extra request headers ("Name: value").
  virtual Result<std::string> Get(const std::string& url,
                                  const std::vector<std::string>& headers = {}) = 0;
};
// HttpsClient, https only, `ca_file` as the trust store (empty: the system's).
std::unique_ptr<HttpsFetcher> MakeCurlHttpsFetcher(std::string ca_file, long timeout_ms = 10000);

}  // namespace berth::server
