#include "agent/operator_server.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/security/auth_context.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <condition_variable>
#include <map>
#include <mutex>

#include "berth/v1/operator.grpc.pb.h"
#include "common/audit.h"
#include "common/binding.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "common/rpc.h"

namespace berth::agent {

class OperatorServer::Impl final : public v1::NodeOperatorService::Service {
 public:
  Impl(OperatorServerConfig config, Attester* attester, OperatorHandler* handler)
      : config_(std::move(config)), attester_(attester), handler_(handler) {}

  Status Listen() {
    if (config_.operator_spki_sha256.empty()) {
      return FailedPrecondition(
          "the EnrolmentConfig pins no operator key (operator_access.operator_spki_sha256): "
          "nobody could bootstrap or recover this node");
    }
    BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, GenerateP256Key());
    BERTH_ASSIGN_OR_RETURN(
        X509Ptr cert, IssueCert({.common_name = "berth-agent " + config_.node_name,
                                 // berthctl names this one (kOperatorTlsName): the node's
                                 // addresses are the operator's business, not the cert's.
                                 .dns_names = {std::string(kOperatorTlsName)},
                                 .server_auth = true},
                                key.get(), nullptr, key.get()));
    BERTH_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToSpkiDer(key.get()));
    spki_sha256_ = Sha256(spki);
    key_sha256_hex_ = HexEncode(spki_sha256_);
    BERTH_ASSIGN_OR_RETURN(std::string cert_pem, CertToPem(cert.get()));
    BERTH_ASSIGN_OR_RETURN(SecretBytes key_pem, PrivateKeyToPem(key.get()));
    grpc::SslServerCredentialsOptions ssl(
        GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_BUT_DONT_VERIFY);
    ssl.pem_key_cert_pairs.push_back({std::string(key_pem.view()), cert_pem});
    grpc::ServerBuilder builder;
    builder.AddListeningPort(config_.listen, grpc::SslServerCredentials(ssl), &port_);
    WipeString(ssl.pem_key_cert_pairs.front().private_key);
    builder.RegisterService(this);
    server_ = builder.BuildAndStart();
    if (server_ == nullptr || port_ == 0) {
      return Unavailable("cannot listen for the operator on " + config_.listen);
    }
    return OkStatus();
  }

  grpc::Status Attest(grpc::ServerContext* context, const v1::OperatorAttestRequest* request,
                      v1::OperatorAttestResponse* response) override {
    if (Status who = CheckOperator(*context); !who.ok()) return Refuse("Attest", *context, who);
    if (request->nonce().size() != 32) {
      return Refuse("Attest", *context, InvalidArgument("the nonce must be 32 bytes"));
    }
    Bytes binding = ComputeBinding(AsBytes(request->nonce()), spki_sha256_);
    auto attested = attester_->Attest(v1::ChallengeResponse(), binding);
    if (!attested.ok()) return Refuse("Attest", *context, attested.status());
    {
      std::lock_guard<std::mutex> lock(mu_);
      Prune();
      nonces_[request->nonce()] = std::chrono::steady_clock::now() + config_.nonce_lifetime;
    }
    *response->mutable_evidence() = std::move(attested->evidence);
    response->set_mode(config_.mode);
    response->set_node_name(config_.node_name);
    response->set_disk_uuid(config_.disk_uuid);
    response->set_recovery_box(ToString(config_.recovery_box));
    response->set_recovery_key_sha256(config_.recovery_key_sha256);
    response->set_reason(config_.reason);
    Audit("Attest", *context)
        .Add("mode", v1::OperatorMode_Name(config_.mode))
        .Log(OkStatus(), "answered");
    return grpc::Status::OK;
  }

  grpc::Status Bootstrap(grpc::ServerContext* context, const v1::BootstrapRequest* request,
                         v1::BootstrapResponse* response) override {
    if (Status ok = Admit(*context, request->nonce(), v1::OPERATOR_MODE_BOOTSTRAP); !ok.ok()) {
      return Refuse("Bootstrap", *context, ok);
    }
    spdlog::info("operator {} bootstraps the cluster {} on this node", Operator(*context),
                 request->cluster_id());
    auto made = handler_->Bootstrap(*request);
    if (!made.ok()) {
      Release();
      return Refuse("Bootstrap", *context, made.status());
    }
    Audit("Bootstrap", *context).Add("cluster", request->cluster_id()).Log(OkStatus(), "done");
    *response = std::move(*made);
    Finish();
    return grpc::Status::OK;
  }

  grpc::Status Recover(grpc::ServerContext* context, const v1::RecoverRequest* request,
                       v1::RecoverResponse* response) override {
    if (Status ok = Admit(*context, request->nonce(), v1::OPERATOR_MODE_RECOVERY); !ok.ok()) {
      return Refuse("Recover", *context, ok);
    }
    std::string key_text = request->keyslot_key();
    SecretBytes key = SecretBytes::TakeFrom(key_text);
    WipeString(*const_cast<v1::RecoverRequest*>(request)->mutable_keyslot_key());
    spdlog::info("operator {} sent the recovery keyslot's key", Operator(*context));
    Status opened = handler_->Recover(key);
    if (!opened.ok()) {
      Release();
      return Refuse("Recover", *context, opened);
    }
    Audit("Recover", *context).Log(OkStatus(), "opened");
    Finish();
    return grpc::Status::OK;
  }

  Status Wait() {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [&] { return done_ || stopped_; });
    return done_ ? OkStatus() : Status(Code::kCancelled, "the wait for the operator was stopped");
  }

  bool WaitFor(std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lock(mu_);
    return done_cv_.wait_for(lock, timeout, [&] { return done_ || stopped_; }) && done_;
  }

  void Shutdown() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopped_ = true;
    }
    done_cv_.notify_all();
    // The call that ended the wait wakes the waiter before its answer is sent: calls in flight
    // get a few seconds to finish, or the operator would be told "cancelled" about a bootstrap
    // or recovery that succeeded.
    if (server_ != nullptr) {
      server_->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(5));
    }
  }

  int port() const { return port_; }
  const std::string& key_sha256() const { return key_sha256_hex_; }

 private:
  // The caller's key, checked against the pinned operators.
  Status CheckOperator(const grpc::ServerContext& context) {
    auto auth = context.auth_context();
    auto pems = auth == nullptr ? std::vector<grpc::string_ref>()
                                : auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    if (pems.empty()) return PermissionDenied("no client certificate: operators only");
    auto hash = CertPemSpkiSha256(std::string_view(pems.front().data(), pems.front().size()));
    if (!hash.ok()) return PermissionDenied("unreadable client certificate");
    for (const Bytes& pinned : config_.operator_spki_sha256) {
      if (pinned == *hash) return OkStatus();
    }
    return PermissionDenied("key sha256:" + HexEncode(*hash).substr(0, 16) +
                            "... is not an operator of this node (operator_access)");
  }

  std::string Operator(const grpc::ServerContext& context) {
    auto auth = context.auth_context();
    auto pems = auth == nullptr ? std::vector<grpc::string_ref>()
                                : auth->FindPropertyValues(GRPC_X509_PEM_CERT_PROPERTY_NAME);
    if (pems.empty()) return "?";
    auto hash = CertPemSpkiSha256(std::string_view(pems.front().data(), pems.front().size()));
    return hash.ok() ? "sha256:" + HexEncode(*hash).substr(0, 16) : "?";
  }

  // An operator's request with a nonce this server attested, in this node's mode. The nonce is
  // used up by the request that presents it, whatever becomes of the request.
  Status Admit(const grpc::ServerContext& context, const std::string& nonce,
               v1::OperatorMode mode) {
    BERTH_RETURN_IF_ERROR(CheckOperator(context));
    std::lock_guard<std::mutex> lock(mu_);
    Prune();
    auto it = nonces_.find(nonce);
    if (it == nonces_.end()) {
      return PermissionDenied(
          "the nonce is not one this node attested (or it expired, or was used): call Attest "
          "first");
    }
    nonces_.erase(it);
    if (mode != config_.mode) {
      return FailedPrecondition(std::string("this node is waiting for ") +
                                (config_.mode == v1::OPERATOR_MODE_BOOTSTRAP ? "a bootstrap"
                                                                             : "a recovery") +
                                ", not this");
    }
    if (busy_) return Unavailable("another operator request is in progress");
    busy_ = true;
    return OkStatus();
  }

  void Finish() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
      busy_ = false;
    }
    done_cv_.notify_all();
  }

  // The admitted request failed: the node goes on waiting.
  void Release() {
    std::lock_guard<std::mutex> lock(mu_);
    busy_ = false;
  }

  // The audit line of an operator's call (common/audit.h): OperatorAttest, OperatorBootstrap,
  // OperatorRecover, with the operator's key hash.
  AuditLine Audit(std::string_view call, const grpc::ServerContext& context) {
    AuditLine line("Operator" + std::string(call));
    line.Add("operator", Operator(context));
    return line;
  }

  grpc::Status Refuse(std::string_view call, const grpc::ServerContext& context,
                      const Status& status) {
    Audit(call, context).Log(status);
    return ToGrpcStatus(status);
  }

  void Prune() {  // REQUIRES: mu_ held
    const auto now = std::chrono::steady_clock::now();
    for (auto it = nonces_.begin(); it != nonces_.end();) {
      it = it->second < now ? nonces_.erase(it) : std::next(it);
    }
    while (nonces_.size() > 64) nonces_.erase(nonces_.begin());
  }

  OperatorServerConfig config_;
  Attester* attester_;
  OperatorHandler* handler_;
  Bytes spki_sha256_;
  std::string key_sha256_hex_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  std::mutex mu_;
  std::condition_variable done_cv_;
  std::map<std::string, std::chrono::steady_clock::time_point> nonces_;  // GUARDED_BY(mu_)
  bool busy_ = false;                                                    // GUARDED_BY(mu_)
  bool done_ = false;                                                    // GUARDED_BY(mu_)
  bool stopped_ = false;                                                 // GUARDED_BY(mu_)
};

OperatorServer::OperatorServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
OperatorServer::~OperatorServer() { Shutdown(); }

Result<std::unique_ptr<OperatorServer>> OperatorServer::Start(OperatorServerConfig config,
                                                              Attester* attester,
                                                              OperatorHandler* handler) {
  auto impl = std::make_unique<Impl>(std::move(config), attester, handler);
  BERTH_RETURN_IF_ERROR(impl->Listen());
  return std::unique_ptr<OperatorServer>(new OperatorServer(std::move(impl)));
}

int OperatorServer::port() const { return impl_->port(); }
const std::string& OperatorServer::key_sha256() const { return impl_->key_sha256(); }
Status OperatorServer::Wait() { return impl_->Wait(); }
bool OperatorServer::WaitFor(std::chrono::milliseconds timeout) { return impl_->WaitFor(timeout); }
void OperatorServer::Shutdown() {
  if (impl_ != nullptr) impl_->Shutdown();
}

}  // namespace berth::agent
