#include "common/etcd_client.h"

#include <grpcpp/grpcpp.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <cstdio>
#include <map>
#include <mutex>

#include "common/crypto.h"
#include "common/enrolment.h"
#include "common/rpc.h"
#include "etcd/etcdserverpb/rpc.grpc.pb.h"

namespace berth::etcd {

namespace {

// etcd's error descriptions (etcdserver/api/v3rpc/rpctypes/error.go, v3.4). etcd's own Go
// client matches errors by these strings too.
constexpr std::string_view kPeerUrlExists = "etcdserver: Peer URLs already exists";
constexpr std::string_view kMemberExists = "etcdserver: member ID already exist";
constexpr std::string_view kMemberNotFound = "etcdserver: member not found";
constexpr std::string_view kLearnerNotReady =
    "etcdserver: can only promote a learner member which is in sync with leader";
constexpr std::string_view kMemberNotLearner = "etcdserver: can only promote a learner member";
constexpr std::string_view kTooManyLearners = "etcdserver: too many learner members in cluster";
constexpr std::string_view kNotEnoughStarted =
    "etcdserver: re-configuration failed due to not enough started members";
constexpr std::string_view kNotLeader = "etcdserver: not leader";
constexpr std::string_view kNoSpace = "etcdserver: mvcc: database space exceeded";
constexpr std::string_view kUnhealthy = "etcdserver: unhealthy cluster";

}  // namespace

bool TryNextEndpoint(const grpc::Status& status) {
  const std::string& m = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::UNAUTHENTICATED:  // e.g. a member with a different certificate
      return true;
    case grpc::StatusCode::FAILED_PRECONDITION:
      // Cluster-wide answers ("too many learners", "learner not in sync") are the same at every
      // member; "not leader" is about this member only.
      return m == kNotLeader;
    default:
      return false;
  }
}

Status EtcdError(const grpc::Status& status, std::string_view what) {
  if (status.ok()) return OkStatus();
  const std::string& m = status.error_message();
  std::string msg = std::string(what) + ": " + m;
  // Most specific first: kLearnerNotReady starts with kMemberNotLearner.
  if (m == kLearnerNotReady) return Unavailable(msg + " (the learner is still catching up)");
  if (m == kTooManyLearners) return Unavailable(msg + " (another member is joining as a learner)");
  if (m == kPeerUrlExists || m == kMemberExists) return AlreadyExists(msg);
  if (m == kMemberNotFound) return NotFound(msg);
  if (m == kMemberNotLearner) return FailedPrecondition(msg);
  if (m == kNotEnoughStarted) return FailedPrecondition(msg + " (it would risk quorum)");
  if (m == kNotLeader) return Unavailable(msg);
  if (m == kNoSpace) return ResourceExhausted(msg);
  if (m == kUnhealthy) {
    return Unavailable(msg +
                       " (etcd changes membership only once every member has been "
                       "connected for 5 s)");
  }
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED:
      return Unavailable(msg);
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return DeadlineExceeded(msg);
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return Unavailable(msg);  // "too many requests": back off and retry
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::PERMISSION_DENIED:
      return Unavailable(msg +
                         " (etcd refused berth's credentials; check the etcd client "
                         "certificate and CA)");
    default:
      return Internal(msg);
  }
}

Result<std::string> EndpointTarget(std::string_view endpoint) {
  std::string_view e = endpoint;
  if (e.starts_with("http://")) {
    return InvalidArgument("etcd endpoint " + std::string(endpoint) +
                           " is plain http; berth talks to etcd over TLS only");
  }
  if (e.starts_with("https://")) e.remove_prefix(8);
  while (!e.empty() && e.back() == '/') e.remove_suffix(1);
  if (!IsValidEndpoint(e)) {
    return InvalidArgument("etcd endpoint \"" + std::string(endpoint) +
                           "\" is not https://host:port");
  }
  return std::string(e);
}

std::string PrefixEnd(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    unsigned char last = static_cast<unsigned char>(end.back());
    if (last < 0xff) {
      end.back() = static_cast<char>(last + 1);
      return end;
    }
    end.pop_back();
  }
  return std::string(1, '\0');  // every key
}

