#include "server/cloud/sns.h"

#include <openssl/err.h>
#include <openssl/x509_vfy.h>
#include <spdlog/spdlog.h>

#include <nlohmann/json.hpp>

#include "common/bytes.h"
#include "common/time.h"

namespace berth::server {

namespace {

Result<Bytes> Base64Decode(const std::string& in) {
  if (in.empty() || in.size() % 4 != 0) return InvalidArgument("not base64");
  Bytes out(in.size() / 4 * 3);
  int n = EVP_DecodeBlock(out.data(), reinterpret_cast<const unsigned char*>(in.data()),
                          static_cast<int>(in.size()));
  if (n < 0) return InvalidArgument("not base64");
  size_t pad = (in.back() == '=') + (in[in.size() - 2] == '=');
  out.resize(static_cast<size_t>(n) - pad);
  return out;
}

}  // namespace

Result<ParsedUrl> ParseUrl(const std::string& url) {
  ParsedUrl u;
  size_t scheme_end = url.find("://");
  if (scheme_end == std::string::npos) return InvalidArgument(url + " is not a URL");
  u.scheme = url.substr(0, scheme_end);
  size_t start = scheme_end + 3;
  size_t path_at = url.find_first_of("/?", start);
  u.authority =
      url.substr(start, path_at == std::string::npos ? std::string::npos : path_at - start);
  if (u.authority.empty() || u.authority.find('@') != std::string::npos) {
    return InvalidArgument(url + " has no plain host");
  }
  if (path_at != std::string::npos) {
    std::string rest = url.substr(path_at);
    size_t q = rest.find('?');
    u.path = rest.substr(0, q);
    if (q != std::string::npos) u.query = rest.substr(q + 1);
  }
  if (u.path.empty()) u.path = "/";
  return u;
}

std::string QueryValue(const std::string& query, const std::string& key) {
  size_t at = 0;
  while (at <= query.size()) {
    size_t end = query.find('&', at);
    std::string pair = query.substr(at, end == std::string::npos ? std::string::npos : end - at);
    size_t eq = pair.find('=');
    if (pair.substr(0, eq) == key && eq != std::string::npos) {
      std::string raw = pair.substr(eq + 1), out;
      for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] == '%' && i + 2 < raw.size()) {
          auto b = HexDecode(raw.substr(i + 1, 2));
          if (b.ok() && b->size() == 1) {
            out.push_back(static_cast<char>((*b)[0]));
            i += 2;
            continue;
          }
        }
        out.push_back(raw[i] == '+' ? ' ' : raw[i]);
      }
      return out;
    }
    if (end == std::string::npos) break;
    at = end + 1;
  }
  return "";
}

Result<SnsMessage> ParseSnsMessage(const std::string& json) {
  auto j = nlohmann::json::parse(json, nullptr, false);
  if (j.is_discarded() || !j.is_object()) return InvalidArgument("the body is not a JSON object");
  SnsMessage m;
  auto field = [&](const char* name, std::string& out, bool required) -> Status {
    if (!j.contains(name) || j[name].is_null()) {
      return required ? InvalidArgument(std::string("the message has no ") + name) : OkStatus();
    }
    if (!j[name].is_string()) return InvalidArgument(std::string(name) + " is not a string");
    out = j[name].get<std::string>();
    return OkStatus();
  };
  BERTH_RETURN_IF_ERROR(field("Type", m.type, true));
  BERTH_RETURN_IF_ERROR(field("MessageId", m.message_id, true));
  BERTH_RETURN_IF_ERROR(field("TopicArn", m.topic_arn, true));
  BERTH_RETURN_IF_ERROR(field("Message", m.message, true));
  BERTH_RETURN_IF_ERROR(field("Timestamp", m.timestamp, true));
  BERTH_RETURN_IF_ERROR(field("SignatureVersion", m.signature_version, true));
  BERTH_RETURN_IF_ERROR(field("Signature", m.signature, true));
  BERTH_RETURN_IF_ERROR(field("SigningCertURL", m.signing_cert_url, true));
  const bool confirmation =
      m.type == "SubscriptionConfirmation" || m.type == "UnsubscribeConfirmation";
  BERTH_RETURN_IF_ERROR(field("Token", m.token, confirmation));
  BERTH_RETURN_IF_ERROR(field("SubscribeURL", m.subscribe_url, confirmation));
  BERTH_RETURN_IF_ERROR(field("UnsubscribeURL", m.unsubscribe_url, false));
  if (j.contains("Subject") && !j["Subject"].is_null()) {
    if (!j["Subject"].is_string()) return InvalidArgument("Subject is not a string");
    m.subject = j["Subject"].get<std::string>();
  }
  if (m.type != "Notification" && !confirmation) {
    return InvalidArgument("unknown message Type \"" + m.type + "\"");
  }
  auto ts = ParseRfc3339(m.timestamp);
  if (!ts.ok()) return InvalidArgument("Timestamp: " + ts.status().message());
  m.timestamp_unix = *ts;
  return m;
}

