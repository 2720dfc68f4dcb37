// Node records (docs/etcd.md): what berthd knows about every node, and the transitions a
// record goes through. Pure functions of (record, facts): the store (server/nodes/store.h) persists
// them with compare-and-swap, so two berthd replicas never clobber each other.
//
//   (none) --join--> JOINED (worker) | JOINING (control plane: etcd learner)
//   JOINING --learner promoted--> JOINED
//   JOINED/JOINING --join again (same AK)--> the same, last_join updated
//   any --revoke--> REVOKED (final: no join, no rejoin, no token; certificates on the CRL)
//   with approval required (docs/lifecycle.md): (none) --first attested join--> PENDING
//   PENDING --operator approves (same AK)--> PENDING, approved --join--> JOINED | JOINING
//   PENDING --operator denies--> REVOKED
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "berth/v1/nodes.pb.h"
#include "common/node_names.h"
#include "common/status.h"

namespace berth::server {

// The record format this berthd writes. It refuses to rewrite records of a newer format.
inline constexpr uint32_t kNodeRecordVersion = 1;

// What a granted join establishes about a node.
struct JoinFacts {
  std::string name;
  v1::NodeRole role = v1::NODE_ROLE_UNSPECIFIED;
  std::string disk_uuid;
  std::string ak_sha256;  // as the evidence verifier established it
  std::string platform_key_sha256;  // SEV-SNP: the VCEK/VLEK (VerifiedEvidence)
  std::string ek_certificate_sha256;
  std::string policy_rule;
  std::string role_authorization;  // control planes: what authorized the role
  // Control planes: the node's etcd member.
  std::string etcd_peer_url, etcd_client_url;
  uint64_t etcd_member_id = 0;
  bool etcd_member_is_voter = false;
  std::vector<std::string> cert_serials;  // newly issued
  int64_t now_unix = 0;
};

// Whether a node may join at all, given its record (null: none): PERMISSION_DENIED for a
// revoked node and for a name recorded with another attestation key; FAILED_PRECONDITION for
// a record of a newer format, or a control plane asking to become a worker.
Status CheckMayJoin(const v1::NodeRecord* current, const std::string& name,
                    const std::string& ak_sha256, v1::NodeRole role);

// The record after a granted join (CheckMayJoin first).
Result<v1::NodeRecord> ApplyJoin(const v1::NodeRecord* current, const JoinFacts& facts);

// The record after a granted rejoin: FAILED_PRECONDITION for an unknown node (a node joins
// before it rejoins); PERMISSION_DENIED for a revoked node, another attestation key, or a
// disk that is not the one recorded at join.
Result<v1::NodeRecord> ApplyRejoin(const v1::NodeRecord* current, const std::string& name,
                                   const std::string& disk_uuid, const std::string& ak_sha256,
                                   int64_t now_unix, const std::string& platform_key_sha256 = "");

// The control plane's learner became a voting member. A record in any state other than
// JOINING is returned unchanged.
v1::NodeRecord ApplyPromoted(const v1::NodeRecord& current, uint64_t member_id);

// Revocation: state REVOKED, when and by whom. Idempotent (a revoked record keeps its first
// revocation time).
v1::NodeRecord ApplyRevoke(const v1::NodeRecord& current, const std::string& by, int64_t now_unix);

// A node seen for the first time that waits for an operator's approval: the record binds its
// name to the attestation identity it was seen with (`facts.ak_sha256`), which is what the
// operator approves.
v1::NodeRecord MakePendingRecord(const JoinFacts& facts, const std::string& peer);

// An operator's approval of a pending node. FAILED_PRECONDITION for a node that is not pending,
// or (with `ak_sha256`) one pending with another attestation key.
Result<v1::NodeRecord> ApplyApproval(const v1::NodeRecord& current, const std::string& ak_sha256,
                                     const std::string& by, int64_t now_unix);

// FAILED_PRECONDITION when `record` is of a newer format than this berthd writes.
Status CheckWritable(const v1::NodeRecord& record);

}  // namespace berth::server
