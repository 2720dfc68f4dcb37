#include "agent/ec2_identity.h"

#include <curl/curl.h>
#include <openssl/evp.h>

#include <mutex>

namespace berth::agent {

namespace {

constexpr char kTokenPath[] = "/latest/api/token";
constexpr char kDocumentPath[] = "/latest/dynamic/instance-identity/document";
constexpr char kSignaturePath[] = "/latest/dynamic/instance-identity/rsa2048";

size_t Collect(char* data, size_t size, size_t n, void* out) {
  auto* body = static_cast<std::string*>(out);
  if (body->size() + size * n > (64 << 10)) return 0;  // far more than IMDS ever answers
  body->append(data, size * n);
  return size * n;
}

class CurlInstanceMetadata : public InstanceMetadata {
 public:
  CurlInstanceMetadata(std::string base, std::chrono::milliseconds timeout)
      : base_(std::move(base)), timeout_ms_(static_cast<long>(timeout.count())) {
    while (!base_.empty() && base_.back() == '/') base_.pop_back();
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }

  Result<std::string> Request(const std::string& method, const std::string& path,
                              const std::map<std::string, std::string>& headers) override {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) return Internal("curl_easy_init failed");
    CURL* c = curl.get();
    const std::string url = base_ + path;
    std::string body;
    char error[CURL_ERROR_SIZE] = {0};
    curl_slist* list = nullptr;
    for (const auto& [k, v] : headers) list = curl_slist_append(list, (k + ": " + v).c_str());
    std::unique_ptr<curl_slist, decltype(&curl_slist_free_all)> owned(list, curl_slist_free_all);
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (method == "PUT") {
      curl_easy_setopt(c, CURLOPT_POSTFIELDS, "");
      curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
    }
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms_);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
      return Unavailable("instance metadata " + method + " " + path + ": " +
                         (error[0] ? std::string(error) : curl_easy_strerror(rc)));
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status != 200) {
      return Unavailable("instance metadata " + method + " " + path + " answered " +
                         std::to_string(status));
    }
    return body;
  }

 private:
  std::string base_;
  long timeout_ms_;
};

Result<std::string> Base64Decode(const std::string& text) {
  std::string clean;
  for (char ch : text) {
    if (ch != '\n' && ch != '\r' && ch != ' ') clean.push_back(ch);
  }
  if (clean.empty() || clean.size() % 4 != 0) {
    return InvalidArgument("the instance identity signature is not base64");
  }
  std::string out(clean.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                          reinterpret_cast<const unsigned char*>(clean.data()),
                          static_cast<int>(clean.size()));
  if (n < 0) return InvalidArgument("the instance identity signature is not base64");
  size_t pad = (clean.end()[-1] == '=') + (clean.end()[-2] == '=');
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

}  // namespace

std::unique_ptr<InstanceMetadata> MakeCurlInstanceMetadata(std::string base_url,
                                                           std::chrono::milliseconds timeout) {
  return std::make_unique<CurlInstanceMetadata>(std::move(base_url), timeout);
}

Result<v1::Ec2InstanceIdentity> FetchEc2Identity(InstanceMetadata& imds) {
  // IMDSv2: the token is short-lived and only good from this instance (hop limit 1).
  BERTH_ASSIGN_OR_RETURN(std::string token,
                         imds.Request("PUT", kTokenPath,
                                      {{"X-aws-ec2-metadata-token-ttl-seconds", "60"}}));
  const std::map<std::string, std::string> auth = {{"X-aws-ec2-metadata-token", token}};
  BERTH_ASSIGN_OR_RETURN(std::string document, imds.Request("GET", kDocumentPath, auth));
  BERTH_ASSIGN_OR_RETURN(std::string signature, imds.Request("GET", kSignaturePath, auth));
  v1::Ec2InstanceIdentity out;
  out.set_document(document);
  BERTH_ASSIGN_OR_RETURN(std::string der, Base64Decode(signature));
  out.set_pkcs7(der);
  return out;
}

}  // namespace berth::agent
