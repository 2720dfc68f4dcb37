// berthd's HTTPS endpoint for Amazon SNS (--sns-listen; docs/lifecycle.md "Cloud events"):
// what a verified message does. SnsHandler is the logic (no HTTP types); SnsEndpoint serves it
// with cpp-httplib on its own port.
//
// After sns.h's checks: the topic must be on the allow-list (403 otherwise); the MessageId is
// claimed in etcd (/berth/v1/sns/seen/<id>) so a replay is refused (409) on every replica; then
//   SubscriptionConfirmation: SubscribeURL must be https on an SNS host with this topic and
//     Action=ConfirmSubscription; berthd GETs it (confirming the subscription);
//   UnsubscribeConfirmation: logged;
//   Notification with an EventBridge "EC2 Instance State-change Notification" (source aws.ec2):
//     "running"    -> the instance is pre-authorized for one join (admission.h), when it has
//                     every --ec2-require-tag (asked from EC2, ec2_tags.h);
//     "terminated" -> its pre-authorization is deleted and every node that joined as that
//                     instance is revoked (server/nodes/admin.h: record, tokens, etcd member);
//     other states and other messages are acknowledged and ignored.
// A step that fails for a reason that may pass (etcd, the Kubernetes API) releases the
// MessageId and answers 503, so SNS delivers the message again.
#pragma once

#include <memory>
#include <string>

#include "common/clock.h"
#include "server/cloud/ec2_tags.h"
#include "server/cloud/sns.h"
#include "server/metrics.h"
#include "server/nodes/admin.h"
#include "server/nodes/store.h"

namespace berth::server {

struct SnsReply {
  int status = 200;
  std::string body;  // one line, for the log and the caller
};

// An EC2 state change as EventBridge delivers it (the SNS Message).
struct Ec2StateChange {
  std::string instance_id, state, region, account, time;
};
// NOT_FOUND when `message` is not an EC2 instance state-change event (other events are fine);
// INVALID_ARGUMENT when it claims to be one but is malformed.
Result<Ec2StateChange> ParseEc2StateChange(const std::string& message);

// Thread-safe; its collaborators outlive it.
class SnsHandler {
 public:
  SnsHandler(const SnsConfig& config, SnsVerifier* verifier, HttpsFetcher* fetcher,
             NodeStore* store, NodeAdmin* admin, Clock* clock, Metrics* metrics)
      : config_(config),
        verifier_(verifier),
        fetcher_(fetcher),
        store_(store),
        admin_(admin),
        clock_(clock),
        metrics_(metrics) {}

  // Where the tags of "running" instances come from when `config.required_tags` is set
  // (ec2_tags.h); it outlives the handler. Without one, such a configuration refuses every
  // instance (fail closed).
  void set_tag_source(Ec2TagSource* tags) { tags_ = tags; }

  // `type_header` is x-amz-sns-message-type (may be empty).
  SnsReply Handle(const std::string& type_header, const std::string& body);

 private:
  SnsReply Process(const SnsMessage& m);
  SnsReply OnEc2(const SnsMessage& m, const Ec2StateChange& event);

  SnsConfig config_;
  SnsVerifier* verifier_;
  HttpsFetcher* fetcher_;
  NodeStore* store_;
  NodeAdmin* admin_;
  Clock* clock_;
  Metrics* metrics_;
  Ec2TagSource* tags_ = nullptr;
};

class SnsEndpoint {
 public:
  // Serves POST (any path) over HTTPS with the files `config.tls_cert` and `config.tls_key`.
  static Result<std::unique_ptr<SnsEndpoint>> Start(const SnsConfig& config, NodeStore* store,
                                                    NodeAdmin* admin, Clock* clock,
                                                    Metrics* metrics);
  ~SnsEndpoint();
  int port() const { return port_; }

 private:
  SnsEndpoint() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace berth::server
