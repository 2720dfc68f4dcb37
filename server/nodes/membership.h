// etcd membership without risk to quorum (docs/etcd.md):
//   - a control plane joins as a learner (MemberAddAsLearner); learners do not vote, so adding
//     one never changes the quorum. One learner at a time (etcd 3.4 allows no more either).
//   - a retried join reuses the member that already has the node's peer URL (etcd refuses a
//     second member with the same URL, so a race between replicas cannot add two).
//   - the Promoter promotes a learner once etcd says it is in sync, and only when the voters
//     that answer, plus the learner, are a quorum of the cluster it would make.
//   - a voter is removed only when the voters left that answer are a quorum of what remains.
// Every action is idempotent, so any number of berthd replicas may run the Promoter at once:
// a second promotion of the same learner finds it a voter already.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/etcd_client.h"
#include "server/nodes/store.h"

namespace berth::server {

using Member = etcdserverpb::Member;

// "name=https://peer,..." entries of a member (one per peer URL); none for an unstarted member
// without a name unless `name_if_unnamed` is given.
std::vector<std::string> InitialClusterEntries(const Member& member,
                                               const std::string& name_if_unnamed = "");

struct LearnerResult {
  Member member;                // the node's member (a learner, or a voter already)
  std::vector<Member> members;  // the whole cluster, the node's member included
  bool added = false;           // false: an existing member was reused
};

// Thread-safe.
class Membership {
 public:
  explicit Membership(etcd::Client* etcd) : etcd_(etcd) {}

  Result<std::vector<Member>> List();

  // The member for `peer_url`: the existing one, if `may_reuse` accepts it, or a new learner.
  // UNAVAILABLE naming the pending learner while another learner exists; FAILED_PRECONDITION
  // when the peer URL belongs to a member `may_reuse` refuses.
  Result<LearnerResult> EnsureLearner(const std::string& peer_url,
                                      const std::function<bool(const Member&)>& may_reuse);

  // Whether the member answers Status at its first client URL.
  bool Answers(const Member& member);

  // Promotes learner `id` when it is in sync and the voters that answer plus the learner are a
  // quorum of the bigger cluster. OK when it is a voter already (idempotent). UNAVAILABLE while
  // it is not ready; FAILED_PRECONDITION when the promotion would leave the cluster short of a
  // healthy quorum.
  Status Promote(uint64_t id);

  // Removes member `id` unless that would cost quorum: a learner always goes; a voter only if
  // at least one voter remains and the other voters that answer are a quorum of the remaining
  // voters (FAILED_PRECONDITION otherwise, naming the numbers). NOT_FOUND when there is no
  // such member.
  Status Remove(uint64_t id);

 private:
  etcd::Client* etcd_;
};

struct PromoterOptions {
  // A learner that has not started (published its name) this long after berthd first saw it
  // is removed: its node died before starting etcd, and it would block every other join.
  std::chrono::seconds learner_timeout{600};
  std::chrono::milliseconds busy_interval{1000};  // while a learner is pending
  std::chrono::milliseconds idle_interval{5000};
  std::chrono::milliseconds max_backoff{30000};  // after errors, doubling from busy_interval
};

struct PromotionPass {
  std::vector<uint64_t> promoted;
  std::vector<uint64_t> removed;           // learners that never started, or of revoked nodes
  std::vector<std::string> marked_joined;  // node records moved to JOINED
  bool learner_pending = false;
};

// The promotion loop. RunOnce is one pass (tests call it directly); Start/Stop run it on a
// thread of its own every busy/idle interval, backing off after errors.
class Promoter {
 public:
  Promoter(Membership* membership, NodeStore* store, Clock* clock, PromoterOptions options = {});
  ~Promoter();

  Result<PromotionPass> RunOnce();

  void Start();
  void Stop();

 private:
  void Loop();

  Membership* membership_;
  NodeStore* store_;
  Clock* clock_;
  PromoterOptions options_;
  std::mutex mu_;                           // guards first_seen_ and stopping_
  std::map<uint64_t, int64_t> first_seen_;  // unstarted learners: when this berthd first saw them
  bool stopping_ = false;
  std::condition_variable wake_;
  std::thread thread_;
};

}  // namespace berth::server
