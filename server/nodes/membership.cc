#include "server/nodes/membership.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <functional>

#include "server/nodes/records.h"

namespace berth::server {

namespace {

std::string Describe(const Member& m) {
  std::string out = "etcd member " + etcd::MemberIdHex(m.id());
  if (!m.name().empty()) out += " (" + m.name() + ")";
  if (m.peerurls_size() > 0) out += " at " + m.peerurls(0);
  return out;
}

bool HasPeerUrl(const Member& m, const std::string& url) {
  return std::find(m.peerurls().begin(), m.peerurls().end(), url) != m.peerurls().end();
}

}  // namespace

std::vector<std::string> InitialClusterEntries(const Member& member,
                                               const std::string& name_if_unnamed) {
  std::vector<std::string> out;
  const std::string& name = member.name().empty() ? name_if_unnamed : member.name();
  if (name.empty()) return out;
  for (const auto& url : member.peerurls()) out.push_back(name + "=" + url);
  return out;
}

Result<std::vector<Member>> Membership::List() {
  BERTH_ASSIGN_OR_RETURN(etcdserverpb::MemberListResponse list, etcd_->MemberList());
  return std::vector<Member>(list.members().begin(), list.members().end());
}

Result<LearnerResult> Membership::EnsureLearner(
    const std::string& peer_url, const std::function<bool(const Member&)>& may_reuse) {
  // Twice at most: a concurrent add of the same URL by another replica makes etcd answer
  // ALREADY_EXISTS, and the second look finds that member.
  for (int attempt = 0; attempt < 2; ++attempt) {
    LearnerResult result;
    BERTH_ASSIGN_OR_RETURN(result.members, List());
    for (const auto& m : result.members) {
      if (!HasPeerUrl(m, peer_url)) continue;
      if (!may_reuse(m)) {
        return FailedPrecondition("peer URL " + peer_url + " is already " + Describe(m) +
                                  ", which belongs to another node; revoke that node first");
      }
      result.member = m;
      return result;
    }
    for (const auto& m : result.members) {
      if (m.islearner()) {
        return Unavailable("another control plane is joining: " + Describe(m) +
                           " is still an etcd learner, and etcd takes one learner at a time; "
                           "retry once it has been promoted");
      }
    }
    auto added = etcd_->MemberAdd({peer_url}, /*learner=*/true);
    if (added.ok()) {
      result.member = added->member();
      result.members.assign(added->members().begin(), added->members().end());
      result.added = true;
      spdlog::info("etcd: added learner {} for {}", etcd::MemberIdHex(result.member.id()),
                   peer_url);
      return result;
    }
    if (added.status().code() != Code::kAlreadyExists) {
      return added.status().WithContext("adding " + peer_url + " as an etcd learner");
    }
  }
  return Unavailable("etcd membership for " + peer_url + " changed twice while adding it; retry");
}

bool Membership::Answers(const Member& member) {
  if (member.clienturls_size() == 0) return false;
  return etcd_->Status(member.clienturls(0)).ok();
}

Status Membership::Promote(uint64_t id) {
  BERTH_ASSIGN_OR_RETURN(std::vector<Member> members, List());
  auto it =
      std::find_if(members.begin(), members.end(), [&](const Member& m) { return m.id() == id; });
  if (it == members.end()) return NotFound("etcd member " + etcd::MemberIdHex(id) + " not found");
  if (!it->islearner()) return OkStatus();  // promoted already (by another replica)
  if (it->name().empty()) return Unavailable(Describe(*it) + " has not started yet");
  if (!Answers(*it)) return Unavailable(Describe(*it) + " does not answer at its client URL yet");
  int voters = 0, healthy = 0;
  for (const auto& m : members) {
    if (m.islearner()) continue;
    ++voters;
    if (Answers(m)) ++healthy;
  }
  const int after = voters + 1, quorum = after / 2 + 1;
  if (healthy + 1 < quorum) {
    return FailedPrecondition("promoting " + Describe(*it) + " would make " +
                              std::to_string(after) + " voters needing " + std::to_string(quorum) +
                              " healthy, but only " + std::to_string(healthy) + " of " +
                              std::to_string(voters) + " voters and the learner answer");
  }
  auto promoted = etcd_->MemberPromote(id);
  if (!promoted.ok()) {
    // Another replica may have promoted it between our look and our call.
    if (promoted.status().code() == Code::kFailedPrecondition) {
      BERTH_ASSIGN_OR_RETURN(std::vector<Member> now, List());
      for (const auto& m : now) {
        if (m.id() == id && !m.islearner()) return OkStatus();
      }
    }
    return promoted.status();
  }
  spdlog::info("etcd: promoted {} to a voting member ({} voters now)", Describe(*it), after);
  return OkStatus();
}

Status Membership::Remove(uint64_t id) {
  BERTH_ASSIGN_OR_RETURN(std::vector<Member> members, List());
  auto it =
      std::find_if(members.begin(), members.end(), [&](const Member& m) { return m.id() == id; });
  if (it == members.end()) return NotFound("etcd member " + etcd::MemberIdHex(id) + " not found");
  if (!it->islearner()) {
    int remaining = 0, healthy = 0;
    for (const auto& m : members) {
      if (m.islearner() || m.id() == id) continue;
      ++remaining;
      if (Answers(m)) ++healthy;
    }
    if (remaining == 0) {
      return FailedPrecondition(Describe(*it) +
                                " is the last voting member; removing it would "
                                "end the cluster");
    }
    const int quorum = remaining / 2 + 1;
    if (healthy < quorum) {
      return FailedPrecondition("removing " + Describe(*it) + " would leave " +
                                std::to_string(remaining) + " voters needing " +
                                std::to_string(quorum) + " healthy, but only " +
                                std::to_string(healthy) + " answer; bring members back first");
    }
  }
  auto removed = etcd_->MemberRemove(id);
  if (!removed.ok()) return removed.status();
  spdlog::info("etcd: removed {}", Describe(*it));
  return OkStatus();
}

Promoter::Promoter(Membership* membership, NodeStore* store, Clock* clock, PromoterOptions options)
    : membership_(membership), store_(store), clock_(clock), options_(options) {}

Promoter::~Promoter() { Stop(); }

Result<PromotionPass> Promoter::RunOnce() {
  PromotionPass pass;
  BERTH_ASSIGN_OR_RETURN(std::vector<Member> members, membership_->List());
  // Only records with an etcd peer URL matter below.
  BERTH_ASSIGN_OR_RETURN(std::vector<StoredNode> records, store_->ListMayNameEtcdMembers());
  auto record_for = [&](const Member& m) -> const StoredNode* {
    for (const auto& r : records) {
      if (!r.record.etcd_peer_url().empty() && HasPeerUrl(m, r.record.etcd_peer_url())) return &r;
    }
    return nullptr;
  };
  const int64_t now = clock_->NowUnix();
  std::map<uint64_t, int64_t> seen;
  for (const auto& m : members) {
    if (!m.islearner()) continue;
    const StoredNode* rec = record_for(m);
    if (rec != nullptr && rec->record.state() == v1::NODE_STATE_REVOKED) {
      // Never promote a revoked node; a learner is always safe to remove.
      Status st = membership_->Remove(m.id());
      if (st.ok() || st.code() == Code::kNotFound) {
        pass.removed.push_back(m.id());
      } else {
        spdlog::warn("etcd: removing the learner of revoked node {}: {}", rec->record.name(),
                     st.ToString());
        pass.learner_pending = true;
      }
      continue;
    }
    if (m.name().empty()) {
      int64_t added_at;
      {
        std::lock_guard<std::mutex> lock(mu_);
        auto it = first_seen_.find(m.id());
        added_at = it == first_seen_.end() ? now : it->second;
      }
      if (rec != nullptr && rec->record.etcd_member_id() == m.id() &&
          rec->record.etcd_learner_added_unix() > 0) {
        added_at = std::min(added_at, rec->record.etcd_learner_added_unix());
      }
      seen[m.id()] = added_at;
      if (now - added_at >= options_.learner_timeout.count()) {
        spdlog::warn(
            "etcd: learner {} ({}) has not started in {} s; removing it so other "
            "control planes can join",
            etcd::MemberIdHex(m.id()), m.peerurls_size() ? m.peerurls(0) : "?", now - added_at);
        Status st = membership_->Remove(m.id());
        if (st.ok() || st.code() == Code::kNotFound) {
          pass.removed.push_back(m.id());
          continue;
        }
        spdlog::warn("etcd: removing learner {}: {}", etcd::MemberIdHex(m.id()), st.ToString());
      }
      pass.learner_pending = true;
      continue;
    }
    Status st = membership_->Promote(m.id());
    if (st.ok()) {
      pass.promoted.push_back(m.id());
    } else {
      if (st.code() != Code::kUnavailable) {
        spdlog::warn("etcd: promoting learner {}: {}", etcd::MemberIdHex(m.id()), st.ToString());
      } else {
        spdlog::debug("etcd: learner {} not ready: {}", etcd::MemberIdHex(m.id()), st.ToString());
      }
      pass.learner_pending = true;
    }
  }
  {
    std::lock_guard<std::mutex> lock(mu_);
    first_seen_ = std::move(seen);
  }
  if (!pass.promoted.empty() || !pass.removed.empty()) {
    BERTH_ASSIGN_OR_RETURN(members, membership_->List());
  }
  // Control planes whose learner is a voter now (promoted here, by another replica, or before
  // their record was written) are JOINED.
  for (const auto& stored : records) {
    const v1::NodeRecord& r = stored.record;
    if (r.state() != v1::NODE_STATE_JOINING || r.etcd_peer_url().empty()) continue;
    for (const auto& m : members) {
      if (m.islearner() || !HasPeerUrl(m, r.etcd_peer_url())) continue;
      NodeCommit commit{.record = ApplyPromoted(r, m.id()),
                        .expected_mod_revision = stored.mod_revision};
      Status st = store_->Commit(commit);
      if (st.ok()) {
        pass.marked_joined.push_back(r.name());
        spdlog::info("node {} is a voting etcd member ({}); record state joined", r.name(),
                     etcd::MemberIdHex(m.id()));
      } else if (st.code() != Code::kAborted) {
        return st.WithContext("recording node " + r.name() + " as joined");
      }
    }
  }
  return pass;
}

void Promoter::Start() {
  std::lock_guard<std::mutex> lock(mu_);
  if (thread_.joinable()) return;
  stopping_ = false;
  thread_ = std::thread([this] { Loop(); });
}

void Promoter::Stop() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void Promoter::Loop() {
  std::chrono::milliseconds backoff = options_.busy_interval;
  for (;;) {
    auto pass = RunOnce();
    std::chrono::milliseconds wait;
    if (!pass.ok()) {
      spdlog::warn("etcd promotion pass failed, next in {} ms: {}", backoff.count(),
                   pass.status().ToString());
      wait = backoff;
      backoff = std::min(backoff * 2, options_.max_backoff);
    } else {
      backoff = options_.busy_interval;
      wait = pass->learner_pending ? options_.busy_interval : options_.idle_interval;
    }
    std::unique_lock<std::mutex> lock(mu_);
    if (wake_.wait_for(lock, wait, [this] { return stopping_; })) return;
  }
}

}  // namespace berth::server
