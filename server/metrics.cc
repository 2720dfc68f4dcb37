#include "server/metrics.h"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <cmath>
#include <sstream>
#include <thread>

namespace berth::server {

namespace {

std::string Escape(std::string_view v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

std::string Number(double v) {
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::floor(v) && std::fabs(v) < 1e15) return std::to_string(static_cast<int64_t>(v));
  std::ostringstream out;
  out.precision(9);
  out << v;
  return out.str();
}

// "le" added to a label set: {a="x"} -> {a="x",le="0.1"}.
std::string WithLe(const std::string& labels, const std::string& le) {
  if (labels.empty()) return "{le=\"" + le + "\"}";
  return labels.substr(0, labels.size() - 1) + ",le=\"" + le + "\"}";
}

}  // namespace

std::string Labels(std::initializer_list<std::pair<std::string_view, std::string_view>> labels) {
  std::string out = "{";
  for (const auto& [k, v] : labels) {
    if (out.size() > 1) out += ",";
    out += std::string(k) + "=\"" + Escape(v) + "\"";
  }
  return out + "}";
}

std::string_view RequestOutcome(const Status& status, bool pending) {
  if (pending) return "pending";
  switch (status.code()) {
    case Code::kOk:
      return "granted";
    case Code::kPermissionDenied:
      return "refused_policy";
    case Code::kInvalidArgument:
      return "refused_bad_request";
    case Code::kFailedPrecondition:
    case Code::kNotFound:
      return "refused_precondition";
    case Code::kUnauthenticated:
      return "unauthenticated";
    case Code::kUnavailable:
    case Code::kDeadlineExceeded:
    case Code::kResourceExhausted:
      return "unavailable";
    case Code::kAborted:
      return "conflict";
    default:
      return "internal";
  }
}

Metrics::Metrics() : bounds_{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30} {
  auto family = [&](const std::string& name, const std::string& type, const std::string& help) {
    order_.push_back(name);
    families_[name] = Family{help, type, {}, {}};
  };
  family("berth_requests_total", "counter", "JoinService calls by call and outcome.");
  family("berth_request_duration_seconds", "histogram", "JoinService call latency.");
  family("berth_etcd_errors_total", "counter", "Failed etcd calls by method and code.");
  family("berth_kube_api_errors_total", "counter",
         "Kubernetes API errors by method and HTTP status (transport: no answer).");
  family("berth_policy_reloads_total", "counter", "Policy reloads by result.");
  family("berth_sns_messages_total", "counter", "Amazon SNS deliveries by type and outcome.");
  family("berth_ec2_events_total", "counter", "EC2 instance state changes by state and action.");
}

void Metrics::Add(const std::string& family, const std::string& labels, double by) {
  std::lock_guard<std::mutex> lock(mu_);
  families_[family].counters[labels] += by;
}

void Metrics::CountRequest(std::string_view call, std::string_view outcome) {
  Add("berth_requests_total", Labels({{"call", call}, {"outcome", outcome}}), 1);
}

void Metrics::ObserveRequestSeconds(std::string_view call, double seconds) {
  std::lock_guard<std::mutex> lock(mu_);
  auto& h = families_["berth_request_duration_seconds"].histograms[Labels({{"call", call}})];
  if (h.buckets.empty()) h.buckets.assign(bounds_.size(), 0);
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (seconds <= bounds_[i]) {
      h.buckets[i]++;
      break;
    }
  }
  h.count++;
  h.sum += seconds;
}

void Metrics::CountEtcdError(std::string_view method, Code code) {
  Add("berth_etcd_errors_total", Labels({{"method", method}, {"code", CodeName(code)}}), 1);
}

void Metrics::CountKubeApiError(std::string_view method, std::string_view code) {
  Add("berth_kube_api_errors_total", Labels({{"method", method}, {"code", code}}), 1);
}

void Metrics::CountPolicyReload(bool ok) {
  Add("berth_policy_reloads_total", Labels({{"result", ok ? "ok" : "rejected"}}), 1);
}

void Metrics::CountSnsMessage(std::string_view type, std::string_view outcome) {
  Add("berth_sns_messages_total", Labels({{"type", type}, {"outcome", outcome}}), 1);
}

void Metrics::CountEc2Event(std::string_view state, std::string_view action) {
  Add("berth_ec2_events_total", Labels({{"state", state}, {"action", action}}), 1);
}

std::string Metrics::Exposition() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  for (const std::string& name : order_) {
    const Family& f = families_.at(name);
    out += "# HELP " + name + " " + f.help + "\n# TYPE " + name + " " + f.type + "\n";
    for (const auto& [labels, value] : f.counters)
      out += name + labels + " " + Number(value) + "\n";
    for (const auto& [labels, h] : f.histograms) {
      uint64_t cumulative = 0;
      for (size_t i = 0; i < bounds_.size(); ++i) {
        cumulative += h.buckets[i];
        out += name + "_bucket" + WithLe(labels, Number(bounds_[i])) + " " +
               std::to_string(cumulative) + "\n";
      }
      out += name + "_bucket" + WithLe(labels, "+Inf") + " " + std::to_string(h.count) + "\n";
      out += name + "_sum" + labels + " " + Number(h.sum) + "\n";
      out += name + "_count" + labels + " " + std::to_string(h.count) + "\n";
    }
  }
  return out;
}

