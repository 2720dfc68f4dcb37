#include "tests/fakes/fake_etcd.h"

#include <algorithm>

namespace berth::testing {

namespace pb = etcdserverpb;

namespace {

// etcd's errors, as etcd 3.4 sends them (rpctypes/error.go).
grpc::Status EtcdStatus(grpc::StatusCode code, const char* message) { return {code, message}; }

template <typename T>
int Cmp(const T& a, const T& b) {
  return a < b ? -1 : (b < a ? 1 : 0);
}

}  // namespace

FakeEtcd::FakeEtcd() = default;

berth::Status FakeEtcd::Begin(const std::string& method) {
  calls_.push_back(method);
  auto it = failures_.find(method);
  if (it == failures_.end() || it->second.empty()) return OkStatus();
  grpc::Status st = it->second.front();
  it->second.pop_front();
  return etcd::EtcdError(st, "etcd " + method + " at fake");
}

pb::ResponseHeader FakeEtcd::Header() const {
  pb::ResponseHeader h;
  h.set_cluster_id(0xc1);
  h.set_revision(revision_);
  h.set_member_id(members_.empty() ? 0 : members_.front().member.id());
  return h;
}

std::vector<std::string> FakeEtcd::KeysIn(const std::string& key, const std::string& end) const {
  std::vector<std::string> out;
  if (end.empty()) {
    if (kv_.count(key)) out.push_back(key);
    return out;
  }
  for (auto it = kv_.lower_bound(key); it != kv_.end(); ++it) {
    if (end != std::string(1, '\0') && it->first >= end) break;
    out.push_back(it->first);
  }
  return out;
}

bool FakeEtcd::CompareHolds(const pb::Compare& c) const {
  auto it = kv_.find(c.key());
  Kv zero;
  if (it == kv_.end() && c.target() == pb::Compare::VALUE) return false;
  const Kv& kv = it == kv_.end() ? zero : it->second;
  int r = 0;
  switch (c.target()) {
    case pb::Compare::VERSION:
      r = Cmp(kv.version, c.version());
      break;
    case pb::Compare::CREATE:
      r = Cmp(kv.create, c.create_revision());
      break;
    case pb::Compare::MOD:
      r = Cmp(kv.mod, c.mod_revision());
      break;
    case pb::Compare::VALUE:
      r = Cmp(kv.value, c.value());
      break;
    default:
      return false;
  }
  switch (c.result()) {
    case pb::Compare::EQUAL:
      return r == 0;
    case pb::Compare::GREATER:
      return r > 0;
    case pb::Compare::LESS:
      return r < 0;
    case pb::Compare::NOT_EQUAL:
      return r != 0;
    default:
      return false;
  }
}

pb::RangeResponse FakeEtcd::DoRange(const pb::RangeRequest& r) const {
  pb::RangeResponse out;
  *out.mutable_header() = Header();
  for (const auto& k : KeysIn(r.key(), r.range_end())) {
    const Kv& kv = kv_.at(k);
    auto* o = out.add_kvs();
    o->set_key(k);
    if (!r.keys_only()) o->set_value(kv.value);
    o->set_create_revision(kv.create);
    o->set_mod_revision(kv.mod);
    o->set_version(kv.version);
  }
  out.set_count(out.kvs_size());
  return out;
}

void FakeEtcd::DoPut(const pb::PutRequest& p, int64_t rev) {
  Kv& kv = kv_[p.key()];
  if (kv.version == 0) kv.create = rev;
  kv.mod = rev;
  kv.version++;
  kv.value = p.value();
}

int64_t FakeEtcd::DoDelete(const pb::DeleteRangeRequest& d) {
  auto keys = KeysIn(d.key(), d.range_end());
  for (const auto& k : keys) kv_.erase(k);
  return static_cast<int64_t>(keys.size());
}

Result<pb::RangeResponse> FakeEtcd::Range(const pb::RangeRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  BERTH_RETURN_IF_ERROR(Begin("Range"));
  return DoRange(request);
}

Result<pb::PutResponse> FakeEtcd::Put(const pb::PutRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  BERTH_RETURN_IF_ERROR(Begin("Put"));
  DoPut(request, ++revision_);
  pb::PutResponse out;
  *out.mutable_header() = Header();
  return out;
}

Result<pb::DeleteRangeResponse> FakeEtcd::DeleteRange(const pb::DeleteRangeRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  BERTH_RETURN_IF_ERROR(Begin("DeleteRange"));
  pb::DeleteRangeResponse out;
  int64_t n = DoDelete(request);
  if (n > 0) ++revision_;
  out.set_deleted(n);
  *out.mutable_header() = Header();
  return out;
}

Result<pb::TxnResponse> FakeEtcd::Txn(const pb::TxnRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  BERTH_RETURN_IF_ERROR(Begin("Txn"));
  bool ok = std::all_of(request.compare().begin(), request.compare().end(),
                        [&](const pb::Compare& c) { return CompareHolds(c); });
  const auto& ops = ok ? request.success() : request.failure();
  std::set<std::string> written;
  for (const auto& op : ops) {
    if (op.has_request_put() && !written.insert(op.request_put().key()).second) {
      return etcd::EtcdError(EtcdStatus(grpc::StatusCode::INVALID_ARGUMENT,
                                        "etcdserver: duplicate key given in txn request"),
                             "etcd Txn at fake");
    }
  }
  pb::TxnResponse out;
  out.set_succeeded(ok);
  bool writes = std::any_of(ops.begin(), ops.end(), [](const pb::RequestOp& op) {
    return op.has_request_put() || op.has_request_delete_range();
  });
  const int64_t rev = writes ? revision_ + 1 : revision_;
  for (const auto& op : ops) {
    auto* resp = out.add_responses();
    if (op.has_request_put()) {
      DoPut(op.request_put(), rev);
      resp->mutable_response_put();
    } else if (op.has_request_delete_range()) {
      resp->mutable_response_delete_range()->set_deleted(DoDelete(op.request_delete_range()));
    } else if (op.has_request_range()) {
      *resp->mutable_response_range() = DoRange(op.request_range());
    }
  }
  revision_ = rev;
  *out.mutable_header() = Header();
  return out;
}

std::vector<pb::Member> FakeEtcd::MemberList_() const {
  std::vector<pb::Member> out;
  for (const auto& m : members_) out.push_back(m.member);
  return out;
}

Result<pb::MemberListResponse> FakeEtcd::MemberList() {
  std::lock_guard<std::mutex> lock(mu_);
  BERTH_RETURN_IF_ERROR(Begin("MemberList"));
  pb::MemberListResponse out;
  *out.mutable_header() = Header();
  for (const auto& m : members_) *out.add_members() = m.member;
  return out;
}

Result<pb::MemberAddResponse> FakeEtcd::MemberAdd(const std::vector<std::string>& peer_urls,
                                                  bool learner) {
  std::lock_guard<std::mutex> lock(mu_);
  BERTH_RETURN_IF_ERROR(Begin("MemberAdd"));
  auto fail = [](grpc::StatusCode code, const char* msg) {
    return etcd::EtcdError(EtcdStatus(code, msg), "etcd MemberAdd at fake");
  };
  for (const auto& m : members_) {
    for (const auto& u : m.member.peerurls()) {
      if (std::find(peer_urls.begin(), peer_urls.end(), u) != peer_urls.end()) {
        return fail(grpc::StatusCode::FAILED_PRECONDITION, "etcdserver: Peer URLs already exists");
      }
    }
  }
  if (learner && std::any_of(members_.begin(), members_.end(),
                             [](const MemberState& m) { return m.member.islearner(); })) {
    return fail(grpc::StatusCode::FAILED_PRECONDITION,
                "etcdserver: too many learner members in cluster");
  }
  MemberState m;
  m.member.set_id(next_id_++);
  for (const auto& u : peer_urls) m.member.add_peerurls(u);
  m.member.set_islearner(learner);
  members_.push_back(m);
  pb::MemberAddResponse out;
  *out.mutable_header() = Header();
  *out.mutable_member() = m.member;
  for (const auto& x : members_) *out.add_members() = x.member;
  return out;
}

Result<pb::MemberRemoveResponse> FakeEtcd::MemberRemove(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  BERTH_RETURN_IF_ERROR(Begin("MemberRemove"));
  auto it = std::find_if(members_.begin(), members_.end(),
                         [&](const MemberState& m) { return m.member.id() == id; });
  if (it == members_.end()) {
    return etcd::EtcdError(EtcdStatus(grpc::StatusCode::NOT_FOUND, "etcdserver: member not found"),
                           "etcd MemberRemove at fake");
  }
  members_.erase(it);
  pb::MemberRemoveResponse out;
  *out.mutable_header() = Header();
  for (const auto& x : members_) *out.add_members() = x.member;
  return out;
}

Result<pb::MemberPromoteResponse> FakeEtcd::MemberPromote(uint64_t id) {
  std::lock_guard<std::mutex> lock(mu_);
  BERTH_RETURN_IF_ERROR(Begin("MemberPromote"));
  auto fail = [](grpc::StatusCode code, const char* msg) {
    return etcd::EtcdError(EtcdStatus(code, msg), "etcd MemberPromote at fake");
  };
  auto it = std::find_if(members_.begin(), members_.end(),
                         [&](const MemberState& m) { return m.member.id() == id; });
  if (it == members_.end())
    return fail(grpc::StatusCode::NOT_FOUND, "etcdserver: member not found");
  if (!it->member.islearner()) {
    return fail(grpc::StatusCode::FAILED_PRECONDITION,
                "etcdserver: can only promote a learner member");
  }
  if (!it->in_sync) {
    return fail(grpc::StatusCode::FAILED_PRECONDITION,
                "etcdserver: can only promote a learner member which is in sync with leader");
  }
  it->member.set_islearner(false);
  pb::MemberPromoteResponse out;
  *out.mutable_header() = Header();
  for (const auto& x : members_) *out.add_members() = x.member;
  return out;
}

Result<pb::StatusResponse> FakeEtcd::Status(const std::string& endpoint) {
  std::lock_guard<std::mutex> lock(mu_);
  BERTH_RETURN_IF_ERROR(Begin("Status"));
  for (const auto& m : members_) {
    for (const auto& u : m.member.clienturls()) {
      if (u != endpoint) continue;
      if (!m.answers) break;
      pb::StatusResponse out;
      *out.mutable_header() = Header();
      out.mutable_header()->set_member_id(m.member.id());
      out.set_version("3.4.23");
      out.set_leader(members_.front().member.id());
      out.set_islearner(m.member.islearner());
      return out;
    }
  }
  return etcd::EtcdError(EtcdStatus(grpc::StatusCode::UNAVAILABLE, "connection refused"),
                         "etcd Status at " + endpoint);
}

uint64_t FakeEtcd::AddVoter(const std::string& name, const std::string& peer_url,
                            const std::string& client_url) {
  std::lock_guard<std::mutex> lock(mu_);
  MemberState m;
  m.member.set_id(next_id_++);
  m.member.set_name(name);
  m.member.add_peerurls(peer_url);
  m.member.add_clienturls(client_url);
  m.in_sync = true;
  members_.push_back(m);
  return m.member.id();
}

void FakeEtcd::StartMember(uint64_t id, const std::string& name, const std::string& client_url) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& m : members_) {
    if (m.member.id() != id) continue;
    m.member.set_name(name);
    m.member.clear_clienturls();
    m.member.add_clienturls(client_url);
  }
}

