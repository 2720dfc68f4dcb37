#include "server/cloud/amd_kds.h"

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

}  // namespace berth::server
