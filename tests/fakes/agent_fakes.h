// Fakes for the agent's injected dependencies (process runner, systemd notifier, berthd
// transport) and small helpers shared by the agent's unit tests. Not thread-safe: every fake
// is driven from the test's thread.
#pragma once

#include <sys/stat.h>

#include <chrono>
#include <deque>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "agent/agent.h"
#include "agent/join_client.h"
#include "berth/v1/berth.pb.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "common/subprocess.h"
#include "common/tpm/quote.h"

namespace berth::agent {

// A kubeadm stand-in. Records every argv and, while "running", what it finds at the path
// after --config (argv[3]): whether it is a regular file, its permission bits and content,
// and the permission bits of its directory. Then returns `result`.
class FakeProcessRunner : public ProcessRunner {
 public:
  struct SeenConfig {
    bool regular_file = false;
    mode_t mode = 0;
    mode_t dir_mode = 0;
    std::string content;
  };

  Result<ProcessResult> Run(const std::vector<std::string>& argv,
                            const std::vector<std::string>& env = {}) override {
    argvs.push_back(argv);
    envs.push_back(env);
    SeenConfig seen;
    if (argv.size() == 4) {
      const std::string& path = argv[3];
      struct stat st {};
      if (lstat(path.c_str(), &st) == 0) {
        seen.regular_file = S_ISREG(st.st_mode);
        seen.mode = st.st_mode & 07777;
        if (auto content = ReadFile(path); content.ok()) seen.content = *content;
      }
      struct stat dir {};
      if (lstat(path.substr(0, path.rfind('/')).c_str(), &dir) == 0) {
        seen.dir_mode = dir.st_mode & 07777;
      }
    }
    seen_configs.push_back(seen);
    if (on_run) on_run(argv);
    if (!script.empty()) {
      Result<ProcessResult> next = script.front();
      script.pop_front();
      return next;
    }
    return result;
  }

  // Answers in order, one per call while not empty; then `result`.
  std::deque<Result<ProcessResult>> script;
  Result<ProcessResult> result = ProcessResult{.exit_code = 0, .signal = 0, .output = ""};
  std::vector<std::vector<std::string>> argvs;
  std::vector<std::vector<std::string>> envs;
  std::vector<SeenConfig> seen_configs;
  // Called with each argv, while the program "runs".
  std::function<void(const std::vector<std::string>&)> on_run;
};

// systemd's view of the agent: every STATUS= and READY=1, in order.
class RecordingNotifier : public Notifier {
 public:
  void Status(const std::string& status) override { events.push_back("STATUS=" + status); }
  void Ready(const std::string& status) override {
    events.push_back("READY=1");
    events.push_back("STATUS=" + status);
  }
  int ready_count() const {
    int n = 0;
    for (const auto& e : events) n += e == "READY=1";
    return n;
  }
  std::vector<std::string> events;
};

// The berthd side of the fake transport. It outlives every FakeJoinTransport the agent makes
// (the agent owns its transport), records what they were asked, and answers from scripts:
// the front of `challenge_script` / `ticket_script` when not empty, otherwise a fresh nonce
// and `ticket`.
struct FakeBerthd {
  // The TLS identities the agent built its transports with, one per make_transport call.
  std::vector<std::string> client_cert_pems;
  std::vector<Bytes> client_spki_sha256s;
  // "Challenge@<endpoint>" / "IssueJoinTicket@<endpoint>" / "IssueRejoinTicket@<endpoint>".
  std::vector<std::string> calls;
  std::vector<v1::ChallengeRequest> challenge_requests;
  std::vector<v1::JoinRequest> join_requests;
  std::vector<std::string> nonces_issued;