void FakeEtcd::SetInSync(uint64_t id, bool in_sync) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& m : members_) {
    if (m.member.id() == id) m.in_sync = in_sync;
  }
}

void FakeEtcd::SetAnswers(uint64_t id, bool answers) {
  std::lock_guard<std::mutex> lock(mu_);
  for (auto& m : members_) {
    if (m.member.id() == id) m.answers = answers;
  }
}

void FakeEtcd::Fail(const std::string& method, grpc::Status status) {
  std::lock_guard<std::mutex> lock(mu_);
  failures_[method].push_back(std::move(status));
}

std::vector<pb::Member> FakeEtcd::Members() const {
  std::lock_guard<std::mutex> lock(mu_);
  return MemberList_();
}

std::map<std::string, std::string> FakeEtcd::Dump(const std::string& prefix) const {
  std::lock_guard<std::mutex> lock(mu_);
  std::map<std::string, std::string> out;
  for (const auto& [k, v] : kv_) {
    if (k.rfind(prefix, 0) == 0) out[k] = v.value;
  }
  return out;
}

int64_t FakeEtcd::revision() const {
  std::lock_guard<std::mutex> lock(mu_);
  return revision_;
}

std::vector<std::string> FakeEtcd::calls() const {
  std::lock_guard<std::mutex> lock(mu_);
  return calls_;
}

}  // namespace berth::testing
