#include "agent/agent.h"

#include <spdlog/spdlog.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <cctype>

#include "agent/attestation.h"
#include "agent/kubeadm.h"
#include "common/binding.h"
#include "common/log.h"

namespace berth::agent {

void SdNotifier::Status(const std::string& status) {
  sd_notifyf(0, "STATUS=%s", status.c_str());
}
void SdNotifier::Ready() { sd_notify(0, "READY=1\nSTATUS=node joined"); }

AgentDeps RealAgentDeps() {
  static RealClock clock;
  static RealProcessRunner runner;
  static SdNotifier notifier;
  AgentDeps deps{&clock, &runner, &notifier, OpenEsysTpm, nullptr};
  deps.make_transport = [](const ClientIdentity& id, const v1::EnrolmentConfig& config) {
    return MakeGrpcJoinTransport(id, config.cluster_ca_pem(), config.tls_server_name(),
                                 std::chrono::seconds(30));
  };
  return deps;
}

Result<std::string> ResolveNodeName(const v1::EnrolmentConfig& config) {
  std::string name = config.node_name();
  if (name.empty()) {
    char host[256] = {0};
    if (gethostname(host, sizeof host - 1) != 0) return ErrnoStatus("gethostname");
    name = host;
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  if (!IsValidNodeName(name)) {
    return InvalidArgument("node name \"" + name + "\" is not a valid Kubernetes node name");
  }
  return name;
}

namespace {

enum class Step { kReadEnrolment, kOpenTpm, kRequestTicket, kKubeadmJoin };

std::string_view StepName(Step step) {
  switch (step) {
    case Step::kReadEnrolment: return "read-enrolment";
    case Step::kOpenTpm: return "open-tpm";
    case Step::kRequestTicket: return "request-ticket";
    case Step::kKubeadmJoin: return "kubeadm-join";
  }
  return "?";
}

// Runs one step: STATUS to systemd, one log line with the duration and the outcome.
template <typename Fn>
auto RunStep(Step step, Notifier& notifier, std::string_view status, Fn fn) {
  notifier.Status(std::string(status));
  int64_t start = MonotonicMillis();
  auto result = fn();
  int64_t ms = MonotonicMillis() - start;
  const Status& st = [&]() -> const Status& {
    if constexpr (std::is_same_v<decltype(result), Status>) {
      return result;
    } else {
      return result.status();
    }
  }();
  if (st.ok()) {
    spdlog::info("step={} result=ok duration_ms={}", StepName(step), ms);
  } else {
    spdlog::error("step={} result=failed duration_ms={} error=\"{}\"", StepName(step), ms,
                  st.ToString());
  }
  return result;
}

std::vector<v1::PcrSelection> Selection(const v1::EnrolmentConfig& config) {
  if (config.pcr_selection().empty()) return DefaultPcrSelection();
  return {config.pcr_selection().begin(), config.pcr_selection().end()};
}

struct Prepared {
  v1::EnrolmentConfig config;
  std::string node_name;
};

Result<Prepared> ReadEnrolment(const AgentOptions& options) {
  Prepared p;
  BERTH_ASSIGN_OR_RETURN(p.config,
                         LoadEnrolmentConfig(JoinRoot(options.root, options.enrolment_path)));
  if (p.config.attestation() != v1::ATTESTATION_KIND_TPM) {
    return InvalidArgument("reading enrolment config: it asks for attestation kind " +
                           v1::AttestationKind_Name(p.config.attestation()) +
                           ", which this agent does not provide");
  }
  if (p.config.has_state_disk()) {
    return InvalidArgument(
        "reading enrolment config: it names a state disk, which this agent does not manage");
  }
  auto name = ResolveNodeName(p.config);
  if (!name.ok()) return name.status().WithContext("reading enrolment config");
  p.node_name = std::move(*name);
  return p;
}

}  // namespace

Status RunAgent(const AgentOptions& options, AgentDeps& deps) {
  Notifier& notify = *deps.notifier;
  auto prepared = RunStep(Step::kReadEnrolment, notify, "reading EnrolmentConfig",
                          [&] { return ReadEnrolment(options); });
  if (!prepared.ok()) return prepared.status();
  const v1::EnrolmentConfig& config = prepared->config;
  const std::string& node = prepared->node_name;
  const auto selection = Selection(config);

  auto tpm = RunStep(Step::kOpenTpm, notify, "opening TPM",
                     [&] { return deps.open_tpm(options.tcti); });
  if (!tpm.ok()) return tpm.status().WithContext("opening TPM");
  BERTH_ASSIGN_OR_RETURN(Bytes ak_public, (*tpm)->AttestationKeyPublic());

  BERTH_ASSIGN_OR_RETURN(ClientIdentity identity, MakeClientIdentity(node));
  auto transport = deps.make_transport(identity, config);
  std::vector<std::string> endpoints(config.endpoints().begin(), config.endpoints().end());
  const std::string event_log = JoinRoot(options.root, kEventLogPath);

  // One attempt: a fresh challenge, evidence bound to it and to this boot's TLS key, the ticket.
  std::function<Result<v1::JoinTicket>(const std::string&)> attempt =
      [&](const std::string& endpoint) -> Result<v1::JoinTicket> {
    v1::ChallengeRequest challenge_request;
    challenge_request.set_ak_public(ToString(ak_public));
    BERTH_ASSIGN_OR_RETURN(v1::ChallengeResponse challenge,
                           transport->Challenge(endpoint, challenge_request));
    Bytes binding = ComputeBinding(AsBytes(challenge.nonce()), identity.spki_sha256);
    auto evidence = CollectTpmEvidence(**tpm, selection, binding, event_log);
    if (!evidence.ok()) return evidence.status().WithContext("collecting TPM evidence");
    v1::JoinRequest request;
    *request.mutable_evidence() = std::move(*evidence);
    request.set_nonce(challenge.nonce());
    request.set_node_name(node);
    request.set_role(config.role());
    return transport->IssueJoinTicket(endpoint, request);
  };
  auto on_retry = [&](const std::string& endpoint, const Status& st, std::chrono::milliseconds d) {
    spdlog::warn("join ticket from {} failed, retrying in {} ms: {}", endpoint, d.count(),
                 st.ToString());
    notify.Status("waiting for berthd (" + std::string(CodeName(st.code())) + " from " + endpoint +
                  ")");
  };
  auto ticket = RunStep(Step::kRequestTicket, notify, "requesting join ticket", [&] {
    return CallWithRetry<v1::JoinTicket>(endpoints, options.retry, *deps.clock, attempt, on_retry);
  });
  if (!ticket.ok()) {
    const Status& st = ticket.status();
    if (st.code() == Code::kPermissionDenied) {
      return st.WithContext("berthd refused this node's evidence; not retrying");
    }
    return st.WithContext("requesting join ticket");
  }
  // The disk key (none yet: diskless) and the token are secrets: scrub the proto on the way out.
  struct Scrub {
    v1::JoinTicket& t;
    ~Scrub() {
      WipeString(*t.mutable_disk_key());
      WipeString(*t.mutable_kubeadm()->mutable_token());
    }
  } scrub{*ticket};
  BERTH_RETURN_IF_ERROR(ValidateJoinTicket(*ticket, /*want_disk_key=*/false));

  Status joined = RunStep(Step::kKubeadmJoin, notify, "running kubeadm join", [&] {
    SecretBytes join_config = RenderJoinConfiguration(ticket->kubeadm(), node);
    return RunKubeadmJoin(*deps.runner, options.kubeadm, options.root, join_config);
  });
  if (!joined.ok()) return joined.WithContext("joining the cluster");
  notify.Ready();
  spdlog::info("node {} joined the cluster at {}", node, ticket->kubeadm().api_server_endpoint());
  return OkStatus();
}

Result<std::string> DescribeIdentity(const AgentOptions& options, AgentDeps& deps) {
  auto config = LoadEnrolmentConfig(JoinRoot(options.root, options.enrolment_path));
  std::vector<v1::PcrSelection> selection =
      config.ok() ? Selection(*config) : DefaultPcrSelection();
  std::string name = "node";
  if (config.ok()) {
    if (auto n = ResolveNodeName(*config); n.ok()) name = *n;
  }
  BERTH_ASSIGN_OR_RETURN(auto tpm, deps.open_tpm(options.tcti));
  BERTH_ASSIGN_OR_RETURN(Bytes ak_public, tpm->AttestationKeyPublic());
  BERTH_ASSIGN_OR_RETURN(TPMT_PUBLIC pub, tpm::ParsePublic(ak_public));
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, tpm::PublicToEvp(pub));
  BERTH_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToSpkiDer(key.get()));
  BERTH_ASSIGN_OR_RETURN(tpm::PcrValues pcrs, tpm->ReadPcrs(selection));
  std::string out = "# berthd policy for this node's TPM and its current boot state\ntpm:\n";
  out += "  trusted_aks:\n    - name: " + name + "\n";
  out += "      sha256: " + HexEncode(Sha256(spki)) + "\n  pcrs:\n";
  for (const auto& [bank, values] : pcrs) {
    out += "    " + std::string(DigestName(bank)) + ":\n";
    for (const auto& [index, value] : values) {
      out += "      " + std::to_string(index) + ": " + HexEncode(value) + "\n";
    }
  }
  return out;
}

}  // namespace berth::agent
