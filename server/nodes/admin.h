// The operator's side of node records (AdminService; `berthctl nodes ...`): list, authorize a
// control plane, revoke, and the etcd CRL. Free of any transport type; the gRPC adapter
// (admin_service.h) passes the operator's identity from their client certificate.
//
// Revoking a node, in this order, each step idempotent so that revoking again completes what
// an earlier attempt could not:
//   1. one transaction: record state REVOKED, its certificate serials on the CRL list;
//   2. its bootstrap-token Secrets deleted through the Kubernetes API (label berth.dev/node);
//   3. its etcd member removed, unless that would cost quorum (FAILED_PRECONDITION then,
//      saying what was done and what was not).
// From step 1 on, every berthd replica refuses the node tickets, rejoins and tokens.
#pragma once

#include <string>

#include "berth/v1/nodes.pb.h"
#include "common/clock.h"
#include "common/etcd_pki.h"
#include "server/cloud/kube_client.h"
#include "server/nodes/membership.h"
#include "server/nodes/store.h"

namespace berth::server {

// Deletes every bootstrap-token Secret in kube-system labelled berth.dev/node=<node>; returns
// their names. UNAVAILABLE when the API server cannot be reached or refuses.
Result<std::vector<std::string>> DeleteNodeTokens(KubeClient& kube, const std::string& node);

// Thread-safe if its collaborators are; they outlive it. `ca` and `kube` may be null (no CRL;
// no token deletion, reported as FAILED_PRECONDITION by RevokeNode).
class NodeAdmin {
 public:
  NodeAdmin(NodeStore* store, Membership* membership, const EtcdCa* ca, KubeClient* kube,
            Clock* clock)
      : store_(store), membership_(membership), ca_(ca), kube_(kube), clock_(clock) {}

  Result<v1::AdminListNodesResponse> ListNodes();
  Result<v1::AdminRevokeNodeResponse> RevokeNode(const std::string& name, const std::string& by);
  Result<v1::AdminAuthorizeNodeResponse> AuthorizeNode(const v1::AdminAuthorizeNodeRequest& request,
                                                       const std::string& by);
  Result<v1::AdminGetEtcdCrlResponse> GetEtcdCrl();
  // Approval (docs/lifecycle.md): a pending node may join (only with `ak_sha256` when given:
  // the key the operator looked at), or never does (deny = revoke, for pending nodes only).
  // NOT_FOUND for an unknown node, FAILED_PRECONDITION for one that is not pending.
  Result<v1::ApprovalApproveResponse> ApproveNode(const v1::ApprovalApproveRequest& request,
                                                  const std::string& by);
  Result<v1::ApprovalDenyResponse> DenyNode(const std::string& name, const std::string& by);

 private:
  NodeStore* store_;
  Membership* membership_;
  const EtcdCa* ca_;
  KubeClient* kube_;
  Clock* clock_;
};

}  // namespace berth::server
