#include "server/nodes/registry.h"

#include <spdlog/spdlog.h>

#include <algorithm>

#include "common/audit.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "common/time.h"
#include "server/nodes/records.h"

namespace berth::server {

namespace {

std::string EkCertificateSha256(const v1::JoinRequest& request) {
  if (!request.evidence().has_tpm() || request.evidence().tpm().ek_certificate().empty()) return "";
  return HexEncode(Sha256(AsBytes(request.evidence().tpm().ek_certificate())));
}

// The host of "host:port" ("[v6]:port" -> "v6").
std::string HostOf(const std::string& target) {
  if (!target.empty() && target.front() == '[') return target.substr(1, target.find(']') - 1);
  return target.substr(0, target.rfind(':'));
}

// A node's etcd URL: https://host:port with host among the node's addresses (so the
// certificate berthd signs covers it).
Status CheckNodeUrl(const std::string& url, const char* what, const v1::JoinRequest& request) {
  if (url.empty())
    return InvalidArgument("a control-plane join needs the node's etcd " + std::string(what));
  if (url.rfind("https://", 0) != 0) {
    return InvalidArgument("etcd " + std::string(what) + " " + url + " is not https://host:port");
  }
  auto target = etcd::EndpointTarget(url);
  if (!target.ok())
    return InvalidArgument("etcd " + std::string(what) + " " + url + " is not https://host:port");
  const std::string host = HostOf(*target);
  const auto& addresses = request.node_addresses();
  if (host != request.node_name() &&
      std::find(addresses.begin(), addresses.end(), host) == addresses.end()) {
    return InvalidArgument("etcd " + std::string(what) + " " + url + ": host " + host +
                           " is not among the node's addresses");
  }
  return OkStatus();
}

std::string SpentNoncesKey(const verify::VerifiedEvidence& evidence) {
  if (!evidence.nonce.has_value()) return "";
  return SpentNonceKey(evidence.nonce->expires_unix, evidence.nonce->sha256_hex);
}

// This call's nonce as a write that only succeeds if the key is still absent (docs/nonces.md).
// PERMISSION_DENIED when it is there: a replay to another replica than the one that granted it.
// One key per nonce: calls with different nonces never contend, whatever node or AK they are.
Result<std::optional<GuardedPut>> SpendNonce(const verify::VerifiedEvidence& evidence,
                                             const std::optional<StoredValue>& stored,
                                             const std::string& node) {
  const std::string key = SpentNoncesKey(evidence);
  if (key.empty()) return std::optional<GuardedPut>();
  if (stored.has_value()) {
    return PermissionDenied(
        "nonce was already used: a challenge admits one ticket call (a replayed request?); "
        "ask for a fresh challenge");
  }
  v1::SpentNonce spent;
  spent.set_nonce_sha256(evidence.nonce->sha256_hex);
  spent.set_expires_unix(evidence.nonce->expires_unix);
  spent.set_node(node);
  return std::optional<GuardedPut>(GuardedPut{key, 0, RecordToJson(spent)});
}

}  // namespace

Result<std::string> CurrentEtcdCrl(NodeStore& store, const EtcdCa& ca, int64_t now_unix) {
  BERTH_ASSIGN_OR_RETURN(RevokedList revoked, store.ListRevoked());
  return ca.MakeCrl(revoked.entries, now_unix, revoked.newest_mod_revision);
}

NodeRegistry::NodeRegistry(NodeStore* store, Membership* membership, const EtcdCa* ca,
                           const verify::PolicyHolder* policy, Clock* clock,
                           AdmissionOptions admission)
    : store_(store),
      membership_(membership),
      ca_(ca),
      policy_(policy),
      clock_(clock),
      admission_(store, clock, admission) {}

namespace {

// The parts of a join that admission adds to the record and its transaction.
void ApplyAdmission(const AdmissionOutcome& admitted, const verify::VerifiedEvidence& evidence,
                    v1::NodeRecord& next, NodeCommit& commit) {
  if (!admitted.ec2_instance_id.empty()) next.set_ec2_instance_id(admitted.ec2_instance_id);
  commit.also = admitted.consume;
  if (evidence.golden.has_value()) {
    next.set_golden_ticket_id(evidence.golden->ticket_id);
    commit.also.push_back(GuardedPut{evidence.golden->key, evidence.golden->mod_revision,
                                     evidence.golden->used_record});
  }
  commit.record = next;
}

}  // namespace

Result<std::string> NodeRegistry::AuthorizeControlPlane(const std::string& node,
                                                        const verify::VerifiedEvidence& evidence) {
  if (evidence.golden.has_value()) return evidence.golden->role_grant;
  const std::string& ak_sha256 = evidence.ak_sha256_hex;
  const std::shared_ptr<const verify::Policy> policy = policy_->Current();
  if (const verify::RoleGrant* grant = policy->roles.FindControlPlane(node, ak_sha256);
      grant != nullptr) {
    return "policy " + grant->where;
  }
  BERTH_ASSIGN_OR_RETURN(auto granted, store_->GetAuthorization(node));
  if (granted.has_value() && granted->role() == v1::NODE_ROLE_CONTROL_PLANE &&
      (granted->ak_sha256().empty() || granted->ak_sha256() == ak_sha256)) {
    return "operator " + granted->authorized_by() + " at " + Rfc3339(granted->authorized_unix());
  }
  return PermissionDenied("node " + node + " (attestation key sha256:" +
                          (ak_sha256.empty() ? std::string("-") : ak_sha256.substr(0, 16)) +
                          "...) is not authorized to be a control plane: neither the policy's "
                          "roles.control_plane nor an operator (berthctl nodes authorize) "
                          "grants it");
}

Result<JoinAdmission> NodeRegistry::AdmitJoin(const v1::JoinRequest& request,
                                              const verify::VerifiedEvidence& evidence,
                                              const std::string& peer) {
  const std::string& name = request.node_name();
  // The record, the disk's claim and the spent nonces in one round trip (~0.5 ms of berthd's
  // CPU per etcd call).
  BERTH_ASSIGN_OR_RETURN(NodeStore::JoinView view,
                         store_->GetForJoin(name, request.disk_uuid(), SpentNoncesKey(evidence)));
  std::optional<StoredNode> current = std::move(view.node);
  const v1::NodeRecord* record = current ? &current->record : nullptr;
  BERTH_ASSIGN_OR_RETURN(std::optional<GuardedPut> nonce, SpendNonce(evidence, view.value, name));
  BERTH_RETURN_IF_ERROR(CheckMayJoin(record, name, evidence.ak_sha256_hex, request.role()));
  const std::shared_ptr<const verify::Policy> policy = policy_->Current();
  const std::optional<DiskClaim> disk = std::move(view.disk);
  if (disk.has_value() && disk->node != name) {
    return PermissionDenied("disk " + request.disk_uuid() + " joined the cluster as node " +
                            disk->node + ", not " + name);
  }
  JoinFacts facts{.name = name,
                  .role = request.role(),
                  .disk_uuid = request.disk_uuid(),
                  .ak_sha256 = evidence.ak_sha256_hex,
                  .platform_key_sha256 = evidence.platform_key_sha256_hex,
                  .ek_certificate_sha256 = EkCertificateSha256(request),
                  .policy_rule = evidence.rule,
                  .now_unix = clock_->NowUnix()};
  // A control plane nobody authorized is refused before it waits for an approval.
  if (request.role() == v1::NODE_ROLE_CONTROL_PLANE && policy->admission.approval_required) {
    BERTH_RETURN_IF_ERROR(AuthorizeControlPlane(name, evidence).status());
  }
  BERTH_ASSIGN_OR_RETURN(
      AdmissionOutcome admitted,
      admission_.Admit(policy->admission, request, evidence, facts, peer, current));
  if (admitted.pending) {
    return JoinAdmission{.etcd = std::nullopt,
                         .audit = "record=pending",
                         .pending = true,
                         .pending_reason = admitted.reason};
  }
  record = current ? &current->record : nullptr;
  if (nonce.has_value()) admitted.consume.push_back(*nonce);  // written with the record
  if (request.role() == v1::NODE_ROLE_CONTROL_PLANE) {
    return AdmitControlPlane(request, evidence, current, disk, std::move(facts), admitted);
  }
  BERTH_ASSIGN_OR_RETURN(v1::NodeRecord next, ApplyJoin(record, facts));
  NodeCommit commit{.record = next,
                    .expected_mod_revision = current ? current->mod_revision : 0,
                    .disk_uuid = request.disk_uuid(),
                    .disk_claim = disk};
  ApplyAdmission(admitted, evidence, next, commit);
  if (evidence.nonce.has_value()) commit.sweep_nonces_expired_before = facts.now_unix;
  BERTH_RETURN_IF_ERROR(store_->Commit(commit));
  return JoinAdmission{.etcd = std::nullopt,
                       .audit = "record=" + std::string(NodeStateName(next.state())) +
                                " joins=" + std::to_string(next.joins()) + admitted.audit};
}

Result<JoinAdmission> NodeRegistry::AdmitControlPlane(const v1::JoinRequest& request,
                                                      const verify::VerifiedEvidence& evidence,
                                                      const std::optional<StoredNode>& current,
                                                      const std::optional<DiskClaim>& disk,
                                                      JoinFacts facts,
                                                      const AdmissionOutcome& admitted) {
  const std::string& name = request.node_name();
  BERTH_ASSIGN_OR_RETURN(facts.role_authorization, AuthorizeControlPlane(name, evidence));
  if (ca_ == nullptr) {
    return FailedPrecondition(
        "this berthd has no etcd CA (--etcd-ca-cert, --etcd-ca-key), so it "
        "cannot admit control planes");
  }
  BERTH_RETURN_IF_ERROR(CheckNodeUrl(request.etcd_peer_url(), "peer URL", request));
  BERTH_RETURN_IF_ERROR(CheckNodeUrl(request.etcd_client_url(), "client URL", request));
  std::vector<std::string> addresses(request.node_addresses().begin(),
                                     request.node_addresses().end());
  // Fails on a bad address before anything is changed in etcd.
  BERTH_RETURN_IF_ERROR(EtcdMemberCertSpec(name, addresses, std::chrono::hours(1)).status());
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr server_key,
                         CheckEtcdCsr(AsBytes(request.etcd_csr()), name, "server"));
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr peer_key,
                         CheckEtcdCsr(AsBytes(request.etcd_peer_csr()), name, "peer"));

  // The peer URL's member is this node's if its record says so, or if nobody else's record
  // claims it and it has not started under another name (a learner added for this node whose
  // record was not written: the reply was lost).
  BERTH_ASSIGN_OR_RETURN(std::vector<StoredNode> records, store_->List());
  const std::string& peer_url = request.etcd_peer_url();
  auto may_reuse = [&](const Member& m) {
    if (current && current->record.etcd_peer_url() == peer_url) return true;
    for (const auto& r : records) {
      if (r.record.name() != name && r.record.etcd_peer_url() == peer_url) return false;
    }
    return m.name().empty() || m.name() == name;
  };
  BERTH_ASSIGN_OR_RETURN(LearnerResult learner, membership_->EnsureLearner(peer_url, may_reuse));

  const int64_t now = facts.now_unix;
  BERTH_ASSIGN_OR_RETURN(IssuedEtcdCert server_cert,
                         ca_->Issue("server", server_key.get(), name, addresses, now));
  BERTH_ASSIGN_OR_RETURN(IssuedEtcdCert peer_cert,
                         ca_->Issue("peer", peer_key.get(), name, addresses, now));
  facts.etcd_peer_url = peer_url;
  facts.etcd_client_url = request.etcd_client_url();
  facts.etcd_member_id = learner.member.id();
  facts.etcd_member_is_voter = !learner.member.islearner();
  facts.cert_serials = {server_cert.log.serial(), peer_cert.log.serial()};
  const v1::NodeRecord* record = current ? &current->record : nullptr;
  BERTH_ASSIGN_OR_RETURN(v1::NodeRecord next, ApplyJoin(record, facts));
  NodeCommit commit{.record = next,
                    .expected_mod_revision = current ? current->mod_revision : 0,
                    .disk_uuid = request.disk_uuid(),
                    .disk_claim = disk,
                    .issued = {server_cert.log, peer_cert.log}};
  ApplyAdmission(admitted, evidence, next, commit);
  if (evidence.nonce.has_value()) commit.sweep_nonces_expired_before = now;
  BERTH_RETURN_IF_ERROR(store_->Commit(commit));

  v1::EtcdMaterial material;
  material.set_ca_certificate(ca_->cert_pem());
  material.set_server_certificate(server_cert.pem);
  material.set_peer_certificate(peer_cert.pem);
  BERTH_ASSIGN_OR_RETURN(std::string crl, CurrentEtcdCrl(*store_, *ca_, now));
  material.set_crl(crl);
  for (const auto& m : learner.members) {
    const bool self = m.id() == learner.member.id();
    for (auto& entry : InitialClusterEntries(m, self ? name : ""))
      material.add_initial_cluster(entry);
  }
  material.set_member_name(name);
  material.set_member_id(learner.member.id());
  return JoinAdmission{.etcd = std::move(material),
                       .audit = "record=" + std::string(NodeStateName(next.state())) +
                                " authorized_by=" + AuditValue(facts.role_authorization, true) +
                                " etcd_member=" + etcd::MemberIdHex(learner.member.id()) +
                                (learner.added ? " etcd_learner=added" : " etcd_learner=reused") +
                                " certs=" + server_cert.log.serial() + "," +
                                peer_cert.log.serial() + admitted.audit};
}

