#include "server/nodes/sns_endpoint.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>
#include <thread>

#include "common/audit.h"
#include "common/bytes.h"
#include "common/time.h"
#include "server/nodes/admission.h"

namespace berth::server {

namespace {

// The HTTP status berthd answers SNS with, as the code of the audit line's refusal.
Status ReplyStatus(const SnsReply& r) {
  switch (r.status) {
    case 400: return InvalidArgument(r.body);
    case 403: return PermissionDenied(r.body);
    case 409: return AlreadyExists(r.body);
    case 503: return Unavailable(r.body);
    default: return r.status < 300 ? OkStatus() : Internal(r.body);
  }
}

// Everything in an SNS message is the sender's word until its signature verified: each field
// goes through the audit line's escaping (server/audit.h), and the reply is berthd's own text.
void Audit(const SnsMessage& m, const SnsReply& r, const std::string& details) {
  AuditLine line("SnsMessage");
  line.Add("type", m.type).Add("message_id", m.message_id).Add("topic", m.topic_arn);
  if (r.status >= 300) line.Add("status", std::to_string(r.status));
  line.Fields(details).Log(ReplyStatus(r), "accepted", "refused");
}

}  // namespace

Result<Ec2StateChange> ParseEc2StateChange(const std::string& message) {
  auto j = nlohmann::json::parse(message, nullptr, false);
  if (j.is_discarded() || !j.is_object() ||
      j.value("detail-type", "") != "EC2 Instance State-change Notification") {
    return NotFound("not an EC2 instance state-change event");
  }
  if (j.value("source", "") != "aws.ec2") {
    return InvalidArgument("an EC2 state-change event whose source is not aws.ec2");
  }
  if (!j.contains("detail") || !j["detail"].is_object()) {
    return InvalidArgument("the EC2 event has no detail");
  }
  Ec2StateChange e;
  e.instance_id = j["detail"].value("instance-id", "");
  e.state = j["detail"].value("state", "");
  e.region = j.value("region", "");
  e.account = j.value("account", "");
  e.time = j.value("time", "");
  if (!IsValidEc2InstanceId(e.instance_id)) {
    return InvalidArgument("the EC2 event's detail.instance-id \"" + e.instance_id +
                           "\" is not an instance ID");
  }
  if (e.state.empty()) return InvalidArgument("the EC2 event has no detail.state");
  return e;
}

SnsReply SnsHandler::Handle(const std::string& type_header, const std::string& body) {
  auto parsed = ParseSnsMessage(body);
  if (!parsed.ok()) {
    metrics_->CountSnsMessage("unknown", "malformed");
    AuditLine("SnsMessage").Add("status", "400").Log(parsed.status(), "accepted", "refused");
    return {400, parsed.status().message()};
  }
  const SnsMessage& m = *parsed;
  auto refuse = [&](int status, const std::string& why, std::string_view outcome) {
    SnsReply r{status, why};
    metrics_->CountSnsMessage(m.type, outcome);
    Audit(m, r, "");
    return r;
  };
  if (!type_header.empty() && type_header != m.type) {
    return refuse(400,
                  "x-amz-sns-message-type " + type_header + " is not the message's Type " + m.type,
                  "malformed");
  }
  if (std::find(config_.topic_arns.begin(), config_.topic_arns.end(), m.topic_arn) ==
      config_.topic_arns.end()) {
    return refuse(403, "topic " + m.topic_arn + " is not on the allow-list", "refused_topic");
  }
  if (Status st = verifier_->Verify(m); !st.ok()) {
    if (st.code() == Code::kUnavailable) return refuse(503, st.message(), "unavailable");
    return refuse(403, st.message(), "refused_signature");
  }
  // Replay protection, shared by every replica.
  v1::SnsSeenMessage seen;
  seen.set_message_id(m.message_id);
  seen.set_type(m.type);
  seen.set_topic_arn(m.topic_arn);
  seen.set_timestamp_unix(m.timestamp_unix);
  seen.set_seen_unix(clock_->NowUnix());
  const std::string seen_key = "sns/seen/" + HexEncode(Sha256(AsBytes(m.message_id)));
  Status claimed = store_->PutIfAbsent(seen_key, RecordToJson(seen));
  if (claimed.code() == Code::kAlreadyExists) {
    return refuse(409, "message " + m.message_id + " was already processed (a replay)",
                  "refused_replay");
  }
  if (!claimed.ok()) return refuse(503, claimed.message(), "unavailable");
  SnsReply reply = Process(m);
  if (reply.status >= 500) (void)store_->DeleteValue(seen_key);  // SNS delivers it again
  return reply;
}

SnsReply SnsHandler::Process(const SnsMessage& m) {
  auto done = [&](SnsReply r, std::string_view outcome, const std::string& details) {
    metrics_->CountSnsMessage(m.type, outcome);
    Audit(m, r, details);
    return r;
  };
  if (m.type == "SubscriptionConfirmation") {
    if (Status st = verifier_->CheckUrl(m.subscribe_url, "SubscribeURL"); !st.ok()) {
      return done({403, st.message()}, "refused_url", "");
    }
    auto url = ParseUrl(m.subscribe_url);
    if (QueryValue(url->query, "Action") != "ConfirmSubscription" ||
        QueryValue(url->query, "TopicArn") != m.topic_arn) {
      return done({403, "SubscribeURL does not confirm a subscription to " + m.topic_arn},
                  "refused_url", "");
    }
    auto confirmed = fetcher_->Get(m.subscribe_url);
    if (!confirmed.ok()) return done({503, confirmed.status().message()}, "unavailable", "");
    return done({200, "subscription to " + m.topic_arn + " confirmed"}, "confirmed",
                "action=subscription-confirmed");
  }
  if (m.type == "UnsubscribeConfirmation") {
    return done({200, "unsubscribed from " + m.topic_arn}, "accepted", "action=unsubscribed");
  }
  auto event = ParseEc2StateChange(m.message);
  if (event.status().code() == Code::kNotFound) {
    return done({200, "not an EC2 state change; ignored"}, "ignored", "action=ignored");
  }
  if (!event.ok()) return done({400, event.status().message()}, "malformed", "");
  return OnEc2(m, *event);
}

SnsReply SnsHandler::OnEc2(const SnsMessage& m, const Ec2StateChange& e) {
  auto done = [&](SnsReply r, std::string_view action, const std::string& details) {
    metrics_->CountSnsMessage(m.type, r.status < 300 ? "accepted" : "failed");
    metrics_->CountEc2Event(e.state, action);
    Audit(m, r,
          "ec2_instance=" + AuditValue(e.instance_id) + " state=" + AuditValue(e.state) +
              " action=" + std::string(action) + details);
    return r;
  };
  const std::string key = Ec2PreauthorizationKey(e.instance_id);
  if (e.state == "running") {
    v1::SnsEc2Preauthorization p;
    if (!config_.required_tags.empty()) {
      if (tags_ == nullptr) {
        return done({500, "instance tags are required and this berthd cannot ask EC2 for them"},
                    "failed", "");
      }
      auto tags = tags_->Tags(e.region, e.instance_id);
      if (!tags.ok()) return done({503, tags.status().message()}, "failed", "");
      for (const auto& [key, want] : config_.required_tags) {
        auto it = tags->find(key);
        if (it == tags->end() || it->second != want) {
          return done({200, "instance " + e.instance_id + " is not pre-authorized: its tag " + key +
                                (it == tags->end() ? " is missing" : " is \"" + it->second + "\"") +
                                ", not \"" + want + "\""},
                      "filtered", " tag=" + key);
        }
      }
      for (const auto& [key, value] : *tags) (*p.mutable_tags())[key] = value;
    }
    p.set_version(1);
    p.set_instance_id(e.instance_id);
    p.set_region(e.region);
    p.set_account(e.account);
    p.set_topic_arn(m.topic_arn);
    p.set_message_id(m.message_id);
    p.set_authorized_unix(clock_->NowUnix());
    p.set_expires_unix(clock_->NowUnix() + config_.preauth_ttl.count());
    // Each "running" event authorizes one join (a stopped and started instance gets another).
    auto current = store_->GetValue(key);
    Status st = current.ok() ? store_->PutGuarded(GuardedPut{
                                   key, *current ? (*current)->mod_revision : 0, RecordToJson(p)})
                             : current.status();
    if (!st.ok()) return done({503, st.message()}, "failed", "");
    return done({200, "instance " + e.instance_id + " pre-authorized for one join until " +
                          Rfc3339(p.expires_unix())},
                "preauthorized", " expires=" + Rfc3339(p.expires_unix()));
  }
  if (e.state == "terminated") {
    if (Status st = store_->DeleteValue(key); !st.ok())
      return done({503, st.message()}, "failed", "");
    auto nodes = store_->List();
    if (!nodes.ok()) return done({503, nodes.status().message()}, "failed", "");
    std::string revoked;
    const std::string by = "sns " + m.topic_arn + " message " + m.message_id;
    for (const auto& n : *nodes) {
      if (n.record.ec2_instance_id() != e.instance_id) continue;
      auto r = admin_->RevokeNode(n.record.name(), by);
      if (!r.ok()) {
        // Revoked as far as it went; revoking again (the retry) completes it.
        int status = IsRetryable(r.status()) ? 503 : 500;
        return done({status, r.status().message()}, "failed", "");
      }
      revoked += (revoked.empty() ? "" : ",") + n.record.name();
    }
    return done({200, "instance " + e.instance_id +
                          " terminated; revoked: " + (revoked.empty() ? "-" : revoked)},
                "revoked", " nodes=" + (revoked.empty() ? std::string("-") : revoked));
  }
  return done({200, "EC2 state " + e.state + " needs nothing"}, "ignored", "");
}

struct SnsEndpoint::Impl {
  std::unique_ptr<HttpsFetcher> fetcher;
  std::unique_ptr<SnsVerifier> verifier;
  std::unique_ptr<Ec2TagSource> tags;
  std::unique_ptr<SnsHandler> handler;
  std::unique_ptr<httplib::SSLServer> server;
  std::thread thread;
  std::string cert_file, key_file;
};

Result<std::unique_ptr<SnsEndpoint>> SnsEndpoint::Start(const SnsConfig& config, NodeStore* store,
                                                        NodeAdmin* admin, Clock* clock,
                                                        Metrics* metrics) {
  if (config.topic_arns.empty()) {
    return InvalidArgument("--sns-listen needs --sns-topic-arn (the topics berthd accepts)");
  }
  std::unique_ptr<SnsEndpoint> e(new SnsEndpoint());
  e->impl_ = std::make_unique<Impl>();
  Impl& impl = *e->impl_;
  impl.fetcher = MakeCurlHttpsFetcher(config.fetch_ca);
  BERTH_ASSIGN_OR_RETURN(impl.verifier, SnsVerifier::Create(config, impl.fetcher.get(), clock));
  impl.handler = std::make_unique<SnsHandler>(config, impl.verifier.get(), impl.fetcher.get(),
                                              store, admin, clock, metrics);
  if (!config.required_tags.empty()) {
    BERTH_ASSIGN_OR_RETURN(AwsCredentials credentials, AwsCredentialsFromEnvironment());
    impl.tags = MakeEc2TagSource(std::move(credentials), config.ec2_endpoint, impl.fetcher.get(),
                                 clock);
    impl.handler->set_tag_source(impl.tags.get());
  }
  impl.server =
      std::make_unique<httplib::SSLServer>(config.tls_cert.c_str(), config.tls_key.c_str());
  if (!impl.server->is_valid()) {
    return InvalidArgument("the SNS endpoint cannot use " + config.tls_cert + " / " +
                           config.tls_key);
  }
  SnsHandler* handler = impl.handler.get();
  impl.server->set_payload_max_length(256 << 10);  // SNS messages are at most 256 KiB
  // httplib writes a response's headers and body separately and leaves Nagle's algorithm on:
  // without this the body waits for the client's delayed ACK of the headers (40 ms on Linux).
  impl.server->set_tcp_nodelay(true);
  impl.server->Post(".*", [handler](const httplib::Request& req, httplib::Response& res) {
    SnsReply r = handler->Handle(req.get_header_value("x-amz-sns-message-type"), req.body);
    res.status = r.status;
    res.set_content(r.body + "\n", "text/plain");
  });
  const size_t colon = config.listen.rfind(':');
  if (colon == std::string::npos) return InvalidArgument("--sns-listen is not host:port");
  std::string host = config.listen.substr(0, colon);
  int port = std::atoi(config.listen.c_str() + colon + 1);
  e->port_ = port == 0 ? impl.server->bind_to_any_port(host)
                       : (impl.server->bind_to_port(host, port) ? port : -1);
  if (e->port_ <= 0) return Unavailable("cannot listen on --sns-listen " + config.listen);
  httplib::SSLServer* server = impl.server.get();
  impl.thread = std::thread([server] { server->listen_after_bind(); });
  if (!config.port_file.empty()) {
    BERTH_RETURN_IF_ERROR(WriteFileAtomic(config.port_file, std::to_string(e->port_) + "\n", 0644));
  }
  spdlog::info("SNS endpoint on https://{}:{} for {} topic(s), SignatureVersion >= {}", host,
               e->port_, config.topic_arns.size(), config.min_signature_version);
  return e;
}

SnsEndpoint::~SnsEndpoint() {
  if (!impl_) return;
  if (impl_->server) impl_->server->stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace berth::server
