#include "server/nodes/records.h"

#include <algorithm>

#include "common/time.h"

namespace berth::server {

Status CheckWritable(const v1::NodeRecord& record) {
  if (record.version() > kNodeRecordVersion) {
    return FailedPrecondition("the record of node " + record.name() + " has format " +
                              std::to_string(record.version()) + ", newer than this berthd's " +
                              std::to_string(kNodeRecordVersion) + "; upgrade this berthd");
  }
  return OkStatus();
}

namespace {

Status CheckNotRevoked(const v1::NodeRecord& r) {
  if (r.state() != v1::NODE_STATE_REVOKED) return OkStatus();
  return PermissionDenied("node " + r.name() + " was revoked at " + Rfc3339(r.revoked_unix()) +
                          (r.revoked_by().empty() ? "" : " by " + r.revoked_by()));
}

Status CheckSameAk(const v1::NodeRecord& r, const std::string& ak_sha256) {
  if (r.ak_sha256().empty() || r.ak_sha256() == ak_sha256) return OkStatus();
  return PermissionDenied("node name " + r.name() + " is recorded with attestation key sha256:" +
                          r.ak_sha256().substr(0, 16) + "..., not this node's sha256:" +
                          (ak_sha256.empty() ? std::string("-") : ak_sha256.substr(0, 16)) + "...");
}

}  // namespace

Status CheckMayJoin(const v1::NodeRecord* current, const std::string& name,
                    const std::string& ak_sha256, v1::NodeRole role) {
  if (current == nullptr) return OkStatus();
  BERTH_RETURN_IF_ERROR(CheckWritable(*current));
  BERTH_RETURN_IF_ERROR(CheckNotRevoked(*current));
  BERTH_RETURN_IF_ERROR(CheckSameAk(*current, ak_sha256));
  if (current->role() == v1::NODE_ROLE_CONTROL_PLANE && role == v1::NODE_ROLE_WORKER &&
      current->etcd_member_id() != 0) {
    return FailedPrecondition("node " + name + " is a control plane with etcd member " +
                              std::to_string(current->etcd_member_id()) +
                              "; revoke it before it joins again as a worker");
  }
  return OkStatus();
}

Result<v1::NodeRecord> ApplyJoin(const v1::NodeRecord* current, const JoinFacts& f) {
  BERTH_RETURN_IF_ERROR(CheckMayJoin(current, f.name, f.ak_sha256, f.role));
  v1::NodeRecord r;
  if (current != nullptr) r = *current;
  r.set_version(kNodeRecordVersion);
  r.set_name(f.name);
  r.set_role(f.role);
  r.set_disk_uuid(f.disk_uuid);
  if (!f.ak_sha256.empty()) r.set_ak_sha256(f.ak_sha256);
  if (!f.platform_key_sha256.empty()) r.set_platform_key_sha256(f.platform_key_sha256);
  if (!f.ek_certificate_sha256.empty()) r.set_ek_certificate_sha256(f.ek_certificate_sha256);
  if (r.first_join_unix() == 0) r.set_first_join_unix(f.now_unix);
  r.set_last_join_unix(f.now_unix);
  r.set_joins(r.joins() + 1);
  r.set_policy_rule(f.policy_rule);
  if (f.role == v1::NODE_ROLE_CONTROL_PLANE) {
    r.set_role_authorization(f.role_authorization);
    if (r.etcd_member_id() != f.etcd_member_id || r.etcd_learner_added_unix() == 0) {
      r.set_etcd_learner_added_unix(f.now_unix);
    }
    r.set_etcd_member_id(f.etcd_member_id);
    r.set_etcd_peer_url(f.etcd_peer_url);
    r.set_etcd_client_url(f.etcd_client_url);
    for (const auto& s : f.cert_serials) {
      if (std::find(r.etcd_cert_serials().begin(), r.etcd_cert_serials().end(), s) ==
          r.etcd_cert_serials().end()) {
        r.add_etcd_cert_serials(s);
      }
    }
    r.set_state(f.etcd_member_is_voter ? v1::NODE_STATE_JOINED : v1::NODE_STATE_JOINING);
  } else {
    r.clear_role_authorization();
    r.set_state(v1::NODE_STATE_JOINED);
  }
  return r;
}

Result<v1::NodeRecord> ApplyRejoin(const v1::NodeRecord* current, const std::string& name,
                                   const std::string& disk_uuid, const std::string& ak_sha256,
                                   int64_t now_unix, const std::string& platform_key_sha256) {
  if (current == nullptr) {
    return FailedPrecondition("node " + name +
                              " has no record in this cluster: a node joins before it rejoins");
  }
  BERTH_RETURN_IF_ERROR(CheckWritable(*current));
  BERTH_RETURN_IF_ERROR(CheckNotRevoked(*current));
  BERTH_RETURN_IF_ERROR(CheckSameAk(*current, ak_sha256));
  if (current->state() == v1::NODE_STATE_PENDING) {
    return FailedPrecondition("node " + name +
                              " is pending operator approval and has not joined yet: a node "
                              "joins before it rejoins");
  }
  if (current->disk_uuid() != disk_uuid) {
    return PermissionDenied(
        "disk " + disk_uuid + " is not the disk recorded for node " + name + " (" +
        (current->disk_uuid().empty() ? "diskless" : current->disk_uuid()) + ")");
  }
  v1::NodeRecord r = *current;
  r.set_version(kNodeRecordVersion);
  r.set_last_rejoin_unix(now_unix);
  if (!platform_key_sha256.empty()) r.set_platform_key_sha256(platform_key_sha256);
  return r;
}

v1::NodeRecord ApplyPromoted(const v1::NodeRecord& current, uint64_t member_id) {
  if (current.state() != v1::NODE_STATE_JOINING) return current;
  v1::NodeRecord r = current;
  r.set_state(v1::NODE_STATE_JOINED);
  r.set_etcd_member_id(member_id);
  return r;
}

v1::NodeRecord MakePendingRecord(const JoinFacts& f, const std::string& peer) {
  v1::NodeRecord r;
  r.set_version(kNodeRecordVersion);
  r.set_name(f.name);
  r.set_role(f.role);
  r.set_state(v1::NODE_STATE_PENDING);
  r.set_disk_uuid(f.disk_uuid);
  r.set_ak_sha256(f.ak_sha256);
  r.set_platform_key_sha256(f.platform_key_sha256);
  r.set_ek_certificate_sha256(f.ek_certificate_sha256);
  r.set_policy_rule(f.policy_rule);
  r.set_pending_since_unix(f.now_unix);
  r.set_pending_peer(peer);
  return r;
}

Result<v1::NodeRecord> ApplyApproval(const v1::NodeRecord& current, const std::string& ak_sha256,
                                     const std::string& by, int64_t now_unix) {
  BERTH_RETURN_IF_ERROR(CheckWritable(current));
  if (current.state() != v1::NODE_STATE_PENDING) {
    return FailedPrecondition("node " + current.name() + " is " +
                              std::string(NodeStateName(current.state())) +
                              ", not pending approval");
  }
  if (!ak_sha256.empty() && ak_sha256 != current.ak_sha256()) {
    return FailedPrecondition("node " + current.name() +
                              " is pending with attestation key sha256:" + current.ak_sha256() +
                              ", not " + ak_sha256 + "; nothing was approved");
  }
  v1::NodeRecord r = current;
  if (r.approved_unix() == 0) {
    r.set_approved_unix(now_unix);
    r.set_approved_by(by);
  }
  return r;
}

v1::NodeRecord ApplyRevoke(const v1::NodeRecord& current, const std::string& by, int64_t now_unix) {
  if (current.state() == v1::NODE_STATE_REVOKED) return current;
  v1::NodeRecord r = current;
  r.set_state(v1::NODE_STATE_REVOKED);
  r.set_revoked_unix(now_unix);
  r.set_revoked_by(by);
  return r;
}

}  // namespace berth::server
