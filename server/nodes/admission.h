// Admission of nodes seen for the first time, beyond their evidence (docs/lifecycle.md):
// operator approval and EC2 pre-authorization, as the policy's `admission:` section asks
// (admission_policy.h). A node with a record that has joined is not asked again.
//
// Approval: a node seen for the first time is recorded PENDING, bound to the attestation key
// it was verified with. Its call is held open while berthd re-reads the record every
// `approval_poll`, so an approval lets the node join within that interval; after
// `approval_hold` the node is answered UNAVAILABLE ("pending operator approval") with a hint to
// call again at once. A denied (revoked) pending node is refused with PERMISSION_DENIED.
//
// EC2 pre-authorization: the node must claim an instance ID (JoinRequest.ec2_instance_id)
// that an SNS "running" event pre-authorized and no join has used, and prove it with the
// instance's identity document signed by AWS (JoinRequest.ec2_identity, ec2_identity.h) for
// that instance, and the account and region the event named; the join consumes it in the same
// etcd transaction as the node's record, so it is used once.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/clock.h"
#include "server/nodes/records.h"
#include "server/nodes/store.h"
#include "verify/admission_policy.h"
#include "verify/evidence.h"

namespace berth::server {

struct AdmissionOptions {
  std::chrono::milliseconds approval_hold{20000};  // < the agent's call timeout (30 s)
  std::chrono::milliseconds approval_poll{250};
  int max_held_calls = 64;  // beyond this, pending nodes are answered at once
};

struct AdmissionOutcome {
  bool pending = false;  // not admitted yet: answer UNAVAILABLE with `reason`
  std::string reason;
  std::vector<GuardedPut> consume;  // pre-authorizations this join uses up
  std::string ec2_instance_id;      // recorded with the node
  std::string audit;                // " key=value" pairs for the audit line
};

// The etcd key of an instance's pre-authorization, relative to the store's prefix.
std::string Ec2PreauthorizationKey(const std::string& instance_id);
// i-[0-9a-f]{8} or i-[0-9a-f]{17}.
bool IsValidEc2InstanceId(std::string_view id);

// Thread-safe; `store` and `clock` outlive it.
class Admission {
 public:
  Admission(NodeStore* store, Clock* clock, AdmissionOptions options)
      : store_(store), clock_(clock), options_(options) {}

  // REQUIRES: CheckMayJoin passed for `current` (the node's record as read, updated to the
  // record as last read when this returns). `facts` describes the join as verified; `peer` is
  // where the node called from. Golden-ticket joins (`evidence.golden`) are admitted by the
  // ticket. Errors: PERMISSION_DENIED (denied while pending; no usable pre-authorization),
  // UNAVAILABLE (etcd; no pre-authorization yet), INVALID_ARGUMENT (a malformed instance ID).
  Result<AdmissionOutcome> Admit(const verify::AdmissionPolicy& policy,
                                 const v1::JoinRequest& request,
                                 const verify::VerifiedEvidence& evidence, const JoinFacts& facts,
                                 const std::string& peer, std::optional<StoredNode>& current);

 private:
  Status CheckEc2(const verify::AdmissionPolicy& policy, const v1::JoinRequest& request,
                  AdmissionOutcome& out);
  Status AwaitApproval(const v1::JoinRequest& request, const verify::VerifiedEvidence& evidence,
                       const JoinFacts& facts, const std::string& peer,
                       std::optional<StoredNode>& current, AdmissionOutcome& out);

  NodeStore* store_;
  Clock* clock_;
  AdmissionOptions options_;
  std::atomic<int> held_{0};
};

}  // namespace berth::server