  std::deque<Status> challenge_script;  // errors to return before issuing nonces
  std::deque<Result<v1::JoinTicket>> ticket_script;
  // berthd's "call again after" hint (kRetryAfterMetadata) sent with each scripted ticket
  // answer, in order; nullopt: none.
  std::deque<std::optional<std::chrono::milliseconds>> retry_after_script;
  std::optional<std::chrono::milliseconds> last_retry_after;
  v1::JoinTicket ticket;
  std::vector<v1::RejoinRequest> rejoin_requests;
  Result<v1::RejoinTicket> rejoin = Status(Code::kNotFound, "the fake berthd knows no nodes");

  // Nonce number n: 32 bytes, distinct per challenge.
  static std::string NonceFor(size_t n) {
    return ToString(Sha256(AsBytes("fake berthd nonce " + std::to_string(n))));
  }
};

class FakeJoinTransport : public JoinTransport {
 public:
  explicit FakeJoinTransport(FakeBerthd* berthd) : berthd_(berthd) {}

  Result<v1::ChallengeResponse> Challenge(const std::string& endpoint,
                                          const v1::ChallengeRequest& request) override {
    berthd_->calls.push_back("Challenge@" + endpoint);
    berthd_->challenge_requests.push_back(request);
    if (!berthd_->challenge_script.empty()) {
      Status st = berthd_->challenge_script.front();
      berthd_->challenge_script.pop_front();
      return st;
    }
    v1::ChallengeResponse response;
    response.set_nonce(FakeBerthd::NonceFor(berthd_->nonces_issued.size()));
    response.set_expires_unix(1'800'000'120);
    berthd_->nonces_issued.push_back(response.nonce());
    return response;
  }

  Result<v1::JoinTicket> IssueJoinTicket(const std::string& endpoint,
                                         const v1::JoinRequest& request) override {
    berthd_->calls.push_back("IssueJoinTicket@" + endpoint);
    berthd_->join_requests.push_back(request);
    berthd_->last_retry_after.reset();
    if (!berthd_->retry_after_script.empty()) {
      berthd_->last_retry_after = berthd_->retry_after_script.front();
      berthd_->retry_after_script.pop_front();
    }
    if (!berthd_->ticket_script.empty()) {
      Result<v1::JoinTicket> next = berthd_->ticket_script.front();
      berthd_->ticket_script.pop_front();
      return next;
    }
    return berthd_->ticket;
  }

  Result<v1::RejoinTicket> IssueRejoinTicket(const std::string& endpoint,
                                             const v1::RejoinRequest& request) override {
    berthd_->calls.push_back("IssueRejoinTicket@" + endpoint);
    berthd_->rejoin_requests.push_back(request);
    return berthd_->rejoin;
  }

  std::optional<std::chrono::milliseconds> TakeRetryAfter() override {
    auto out = berthd_->last_retry_after;
    berthd_->last_retry_after.reset();
    return out;
  }

 private:
  FakeBerthd* berthd_;
};

// sha256 PCRs [first, last].
inline v1::PcrSelection Sha256Range(uint32_t first, uint32_t last) {
  v1::PcrSelection s;
  s.set_bank(v1::HASH_ALGORITHM_SHA256);
  for (uint32_t i = first; i <= last; ++i) s.add_pcrs(i);
  return s;
}

// The PCR values an Evidence carries, in the form VerifyQuote takes.
inline Result<tpm::PcrValues> PcrValuesOf(const v1::TpmEvidence& evidence) {
  tpm::PcrValues out;
  for (const auto& bank : evidence.pcrs()) {
    BERTH_ASSIGN_OR_RETURN(DigestAlg alg,
                           tpm::DigestFromTpmAlg(static_cast<uint16_t>(bank.bank())));
    for (const auto& v : bank.values()) out[alg][v.index()] = ToBytes(v.digest());
  }
  return out;
}

// A well-formed kubeadm section of a join ticket.
inline v1::KubeadmJoin GoodKubeadmJoin() {
  v1::KubeadmJoin k;
  k.set_api_server_endpoint("10.0.0.10:6443");
  k.set_token("abcdef.0123456789abcdef");
  k.add_ca_cert_hashes("sha256:" + std::string(64, 'a'));
  return k;
}

}  // namespace berth::agent
