#include "agent/join_client.h"

#include <grpcpp/grpcpp.h>

#include <map>
#include <mutex>

#include "berth/v1/berth.grpc.pb.h"
#include "common/rpc.h"

namespace berth::agent {

Result<ClientIdentity> MakeClientIdentity(const std::string& node_name) {
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, GenerateP256Key());
  CertSpec spec{.common_name = node_name, .client_auth = true,
                .validity = std::chrono::hours(24)};
  BERTH_ASSIGN_OR_RETURN(X509Ptr cert, IssueCert(spec, key.get(), nullptr, key.get()));
  ClientIdentity id;
  BERTH_ASSIGN_OR_RETURN(id.cert_pem, CertToPem(cert.get()));
  BERTH_ASSIGN_OR_RETURN(id.key_pem, PrivateKeyToPem(key.get()));
  BERTH_ASSIGN_OR_RETURN(id.spki_sha256, CertSpkiSha256(cert.get()));
  return id;
}

std::chrono::milliseconds BackoffDelay(const RetryPolicy& policy, int attempt,
                                       std::mt19937_64& rng) {
  double delay = static_cast<double>(policy.initial_backoff.count());
  for (int i = 0; i < attempt && delay < policy.max_backoff.count(); ++i) delay *= 2;
  delay = std::min(delay, static_cast<double>(policy.max_backoff.count()));
  std::uniform_real_distribution<double> jitter(0.5, 1.0);
  return std::chrono::milliseconds(static_cast<int64_t>(delay * jitter(rng)));
}

namespace {

class GrpcJoinTransport : public JoinTransport {
 public:
  GrpcJoinTransport(const ClientIdentity& identity, std::string ca_pem, std::string server_name,
                    std::chrono::milliseconds timeout)
      : server_name_(std::move(server_name)), timeout_(timeout) {
    grpc::SslCredentialsOptions ssl;
    ssl.pem_root_certs = std::move(ca_pem);
    ssl.pem_private_key = std::string(identity.key_pem.view());
    ssl.pem_cert_chain = identity.cert_pem;
    credentials_ = grpc::SslCredentials(ssl);
    WipeString(ssl.pem_private_key);
  }

  Result<v1::ChallengeResponse> Challenge(const std::string& endpoint,
                                          const v1::ChallengeRequest& request) override {
    return Call<v1::ChallengeResponse>(endpoint, "Challenge", [&](auto& stub, auto* ctx, auto* out) {
      return stub.Challenge(ctx, request, out);
    });
  }
  Result<v1::JoinTicket> IssueJoinTicket(const std::string& endpoint,
                                         const v1::JoinRequest& request) override {
    return Call<v1::JoinTicket>(endpoint, "IssueJoinTicket", [&](auto& stub, auto* ctx, auto* out) {
      return stub.IssueJoinTicket(ctx, request, out);
    });
  }
  Result<v1::RejoinTicket> IssueRejoinTicket(const std::string& endpoint,
                                             const v1::RejoinRequest& request) override {
    return Call<v1::RejoinTicket>(endpoint, "IssueRejoinTicket",
                                  [&](auto& stub, auto* ctx, auto* out) {
                                    return stub.IssueRejoinTicket(ctx, request, out);
                                  });
  }

  std::optional<std::chrono::milliseconds> TakeRetryAfter() override {
    std::lock_guard<std::mutex> lock(mu_);
    auto out = retry_after_;
    retry_after_.reset();
    return out;
  }

 private:
  void RememberRetryAfter(const grpc::ClientContext& ctx) {
    std::optional<std::chrono::milliseconds> hint;
    const auto& trailers = ctx.GetServerTrailingMetadata();
    if (auto it = trailers.find(kRetryAfterMetadata); it != trailers.end()) {
      std::string value(it->second.data(), it->second.size());
      char* end = nullptr;
      long ms = std::strtol(value.c_str(), &end, 10);
      // At most a minute: a server cannot park a node for longer than its own backoff would.
      if (!value.empty() && *end == '\0' && ms >= 0 && ms <= 60000) {
        hint = std::chrono::milliseconds(ms);
      }
    }
    std::lock_guard<std::mutex> lock(mu_);
    retry_after_ = hint;
  }

  v1::JoinService::Stub& StubFor(const std::string& endpoint) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = stubs_.find(endpoint);
    if (it != stubs_.end()) return *it->second;
    grpc::ChannelArguments args = ClientChannelArguments();
    if (!server_name_.empty()) args.SetSslTargetNameOverride(server_name_);
    auto channel = grpc::CreateCustomChannel(endpoint, credentials_, args);
    auto stub = v1::JoinService::NewStub(channel);
    auto& ref = *stub;
    stubs_.emplace(endpoint, std::move(stub));
    return ref;
  }

  template <typename Response, typename Fn>
  Result<Response> Call(const std::string& endpoint, const char* method, Fn fn) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout_);
    Response response;
    grpc::Status status = fn(StubFor(endpoint), &ctx, &response);
    RememberRetryAfter(ctx);
    if (status.error_code() == grpc::StatusCode::UNAVAILABLE) {
      // A channel that failed to connect waits out gRPC's own reconnect backoff (tens of
      // seconds); the agent's loop already paces retries, so the next call gets a new channel.
      std::lock_guard<std::mutex> lock(mu_);
      stubs_.erase(endpoint);
    }
    if (!status.ok()) return FromGrpcStatus(status, std::string(method) + " at " + endpoint);
    return response;
  }

  std::shared_ptr<grpc::ChannelCredentials> credentials_;
  std::string server_name_;
  std::chrono::milliseconds timeout_;
  std::mutex mu_;
  std::map<std::string, std::unique_ptr<v1::JoinService::Stub>> stubs_;
  std::optional<std::chrono::milliseconds> retry_after_;  // GUARDED_BY(mu_)
};

}  // namespace

std::unique_ptr<JoinTransport> MakeGrpcJoinTransport(const ClientIdentity& identity,
                                                     const std::string& cluster_ca_pem,
                                                     const std::string& tls_server_name,
                                                     std::chrono::milliseconds call_timeout) {
  return std::make_unique<GrpcJoinTransport>(identity, cluster_ca_pem, tls_server_name,
                                             call_timeout);
}

}  // namespace berth::agent
