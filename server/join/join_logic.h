// The join service's logic, one method per RPC, free of any transport type (the gRPC adapter
// in join_service.cc only unpacks calls and forwards here).
//
// Every decision is one structured audit line ("audit" logger): the call, the node, the peer,
// the evidence (AK fingerprint), the policy rule that accepted it or the reason it was refused.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <string>

#include "berth/v1/berth.pb.h"
#include "common/boot_policy.h"
#include "common/clock.h"
#include "common/cluster_keys.h"
#include "common/secret.h"
#include "server/join/bootstrap_token.h"
#include "server/join/credential_issuer.h"
#include "server/join/discovery.h"
#include "server/join/nonce.h"
#include "server/nodes/golden_ticket.h"
#include "server/nodes/registry.h"
#include "verify/evidence.h"
#include "verify/policy_holder.h"

namespace berth::server {

// Who is calling, as the transport established it.
struct Peer {
  Bytes spki_sha256;    // SHA-256 of the TLS client certificate's SubjectPublicKeyInfo
  std::string address;  // for audit lines
};

struct JoinOptions {
  std::string cluster_id;                    // HKDF salt of disk keys
  std::string api_server_endpoint;           // host:port that kubeadm joins
  // In the cluster keys control planes get: the endpoint their API servers serve too (a load
  // balancer's); empty: none.
  std::string control_plane_endpoint;
  std::vector<std::string> ca_cert_hashes;   // "sha256:<hex>"
  std::string kubernetes_version;            // informational, may be empty
  // The cluster's recovery public key (common/recovery.h), put in every control plane's
  // tickets so that its recovery keyslot is sealed to it; empty: none is handed out.
  Bytes recovery_public_key;
};

// What the transport passes back to the node besides the answer (the gRPC adapter sends it as
// trailing metadata).
struct ReplyHints {
  // "Call again after this long" for answers that mean "not yet" rather than "unavailable":
  // a node pending approval calls again at once (berth-retry-after-ms).
  std::optional<std::chrono::milliseconds> retry_after;
  bool pending = false;  // the answer is "pending operator approval" (metrics)
};

// kubeadm's caCertHashes for a CA bundle: "sha256:" + hex SHA-256 of each certificate's DER
// SubjectPublicKeyInfo.
Result<std::vector<std::string>> KubeadmCaCertHashes(const std::string& ca_pem);

// A LUKS2 UUID as cryptsetup prints it: 8-4-4-4-12 lowercase hex.
bool IsValidDiskUuid(std::string_view uuid);

// Thread-safe once constructed; the collaborators must be thread-safe and outlive it.
class JoinLogic {
 public:
  // `nodes`: node records in etcd (docs/etcd.md); null runs without them (berthd --no-etcd,
  // for benchmarks and tests): diskless workers only. Without records a disk key is never
  // released (FAILED_PRECONDITION for a join naming a disk, and for every rejoin), and every
  // grant's audit line says records=none.
  // `golden`: golden tickets (debug builds; null in release builds, which refuse them).
  // `discovery`: kubeconfigs for kubeadm's discovery.file (null: bootstrap-token discovery).
  JoinLogic(JoinOptions options, SecretBytes master_secret, NonceIssuer* nonces,
            verify::EvidenceVerifier* verifier, TokenIssuer* tokens, NodeRegistry* nodes = nullptr,
            GoldenTickets* golden = nullptr, DiscoveryKubeconfigs* discovery = nullptr);

  // What berthd on an admitted control plane serves joins with (v1::BerthdKeys): the join
  // and etcd CAs' keys, and the text of the policy in force when the ticket is made (a
  // reload berthd rejected is not shared). REQUIRES: `policy` read from a file.
  struct BerthdShare {
    SecretBytes join_ca_key_pem;
    SecretBytes etcd_ca_key_pem;
    const verify::PolicyHolder* policy = nullptr;
  };
  // Every control plane admitted from now on gets the master secret and `pki` in its join
  // ticket (common/cluster_keys.h), and `berthd` when given. REQUIRES: before the first call.
  void ShareClusterKeys(std::vector<SharedPki> pki,
                        std::optional<BerthdShare> berthd = std::nullopt) {
    shared_pki_ = std::move(pki);
    shared_berthd_ = std::move(berthd);
    share_cluster_keys_ = true;
  }

  // Reads only `peer.address` (a nonce is not bound to the caller; the evidence answering it
  // is, and the ticket calls check that against their own peer's key).
  Result<v1::ChallengeResponse> Challenge(const v1::ChallengeRequest& request, const Peer& peer);
  // A node pending operator approval is answered UNAVAILABLE with `hints` asking it to call
  // again at once (admission.h).
  Result<v1::JoinTicket> IssueJoinTicket(const v1::JoinRequest& request, const Peer& peer,
                                         ReplyHints* hints = nullptr);
  Result<v1::RejoinTicket> IssueRejoinTicket(const v1::RejoinRequest& request, const Peer& peer);

 private:
  // Nonce, binding to `peer`, evidence, and the activated credential when the AK is trusted
  // through its EK: the checks every ticket needs.
  Result<verify::VerifiedEvidence> VerifyCaller(const v1::Evidence& evidence,
                                                const std::string& nonce, const Peer& peer,
                                                const std::string& activated_credential);
  // A golden ticket instead of evidence (golden_ticket.h).
  Result<verify::VerifiedEvidence> VerifyGoldenTicket(const v1::JoinRequest& request,
                                                      const Peer& peer);
  // A control plane's cold start (docs/cluster-lifecycle.md): the boot-policy key and its
  // signature over the policy's roles.cold_start PCRs with the values of the boot just
  // verified, and what the audit line says of it: "sha256:0,1,2,3,4,5,6,7" for the PCRs
  // signed, or "none (why)" for evidence with no TPM to seal to (SEV-SNP, a golden ticket).
  // PERMISSION_DENIED when the quote leaves out one of those PCRs.
  struct SignedColdStart {
    std::optional<v1::ColdStart> cold_start;
    std::string audit;
  };
  Result<SignedColdStart> SignColdStart(const verify::VerifiedEvidence& evidence);

  JoinOptions options_;
  SecretBytes master_secret_;
  NonceIssuer* nonces_;
  verify::EvidenceVerifier* verifier_;
  TokenIssuer* tokens_;
  CredentialIssuer credentials_;  // derived from the master secret
  Result<BootPolicySigner> boot_policy_;  // derived from the master secret and cluster id
  bool share_cluster_keys_ = false;
  std::vector<SharedPki> shared_pki_;
  std::optional<BerthdShare> shared_berthd_;
  NodeRegistry* nodes_;
  GoldenTickets* golden_;
  DiscoveryKubeconfigs* discovery_;
};

}  // namespace berth::server
