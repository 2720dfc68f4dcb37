#include "server/cloud/amd_kds.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>

#include "server/cloud/https.h"

namespace berth::server {

namespace {

class CurlKds : public verify::SnpKds {
 public:
  CurlKds(std::string base_url, std::chrono::milliseconds timeout)
      : base_(std::move(base_url)), https_(Options(timeout)) {
    while (!base_.empty() && base_.back() == '/') base_.pop_back();
  }

  Result<std::string> Get(const std::string& path) override {
    const std::string url = base_ + path;
    BERTH_ASSIGN_OR_RETURN(HttpsResponse r, https_.Send("GET", url));
    if (r.status == 200) return std::move(r.body);
    std::string what = "AMD KDS " + url + " answered " + std::to_string(r.status);
    if (r.status == 404) return NotFound(what);
    if (r.status == 429 || r.status >= 500) return Unavailable(what);
    return FailedPrecondition(what);
  }

 private:
  static HttpsOptions Options(std::chrono::milliseconds timeout) {
    HttpsOptions o;
    o.service = "AMD KDS";
    o.allow_plain_http = true;  // snp_service.cc allows http:// only for a loopback stand-in
    o.timeout_ms = static_cast<long>(timeout.count());
    o.max_body_bytes = 1 << 20;
    return o;
  }

  std::string base_;
  HttpsClient https_;
};

}  // namespace

std::unique_ptr<verify::SnpKds> MakeCurlKds(std::string base_url,
                                            std::chrono::milliseconds timeout) {
  return std::make_unique<CurlKds>(std::move(base_url), timeout);
}

Status CheckKdsUrl(const std::string& url) {
  auto refuse = [&](const std::string& why) {
    return InvalidArgument("--snp-kds-url " + url + ": " + why);
  };
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), curl_url_cleanup);
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return refuse("not a URL");
  }
  auto part = [&](CURLUPart which) {
    char* value = nullptr;
    std::string out;
    if (curl_url_get(u.get(), which, &value, 0) == CURLUE_OK && value != nullptr) out = value;
    curl_free(value);
    return out;
  };
  const std::string scheme = part(CURLUPART_SCHEME), host = part(CURLUPART_HOST);
  if (!part(CURLUPART_USER).empty() || !part(CURLUPART_PASSWORD).empty()) {
    return refuse("a KDS URL carries no user name or password");
  }
  if (host.empty()) return refuse("no host");
  if (scheme == "https") return OkStatus();
  if (scheme != "http") return refuse("must be https:// (plain http only for a loopback stand-in)");
  // Plain http only where nobody else can answer: a loopback address, or "localhost", which
  // libcurl resolves to loopback itself, never through DNS.
  in_addr v4{};
  in6_addr v6{};
  const bool loopback =
      host == "localhost" ||
      (inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127) ||
      (host.size() > 2 && host.front() == '[' && host.back() == ']' &&
       inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &v6) == 1 &&
       IN6_IS_ADDR_LOOPBACK(&v6));
  if (!loopback) {
    return refuse("must be https:// (plain http only for a loopback stand-in; host " + host +
                  " is not a loopback address)");
  }
  return OkStatus();
}

}  // namespace berth::server
