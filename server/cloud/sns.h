// Amazon SNS notifications over HTTPS (docs/lifecycle.md "Cloud events"), as the dynk8s
// provisioner receives them: parsing, the string AWS signs, and signature verification.
//
// A message is accepted only when every check holds, in this order:
//   1. it parses, its Type is Notification, SubscriptionConfirmation or UnsubscribeConfirmation;
//   2. SignatureVersion is 1 (SHA1withRSA) or 2 (SHA256withRSA) and not below the configured
//      minimum (a downgrade to SHA-1 is refused when the minimum is 2, the default);
//   3. SigningCertURL is https:// and its host[:port] matches the SNS pattern
//      (sns.<region>.amazonaws.com by default, configurable for tests), path ending in .pem;
//   4. Timestamp is within [now - max_age, now + max_skew];
//   5. the certificate, fetched from that URL over https only (cached by URL), is pinned:
//      its DER SHA-256 is in the configured set, or it chains to a configured CA; and valid now;
//   6. the PKCS#1 v1.5 signature over the canonical string verifies with its key.
// The caller then checks the topic against its allow-list and the MessageId against the
// replay set (sns_endpoint.h).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/status.h"
#include "server/cloud/https.h"

namespace berth::server {

struct SnsConfig {
  std::string listen;                   // --sns-listen host:port (HTTPS); empty: no endpoint
  std::string port_file;                // --sns-port-file
  std::string tls_cert, tls_key;        // default: berthd's --tls-cert/--tls-key
  std::vector<std::string> topic_arns;  // --sns-topic-arn: the allow-list (required)
  // --sns-cert-host-pattern: ECMAScript regex the SigningCertURL's and SubscribeURL's
  // host[:port] must match entirely.
  std::string cert_host_pattern = R"(sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?)";
  std::vector<std::string> cert_sha256;  // --sns-signing-cert-sha256: pinned certificates
  std::string signing_ca;                // --sns-signing-ca: or any certificate chained to these
  std::string fetch_ca;  // --sns-fetch-ca: CA bundle for https fetches (default: the system's)
  int min_signature_version = 2;       // --sns-min-signature-version
  std::chrono::seconds max_age{3600};  // SNS retries a delivery for up to an hour
  std::chrono::seconds max_skew{300};
  std::chrono::seconds preauth_ttl{3600};  // --ec2-preauth-ttl
  // --ec2-require-tag KEY=VALUE: a "running" instance is pre-authorized only with all of these
  // tags (asked from EC2, ec2_tags.h); empty: every instance.
  std::map<std::string, std::string> required_tags;
  std::string ec2_endpoint;  // --ec2-endpoint: DescribeTags endpoint (default: EC2's regional)
};

struct SnsMessage {
  std::string type, message_id, token, topic_arn, message, timestamp, signature_version, signature,
      signing_cert_url, subscribe_url, unsubscribe_url;
  std::optional<std::string> subject;
  int64_t timestamp_unix = 0;
};

// INVALID_ARGUMENT naming the missing or malformed field.
Result<SnsMessage> ParseSnsMessage(const std::string& json);

// The string AWS signs: "Name\nValue\n" for each field, in AWS's documented order for the
// message's type (Notification: Message, MessageId, Subject if present, Timestamp, TopicArn,
// Type; the confirmations: Message, MessageId, SubscribeURL, Timestamp, Token, TopicArn, Type).
Result<std::string> SnsStringToSign(const SnsMessage& message);

// Thread-safe; `fetcher` and `clock` outlive it.
class SnsVerifier {
 public:
  // INVALID_ARGUMENT for a configuration without a pin, or a bad pattern or CA.
  static Result<std::unique_ptr<SnsVerifier>> Create(const SnsConfig& config, HttpsFetcher* fetcher,
                                                     Clock* clock);

  // Checks 2-6 above. PERMISSION_DENIED naming the check that failed; UNAVAILABLE when the
  // certificate cannot be fetched.
  Status Verify(const SnsMessage& message);
  // https://, host[:port] matching the pattern: for SigningCertURL and SubscribeURL.
  Status CheckUrl(const std::string& url, std::string_view what) const;

 private:
  SnsVerifier() = default;
  Result<EvpPkeyPtr> SigningKey(const std::string& url);

  int min_version_ = 2;
  std::chrono::seconds max_age_{3600}, max_skew_{300};
  std::regex host_pattern_;
  std::vector<Bytes> pins_;
  std::vector<X509Ptr> cas_;
  HttpsFetcher* fetcher_ = nullptr;
  Clock* clock_ = nullptr;
  std::mutex mu_;
  std::map<std::string, X509Ptr> cache_;  // GUARDED_BY(mu_): URL -> verified, pinned cert
};

// "https://host:port/path?query" -> {host:port, path?query}; INVALID_ARGUMENT otherwise.
struct ParsedUrl {
  std::string scheme, authority, path, query;
};
Result<ParsedUrl> ParseUrl(const std::string& url);
// The value of `key` in an application/x-www-form-urlencoded query (percent-decoded), or "".
std::string QueryValue(const std::string& query, const std::string& key);

}  // namespace berth::server