Result<RejoinAdmission> NodeRegistry::AdmitRejoin(const v1::RejoinRequest& request,
                                                  const verify::VerifiedEvidence& evidence) {
  const std::string& name = request.node_name();
  BERTH_ASSIGN_OR_RETURN(NodeStore::JoinView view,
                         store_->GetForJoin(name, "", SpentNoncesKey(evidence)));
  const std::optional<StoredNode>& current = view.node;
  BERTH_ASSIGN_OR_RETURN(std::optional<GuardedPut> nonce, SpendNonce(evidence, view.value, name));
  BERTH_ASSIGN_OR_RETURN(
      v1::NodeRecord next,
      ApplyRejoin(current ? &current->record : nullptr, name, request.disk_uuid(),
                  evidence.ak_sha256_hex, clock_->NowUnix(), evidence.platform_key_sha256_hex));
  NodeCommit commit{.record = next, .expected_mod_revision = current->mod_revision};
  if (nonce.has_value()) {
    commit.also.push_back(*nonce);
    commit.sweep_nonces_expired_before = clock_->NowUnix();
  }
  BERTH_RETURN_IF_ERROR(store_->Commit(commit));
  RejoinAdmission out{.control_plane = next.role() == v1::NODE_ROLE_CONTROL_PLANE,
                      .etcd_crl = "",
                      .audit = "record=" + std::string(NodeStateName(next.state()))};
  if (next.role() == v1::NODE_ROLE_CONTROL_PLANE && ca_ != nullptr) {
    BERTH_ASSIGN_OR_RETURN(out.etcd_crl, CurrentEtcdCrl(*store_, *ca_, clock_->NowUnix()));
  }
  return out;
}

}  // namespace berth::server
