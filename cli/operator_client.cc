#include "cli/operator_client.h"

#include <grpcpp/security/tls_certificate_provider.h>
#include <grpcpp/security/tls_certificate_verifier.h>
#include <grpcpp/security/tls_credentials_options.h>

#include <mutex>

#include "common/binding.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "common/rpc.h"

namespace berth::cli {

namespace {

// The node's key as the first handshake showed it; every later handshake must show the same.
struct KeyPin {
  std::mutex mu;
  Bytes spki_sha256;  // GUARDED_BY(mu); empty until the first handshake
};

class PinOnFirstSight : public grpc::experimental::ExternalCertificateVerifier {
 public:
  explicit PinOnFirstSight(std::shared_ptr<KeyPin> pin) : pin_(std::move(pin)) {}
  bool Verify(grpc::experimental::TlsCustomVerificationCheckRequest* request,
              std::function<void(grpc::Status)>, grpc::Status* sync_status) override {
    auto cert = request->peer_cert();
    auto hash = CertPemSpkiSha256(std::string_view(cert.data(), cert.size()));
    if (!hash.ok()) {
      *sync_status = grpc::Status(grpc::StatusCode::UNAUTHENTICATED, "unreadable node certificate");
      return true;
    }
    std::lock_guard<std::mutex> lock(pin_->mu);
    if (pin_->spki_sha256.empty()) pin_->spki_sha256 = *hash;
    *sync_status = pin_->spki_sha256 == *hash
                       ? grpc::Status::OK
                       : grpc::Status(grpc::StatusCode::UNAUTHENTICATED,
                                      "the node's TLS key changed since it was attested");
    return true;
  }
  void Cancel(grpc::experimental::TlsCustomVerificationCheckRequest*) override {}

 private:
  std::shared_ptr<KeyPin> pin_;
};

Status Call(const grpc::Status& status, const std::string& what) {
  return status.ok() ? OkStatus() : FromGrpcStatus(status, what);
}

}  // namespace

Result<AttestedNode> AttestedNode::Connect(const OperatorConnection& connection,
                                           const verify::Policy& policy) {
  AttestedNode node;
  node.connection_.node = connection.node;
  node.connection_.cert_pem = connection.cert_pem;
  node.connection_.key_pem = connection.key_pem.Clone();
  node.connection_.timeout = connection.timeout;
  node.connection_.long_timeout = connection.long_timeout;

  auto pin = std::make_shared<KeyPin>();
  grpc::experimental::TlsChannelCredentialsOptions options;
  options.set_verify_server_certs(false);  // certified by nobody: pinned, then attested
  options.set_check_call_host(false);
  options.set_certificate_verifier(
      grpc::experimental::ExternalCertificateVerifier::Create<PinOnFirstSight>(pin));
  options.set_certificate_provider(
      std::make_shared<grpc::experimental::StaticDataCertificateProvider>(
          std::vector<grpc::experimental::IdentityKeyCertPair>{
              {std::string(connection.key_pem.view()), connection.cert_pem}}));
  options.watch_identity_key_cert_pairs();
  grpc::ChannelArguments args = ClientChannelArguments();
  args.SetSslTargetNameOverride("berth-agent");  // agent/operator_server.h kOperatorTlsName
  node.channel_ = grpc::CreateCustomChannel(
      connection.node, grpc::experimental::TlsCredentials(options), args);
  node.stub_ = v1::NodeOperatorService::NewStub(node.channel_);

  Bytes nonce = RandomBytes(32);
  node.nonce_ = ToString(nonce);
  v1::OperatorAttestRequest request;
  request.set_nonce(node.nonce_);
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + connection.timeout);
  BERTH_RETURN_IF_ERROR(Call(node.stub_->Attest(&ctx, request, &node.attestation_),
                             "Attest at " + connection.node));
  Bytes node_key;
  {
    std::lock_guard<std::mutex> lock(pin->mu);
    node_key = pin->spki_sha256;
  }
  if (node_key.empty()) return Internal("the node's TLS key was not seen");
  node.node_key_sha256_ = HexEncode(node_key);

  verify::TpmEvidenceVerifier tpm(policy);
  verify::EvidenceDispatcher verifier(&tpm, nullptr);
  auto verified =
      verifier.Verify(node.attestation_.evidence(), ComputeBinding(nonce, node_key));
  if (!verified.ok()) {
    return Status(verified.status().code(),
                  "the node " + connection.node + " failed attestation: " +
                      std::string(verified.status().message()));
  }
  if (verified->credential.has_value()) {
    return PermissionDenied(
        "the policy trusts this node's attestation key only through its EK certificate, which "
        "needs berthd's credential activation; pin the AK (tpm.trusted_aks) for the operator");
  }
  node.verified_ = std::move(*verified);
  return node;
}

Result<v1::BootstrapResponse> AttestedNode::Bootstrap(v1::BootstrapRequest request) {
  request.set_nonce(nonce_);
  v1::BootstrapResponse response;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + connection_.long_timeout);
  BERTH_RETURN_IF_ERROR(
      Call(stub_->Bootstrap(&ctx, request, &response), "Bootstrap at " + connection_.node));
  return response;
}

Status AttestedNode::Recover(const SecretBytes& keyslot_key) {
  v1::RecoverRequest request;
  request.set_nonce(nonce_);
  request.set_keyslot_key(std::string(keyslot_key.view()));
  v1::RecoverResponse response;
  grpc::ClientContext ctx;
  ctx.set_deadline(std::chrono::system_clock::now() + connection_.long_timeout);
  grpc::Status status = stub_->Recover(&ctx, request, &response);
  WipeString(*request.mutable_keyslot_key());
  return Call(status, "Recover at " + connection_.node);
}

}  // namespace berth::cli
