#include "agent/ec2_identity.h"

#include <curl/curl.h>
#include <dlfcn.h>
#include <openssl/evp.h>

#include <type_traits>

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

// libcurl, loaded when an EC2 node first asks its instance metadata service: every other node
// starts without it and the ~25 libraries it needs (TLS, HTTP/2, IDN, LDAP, Kerberos...),
// which the dynamic loader would otherwise map and search on every boot.
struct Curl {
  decltype(&curl_global_init) global_init;
  decltype(&curl_easy_init) easy_init;
  decltype(&curl_easy_cleanup) easy_cleanup;
  CURLcode (*easy_setopt)(CURL*, CURLoption, ...);
  decltype(&curl_easy_perform) easy_perform;
  CURLcode (*easy_getinfo)(CURL*, CURLINFO, ...);
  decltype(&curl_easy_strerror) easy_strerror;
  decltype(&curl_slist_append) slist_append;
  decltype(&curl_slist_free_all) slist_free_all;

  static Result<const Curl*> Load() {
    static const Result<Curl> loaded = []() -> Result<Curl> {
      void* lib = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
      if (lib == nullptr) {
        const char* why = dlerror();
        return FailedPrecondition(std::string("libcurl.so.4, which reading the EC2 instance "
                                              "identity needs, cannot be loaded: ") +
                                  (why != nullptr ? why : "?"));
      }
      Curl c{};
      bool all = true;
      auto sym = [&](auto& fn, const char* name) {
        fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(lib, name));
        all = all && fn != nullptr;
      };
      sym(c.global_init, "curl_global_init");
      sym(c.easy_init, "curl_easy_init");
      sym(c.easy_cleanup, "curl_easy_cleanup");
      sym(c.easy_setopt, "curl_easy_setopt");
      sym(c.easy_perform, "curl_easy_perform");
      sym(c.easy_getinfo, "curl_easy_getinfo");
      sym(c.easy_strerror, "curl_easy_strerror");
      sym(c.slist_append, "curl_slist_append");
      sym(c.slist_free_all, "curl_slist_free_all");
      if (!all) return FailedPrecondition("libcurl.so.4 lacks a function berth-agent calls");
      if (c.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        return Internal("curl_global_init failed");
      }
      return c;
    }();
    if (!loaded.ok()) return loaded.status();
    return &*loaded;
  }
};

class CurlInstanceMetadata : public InstanceMetadata {
 public:
  CurlInstanceMetadata(std::string base, std::chrono::milliseconds timeout)
      : base_(std::move(base)), timeout_ms_(static_cast<long>(timeout.count())) {
    while (!base_.empty() && base_.back() == '/') base_.pop_back();
  }

  Result<std::string> Request(const std::string& method, const std::string& path,
                              const std::map<std::string, std::string>& headers) override {
    BERTH_ASSIGN_OR_RETURN(const Curl* api, Curl::Load());
    std::unique_ptr<CURL, decltype(api->easy_cleanup)> curl(api->easy_init(), api->easy_cleanup);
    if (!curl) return Internal("curl_easy_init failed");
    CURL* c = curl.get();
    const std::string url = base_ + path;
    std::string body;
    char error[CURL_ERROR_SIZE] = {0};
    curl_slist* list = nullptr;
    for (const auto& [k, v] : headers) list = api->slist_append(list, (k + ": " + v).c_str());
    std::unique_ptr<curl_slist, decltype(api->slist_free_all)> owned(list, api->slist_free_all);
    api->easy_setopt(c, CURLOPT_URL, url.c_str());
    api->easy_setopt(c, CURLOPT_CUSTOMREQUEST, method.c_str());
    if (method == "PUT") {
      api->easy_setopt(c, CURLOPT_POSTFIELDS, "");
      api->easy_setopt(c, CURLOPT_POSTFIELDSIZE, 0L);
    }
    api->easy_setopt(c, CURLOPT_HTTPHEADER, list);
    api->easy_setopt(c, CURLOPT_ERRORBUFFER, error);
    api->easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    api->easy_setopt(c, CURLOPT_NOPROXY, "*");
    api->easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    api->easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http");
    api->easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms_);
    api->easy_setopt(c, CURLOPT_WRITEFUNCTION, Collect);
    api->easy_setopt(c, CURLOPT_WRITEDATA, &body);
    CURLcode rc = api->easy_perform(c);
    if (rc != CURLE_OK) {
      return Unavailable("instance metadata " + method + " " + path + ": " +
                         (error[0] ? std::string(error) : api->easy_strerror(rc)));
    }
    long status = 0;
    api->easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
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
