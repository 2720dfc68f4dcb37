// kubeadm bootstrap tokens, minted as Secrets through the Kubernetes API.
#pragma once

#include <memory>
#include <string>

#include "common/clock.h"
#include "common/secret.h"
#include "server/cloud/kube_client.h"

namespace berth::server {

struct BootstrapToken {
  std::string id;         // [a-z0-9]{6}; public (it names the Secret)
  SecretBytes secret;     // [a-z0-9]{16}
  int64_t expires_unix = 0;
  // "id.secret", the form kubeadm takes.
  SecretBytes Joined() const;
};

// A fresh token: id and secret drawn uniformly from [a-z0-9].
BootstrapToken GenerateBootstrapToken(int64_t expires_unix);
bool IsValidTokenId(std::string_view id);
bool IsValidTokenSecret(std::string_view secret);

// The Secret JSON kube-apiserver expects for a bootstrap token (type
// bootstrap.kubernetes.io/token in kube-system), labelled with the node it was made for.
// The returned string holds the secret; callers wipe it.
std::string BootstrapTokenSecretJson(const BootstrapToken& token, const std::string& node_name);

class TokenIssuer {
 public:
  virtual ~TokenIssuer() = default;
  // Creates a token for `node_name` valid for the issuer's lifetime. UNAVAILABLE when the
  // API server cannot be reached or refuses (the node retries later).
  virtual Result<BootstrapToken> Issue(const std::string& node_name) = 0;
};

// Mints tokens as Secrets through `client`. On a name collision (409) it draws a new id.
class KubeTokenIssuer : public TokenIssuer {
 public:
  KubeTokenIssuer(KubeClient* client, Clock* clock, std::chrono::seconds ttl)
      : client_(client), clock_(clock), ttl_(ttl) {}
  Result<BootstrapToken> Issue(const std::string& node_name) override;

 private:
  KubeClient* client_;
  Clock* clock_;
  std::chrono::seconds ttl_;
};

}  // namespace berth::server