Result<std::string> SnsStringToSign(const SnsMessage& m) {
  std::string out;
  auto add = [&](const char* name, const std::string& value) {
    out += name;
    out += "\n";
    out += value;
    out += "\n";
  };
  if (m.type == "Notification") {
    add("Message", m.message);
    add("MessageId", m.message_id);
    if (m.subject.has_value()) add("Subject", *m.subject);
    add("Timestamp", m.timestamp);
    add("TopicArn", m.topic_arn);
    add("Type", m.type);
  } else if (m.type == "SubscriptionConfirmation" || m.type == "UnsubscribeConfirmation") {
    add("Message", m.message);
    add("MessageId", m.message_id);
    add("SubscribeURL", m.subscribe_url);
    add("Timestamp", m.timestamp);
    add("Token", m.token);
    add("TopicArn", m.topic_arn);
    add("Type", m.type);
  } else {
    return InvalidArgument("unknown message Type \"" + m.type + "\"");
  }
  return out;
}

Result<std::unique_ptr<SnsVerifier>> SnsVerifier::Create(const SnsConfig& config,
                                                         HttpsFetcher* fetcher, Clock* clock) {
  std::unique_ptr<SnsVerifier> v(new SnsVerifier());
  if (config.min_signature_version != 1 && config.min_signature_version != 2) {
    return InvalidArgument("--sns-min-signature-version must be 1 or 2");
  }
  v->min_version_ = config.min_signature_version;
  v->max_age_ = config.max_age;
  v->max_skew_ = config.max_skew;
  try {
    v->host_pattern_ = std::regex(config.cert_host_pattern, std::regex::ECMAScript);
  } catch (const std::regex_error& e) {
    return InvalidArgument("--sns-cert-host-pattern: " + std::string(e.what()));
  }
  for (const auto& pin : config.cert_sha256) {
    std::string hex = pin.starts_with("sha256:") ? pin.substr(7) : pin;
    auto bytes = HexDecode(hex);
    if (!bytes.ok() || bytes->size() != 32) {
      return InvalidArgument("--sns-signing-cert-sha256 " + pin + ": expected 64 hex digits");
    }
    v->pins_.push_back(std::move(*bytes));
  }
  if (!config.signing_ca.empty()) {
    BERTH_ASSIGN_OR_RETURN(std::string pem, ReadFile(config.signing_ca));
    auto certs = CertsFromPem(pem);
    if (!certs.ok() || certs->empty()) {
      return InvalidArgument("--sns-signing-ca " + config.signing_ca + ": no certificate");
    }
    v->cas_ = std::move(*certs);
  }
  if (v->pins_.empty() && v->cas_.empty()) {
    return InvalidArgument(
        "the SNS endpoint needs pinned signing certificates: "
        "--sns-signing-cert-sha256 or --sns-signing-ca");
  }
  v->fetcher_ = fetcher;
  v->clock_ = clock;
  return v;
}

Status SnsVerifier::CheckUrl(const std::string& url, std::string_view what) const {
  auto u = ParseUrl(url);
  if (!u.ok()) return PermissionDenied(std::string(what) + ": " + u.status().message());
  if (u->scheme != "https") {
    return PermissionDenied(std::string(what) + " " + url + " is not https://");
  }
  if (!std::regex_match(u->authority, host_pattern_)) {
    return PermissionDenied(std::string(what) + " " + url + ": host " + u->authority +
                            " is not an SNS host");
  }
  return OkStatus();
}

