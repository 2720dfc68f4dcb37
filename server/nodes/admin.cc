#include "server/nodes/admin.h"

#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "common/audit.h"
#include "common/bytes.h"
#include "common/enrolment.h"
#include "server/nodes/records.h"
#include "server/nodes/registry.h"

namespace berth::server {

namespace {

// An operator's call: done or failed, with who asked about which node.
void Audit(std::string_view call, const std::string& by, const std::string& node,
           const Status& status, const std::string& details) {
  AuditLine(call).Quoted("operator", by).Add("node", node).Fields(details).Log(status, "done", "failed");
}

std::string Join(const google::protobuf::RepeatedPtrField<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : ",") + s;
  return out.empty() ? "-" : out;
}

}  // namespace

Result<std::vector<std::string>> DeleteNodeTokens(KubeClient& kube, const std::string& node) {
  const std::string base = "/api/v1/namespaces/kube-system/secrets";
  // berth's tokens for this node: berthd's admission policy lets it delete no other Secret
  // (kube/berthd-rbac.yaml), whatever else carries the node's label.
  BERTH_ASSIGN_OR_RETURN(
      HttpResponse list,
      kube.Request("GET",
                   base + "?labelSelector=berth.dev%2Fnode%3D" + node +
                       "%2Capp.kubernetes.io%2Fmanaged-by%3Dberth",
                   ""));
  if (list.status != 200) {
    return Unavailable("listing the bootstrap tokens of node " + node +
                       ": Kubernetes API answered " + std::to_string(list.status) + ": " +
                       KubeErrorMessage(list));
  }
  auto body = nlohmann::json::parse(list.body, nullptr, false);
  if (body.is_discarded() || !body.contains("items") || !body["items"].is_array()) {
    return Unavailable("listing the bootstrap tokens of node " + node +
                       ": the Kubernetes API's answer is not a SecretList");
  }
  std::vector<std::string> deleted;
  for (const auto& item : body["items"]) {
    std::string name = item["metadata"].value("name", "");
    // Only the tokens berth made for this node, whatever else carries the label.
    if (name.rfind("bootstrap-token-", 0) != 0 ||
        item.value("type", "") != "bootstrap.kubernetes.io/token") {
      continue;
    }
    BERTH_ASSIGN_OR_RETURN(HttpResponse gone, kube.Request("DELETE", base + "/" + name, ""));
    if (gone.status != 200 && gone.status != 202 && gone.status != 404) {
      return Unavailable("deleting " + name + ": Kubernetes API answered " +
                         std::to_string(gone.status) + ": " + KubeErrorMessage(gone));
    }
    deleted.push_back(name);
  }
  return deleted;
}

Result<v1::AdminListNodesResponse> NodeAdmin::ListNodes() {
  v1::AdminListNodesResponse out;
  BERTH_ASSIGN_OR_RETURN(std::vector<StoredNode> nodes, store_->List());
  for (auto& n : nodes) *out.add_nodes() = std::move(n.record);
  BERTH_ASSIGN_OR_RETURN(auto grants, store_->ListAuthorizations());
  for (auto& g : grants) *out.add_authorizations() = std::move(g);
  return out;
}

Result<v1::AdminAuthorizeNodeResponse> NodeAdmin::AuthorizeNode(
    const v1::AdminAuthorizeNodeRequest& request, const std::string& by) {
  auto done = [&](Status st) {
    Audit("AuthorizeNode", by, request.name(), st,
          "role=" + std::string(NodeRoleName(request.role())) +
              " ak=" + (request.ak_sha256().empty() ? "-" : AuditValue(request.ak_sha256())));
    return st;
  };
  if (!IsValidNodeName(request.name())) {
    return done(InvalidArgument("\"" + request.name() + "\" is not a valid node name"));
  }
  if (request.role() != v1::NODE_ROLE_CONTROL_PLANE) {
    return done(InvalidArgument("only the control-plane role needs an authorization"));
  }
  std::string ak;
  if (!request.ak_sha256().empty()) {
    auto bytes = HexDecode(request.ak_sha256());
    if (!bytes.ok() || bytes->size() != 32) {
      return done(InvalidArgument("--ak-sha256 must be 64 hex digits"));
    }
    ak = HexEncode(*bytes);
  }
  v1::AdminAuthorizeNodeResponse out;
  v1::NodeAuthorization* a = out.mutable_authorization();
  a->set_version(1);
  a->set_name(request.name());
  a->set_role(request.role());
  a->set_ak_sha256(ak);
  a->set_authorized_by(by);
  a->set_authorized_unix(clock_->NowUnix());
  Status st = store_->PutAuthorization(*a);
  (void)done(st);
  if (!st.ok()) return st;
  return out;
}