namespace {

class MeteredEtcd : public etcd::Client {
 public:
  MeteredEtcd(etcd::Client* inner, Metrics* metrics) : inner_(inner), metrics_(metrics) {}

  template <typename T>
  T Count(std::string_view method, T result) {
    if (!result.ok()) metrics_->CountEtcdError(method, result.status().code());
    return result;
  }

  Result<etcdserverpb::RangeResponse> Range(const etcdserverpb::RangeRequest& r) override {
    return Count("Range", inner_->Range(r));
  }
  Result<etcdserverpb::PutResponse> Put(const etcdserverpb::PutRequest& r) override {
    return Count("Put", inner_->Put(r));
  }
  Result<etcdserverpb::DeleteRangeResponse> DeleteRange(
      const etcdserverpb::DeleteRangeRequest& r) override {
    return Count("DeleteRange", inner_->DeleteRange(r));
  }
  Result<etcdserverpb::TxnResponse> Txn(const etcdserverpb::TxnRequest& r) override {
    return Count("Txn", inner_->Txn(r));
  }
  Result<etcdserverpb::MemberListResponse> MemberList() override {
    return Count("MemberList", inner_->MemberList());
  }
  Result<etcdserverpb::MemberAddResponse> MemberAdd(const std::vector<std::string>& urls,
                                                    bool learner) override {
    return Count("MemberAdd", inner_->MemberAdd(urls, learner));
  }
  Result<etcdserverpb::MemberRemoveResponse> MemberRemove(uint64_t id) override {
    return Count("MemberRemove", inner_->MemberRemove(id));
  }
  Result<etcdserverpb::MemberPromoteResponse> MemberPromote(uint64_t id) override {
    return Count("MemberPromote", inner_->MemberPromote(id));
  }
  Result<etcdserverpb::StatusResponse> Status(const std::string& endpoint) override {
    return Count("Status", inner_->Status(endpoint));
  }

 private:
  etcd::Client* inner_;
  Metrics* metrics_;
};

class MeteredKube : public KubeClient {
 public:
  MeteredKube(KubeClient* inner, Metrics* metrics) : inner_(inner), metrics_(metrics) {}
  Result<HttpResponse> Request(const std::string& method, const std::string& path,
                               const std::string& json_body) override {
    auto r = inner_->Request(method, path, json_body);
    if (!r.ok()) {
      metrics_->CountKubeApiError(method, "transport");
    } else if (r->status >= 400) {
      metrics_->CountKubeApiError(method, std::to_string(r->status));
    }
    return r;
  }

 private:
  KubeClient* inner_;
  Metrics* metrics_;
};

}  // namespace

std::unique_ptr<etcd::Client> MeteredEtcdClient(etcd::Client* inner, Metrics* metrics) {
  return std::make_unique<MeteredEtcd>(inner, metrics);
}

std::unique_ptr<KubeClient> MeteredKubeClient(KubeClient* inner, Metrics* metrics) {
  return std::make_unique<MeteredKube>(inner, metrics);
}

struct MetricsServer::Impl {
  httplib::Server server;
  std::thread thread;
};

Result<std::unique_ptr<MetricsServer>> MetricsServer::Start(const std::string& listen,
                                                            Metrics* metrics) {
  const size_t colon = listen.rfind(':');
  if (colon == std::string::npos)
    return InvalidArgument("--metrics-listen " + listen + " is not host:port");
  std::string host = listen.substr(0, colon);
  if (host.size() > 1 && host.front() == '[') host = host.substr(1, host.size() - 2);
  int port = std::atoi(listen.c_str() + colon + 1);
  std::unique_ptr<MetricsServer> s(new MetricsServer());
  s->impl_ = std::make_unique<Impl>();
  // httplib writes a response's headers and body separately and leaves Nagle's algorithm on:
  // without this every scrape's body waits for the scraper's delayed ACK (40 ms on Linux).
  // A call, not the CPPHTTPLIB_TCP_NODELAY macro: Debian builds httplib as a shared library,
  // whose constructors set the default the library was compiled with (checked with strace).
  s->impl_->server.set_tcp_nodelay(true);
  s->impl_->server.Get("/metrics", [metrics](const httplib::Request&, httplib::Response& res) {
    res.set_content(metrics->Exposition(), "text/plain; version=0.0.4; charset=utf-8");
  });
  s->port_ = port == 0 ? s->impl_->server.bind_to_any_port(host)
                       : (s->impl_->server.bind_to_port(host, port) ? port : -1);
  if (s->port_ <= 0) return Unavailable("cannot listen on --metrics-listen " + listen);
  Impl* impl = s->impl_.get();
  s->impl_->thread = std::thread([impl] { impl->server.listen_after_bind(); });
  spdlog::info("metrics on http://{}:{}/metrics", host, s->port_);
  return s;
}

MetricsServer::~MetricsServer() {
  if (!impl_) return;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

}  // namespace berth::server
