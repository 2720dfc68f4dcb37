#include "server/nodes/store.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>

namespace berth::server {

namespace {

namespace pb = etcdserverpb;

template <typename Message>
Result<Message> FromJson(const std::string& key, const std::string& json) {
  Message m;
  BERTH_RETURN_IF_ERROR(RecordFromJson(key, json, &m));
  return m;
}

// A node's record as etcd holds it, with the revision a later write compares against.
Result<StoredNode> StoredNodeFromKv(const mvccpb::KeyValue& kv) {
  StoredNode node;
  BERTH_ASSIGN_OR_RETURN(node.record, FromJson<v1::NodeRecord>(kv.key(), kv.value()));
  node.mod_revision = kv.mod_revision();
  return node;
}

DiskClaim DiskClaimFromKv(const mvccpb::KeyValue& kv) {
  return DiskClaim{kv.value(), kv.mod_revision()};
}

pb::RangeRequest PrefixRange(const std::string& prefix) {
  pb::RangeRequest r;
  r.set_key(prefix);
  r.set_range_end(etcd::PrefixEnd(prefix));
  return r;
}

pb::Compare ModRevisionIs(const std::string& key, int64_t revision) {
  pb::Compare c;
  c.set_key(key);
  c.set_target(pb::Compare::MOD);
  c.set_result(pb::Compare::EQUAL);
  c.set_mod_revision(revision);
  return c;
}

void AddPut(pb::TxnRequest& txn, const std::string& key, const std::string& value) {
  pb::PutRequest* put = txn.add_success()->mutable_request_put();
  put->set_key(key);
  put->set_value(value);
}

}  // namespace

std::string SpentNonceKey(int64_t expires_unix, const std::string& nonce_sha256_hex) {
  std::string expiry = std::to_string(std::max<int64_t>(expires_unix, 0));
  expiry.insert(0, expiry.size() < 12 ? 12 - expiry.size() : 0, '0');
  return "nonces/" + expiry + "/" + nonce_sha256_hex;
}

std::string RecordToJson(const google::protobuf::Message& message) {
  std::string out;
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(message, &out, options);
  return out;
}

Status RecordFromJson(const std::string& key, const std::string& json,
                      google::protobuf::Message* message) {
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = true;
  auto st = google::protobuf::util::JsonStringToMessage(json, message, options);
  if (!st.ok()) {
    return DataLoss("etcd key " + key +
                    " does not hold a valid record: " + std::string(st.message()));
  }
  return OkStatus();
}

NodeStore::NodeStore(etcd::Client* etcd, std::string prefix)
    : etcd_(etcd), prefix_(std::move(prefix)) {}

Result<std::optional<StoredNode>> NodeStore::Get(const std::string& name) {
  pb::RangeRequest r;
  r.set_key(NodeKey(name));
  BERTH_ASSIGN_OR_RETURN(pb::RangeResponse got, etcd_->Range(r));
  if (got.kvs_size() == 0) return std::optional<StoredNode>();
  BERTH_ASSIGN_OR_RETURN(StoredNode node, StoredNodeFromKv(got.kvs(0)));
  return std::optional<StoredNode>(std::move(node));
}

Result<std::vector<StoredNode>> NodeStore::List() {
  BERTH_ASSIGN_OR_RETURN(pb::RangeResponse got, etcd_->Range(PrefixRange(prefix_ + "nodes/")));
  std::vector<StoredNode> out;
  for (const auto& kv : got.kvs()) {
    BERTH_ASSIGN_OR_RETURN(StoredNode node, StoredNodeFromKv(kv));
    out.push_back(std::move(node));
  }
  return out;
}

Result<std::vector<StoredNode>> NodeStore::ListMayNameEtcdMembers() {
  BERTH_ASSIGN_OR_RETURN(pb::RangeResponse got, etcd_->Range(PrefixRange(prefix_ + "nodes/")));
  std::vector<StoredNode> out;
  for (const auto& kv : got.kvs()) {
    const std::string& json = kv.value();
    if (json.find("etcd") == std::string::npos && json.find('\\') == std::string::npos) continue;
    BERTH_ASSIGN_OR_RETURN(StoredNode node, StoredNodeFromKv(kv));
    out.push_back(std::move(node));
  }
  return out;
}

Result<std::optional<DiskClaim>> NodeStore::GetDiskClaim(const std::string& disk_uuid) {
  pb::RangeRequest r;
  r.set_key(DiskKey(disk_uuid));
  BERTH_ASSIGN_OR_RETURN(pb::RangeResponse got, etcd_->Range(r));
  if (got.kvs_size() == 0) return std::optional<DiskClaim>();
  return std::optional<DiskClaim>(DiskClaimFromKv(got.kvs(0)));
}

Result<NodeStore::JoinView> NodeStore::GetForJoin(const std::string& name,
                                                   const std::string& disk_uuid,
                                                   const std::string& value_key) {
  pb::TxnRequest txn;  // no comparisons: the reads always run
  txn.add_success()->mutable_request_range()->set_key(NodeKey(name));
  if (!disk_uuid.empty()) txn.add_success()->mutable_request_range()->set_key(DiskKey(disk_uuid));
  if (!value_key.empty()) txn.add_success()->mutable_request_range()->set_key(prefix_ + value_key);
  BERTH_ASSIGN_OR_RETURN(pb::TxnResponse got, etcd_->Txn(txn));
  if (got.responses_size() != txn.success_size()) {
    return Internal("etcd answered " + std::to_string(got.responses_size()) +
                    " reads of a transaction of " + std::to_string(txn.success_size()));
  }
  JoinView view;
  const pb::RangeResponse& node = got.responses(0).response_range();
  if (node.kvs_size() > 0) {
    BERTH_ASSIGN_OR_RETURN(view.node, StoredNodeFromKv(node.kvs(0)));
  }
  if (!disk_uuid.empty() && got.responses(1).response_range().kvs_size() > 0) {
    view.disk = DiskClaimFromKv(got.responses(1).response_range().kvs(0));
  }
  if (!value_key.empty()) {
    const pb::RangeResponse& value = got.responses(disk_uuid.empty() ? 1 : 2).response_range();
    if (value.kvs_size() > 0) {
      view.value = StoredValue{value_key, value.kvs(0).value(), value.kvs(0).mod_revision()};
    }
  }
  return view;
}

Status NodeStore::Commit(const NodeCommit& c) {
  const std::string& name = c.record.name();
  pb::TxnRequest txn;
  const std::string key = NodeKey(name);
  *txn.add_compare() = ModRevisionIs(key, c.expected_mod_revision);
  AddPut(txn, key, RecordToJson(c.record));
  if (!c.disk_uuid.empty()) {
    const std::string disk_key = DiskKey(c.disk_uuid);
    if (c.disk_claim.has_value()) {
      if (c.disk_claim->node != name) {
        return PermissionDenied("disk " + c.disk_uuid + " belongs to node " + c.disk_claim->node);
      }
      *txn.add_compare() = ModRevisionIs(disk_key, c.disk_claim->mod_revision);
    } else {
      *txn.add_compare() = ModRevisionIs(disk_key, 0);
      AddPut(txn, disk_key, name);
    }
  }
  for (const auto& cert : c.issued)
    AddPut(txn, prefix_ + "etcd/certs/" + cert.serial(), RecordToJson(cert));
  for (const auto& cert : c.revoked)
    AddPut(txn, prefix_ + "etcd/crl/" + cert.serial(), RecordToJson(cert));
  for (const auto& put : c.also) {
    *txn.add_compare() = ModRevisionIs(prefix_ + put.key, put.expected_mod_revision);
    AddPut(txn, prefix_ + put.key, put.value);
  }
  if (c.sweep_nonces_expired_before > 0) {
    pb::DeleteRangeRequest* sweep = txn.add_success()->mutable_request_delete_range();
    sweep->set_key(prefix_ + "nonces/");
    sweep->set_range_end(prefix_ + SpentNonceKey(c.sweep_nonces_expired_before, ""));
  }
  BERTH_ASSIGN_OR_RETURN(pb::TxnResponse done, etcd_->Txn(txn));
  if (!done.succeeded()) {
    return Aborted("the record of node " + name +
                   " changed while this request was handled (another berthd replica?); retry");
  }
  return OkStatus();
}

Result<std::optional<StoredValue>> NodeStore::GetValue(const std::string& key) {
  pb::RangeRequest r;
  r.set_key(prefix_ + key);
  BERTH_ASSIGN_OR_RETURN(pb::RangeResponse got, etcd_->Range(r));
  if (got.kvs_size() == 0) return std::optional<StoredValue>();
  return std::optional<StoredValue>(
      StoredValue{key, got.kvs(0).value(), got.kvs(0).mod_revision()});
}

Result<std::vector<StoredValue>> NodeStore::ListValues(const std::string& key_prefix) {
  BERTH_ASSIGN_OR_RETURN(pb::RangeResponse got, etcd_->Range(PrefixRange(prefix_ + key_prefix)));
  std::vector<StoredValue> out;
  for (const auto& kv : got.kvs()) {
    out.push_back(StoredValue{kv.key().substr(prefix_.size()), kv.value(), kv.mod_revision()});
  }
  return out;
}

Status NodeStore::PutIfAbsent(const std::string& key, const std::string& value) {
  pb::TxnRequest txn;
  *txn.add_compare() = ModRevisionIs(prefix_ + key, 0);
  AddPut(txn, prefix_ + key, value);
  BERTH_ASSIGN_OR_RETURN(pb::TxnResponse done, etcd_->Txn(txn));
  if (!done.succeeded()) return AlreadyExists("etcd key " + prefix_ + key + " exists");
  return OkStatus();
}

Status NodeStore::PutGuarded(const GuardedPut& put) {
  pb::TxnRequest txn;
  *txn.add_compare() = ModRevisionIs(prefix_ + put.key, put.expected_mod_revision);
  AddPut(txn, prefix_ + put.key, put.value);
  BERTH_ASSIGN_OR_RETURN(pb::TxnResponse done, etcd_->Txn(txn));
  if (!done.succeeded()) {
    return Aborted("etcd key " + prefix_ + put.key + " changed while it was being updated");
  }
  return OkStatus();
}

Status NodeStore::DeleteValue(const std::string& key) {
  pb::DeleteRangeRequest d;
  d.set_key(prefix_ + key);
  return etcd_->DeleteRange(d).status();
}

Result<std::optional<v1::NodeAuthorization>> NodeStore::GetAuthorization(const std::string& name) {
  pb::RangeRequest r;
  r.set_key(prefix_ + "authorizations/" + name);
  BERTH_ASSIGN_OR_RETURN(pb::RangeResponse got, etcd_->Range(r));
  if (got.kvs_size() == 0) return std::optional<v1::NodeAuthorization>();
  BERTH_ASSIGN_OR_RETURN(auto a, FromJson<v1::NodeAuthorization>(r.key(), got.kvs(0).value()));
  return std::optional<v1::NodeAuthorization>(std::move(a));
}

Result<std::vector<v1::NodeAuthorization>> NodeStore::ListAuthorizations() {
  BERTH_ASSIGN_OR_RETURN(pb::RangeResponse got,
                         etcd_->Range(PrefixRange(prefix_ + "authorizations/")));
  std::vector<v1::NodeAuthorization> out;
  for (const auto& kv : got.kvs()) {
    BERTH_ASSIGN_OR_RETURN(auto a, FromJson<v1::NodeAuthorization>(kv.key(), kv.value()));
    out.push_back(std::move(a));
  }
  return out;
}

Status NodeStore::PutAuthorization(const v1::NodeAuthorization& authorization) {
  pb::PutRequest put;
  put.set_key(prefix_ + "authorizations/" + authorization.name());
  put.set_value(RecordToJson(authorization));
  return etcd_->Put(put).status();
}

Result<RevokedList> NodeStore::ListRevoked() {
  BERTH_ASSIGN_OR_RETURN(pb::RangeResponse got, etcd_->Range(PrefixRange(prefix_ + "etcd/crl/")));
  RevokedList out;
  for (const auto& kv : got.kvs()) {
    BERTH_ASSIGN_OR_RETURN(auto e, FromJson<v1::EtcdRevokedCertificate>(kv.key(), kv.value()));
    out.entries.push_back(std::move(e));
    out.newest_mod_revision = std::max(out.newest_mod_revision, kv.mod_revision());
  }
  return out;
}

Result<std::vector<v1::EtcdIssuedCertificate>> NodeStore::ListIssued() {
  BERTH_ASSIGN_OR_RETURN(pb::RangeResponse got, etcd_->Range(PrefixRange(prefix_ + "etcd/certs/")));
  std::vector<v1::EtcdIssuedCertificate> out;
  for (const auto& kv : got.kvs()) {
    BERTH_ASSIGN_OR_RETURN(auto e, FromJson<v1::EtcdIssuedCertificate>(kv.key(), kv.value()));
    out.push_back(std::move(e));
  }
  return out;
}

}  // namespace berth::server