std::string MemberIdHex(uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

namespace {

struct Stubs {
  std::shared_ptr<grpc::Channel> channel;
  std::unique_ptr<etcdserverpb::KV::Stub> kv;
  std::unique_ptr<etcdserverpb::Cluster::Stub> cluster;
  std::unique_ptr<etcdserverpb::Maintenance::Stub> maintenance;
};

class GrpcClient : public Client {
 public:
  GrpcClient(std::vector<std::string> targets, std::shared_ptr<grpc::ChannelCredentials> creds,
             std::chrono::milliseconds timeout)
      : targets_(std::move(targets)), creds_(std::move(creds)), timeout_(timeout) {}

  Result<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& request) override {
    return Failover<etcdserverpb::RangeResponse>(
        "Range", [&](Stubs& s, auto* ctx, auto* out) { return s.kv->Range(ctx, request, out); });
  }
  Result<etcdserverpb::PutResponse> Put(const etcdserverpb::PutRequest& request) override {
    return Failover<etcdserverpb::PutResponse>(
        "Put", [&](Stubs& s, auto* ctx, auto* out) { return s.kv->Put(ctx, request, out); });
  }
  Result<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& request) override {
    return Failover<etcdserverpb::DeleteRangeResponse>(
        "DeleteRange",
        [&](Stubs& s, auto* ctx, auto* out) { return s.kv->DeleteRange(ctx, request, out); });
  }
  Result<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& request) override {
    return Failover<etcdserverpb::TxnResponse>(
        "Txn", [&](Stubs& s, auto* ctx, auto* out) { return s.kv->Txn(ctx, request, out); });
  }
  Result<etcdserverpb::MemberListResponse> MemberList() override {
    etcdserverpb::MemberListRequest request;
    return Failover<etcdserverpb::MemberListResponse>(
        "MemberList",
        [&](Stubs& s, auto* ctx, auto* out) { return s.cluster->MemberList(ctx, request, out); });
  }
  Result<etcdserverpb::MemberAddResponse> MemberAdd(const std::vector<std::string>& peer_urls,
                                                    bool learner) override {
    etcdserverpb::MemberAddRequest request;
    for (const auto& u : peer_urls) request.add_peerurls(u);
    request.set_islearner(learner);
    return Failover<etcdserverpb::MemberAddResponse>(
        "MemberAdd",
        [&](Stubs& s, auto* ctx, auto* out) { return s.cluster->MemberAdd(ctx, request, out); });
  }
  Result<etcdserverpb::MemberRemoveResponse> MemberRemove(uint64_t id) override {
    etcdserverpb::MemberRemoveRequest request;
    request.set_id(id);
    return Failover<etcdserverpb::MemberRemoveResponse>(
        "MemberRemove",
        [&](Stubs& s, auto* ctx, auto* out) { return s.cluster->MemberRemove(ctx, request, out); });
  }
  Result<etcdserverpb::MemberPromoteResponse> MemberPromote(uint64_t id) override {
    etcdserverpb::MemberPromoteRequest request;
    request.set_id(id);
    return Failover<etcdserverpb::MemberPromoteResponse>(
        "MemberPromote", [&](Stubs& s, auto* ctx, auto* out) {
          return s.cluster->MemberPromote(ctx, request, out);
        });
  }
  Result<etcdserverpb::StatusResponse> Status(const std::string& endpoint) override {
    BERTH_ASSIGN_OR_RETURN(std::string target, EndpointTarget(endpoint));
    etcdserverpb::StatusRequest request;
    etcdserverpb::StatusResponse response;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + timeout_);
    std::shared_ptr<Stubs> stubs = StubsFor(target);
    grpc::Status st = stubs->maintenance->Status(&ctx, request, &response);
    if (!st.ok()) {
      ForgetIfUnreachable(target, stubs, st);
      return EtcdError(st, "etcd Status at " + target);
    }
    return response;
  }

 private:
  // After a call that did not reach its member, a channel whose connection attempt failed is
  // dropped: such a channel can stay stuck (seen with a member that accepted TCP while it was
  // still starting), and the next call gets a new one; callers pace their retries, so this does
  // not spin. A channel that is connected or still connecting stays: its member is slow, or a
  // TLS handshake with it outlasts a call, and a new channel would start the handshake again
  // on every call, never to finish (seen: a berthd whose only endpoint was its own member, on
  // a loaded emulated CPU with 11 s handshakes, cut off for good after one slow Txn).
  void ForgetIfUnreachable(const std::string& target, const std::shared_ptr<Stubs>& stubs,
                           const grpc::Status& st) {
    if (st.error_code() != grpc::StatusCode::UNAVAILABLE &&
        st.error_code() != grpc::StatusCode::DEADLINE_EXCEEDED) {
      return;
    }
    if (st.error_message().rfind("etcdserver: ", 0) == 0) return;  // the member answered
    const grpc_connectivity_state state = stubs->channel->GetState(/*try_to_connect=*/false);
    if (state == GRPC_CHANNEL_READY || state == GRPC_CHANNEL_CONNECTING) return;
    std::lock_guard<std::mutex> lock(mu_);
    auto it = stubs_.find(target);
    if (it != stubs_.end() && it->second == stubs) stubs_.erase(it);
  }

  std::shared_ptr<Stubs> StubsFor(const std::string& target) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = stubs_.find(target);
    if (it != stubs_.end()) return it->second;
    grpc::ChannelArguments args = ClientChannelArguments();
    // A member that was down comes back within seconds; gRPC's default reconnect backoff
    // (up to two minutes) would keep the channel failing long after.
    // gRPC takes GRPC_ARG_MIN_RECONNECT_BACKOFF_MS as the connect timeout, TLS handshake
    // included: gRPC's default, 20 s. It was 3 s, for a member that accepts TCP before it
    // serves; but a loaded member's handshakes take longer than that (11 s seen under QEMU's
    // emulation), and no connection to it would ever be made. A call still gives up at its
    // own deadline, and Failover goes on to the next member.
    args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 20000);
    args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 200);
    args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 2000);
    auto channel = grpc::CreateCustomChannel(target, creds_, args);
    auto s = std::make_shared<Stubs>(Stubs{channel, etcdserverpb::KV::NewStub(channel),
                                           etcdserverpb::Cluster::NewStub(channel),
                                           etcdserverpb::Maintenance::NewStub(channel)});
    stubs_.emplace(target, s);
    return s;
  }

  template <typename Response, typename Fn>
  Result<Response> Failover(const char* method, Fn fn) {
    const size_t n = targets_.size();
    const size_t first = preferred_.load();
    // What a member said beats "could not connect" when every endpoint fails.
    berth::Status last, answered;
    size_t unreachable = 0;
    for (size_t i = 0; i < n; ++i) {
      const size_t index = (first + i) % n;
      const std::string& target = targets_[index];
      grpc::ClientContext ctx;
      ctx.set_deadline(std::chrono::system_clock::now() + timeout_);
      Response response;
      std::shared_ptr<Stubs> stubs = StubsFor(target);
      grpc::Status st = fn(*stubs, &ctx, &response);
      if (st.ok()) {
        preferred_.store(index);
        return response;
      }
      ForgetIfUnreachable(target, stubs, st);
      last = EtcdError(st, std::string("etcd ") + method + " at " + target);
      if (!TryNextEndpoint(st)) return last;
      if (st.error_message().rfind("etcdserver: ", 0) == 0) {
        answered = last;
      } else {
        ++unreachable;
      }
      spdlog::debug("{}; trying the next etcd endpoint", last.ToString());
    }
    if (n == 1) return last;
    if (!answered.ok()) last = answered;
    return last.WithContext("all " + std::to_string(n) + " etcd endpoints failed (" +
                            std::to_string(unreachable) + " unreachable)");
  }

  const std::vector<std::string> targets_;
  std::shared_ptr<grpc::ChannelCredentials> creds_;
  const std::chrono::milliseconds timeout_;
  std::atomic<size_t> preferred_{0};
  std::mutex mu_;
  std::map<std::string, std::shared_ptr<Stubs>> stubs_;  // guarded by mu_
};

}  // namespace

