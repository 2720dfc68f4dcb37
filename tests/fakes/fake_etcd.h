// An in-memory etcd for unit tests of the logic above the client (node records, membership,
// the join path): KV with etcd's revision semantics (create/mod revision, version, one revision
// per transaction, missing keys comparing as zero), Txn compares and ops, and membership with
// etcd 3.4's rules (one learner at a time, unique peer URLs, promotion only when the learner is
// in sync). Errors are etcd's own gRPC errors, converted by the real etcd::EtcdError, so the
// code under test sees exactly what it would see from etcd. The real client is tested against
// real etcd in tests/integration/etcd_client_test.cc.
//
// Faults: `Fail("MemberAdd", status)` makes the next MemberAdd fail with a gRPC status (queue
// per method); `calls` records every call. Thread-safe.
#pragma once

#include <grpcpp/support/status.h>

#include <deque>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/etcd_client.h"

namespace berth::testing {

class FakeEtcd : public etcd::Client {
 public:
  FakeEtcd();

  Result<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& request) override;
  Result<etcdserverpb::PutResponse> Put(const etcdserverpb::PutRequest& request) override;
  Result<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& request) override;
  Result<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& request) override;
  Result<etcdserverpb::MemberListResponse> MemberList() override;
  Result<etcdserverpb::MemberAddResponse> MemberAdd(const std::vector<std::string>& peer_urls,
                                                    bool learner) override;
  Result<etcdserverpb::MemberRemoveResponse> MemberRemove(uint64_t id) override;
  Result<etcdserverpb::MemberPromoteResponse> MemberPromote(uint64_t id) override;
  Result<etcdserverpb::StatusResponse> Status(const std::string& endpoint) override;

  // ---- test controls ----
  // A started voting member (name, peer and client URL).
  uint64_t AddVoter(const std::string& name, const std::string& peer_url,
                    const std::string& client_url);
  // The learner's etcd started: it publishes its name and client URL.
  void StartMember(uint64_t id, const std::string& name, const std::string& client_url);
  void SetInSync(uint64_t id, bool in_sync);
  void SetAnswers(uint64_t id, bool answers);  // whether Status at its client URL succeeds
  void Fail(const std::string& method, grpc::Status status);

  std::vector<etcdserverpb::Member> Members() const;
  // key -> value of every key under `prefix`.
  std::map<std::string, std::string> Dump(const std::string& prefix = "") const;
  int64_t revision() const;
  std::vector<std::string> calls() const;

 private:
  struct Kv {
    std::string value;
    int64_t create = 0, mod = 0, version = 0;
  };
  struct MemberState {
    etcdserverpb::Member member;
    bool in_sync = false;
    bool answers = true;
  };
  // REQUIRES: mu_ held.
  berth::Status Begin(const std::string& method);
  std::vector<std::string> KeysIn(const std::string& key, const std::string& range_end) const;
  bool CompareHolds(const etcdserverpb::Compare& c) const;
  etcdserverpb::RangeResponse DoRange(const etcdserverpb::RangeRequest& r) const;
  void DoPut(const etcdserverpb::PutRequest& p, int64_t rev);
  int64_t DoDelete(const etcdserverpb::DeleteRangeRequest& d);
  etcdserverpb::ResponseHeader Header() const;
  std::vector<etcdserverpb::Member> MemberList_() const;

  mutable std::mutex mu_;
  std::map<std::string, Kv> kv_;
  int64_t revision_ = 1;
  std::vector<MemberState> members_;
  uint64_t next_id_ = 0x1000;
  std::map<std::string, std::deque<grpc::Status>> failures_;
  std::vector<std::string> calls_;
};

}  // namespace berth::testing
