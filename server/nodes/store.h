// berthd's shared state in etcd, under one prefix (default /berth/v1/):
//
//   nodes/<name>            NodeRecord               (server/nodes/records.h)
//   disks/<uuid>            the node name that joined with this disk
//   authorizations/<name>   NodeAuthorization        (berthctl nodes authorize)
//   etcd/certs/<serial>     EtcdIssuedCertificate    (every certificate the etcd CA signed)
//   etcd/crl/<serial>       EtcdRevokedCertificate   (what the CRL lists)
//   nonces/<expiry>/<hash>  SpentNonce               (challenge nonces granted calls used)
//
// Values are protobuf JSON. Every change to a node is one etcd transaction that compares the
// record's mod_revision with the one it was read at (and the disk claim likewise), so two
// berthd replicas never clobber each other: the loser gets ABORTED and the node retries.
// Thread-safe (the etcd client is).
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "berth/v1/nodes.pb.h"
#include "common/etcd_client.h"

namespace berth::server {

// Records are stored as protobuf JSON with the proto field names.
std::string RecordToJson(const google::protobuf::Message& message);
// DATA_LOSS naming `key` when `json` is not a valid record.
Status RecordFromJson(const std::string& key, const std::string& json,
                      google::protobuf::Message* message);

inline constexpr char kDefaultBerthPrefix[] = "/berth/v1/";

struct StoredNode {
  v1::NodeRecord record;
  int64_t mod_revision = 0;
};

struct DiskClaim {
  std::string node;
  int64_t mod_revision = 0;
};

// A key written in the same transaction as a node's record, only if it is still at the
// revision it was read at (0: must not exist): a golden ticket or an EC2 pre-authorization
// consumed by the join. `key` is relative to the store's prefix.
struct GuardedPut {
  std::string key;
  int64_t expected_mod_revision = 0;
  std::string value;
};

// A value under the prefix and its revision.
struct StoredValue {
  std::string key;  // relative to the prefix
  std::string value;
  int64_t mod_revision = 0;
};

// One atomic change: a node record and what goes with it.
struct NodeCommit {
  v1::NodeRecord record;
  int64_t expected_mod_revision = 0;  // the record as read; 0: it must not exist yet
  // Claims /disks/<disk_uuid> for the record's node: it must be unclaimed (disk_claim null)
  // or still claimed by this node at the revision read. Empty: no disk.
  std::string disk_uuid;
  std::optional<DiskClaim> disk_claim;
  std::vector<v1::EtcdIssuedCertificate> issued;
  std::vector<v1::EtcdRevokedCertificate> revoked;
  std::vector<GuardedPut> also;
  // When set: the spent nonces that expired before this time are deleted in the same
  // transaction (one range delete over nonces/, whose keys start with their expiry).
  int64_t sweep_nonces_expired_before = 0;
};

// The etcd key (relative to the prefix) of a spent nonce: nonces/<expiry, 12 digits>/<hash>.
std::string SpentNonceKey(int64_t expires_unix, const std::string& nonce_sha256_hex);

struct RevokedList {
  std::vector<v1::EtcdRevokedCertificate> entries;
  int64_t newest_mod_revision = 0;  // grows with the list: the CRL number
};

class NodeStore {
 public:
  explicit NodeStore(etcd::Client* etcd, std::string prefix = kDefaultBerthPrefix);

  Result<std::optional<StoredNode>> Get(const std::string& name);
  Result<std::vector<StoredNode>> List();
  // The records that may name an etcd member (control planes', and any that were): what the
  // promotion loop reads every few seconds. Every other record is left undecoded: any etcd_*
  // field that is set puts "etcd" in the JSON (its name, in either spelling protobuf's JSON
  // parser accepts), so a record without it (nor an escape that could spell it) has none.
  // Workers' records, nearly all of a cluster's, then cost no JSON decoding (~35 us each).
  Result<std::vector<StoredNode>> ListMayNameEtcdMembers();
  Result<std::optional<DiskClaim>> GetDiskClaim(const std::string& disk_uuid);
  // What a join or rejoin reads: the node's record, the disk's claim if `disk_uuid` is not
  // empty, and the value at `value_key` (relative to the prefix) if that is not empty, in one
  // etcd round trip (one transaction of reads, so all at the same revision).
  struct JoinView {
    std::optional<StoredNode> node;
    std::optional<DiskClaim> disk;
    std::optional<StoredValue> value;
  };
  Result<JoinView> GetForJoin(const std::string& name, const std::string& disk_uuid,
                              const std::string& value_key = "");

  // Applies `commit` atomically. ABORTED when the record or the disk claim changed since they
  // were read (another replica got there first); UNAVAILABLE when etcd cannot be reached.
  Status Commit(const NodeCommit& commit);

  Result<std::optional<v1::NodeAuthorization>> GetAuthorization(const std::string& name);
  Result<std::vector<v1::NodeAuthorization>> ListAuthorizations();
  Status PutAuthorization(const v1::NodeAuthorization& authorization);

  Result<RevokedList> ListRevoked();
  Result<std::vector<v1::EtcdIssuedCertificate>> ListIssued();

  // Other records under the prefix (golden tickets, EC2 pre-authorizations, the SNS replay
  // set), by key relative to the prefix.
  Result<std::optional<StoredValue>> GetValue(const std::string& key);
  Result<std::vector<StoredValue>> ListValues(const std::string& key_prefix);
  // ALREADY_EXISTS when the key exists (the value is not changed).
  Status PutIfAbsent(const std::string& key, const std::string& value);
  // ABORTED when the key is no longer at `expected_mod_revision`.
  Status PutGuarded(const GuardedPut& put);
  Status DeleteValue(const std::string& key);

  const std::string& prefix() const { return prefix_; }
  std::string NodeKey(const std::string& name) const { return prefix_ + "nodes/" + name; }
  std::string DiskKey(const std::string& uuid) const { return prefix_ + "disks/" + uuid; }

 private:
  etcd::Client* etcd_;
  std::string prefix_;
};

}  // namespace berth::server