Result<std::unique_ptr<Client>> MakeGrpcClient(ClientOptions options) {
  if (options.endpoints.empty()) return InvalidArgument("no etcd endpoints given");
  std::vector<std::string> targets;
  for (const auto& e : options.endpoints) {
    BERTH_ASSIGN_OR_RETURN(std::string t, EndpointTarget(e));
    targets.push_back(std::move(t));
  }
  if (auto ca = CertsFromPem(options.ca_pem); !ca.ok()) {
    return ca.status().WithContext("etcd trusted CA");
  }
  if (auto cert = CertFromPem(options.cert_pem); !cert.ok()) {
    return cert.status().WithContext("etcd client certificate");
  }
  if (auto key = PrivateKeyFromPem(options.key_pem.view()); !key.ok()) {
    return InvalidArgument("etcd client key: not a PEM private key");
  }
  grpc::SslCredentialsOptions ssl;
  ssl.pem_root_certs = options.ca_pem;
  ssl.pem_cert_chain = options.cert_pem;
  ssl.pem_private_key = std::string(options.key_pem.view());
  auto creds = grpc::SslCredentials(ssl);
  WipeString(ssl.pem_private_key);
  return std::unique_ptr<Client>(
      std::make_unique<GrpcClient>(std::move(targets), std::move(creds), options.call_timeout));
}

}  // namespace berth::etcd
