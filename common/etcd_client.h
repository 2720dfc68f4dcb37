// A client of etcd's v3 gRPC API (KV, Cluster, Maintenance.Status), over TLS with a client
// certificate, with failover across several endpoints.
//
// berthd keeps its shared state in etcd and manages etcd membership through it; the agent uses
// it to wait until its own etcd member has started. The protos in proto/etcd/ are a
// wire-compatible subset of etcd v3.4's, so the method paths are etcd's (/etcdserverpb.KV/Range).
//
// Failover: each call goes to the endpoint that last answered; when that endpoint cannot serve
// (connection refused, timeout, no leader, a learner) the call moves on to the next one, once
// round the list. A write that timed out may still have been applied, so writes are made
// idempotent by their callers (compare-and-swap transactions; MemberAdd is refused by etcd for
// a peer URL that is already a member).
//
// Errors: every etcd error is converted to a berth Status in exactly one place (EtcdError,
// etcd_client.cc), with the retry class berth uses everywhere (docs/etcd.md has the table).
#pragma once

#include <grpcpp/support/status.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/secret.h"
#include "common/status.h"
#include "etcd/etcdserverpb/rpc.pb.h"

namespace berth::etcd {

struct ClientOptions {
  std::vector<std::string> endpoints;  // "https://host:port" (etcd's form) or "host:port"
  std::string ca_pem;                  // trust anchor of the members' server certificates
  std::string cert_pem;                // client certificate (etcd runs with --client-cert-auth)
  SecretBytes key_pem;
  std::chrono::milliseconds call_timeout{5000};
};

// Thread-safe.
class Client {
 public:
  virtual ~Client() = default;

  // KV. Reads are linearizable (berth never asks for serializable reads).
  virtual Result<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& request) = 0;
  virtual Result<etcdserverpb::PutResponse> Put(const etcdserverpb::PutRequest& request) = 0;
  virtual Result<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& request) = 0;
  virtual Result<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& request) = 0;

  // Cluster membership.
  virtual Result<etcdserverpb::MemberListResponse> MemberList() = 0;
  virtual Result<etcdserverpb::MemberAddResponse> MemberAdd(
      const std::vector<std::string>& peer_urls, bool learner) = 0;
  virtual Result<etcdserverpb::MemberRemoveResponse> MemberRemove(uint64_t id) = 0;
  virtual Result<etcdserverpb::MemberPromoteResponse> MemberPromote(uint64_t id) = 0;

  // The status of the one member serving `endpoint` (one of its client URLs); no failover,
  // since the question is about that member.
  virtual Result<etcdserverpb::StatusResponse> Status(const std::string& endpoint) = 0;
};

// Validates the options (at least one endpoint, each https:// or host:port; PEMs present) and
// connects lazily.
Result<std::unique_ptr<Client>> MakeGrpcClient(ClientOptions options);

// etcd's gRPC errors -> berth Status, the one place they are converted:
//   connection failures, timeouts, "no leader", "leader changed", "rpc not supported for
//   learner", "request timed out", "too many learner members", "learner not in sync",
//   "too many requests"                                   -> UNAVAILABLE (retry later)
//   "Peer URLs already exists", "member ID already exist" -> ALREADY_EXISTS
//   "member not found"                                    -> NOT_FOUND
//   "can only promote a learner member", "not enough started members" -> FAILED_PRECONDITION
//   "database space exceeded"                             -> RESOURCE_EXHAUSTED
//   refused credentials (UNAUTHENTICATED, PERMISSION_DENIED) -> UNAVAILABLE (berthd's
//     configuration is wrong; nodes wait while the operator fixes it)
//   anything else (a malformed request: a bug)            -> INTERNAL
// `what` names the call: "etcd MemberAdd at 10.0.0.1:2379".
Status EtcdError(const grpc::Status& status, std::string_view what);

// Whether an error from one endpoint says nothing about the others, so the call should move on
// to the next endpoint (connection failures, a member without leader, a learner).
bool TryNextEndpoint(const grpc::Status& status);

// "https://host:port" or "host:port" -> "host:port" (a gRPC target). http:// is refused: berth
// talks to etcd over TLS only.
Result<std::string> EndpointTarget(std::string_view endpoint);

// The range_end that selects every key starting with `prefix` (etcd's "prefix + 1").
std::string PrefixEnd(std::string_view prefix);

// etcd prints member IDs as 16 lowercase hex digits.
std::string MemberIdHex(uint64_t id);

}  // namespace berth::etcd
