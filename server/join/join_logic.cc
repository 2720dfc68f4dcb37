#include "server/join/join_logic.h"

#include <spdlog/spdlog.h>

#include <optional>

#include "common/audit.h"
#include "common/binding.h"
#include "common/crypto.h"
#include "common/enrolment.h"
#include "common/recovery.h"
#include "common/time.h"
#include "server/nodes/records.h"

namespace berth::server {

namespace {

// The start of a ticket call's audit line: who asked, as what node.
AuditLine TicketAudit(std::string_view call, const Peer& peer, std::string_view node) {
  AuditLine line(call);
  line.Add("node", node).Add("peer", peer.address);
  line.Add("peer_key", peer.spki_sha256.empty() ? "" : HexEncode(peer.spki_sha256).substr(0, 16));
  return line;
}

// A control plane's ticket names the recovery key its recovery keyslot is sealed to.
void AddRecoveryKey(AuditLine& line, const std::string& recovery_public_key) {
  if (recovery_public_key.empty()) return;
  line.Add("recovery_key",
           "sha256:" + recovery::Fingerprint(AsBytes(recovery_public_key)).substr(0, 16));
}

// berthd --no-etcd (docs/etcd.md): without node records nothing ties a disk UUID, which is
// written in clear on the disk, to the node that asks for its key, and nothing can revoke a
// node. So such a berthd releases no disk key at all, to anyone.
Status NoDiskKeysWithoutRecords() {
  return FailedPrecondition(
      "this berthd runs without node records (--no-etcd, for benchmarks and tests) and "
      "releases no disk keys: nothing would bind the disk to the node asking for it; run "
      "berthd with etcd, or enrol the node without a state disk");
}

}  // namespace

Result<std::vector<std::string>> KubeadmCaCertHashes(const std::string& ca_pem) {
  auto certs = CertsFromPem(ca_pem);
  if (!certs.ok()) return certs.status().WithContext("Kubernetes cluster CA");
  if (certs->empty()) return InvalidArgument("Kubernetes cluster CA: no certificate found");
  std::vector<std::string> hashes;
  for (auto& cert : *certs) {
    BERTH_ASSIGN_OR_RETURN(Bytes hash, CertSpkiSha256(cert.get()));
    hashes.push_back("sha256:" + HexEncode(hash));
  }
  return hashes;
}

bool IsValidDiskUuid(std::string_view uuid) {
  if (uuid.size() != 36) return false;
  for (size_t i = 0; i < uuid.size(); ++i) {
    bool dash = i == 8 || i == 13 || i == 18 || i == 23;
    char c = uuid[i];
    if (dash ? c != '-' : !((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

JoinLogic::JoinLogic(JoinOptions options, SecretBytes master_secret, NonceIssuer* nonces,
                     verify::EvidenceVerifier* verifier, TokenIssuer* tokens, NodeRegistry* nodes,
                     GoldenTickets* golden, DiscoveryKubeconfigs* discovery)
    : options_(std::move(options)),
      master_secret_(std::move(master_secret)),
      nonces_(nonces),
      verifier_(verifier),
      tokens_(tokens),
      credentials_(master_secret_),
      boot_policy_(BootPolicySigner::Create(master_secret_, options_.cluster_id)),
      nodes_(nodes),
      golden_(golden),
      discovery_(discovery) {}

Result<v1::ChallengeResponse> JoinLogic::Challenge(const v1::ChallengeRequest& request,
                                                   const Peer& peer) {
  v1::ChallengeResponse response;
  Bytes nonce = nonces_->Issue();
  response.set_expires_unix(nonces_->ExpiresUnix(nonce));
  response.set_nonce(ToString(nonce));
  // Credential activation, when the request presents an EK the policy trusts.
  if (auto target = verifier_->CredentialTargetFor(request); target.has_value()) {
    auto made = credentials_.Make(target->ek, target->ek_name, target->ak_name, nonce);
    if (!made.ok()) return made.status().WithContext("making a credential for the node's EK");
    response.set_credential_blob(ToString(made->credential_blob));
    response.set_encrypted_secret(ToString(made->encrypted_secret));
  }
  spdlog::debug("challenge issued to {}", peer.address);
  return response;
}

Result<verify::VerifiedEvidence> JoinLogic::VerifyCaller(const v1::Evidence& evidence,
                                                 const std::string& nonce, const Peer& peer,
                                                 const std::string& activated_credential) {
  if (peer.spki_sha256.size() != 32) {
    return Unauthenticated("the call carries no TLS client certificate to bind evidence to");
  }
  BERTH_RETURN_IF_ERROR(nonces_->Check(AsBytes(nonce)));
  // A nonce admits one call (docs/nonces.md): a replay is refused before its evidence costs
  // anything, and MarkUsed below decides between two concurrent ones.
  BERTH_RETURN_IF_ERROR(nonces_->CheckUnused(AsBytes(nonce)));
  Bytes binding = ComputeBinding(AsBytes(nonce), peer.spki_sha256);
  BERTH_ASSIGN_OR_RETURN(verify::VerifiedEvidence verified, verifier_->Verify(evidence, binding));
  if (verified.credential.has_value()) {
    const verify::CredentialCheck& c = *verified.credential;
    SecretBytes activated(activated_credential.data(), activated_credential.size());
    BERTH_RETURN_IF_ERROR(
        credentials_.Check(AsBytes(nonce), c.ak_name, c.ek_name, c.secret_size, activated));
  }
  BERTH_RETURN_IF_ERROR(nonces_->MarkUsed(AsBytes(nonce)));
  // The registry records it with the grant, so that other replicas refuse it too.
  verified.nonce =
      verify::NonceUse{HexEncode(Sha256(AsBytes(nonce))), nonces_->ExpiresUnix(AsBytes(nonce))};
  return verified;
}

Result<verify::VerifiedEvidence> JoinLogic::VerifyGoldenTicket(const v1::JoinRequest& request,
                                                       const Peer& peer) {
  if (golden_ == nullptr) return GoldenTicketsCompiledOut("accept", peer.address);
  if (nodes_ == nullptr) {
    return FailedPrecondition("golden tickets are single-use through etcd, and this berthd runs "
                              "without it (--no-etcd)");
  }
  if (peer.spki_sha256.size() != 32) {
    return Unauthenticated("the call carries no TLS client certificate");
  }
  return golden_->Verify(request, peer.address, peer.spki_sha256);
}

Result<JoinLogic::SignedColdStart> JoinLogic::SignColdStart(
    const verify::VerifiedEvidence& evidence) {
  // No TPM to seal to (SEV-SNP) or no quote (a golden ticket): no cold start to sign.
  if (evidence.quoted_pcrs.empty()) return SignedColdStart{.audit = "none (no TPM quote)"};
  if (!boot_policy_.ok()) {
    return boot_policy_.status().WithContext("deriving the cluster's boot-policy key");
  }
  // The PCRs are the policy's, not the quote's: a node cannot narrow what its TPM checks by
  // quoting less.
  const verify::ColdStartPolicy& wanted = evidence.cold_start;
  BERTH_ASSIGN_OR_RETURN(v1::ColdStart signed_boot,
                         boot_policy_->ColdStartFor(evidence.quoted_pcrs, wanted.bank, wanted.pcrs,
                                                    nonces_->clock()->NowUnix()));
  std::string pcrs;
  for (uint32_t p : signed_boot.policy().pcrs()) {
    pcrs += (pcrs.empty() ? "" : ",") + std::to_string(p);
  }
  return SignedColdStart{.cold_start = std::move(signed_boot),
                         .audit = std::string(DigestName(wanted.bank)) + ":" + pcrs};
}

Result<v1::JoinTicket> JoinLogic::IssueJoinTicket(const v1::JoinRequest& request,
                                                  const Peer& peer, ReplyHints* hints) {
  const std::string& node = request.node_name();
  auto refuse = [&](Status status) {
    TicketAudit("IssueJoinTicket", peer, node).Log(status);
    return status;
  };
  if (!IsValidNodeName(node)) {
    return refuse(
        InvalidArgument("node name \"" + node + "\" is not a valid Kubernetes node name"));
  }
  if (!request.disk_uuid().empty() && !IsValidDiskUuid(request.disk_uuid())) {
    return refuse(InvalidArgument("disk UUID \"" + request.disk_uuid() + "\" is not a LUKS2 UUID"));
  }
  if (request.role() == v1::NODE_ROLE_CONTROL_PLANE && nodes_ == nullptr) {
    return refuse(FailedPrecondition(
        "control-plane joins need etcd membership, which this berthd does not manage"));
  }
  if (!request.disk_uuid().empty() && nodes_ == nullptr) return refuse(NoDiskKeysWithoutRecords());
  if (request.role() != v1::NODE_ROLE_WORKER && request.role() != v1::NODE_ROLE_CONTROL_PLANE) {
    return refuse(InvalidArgument("the request names no node role"));
  }
  auto verified = request.has_golden_ticket()
                      ? VerifyGoldenTicket(request, peer)
                      : VerifyCaller(request.evidence(), request.nonce(), peer,
                                     request.activated_credential());
  if (!verified.ok()) return refuse(verified.status());
  // A control plane's boot must be one berthd can sign a cold start for: decided before its
  // record and etcd learner are written, so that a refusal leaves nothing behind.
  SignedColdStart signed_for;
  if (request.role() == v1::NODE_ROLE_CONTROL_PLANE) {
    auto signed_boot = SignColdStart(*verified);
    if (!signed_boot.ok()) return refuse(signed_boot.status());
    signed_for = std::move(*signed_boot);
  }

  v1::JoinTicket ticket;
  std::string recorded;
  if (nodes_ != nullptr) {
    auto admitted = nodes_->AdmitJoin(request, *verified, peer.address);
    if (!admitted.ok()) return refuse(admitted.status());
    if (admitted->pending) {
      if (hints != nullptr) {
        hints->pending = true;
        hints->retry_after = std::chrono::milliseconds(0);
      }
      AuditLine("IssueJoinTicket")
          .Add("node", node)
          .Add("peer", peer.address)
          .Add("ak", "sha256:" + verified->ak_sha256_hex)
          .Quoted("reason", admitted->pending_reason)
          .Log(OkStatus(), "pending");
      return Unavailable(admitted->pending_reason);
    }
    if (admitted->etcd.has_value()) *ticket.mutable_etcd() = std::move(*admitted->etcd);
    recorded = admitted->audit;
  } else {
    recorded = "records=none";  // berthd --no-etcd: say so in every grant (docs/etcd.md)
  }
  if (!request.disk_uuid().empty()) {
    // Only here, with the disk claimed for this node's record in etcd (checked above: no disk
    // key without records).
    auto key = DeriveDiskKey(master_secret_, options_.cluster_id, request.disk_uuid());
    if (!key.ok()) return refuse(key.status());
    ticket.set_disk_key(std::string(key->view()));
  }
  // Everything that can still refuse the ticket comes before the token: a token minted for
  // a refused ticket would be left in the cluster until it expires.
  std::string cold_start;
  if (request.role() == v1::NODE_ROLE_CONTROL_PLANE) {
    if (signed_for.cold_start.has_value()) {
      *ticket.mutable_cold_start() = std::move(*signed_for.cold_start);
    }
    cold_start = std::move(signed_for.audit);
    ticket.set_recovery_public_key(ToString(options_.recovery_public_key));
    // Admitted as a control plane above (its authorization, its etcd learner).
    if (share_cluster_keys_) {
      *ticket.mutable_cluster_keys() = MakeClusterKeys(master_secret_, shared_pki_);
      ticket.mutable_cluster_keys()->set_control_plane_endpoint(options_.control_plane_endpoint);
      if (shared_berthd_.has_value()) {
        v1::BerthdKeys* b = ticket.mutable_cluster_keys()->mutable_berthd();
        b->set_join_ca_key(std::string(shared_berthd_->join_ca_key_pem.view()));
        b->set_etcd_ca_key(std::string(shared_berthd_->etcd_ca_key_pem.view()));
        b->set_policy(shared_berthd_->policy->current_text());
      }
    }
  }
  std::optional<ClusterInfo> cluster_info;
  if (discovery_ != nullptr) {
    auto info = discovery_->ClusterInfoFor(node);
    if (!info.ok()) return refuse(info.status());
    cluster_info = std::move(*info);
  }
  auto token = tokens_->Issue(node);
  if (!token.ok()) return refuse(token.status());
  SecretBytes joined = token->Joined();
  auto* kubeadm = ticket.mutable_kubeadm();
  kubeadm->set_api_server_endpoint(options_.api_server_endpoint);
  kubeadm->set_token(std::string(joined.view()));
  for (const auto& h : options_.ca_cert_hashes) kubeadm->add_ca_cert_hashes(h);
  kubeadm->set_kubernetes_version(options_.kubernetes_version);
  std::string discovery = "token";
  if (cluster_info.has_value()) {
    SecretBytes kubeconfig = RenderDiscoveryKubeconfig(*cluster_info, joined);
    ticket.set_discovery_kubeconfig(std::string(kubeconfig.view()));
    discovery = "file";
  }
  AuditLine line = TicketAudit("IssueJoinTicket", peer, node);
  line.Add("role", NodeRoleName(request.role()))
      .Add("ak", "sha256:" + verified->ak_sha256_hex)
      .Quoted("rule", verified->rule)
      .Add("disk_uuid", request.disk_uuid())
      .Add("token_id", token->id)
      .Add("token_expires", Rfc3339(token->expires_unix))
      .Add("discovery", discovery);
  if (!cold_start.empty()) line.Quoted("cold_start", cold_start);
  AddRecoveryKey(line, ticket.recovery_public_key());
  if (ticket.has_cluster_keys()) {
    line.Add("cluster_keys", ticket.cluster_keys().has_berthd() ? "shared+berthd" : "shared");
  }
  line.Fields(recorded).Log(OkStatus());
  return ticket;
}

Result<v1::RejoinTicket> JoinLogic::IssueRejoinTicket(const v1::RejoinRequest& request,
                                                      const Peer& peer) {
  const std::string& node = request.node_name();
  auto refuse = [&](Status status) {
    TicketAudit("IssueRejoinTicket", peer, node).Log(status);
    return status;
  };
  if (!IsValidNodeName(node)) {
    return refuse(
        InvalidArgument("node name \"" + node + "\" is not a valid Kubernetes node name"));
  }
  if (!IsValidDiskUuid(request.disk_uuid())) {
    return refuse(InvalidArgument("disk UUID \"" + request.disk_uuid() + "\" is not a LUKS2 UUID"));
  }
  // A rejoin is a disk key and nothing else.
  if (nodes_ == nullptr) return refuse(NoDiskKeysWithoutRecords());
  auto verified =
      VerifyCaller(request.evidence(), request.nonce(), peer, request.activated_credential());
  if (!verified.ok()) return refuse(verified.status());
  v1::RejoinTicket ticket;
  auto admitted = nodes_->AdmitRejoin(request, *verified);
  if (!admitted.ok()) return refuse(admitted.status());
  ticket.set_etcd_crl(admitted->etcd_crl);
  const std::string recorded = admitted->audit;
  auto key = DeriveDiskKey(master_secret_, options_.cluster_id, request.disk_uuid());
  if (!key.ok()) return refuse(key.status());
  std::string cold_start;
  if (admitted->control_plane) {
    auto signed_for = SignColdStart(*verified);
    if (!signed_for.ok()) return refuse(signed_for.status());
    if (signed_for->cold_start.has_value()) {
      *ticket.mutable_cold_start() = std::move(*signed_for->cold_start);
    }
    cold_start = std::move(signed_for->audit);
    ticket.set_recovery_public_key(ToString(options_.recovery_public_key));
  }
  ticket.set_disk_key(std::string(key->view()));
  AuditLine line = TicketAudit("IssueRejoinTicket", peer, node);
  line.Add("ak", "sha256:" + verified->ak_sha256_hex)
      .Quoted("rule", verified->rule)
      .Add("disk_uuid", request.disk_uuid());
  if (!cold_start.empty()) line.Quoted("cold_start", cold_start);
  AddRecoveryKey(line, ticket.recovery_public_key());
  line.Fields(recorded).Log(OkStatus());
  return ticket;
}

}  // namespace berth::server
