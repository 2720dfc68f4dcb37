// The node's side of NodeOperatorService (proto/berth/v1/operator.proto,
// docs/cluster-lifecycle.md): a control plane that cannot go on alone (the first one of a
// cluster, or one that cannot open its state disk) serves it and waits for its operator.
//
// Rules the server enforces before it hands anything to the agent:
//   - TLS with a fresh key made for this wait; every call must come from a client whose key
//     the EnrolmentConfig pins (OperatorAccess.operator_spki_sha256), else PERMISSION_DENIED;
//   - Attest answers with evidence bound to the operator's nonce and to this server's key;
//   - Bootstrap and Recover must carry a nonce this server attested, within 10 minutes, and
//     use it up; the mode must be the one the node is in;
//   - one successful Bootstrap or Recover ends the wait (Wait returns it); a failed one leaves
//     the node waiting, and the error goes back to berthctl and into the journal.
// Thread-safe; handlers run on gRPC's threads one at a time.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "agent/attestation.h"
#include "berth/v1/operator.pb.h"
#include "common/secret.h"
#include "common/status.h"

namespace berth::agent {

// The name in the node's TLS certificate that berthctl asks for (its key is what is checked).
inline constexpr std::string_view kOperatorTlsName = "berth-agent";
// The operator endpoint's port when the EnrolmentConfig names none (operator_access.port).
inline constexpr uint32_t kOperatorPort = 7443;

// What the agent does with an operator's verified request.
class OperatorHandler {
 public:
  virtual ~OperatorHandler() = default;
  // Bootstrap mode: make the cluster (docs/cluster-lifecycle.md "Bootstrap").
  virtual Result<v1::BootstrapResponse> Bootstrap(const v1::BootstrapRequest& request) = 0;
  // Recovery mode: open the state disk with the recovery keyslot's key.
  virtual Status Recover(const SecretBytes& keyslot_key) = 0;
};

struct OperatorServerConfig {
  std::string listen = "0.0.0.0:" + std::to_string(kOperatorPort);
  std::vector<Bytes> operator_spki_sha256;  // pinned operators (at least one)
  v1::OperatorMode mode = v1::OPERATOR_MODE_UNSPECIFIED;
  std::string node_name;
  // Recovery mode: what berthctl needs to open the recovery keyslot's box.
  std::string disk_uuid;
  Bytes recovery_box;
  std::string recovery_key_sha256;
  std::string reason;
  std::chrono::seconds nonce_lifetime{600};
};

class OperatorServer {
 public:
  // Listens (port 0: any; see port()). `attester` and `handler` outlive the server.
  static Result<std::unique_ptr<OperatorServer>> Start(OperatorServerConfig config,
                                                       Attester* attester,
                                                       OperatorHandler* handler);
  ~OperatorServer();

  int port() const;
  // SHA-256 of this server's key (hex), for the console: an operator can compare it with what
  // berthctl sees.
  const std::string& key_sha256() const;
  // Blocks until an operator's Bootstrap or Recover succeeded; OK then.
  Status Wait();
  // Waits at most `timeout` for that: true once it happened.
  bool WaitFor(std::chrono::milliseconds timeout);
  void Shutdown();

  class Impl;

 private:
  explicit OperatorServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace berth::agent
