// What JoinLogic asks of berthd's shared state once a node's evidence has been verified
// (docs/etcd.md): may this node join or rejoin, under this name, with this disk, in this
// role? Every granted join and rejoin is written to the node's record. Control planes get their
// etcd learner membership and certificates here, and only when authorized for the role.
//
// Order of a control-plane join, so that a failure at any point leaves nothing half-done:
// checks (record, disk, role authorization, CSRs, URLs) -> MemberAddAsLearner (or the member
// the node already has) -> certificates signed -> one transaction: the record with the member,
// the serials, the disk claim, and the issued-certificate log. A failure after the learner
// was added leaves only the learner, which the retry reuses (or the Promoter removes if the
// node never comes back).
#pragma once

#include <memory>
#include <string>

#include "berth/v1/berth.pb.h"
#include "common/clock.h"
#include "common/etcd_pki.h"
#include "server/nodes/admission.h"
#include "server/nodes/membership.h"
#include "server/nodes/records.h"
#include "server/nodes/store.h"
#include "verify/evidence.h"
#include "verify/policy_holder.h"
#include "verify/role_policy.h"

namespace berth::server {

struct JoinAdmission {
  std::optional<v1::EtcdMaterial> etcd;  // control planes
  std::string audit;                     // key=value pairs for the audit line
  // Not admitted yet (pending operator approval): the node is answered UNAVAILABLE with
  // `pending_reason` and calls again; nothing else was done.
  bool pending = false;
  std::string pending_reason;
};

struct RejoinAdmission {
  bool control_plane = false;  // the node's record says it is one
  std::string etcd_crl;        // control planes: the current CRL (PEM)
  std::string audit;
};

// The CRL of the etcd CA as of now: every revoked serial in the store.
Result<std::string> CurrentEtcdCrl(NodeStore& store, const EtcdCa& ca, int64_t now_unix);

// Thread-safe if its collaborators are; they outlive it. `ca` may be null: then control-plane
// joins are refused (FAILED_PRECONDITION).
class NodeRegistry {
 public:
  // `policy` is read for the roles and admission sections at every join (policy_holder.h).
  NodeRegistry(NodeStore* store, Membership* membership, const EtcdCa* ca,
               const verify::PolicyHolder* policy, Clock* clock, AdmissionOptions admission = {});

  // Records a granted join. Refuses: a revoked node or a name recorded with another AK
  // (PERMISSION_DENIED); a disk another node joined with (PERMISSION_DENIED); a control plane
  // that neither the policy nor an operator authorized (PERMISSION_DENIED); bad CSRs or URLs
  // (INVALID_ARGUMENT); another learner pending (UNAVAILABLE); a concurrent change (ABORTED).
  // With the policy's admission section, first-seen nodes may be held for approval or need an
  // EC2 pre-authorization (admission.h); `peer` is where the node called from.
  Result<JoinAdmission> AdmitJoin(const v1::JoinRequest& request,
                                  const verify::VerifiedEvidence& evidence,
                                  const std::string& peer = "");

  // Records a granted rejoin (server/nodes/records.h ApplyRejoin says who is refused).
  Result<RejoinAdmission> AdmitRejoin(const v1::RejoinRequest& request,
                                      const verify::VerifiedEvidence& evidence);

 private:
  // "policy roles.control_plane[0]" / "operator CN=alice at ..." or PERMISSION_DENIED.
  Result<std::string> AuthorizeControlPlane(const std::string& node,
                                            const verify::VerifiedEvidence& evidence);
  Result<JoinAdmission> AdmitControlPlane(const v1::JoinRequest& request,
                                          const verify::VerifiedEvidence& evidence,
                                          const std::optional<StoredNode>& current,
                                          const std::optional<DiskClaim>& disk, JoinFacts facts,
                                          const AdmissionOutcome& admitted);

  NodeStore* store_;
  Membership* membership_;
  const EtcdCa* ca_;
  const verify::PolicyHolder* policy_;
  Clock* clock_;
  Admission admission_;
};

}  // namespace berth::server
