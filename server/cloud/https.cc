#include "server/cloud/https.h"

#include <curl/curl.h>

#include <algorithm>
#include <cstring>

namespace berth::server {

namespace {

void InitCurlOnce() {
  static std::once_flag once;
  std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
}

struct Body {
  std::string* out;
  size_t cap;
  bool too_long = false;
};

size_t CollectBody(char* data, size_t size, size_t n, void* arg) {
  auto* body = static_cast<Body*>(arg);
  if (body->out->size() + size * n > body->cap) {
    body->too_long = true;
    return 0;  // libcurl stops with CURLE_WRITE_ERROR
  }
  body->out->append(data, size * n);
  return size * n;
}

}  // namespace

HttpsClient::HttpsClient(HttpsOptions options) : options_(std::move(options)) {
  InitCurlOnce();
  for (const auto& h : options_.headers) headers_ = curl_slist_append(headers_, h.c_str());
}

HttpsClient::~HttpsClient() {
  for (CURL* c : idle_) curl_easy_cleanup(c);
  // The list may hold a bearer token: wipe it before it goes back to the allocator.
  for (curl_slist* h = headers_; h != nullptr; h = h->next)
    WipeMemory(h->data, std::strlen(h->data));
  curl_slist_free_all(headers_);
  for (auto& h : options_.headers) WipeString(h);
}

CURL* HttpsClient::Acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (!idle_.empty()) {
      CURL* c = idle_.back();
      idle_.pop_back();
      return c;
    }
  }
  CURL* c = curl_easy_init();
  if (c == nullptr) return nullptr;
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, options_.timeout_ms);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS,
                   std::min(options_.timeout_ms, options_.connect_timeout_ms));
  curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, options_.allow_plain_http ? "https,http" : "https");
  curl_easy_setopt(c, CURLOPT_USERAGENT, "berthd/0.1");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, CollectBody);
  if (!options_.ca_pem.empty()) {
    curl_blob ca{const_cast<char*>(options_.ca_pem.data()), options_.ca_pem.size(),
                 CURL_BLOB_COPY};
    curl_easy_setopt(c, CURLOPT_CAINFO_BLOB, &ca);
  } else if (!options_.ca_file.empty()) {
    curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  }
  if (!options_.client_cert_pem.empty()) {
    curl_blob cert{const_cast<char*>(options_.client_cert_pem.data()),
                   options_.client_cert_pem.size(), CURL_BLOB_COPY};
    curl_blob key{const_cast<uint8_t*>(options_.client_key_pem.data()),
                  options_.client_key_pem.size(), CURL_BLOB_COPY};
    curl_easy_setopt(c, CURLOPT_SSLCERT_BLOB, &cert);
    curl_easy_setopt(c, CURLOPT_SSLKEY_BLOB, &key);
  }
  return c;
}

void HttpsClient::Release(CURL* c) {
  std::lock_guard<std::mutex> lock(mu_);
  idle_.push_back(c);
}

Result<HttpsResponse> HttpsClient::Send(std::string_view method, const std::string& url,
                                        std::string_view body,
                                        const std::vector<std::string>& headers) {
  CURL* c = Acquire();
  if (c == nullptr) return Internal("curl_easy_init failed");
  HttpsResponse response;
  Body sink{&response.body, options_.max_body_bytes};
  char error[CURL_ERROR_SIZE] = {0};
  // The client's headers alone, or a list of this request's own with them.
  curl_slist* list = nullptr;
  if (!headers.empty()) {
    for (curl_slist* h = headers_; h != nullptr; h = h->next) {
      list = curl_slist_append(list, h->data);
    }
    for (const auto& h : headers) list = curl_slist_append(list, h.c_str());
  }
  const std::string verb(method);
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, list != nullptr ? list : headers_);
  if (body.empty()) {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);  // also clears an earlier request's body
  } else {
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, static_cast<long>(body.size()));
  }
  curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, verb == "GET" ? nullptr : verb.c_str());
  CURLcode rc = curl_easy_perform(c);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, nullptr);
  curl_easy_setopt(c, CURLOPT_POSTFIELDS, nullptr);  // the body is the caller's
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, nullptr);
  for (curl_slist* h = list; h != nullptr; h = h->next) WipeMemory(h->data, std::strlen(h->data));
  curl_slist_free_all(list);
  if (rc != CURLE_OK) {
    curl_easy_cleanup(c);  // its connection is in an unknown state
    if (sink.too_long) {
      return Unavailable(options_.service + " " + url + ": the answer is longer than " +
                         std::to_string(options_.max_body_bytes) + " bytes");
    }
    return Unavailable(options_.service + " " + url + ": " +
                       (error[0] ? std::string(error) : curl_easy_strerror(rc)));
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &response.status);
  Release(c);
  return response;
}

namespace {

class ClientFetcher : public HttpsFetcher {
 public:
  explicit ClientFetcher(HttpsOptions options) : client_(std::move(options)) {}
  Result<std::string> Get(const std::string& url,
                          const std::vector<std::string>& headers) override {
    BERTH_ASSIGN_OR_RETURN(HttpsResponse r, client_.Send("GET", url, {}, headers));
    if (r.status != 200) return Unavailable("GET " + url + ": HTTP " + std::to_string(r.status));
    return std::move(r.body);
  }

 private:
  HttpsClient client_;
};

}  // namespace

std::unique_ptr<HttpsFetcher> MakeCurlHttpsFetcher(std::string ca_file, long timeout_ms) {
  HttpsOptions options;
  options.service = "GET";
  options.ca_file = std::move(ca_file);
  options.timeout_ms = timeout_ms;
  return std::make_unique<ClientFetcher>(std::move(options));
}

}  // namespace berth::server