Result<EvpPkeyPtr> SnsVerifier::SigningKey(const std::string& url) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = cache_.find(url);
    if (it != cache_.end() && X509_cmp_time(X509_get0_notAfter(it->second.get()), nullptr) > 0) {
      return EvpPkeyPtr(X509_get_pubkey(it->second.get()));
    }
  }
  BERTH_ASSIGN_OR_RETURN(std::string pem, fetcher_->Get(url));
  auto cert = CertFromPem(pem);
  if (!cert.ok()) return PermissionDenied("SigningCertURL " + url + " does not hold a certificate");
  const int64_t now = clock_->NowUnix();
  time_t t = static_cast<time_t>(now);
  if (X509_cmp_time(X509_get0_notBefore(cert->get()), &t) > 0 ||
      X509_cmp_time(X509_get0_notAfter(cert->get()), &t) < 0) {
    return PermissionDenied("the signing certificate at " + url + " is not valid now");
  }
  BERTH_ASSIGN_OR_RETURN(Bytes der, CertToDer(cert->get()));
  Bytes fingerprint = Sha256(der);
  bool pinned = false;
  for (const auto& p : pins_) pinned |= p == fingerprint;
  if (!pinned && !cas_.empty()) {
    std::unique_ptr<X509_STORE, decltype(&X509_STORE_free)> store(X509_STORE_new(),
                                                                  X509_STORE_free);
    for (const auto& ca : cas_) X509_STORE_add_cert(store.get(), ca.get());
    std::unique_ptr<X509_STORE_CTX, decltype(&X509_STORE_CTX_free)> ctx(X509_STORE_CTX_new(),
                                                                        X509_STORE_CTX_free);
    X509_STORE_CTX_init(ctx.get(), store.get(), cert->get(), nullptr);
    X509_STORE_CTX_set_time(ctx.get(), 0, t);
    pinned = X509_verify_cert(ctx.get()) == 1;
    ERR_clear_error();
  }
  if (!pinned) {
    return PermissionDenied("the signing certificate at " + url +
                            " (sha256:" + HexEncode(fingerprint).substr(0, 16) +
                            "...) is neither pinned nor issued by a pinned CA");
  }
  if (EVP_PKEY_get_base_id(X509_get0_pubkey(cert->get())) != EVP_PKEY_RSA) {
    return PermissionDenied("the signing certificate at " + url + " has no RSA key");
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (cache_.size() >= 32) cache_.erase(cache_.begin());
  EvpPkeyPtr key(X509_get_pubkey(cert->get()));
  cache_[url] = std::move(*cert);
  return key;
}

Status SnsVerifier::Verify(const SnsMessage& m) {
  int version = m.signature_version == "1" ? 1 : m.signature_version == "2" ? 2 : 0;
  if (version == 0) {
    return PermissionDenied("SignatureVersion \"" + m.signature_version + "\" is not 1 or 2");
  }
  if (version < min_version_) {
    return PermissionDenied("SignatureVersion " + m.signature_version + " is below the minimum " +
                            std::to_string(min_version_) + " (a downgrade to SHA-1 is refused)");
  }
  BERTH_RETURN_IF_ERROR(CheckUrl(m.signing_cert_url, "SigningCertURL"));
  if (auto u = ParseUrl(m.signing_cert_url); !u->path.ends_with(".pem")) {
    return PermissionDenied("SigningCertURL " + m.signing_cert_url + " does not name a .pem file");
  }
  const int64_t now = clock_->NowUnix();
  if (m.timestamp_unix < now - max_age_.count() || m.timestamp_unix > now + max_skew_.count()) {
    return PermissionDenied("Timestamp " + m.timestamp + " is outside the accepted window (" +
                            std::to_string(max_age_.count()) + " s old to " +
                            std::to_string(max_skew_.count()) + " s ahead)");
  }
  auto signature = Base64Decode(m.signature);
  if (!signature.ok()) return PermissionDenied("Signature is not base64");
  BERTH_ASSIGN_OR_RETURN(std::string text, SnsStringToSign(m));
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, SigningKey(m.signing_cert_url));
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  const EVP_MD* md = version == 1 ? EVP_sha1() : EVP_sha256();
  // RSA keys verify PKCS#1 v1.5 by default.
  int ok = EVP_DigestVerifyInit(ctx.get(), nullptr, md, nullptr, key.get()) == 1 &&
           EVP_DigestVerify(ctx.get(), signature->data(), signature->size(),
                            reinterpret_cast<const unsigned char*>(text.data()), text.size()) == 1;
  ERR_clear_error();
  if (!ok) {
    return PermissionDenied("the signature does not verify (SignatureVersion " +
                            m.signature_version + ", certificate " + m.signing_cert_url + ")");
  }
  return OkStatus();
}

}  // namespace berth::server
