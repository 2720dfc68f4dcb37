// berthd's metrics for Prometheus, in the text exposition format (version 0.0.4), served on
// their own port (--metrics-listen; docs/lifecycle.md "Metrics" lists every series). No
// client library: Debian 12 has none for C++, and the format is a few lines.
//
//   berth_requests_total{call,outcome}        JoinService calls by outcome: granted, pending,
//                                             refused_policy, refused_bad_request,
//                                             refused_precondition, unauthenticated,
//                                             unavailable, conflict, internal
//   berth_request_duration_seconds{call}      histogram of the same calls' latency
//   berth_etcd_errors_total{method,code}      failed etcd calls
//   berth_kube_api_errors_total{method,code}  Kubernetes API answers >= 400 ("transport": none)
//   berth_policy_reloads_total{result}        ok, rejected
//   berth_sns_messages_total{type,outcome}    SNS deliveries by message type and outcome
//   berth_ec2_events_total{state,action}      EC2 state changes and what berthd did
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "common/etcd_client.h"
#include "common/status.h"
#include "server/cloud/kube_client.h"

namespace berth::server {

// Thread-safe.
class Metrics {
 public:
  Metrics();

  void CountRequest(std::string_view call, std::string_view outcome);
  void ObserveRequestSeconds(std::string_view call, double seconds);
  void CountEtcdError(std::string_view method, Code code);
  void CountKubeApiError(std::string_view method, std::string_view code);
  void CountPolicyReload(bool ok);
  void CountSnsMessage(std::string_view type, std::string_view outcome);
  void CountEc2Event(std::string_view state, std::string_view action);

  // Every series, families in a fixed order, series sorted by labels.
  std::string Exposition() const;

 private:
  struct Family {
    std::string help, type;
    std::map<std::string, double> counters;  // labels -> value
    struct Histogram {
      std::vector<uint64_t> buckets;  // cumulative at exposition; per-bucket here
      uint64_t count = 0;
      double sum = 0;
    };
    std::map<std::string, Histogram> histograms;
  };
  void Add(const std::string& family, const std::string& labels, double by);

  mutable std::mutex mu_;
  std::vector<std::string> order_;
  std::map<std::string, Family> families_;  // GUARDED_BY(mu_)
  std::vector<double> bounds_;
};

// The outcome label of a call that ended with `status` (`pending`: held for approval).
std::string_view RequestOutcome(const Status& status, bool pending);

// `{a="x",b="y"}` with values escaped as the format requires.
std::string Labels(std::initializer_list<std::pair<std::string_view, std::string_view>> labels);

// Decorators that count failures; they forward everything to `inner`, which outlives them.
std::unique_ptr<etcd::Client> MeteredEtcdClient(etcd::Client* inner, Metrics* metrics);
std::unique_ptr<KubeClient> MeteredKubeClient(KubeClient* inner, Metrics* metrics);

// Serves GET /metrics over plain HTTP on `listen` (host:port; port 0 picks one) until
// destroyed. Metrics carry no secrets; bind it to an address only Prometheus reaches.
class MetricsServer {
 public:
  static Result<std::unique_ptr<MetricsServer>> Start(const std::string& listen, Metrics* metrics);
  ~MetricsServer();
  int port() const { return port_; }

 private:
  MetricsServer() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace berth::server
