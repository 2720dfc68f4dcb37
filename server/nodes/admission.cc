#include "server/nodes/admission.h"

#include <spdlog/spdlog.h>

#include <regex>

#include "common/audit.h"
#include "common/time.h"
#include "server/cloud/ec2_identity.h"

namespace berth::server {

std::string Ec2PreauthorizationKey(const std::string& instance_id) {
  return "ec2/instances/" + instance_id;
}

bool IsValidEc2InstanceId(std::string_view id) {
  static const std::regex kId("^i-([0-9a-f]{8}|[0-9a-f]{17})$");
  return std::regex_match(id.begin(), id.end(), kId);
}

Result<AdmissionOutcome> Admission::Admit(const verify::AdmissionPolicy& policy,
                                          const v1::JoinRequest& request,
                                          const verify::VerifiedEvidence& evidence,
                                          const JoinFacts& facts, const std::string& peer,
                                          std::optional<StoredNode>& current) {
  AdmissionOutcome out;
  if (!request.ec2_instance_id().empty() && !IsValidEc2InstanceId(request.ec2_instance_id())) {
    return InvalidArgument("EC2 instance ID \"" + request.ec2_instance_id() +
                           "\" is not i-<8 or 17 hex digits>");
  }
  const bool first_seen = !current || current->record.state() == v1::NODE_STATE_PENDING;
  if (!first_seen || evidence.golden.has_value()) return out;  // joined before / a golden ticket
  if (policy.ec2_preauthorized_only) BERTH_RETURN_IF_ERROR(CheckEc2(policy, request, out));
  if (policy.approval_required) {
    BERTH_RETURN_IF_ERROR(AwaitApproval(request, evidence, facts, peer, current, out));
  }
  return out;
}

Status Admission::CheckEc2(const verify::AdmissionPolicy& policy, const v1::JoinRequest& request,
                           AdmissionOutcome& out) {
  const std::string& id = request.ec2_instance_id();
  if (id.empty()) {
    return PermissionDenied(
        "this cluster admits only EC2 instances that a cloud event "
        "pre-authorized, and node " +
        request.node_name() + " claims no EC2 instance ID");
  }
  // A claim is what the node says; the instance identity document, signed by AWS and served
  // only to the instance, is what proves it (ec2_identity.h).
  if (!request.has_ec2_identity()) {
    return PermissionDenied("node " + request.node_name() + " claims EC2 instance " + id +
                            " without its signed instance identity document (the agent reads "
                            "it from the instance metadata service); a claim alone is refused");
  }
  BERTH_ASSIGN_OR_RETURN(Ec2Identity identity,
                         VerifyEc2Identity(request.ec2_identity(), policy.ec2_identity));
  if (identity.instance_id != id) {
    return PermissionDenied("the EC2 instance identity document is for instance " +
                            identity.instance_id + ", not the claimed " + id);
  }
  BERTH_ASSIGN_OR_RETURN(std::optional<StoredValue> stored,
                         store_->GetValue(Ec2PreauthorizationKey(id)));
  if (!stored) {
    // The instance may have booted before its "running" event reached berthd.
    return Unavailable("EC2 instance " + id +
                       " has no pre-authorization (yet): waiting for its \"running\" event");
  }
  v1::SnsEc2Preauthorization p;
  BERTH_RETURN_IF_ERROR(RecordFromJson(stored->key, stored->value, &p));
  const int64_t now = clock_->NowUnix();
  if (p.used_unix() != 0) {
    return PermissionDenied("the pre-authorization of EC2 instance " + id + " was used at " +
                            Rfc3339(p.used_unix()) + " by node " + p.used_by_node());
  }
  if (p.expires_unix() != 0 && now >= p.expires_unix()) {
    return PermissionDenied("the pre-authorization of EC2 instance " + id + " expired at " +
                            Rfc3339(p.expires_unix()));
  }
  // The event that pre-authorized the instance names its account and region too.
  if (!p.account().empty() && p.account() != identity.account_id) {
    return PermissionDenied("EC2 instance " + id + " was announced for account " + p.account() +
                            ", its identity document says " + identity.account_id);
  }
  if (!p.region().empty() && p.region() != identity.region) {
    return PermissionDenied("EC2 instance " + id + " was announced in region " + p.region() +
                            ", its identity document says " + identity.region);
  }
  p.set_used_unix(now);
  p.set_used_by_node(request.node_name());
  out.consume.push_back(GuardedPut{stored->key, stored->mod_revision, RecordToJson(p)});
  out.ec2_instance_id = id;
  out.audit += " ec2_instance=" + AuditValue(id) + " ec2_event=" + AuditValue(p.message_id()) +
               " ec2_account=" + AuditValue(identity.account_id) +
               " ec2_region=" + AuditValue(identity.region);
  return OkStatus();
}

Status Admission::AwaitApproval(const v1::JoinRequest& request,
                                const verify::VerifiedEvidence& evidence, const JoinFacts& facts,
                                const std::string& peer, std::optional<StoredNode>& current,
                                AdmissionOutcome& out) {
  const std::string& name = request.node_name();
  // Only so many calls are held at once; beyond that, pending nodes are answered at once.
  const bool may_hold = held_.fetch_add(1) < options_.max_held_calls;
  struct Release {
    std::atomic<int>& n;
    ~Release() { n--; }
  } release{held_};
  std::chrono::milliseconds waited{0};
  for (;;) {
    if (!current) {
      v1::NodeRecord pending = MakePendingRecord(facts, peer);
      Status st = store_->Commit({.record = pending, .expected_mod_revision = 0});
      if (st.ok()) {
        AuditLine("IssueJoinTicket")
            .Add("node", name)
            .Add("peer", peer)
            .Add("ak", "sha256:" + evidence.ak_sha256_hex)
            .Quoted("rule", evidence.rule)
            .Quoted("reason", "first seen; waiting for operator approval")
            .Log(OkStatus(), "pending");
      } else if (st.code() != Code::kAborted) {
        return st;
      }
    } else if (current->record.state() == v1::NODE_STATE_PENDING &&
               current->record.approved_unix() != 0) {
      out.audit += " approved_by=" + AuditValue(current->record.approved_by(), true) +
                   " approved_at=" + Rfc3339(current->record.approved_unix());
      return OkStatus();
    } else if (current->record.state() != v1::NODE_STATE_PENDING) {
      return OkStatus();  // joined meanwhile (another replica): nothing to approve
    }
    if (!may_hold || waited >= options_.approval_hold) break;
    clock_->Sleep(options_.approval_poll);
    waited += options_.approval_poll;
    BERTH_ASSIGN_OR_RETURN(current, store_->Get(name));
    // Denied (revoked) or taken by another key while waiting: refused for good.
    BERTH_RETURN_IF_ERROR(CheckMayJoin(current ? &current->record : nullptr, name,
                                       evidence.ak_sha256_hex, request.role()));
  }
  out.pending = true;
  out.reason = "node " + name + " is pending operator approval (attestation key sha256:" +
               evidence.ak_sha256_hex.substr(0, 16) + "...); an operator approves it with " +
               "berthctl nodes approve " + name;
  return OkStatus();
}

}  // namespace berth::server