Result<v1::AdminRevokeNodeResponse> NodeAdmin::RevokeNode(const std::string& name,
                                                          const std::string& by) {
  auto done = [&](Status st, const std::string& details) {
    Audit("RevokeNode", by, name, st, details);
    return st;
  };
  v1::AdminRevokeNodeResponse out;
  // 1. The record and the CRL entries, in one transaction (re-read on a concurrent change).
  for (int attempt = 0;; ++attempt) {
    auto current = store_->Get(name);
    if (!current.ok()) return done(current.status(), "");
    if (!current->has_value()) return done(NotFound("no node named " + name + " is recorded"), "");
    const StoredNode& stored = **current;
    Status writable = CheckWritable(stored.record);
    if (!writable.ok()) return done(writable, "");
    NodeCommit commit{.record = ApplyRevoke(stored.record, by, clock_->NowUnix()),
                      .expected_mod_revision = stored.mod_revision};
    for (const auto& serial : stored.record.etcd_cert_serials()) {
      v1::EtcdRevokedCertificate r;
      r.set_version(1);
      r.set_serial(serial);
      r.set_node(name);
      r.set_revoked_unix(commit.record.revoked_unix());
      commit.revoked.push_back(r);
      out.add_revoked_serials(serial);
    }
    Status st = store_->Commit(commit);
    if (st.ok()) {
      *out.mutable_node() = commit.record;
      break;
    }
    if (st.code() != Code::kAborted || attempt == 2) return done(st, "");
    out.clear_revoked_serials();
  }
  // 2. Bootstrap tokens.
  if (kube_ == nullptr) {
    return done(FailedPrecondition("node " + name +
                                   " is revoked, but this berthd has no "
                                   "Kubernetes client to delete its bootstrap tokens"),
                "");
  }
  auto tokens = DeleteNodeTokens(*kube_, name);
  if (!tokens.ok()) {
    return done(tokens.status().WithContext("node " + name +
                                            " is revoked and its certificates are on the CRL, "
                                            "but its bootstrap tokens are not deleted; revoke "
                                            "again"),
                "");
  }
  for (const auto& t : *tokens) out.add_deleted_tokens(t);
  // 3. The etcd member, found by its peer URL (or the recorded ID).
  const v1::NodeRecord& r = out.node();
  if (!r.etcd_peer_url().empty() || r.etcd_member_id() != 0) {
    auto members = membership_->List();
    if (!members.ok()) {
      return done(members.status().WithContext("node " + name +
                                               " is revoked, but its etcd "
                                               "member could not be looked up; revoke again"),
                  "");
    }
    for (const auto& m : *members) {
      bool mine = m.id() == r.etcd_member_id();
      for (const auto& u : m.peerurls())
        mine |= !r.etcd_peer_url().empty() && u == r.etcd_peer_url();
      if (!mine) continue;
      Status removed = membership_->Remove(m.id());
      if (!removed.ok() && removed.code() != Code::kNotFound) {
        return done(removed.WithContext("node " + name +
                                        " is revoked (record, CRL, tokens), but "
                                        "its etcd member was not removed; revoke again when the "
                                        "cluster allows it"),
                    "");
      }
      out.set_removed_member_id(m.id());
    }
  }
  (void)done(OkStatus(),
             "serials=" + Join(out.revoked_serials()) + " tokens=" + Join(out.deleted_tokens()) +
                 " etcd_member=" +
                 (out.removed_member_id() ? etcd::MemberIdHex(out.removed_member_id()) : "-"));
  return out;
}

Result<v1::ApprovalApproveResponse> NodeAdmin::ApproveNode(
    const v1::ApprovalApproveRequest& request, const std::string& by) {
  const std::string& name = request.name();
  std::string ak;
  auto done = [&](Status st, const std::string& details) {
    Audit("ApproveNode", by, name, st, details);
    return st;
  };
  if (!request.ak_sha256().empty()) {
    auto bytes = HexDecode(request.ak_sha256());
    if (!bytes.ok() || bytes->size() != 32) {
      return done(InvalidArgument("--ak-sha256 must be 64 hex digits"), "");
    }
    ak = HexEncode(*bytes);
  }
  for (int attempt = 0;; ++attempt) {
    auto current = store_->Get(name);
    if (!current.ok()) return done(current.status(), "");
    if (!current->has_value()) return done(NotFound("no node named " + name + " is recorded"), "");
    auto next = ApplyApproval((*current)->record, ak, by, clock_->NowUnix());
    if (!next.ok()) return done(next.status(), "");
    Status st =
        store_->Commit({.record = *next, .expected_mod_revision = (*current)->mod_revision});
    if (st.ok()) {
      v1::ApprovalApproveResponse out;
      *out.mutable_node() = *next;
      (void)done(OkStatus(), "ak=sha256:" + next->ak_sha256());
      return out;
    }
    if (st.code() != Code::kAborted || attempt == 2) return done(st, "");
  }
}

Result<v1::ApprovalDenyResponse> NodeAdmin::DenyNode(const std::string& name,
                                                     const std::string& by) {
  auto current = store_->Get(name);
  if (!current.ok()) return current.status();
  if (!current->has_value()) {
    Status st = NotFound("no node named " + name + " is recorded");
    Audit("DenyNode", by, name, st, "");
    return st;
  }
  if ((*current)->record.state() != v1::NODE_STATE_PENDING) {
    Status st = FailedPrecondition("node " + name + " is " +
                                   std::string(NodeStateName((*current)->record.state())) +
                                   ", not pending approval; berthctl nodes revoke revokes it");
    Audit("DenyNode", by, name, st, "");
    return st;
  }
  BERTH_ASSIGN_OR_RETURN(v1::AdminRevokeNodeResponse revoked, RevokeNode(name, by));
  Audit("DenyNode", by, name, OkStatus(), "ak=sha256:" + revoked.node().ak_sha256());
  v1::ApprovalDenyResponse out;
  *out.mutable_node() = revoked.node();
  return out;
}

Result<v1::AdminGetEtcdCrlResponse> NodeAdmin::GetEtcdCrl() {
  if (ca_ == nullptr) {
    return FailedPrecondition("this berthd has no etcd CA (--etcd-ca-cert, --etcd-ca-key)");
  }
  v1::AdminGetEtcdCrlResponse out;
  BERTH_ASSIGN_OR_RETURN(RevokedList revoked, store_->ListRevoked());
  BERTH_ASSIGN_OR_RETURN(std::string crl, ca_->MakeCrl(revoked.entries, clock_->NowUnix(),
                                                       revoked.newest_mod_revision));
  out.set_crl(crl);
  for (auto& e : revoked.entries) *out.add_revoked() = std::move(e);
  return out;
}

}  // namespace berth::server
