// berthctl's side of NodeOperatorService (proto/berth/v1/operator.proto,
// docs/cluster-lifecycle.md): the operator talks to a control plane that waits for them.
//
// The node's TLS key is per boot and certified by nobody, so the channel pins it on first sight
// and refuses any other key afterwards (a reconnect to another server cannot slip in), and
// nothing is believed before the node's evidence, bound to berthctl's nonce and to that key,
// verifies against the operator's policy with berthd's own verifier (verify/). Only then does
// AttestedNode send a request, and only to that key.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>

#include "berth/v1/operator.grpc.pb.h"
#include "common/secret.h"
#include "common/status.h"
#include "verify/evidence.h"
#include "verify/policy.h"

namespace berth::cli {

struct OperatorConnection {
  std::string node;       // host:port
  std::string cert_pem;   // the operator's certificate (its key is pinned on the node)
  SecretBytes key_pem;
  std::chrono::seconds timeout{60};
  // Bootstrap: the node formats its disk and starts the control plane, waiting up to its own
  // limits for etcd, the API server, the bootstrap signer and its kubelet (berth-agent
  // --etcd-wait, --control-plane-wait: 900 s each by default); this outlasts them.
  std::chrono::seconds long_timeout{7200};
};

class AttestedNode {
 public:
  // Attest, then verify the evidence against `policy` (PERMISSION_DENIED naming the failed
  // check; nothing is sent to a node that fails). A policy that trusts the node's AK only
  // through its EK (credential activation) is refused: operators pin the AK.
  static Result<AttestedNode> Connect(const OperatorConnection& connection,
                                      const verify::Policy& policy);

  const v1::OperatorAttestResponse& attestation() const { return attestation_; }
  const verify::VerifiedEvidence& verified() const { return verified_; }
  const std::string& node_key_sha256() const { return node_key_sha256_; }

  Result<v1::BootstrapResponse> Bootstrap(v1::BootstrapRequest request);
  Status Recover(const SecretBytes& keyslot_key);

 private:
  AttestedNode() = default;

  OperatorConnection connection_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::NodeOperatorService::Stub> stub_;
  std::string nonce_;
  v1::OperatorAttestResponse attestation_;
  verify::VerifiedEvidence verified_;
  std::string node_key_sha256_;
};

}  // namespace berth::cli
