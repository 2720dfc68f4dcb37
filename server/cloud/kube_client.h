// A minimal Kubernetes REST client (libcurl): enough for bootstrap-token Secrets.
//
// Credentials come from a kubeconfig file (bearer token, token file, or client certificate;
// CA as data or file) or from the in-cluster service account, exactly as client-go reads
// them, so the same berthd runs against a real kube-apiserver unchanged.
#pragma once

#include <memory>
#include <string>

#include "common/secret.h"
#include "common/status.h"

namespace berth::server {

struct KubeCredentials {
  std::string server;         // https://host:port
  std::string ca_pem;         // trust anchor for the API server's certificate
  SecretBytes token;          // bearer token, or empty
  std::string client_cert_pem;
  SecretBytes client_key_pem;
};

// The current context of a kubeconfig file. Relative file references resolve against the
// kubeconfig's directory.
Result<KubeCredentials> LoadKubeconfig(const std::string& path);
// The pod's service account: KUBERNETES_SERVICE_HOST/PORT and
// <root>/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}.
Result<KubeCredentials> LoadInClusterCredentials(const std::string& root = "/");

struct HttpResponse {
  long status = 0;
  std::string body;
};

class KubeClient {
 public:
  virtual ~KubeClient() = default;
  // Sends a request with a JSON body (may be empty). Fails only when no HTTP response came
  // back (UNAVAILABLE, naming the server and the transport error). The body is never logged.
  virtual Result<HttpResponse> Request(const std::string& method, const std::string& path,
                                       const std::string& json_body) = 0;
};

// Thread-safe: each request uses its own curl handle.
std::unique_ptr<KubeClient> MakeCurlKubeClient(KubeCredentials credentials,
                                               long timeout_ms = 10000);

// The `message` of a Kubernetes Status body, or the first 200 bytes of a non-Status body.
std::string KubeErrorMessage(const HttpResponse& response);

}  // namespace berth::server
