#include "server/cloud/ec2_tags.h"

#include <cstdlib>
#include <cstring>
#include <ctime>
#include <regex>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/time.h"

namespace berth::server {

namespace {

std::string HexSha256(std::string_view s) { return HexEncode(Sha256(AsBytes(s))); }

Bytes Hmac(std::span<const uint8_t> key, std::string_view data) {
  return HmacSha256(key, AsBytes(data));
}

std::string XmlUnescape(const std::string& s) {
  static const std::pair<const char*, char> kEntities[] = {
      {"&amp;", '&'}, {"&lt;", '<'}, {"&gt;", '>'}, {"&quot;", '"'}, {"&apos;", '\''}};
  std::string out;
  for (size_t i = 0; i < s.size();) {
    bool replaced = false;
    if (s[i] == '&') {
      for (const auto& [entity, c] : kEntities) {
        if (s.compare(i, std::strlen(entity), entity) == 0) {
          out.push_back(c);
          i += std::strlen(entity);
          replaced = true;
          break;
        }
      }
    }
    if (!replaced) out.push_back(s[i++]);
  }
  return out;
}

class QueryApiTags : public Ec2TagSource {
 public:
  QueryApiTags(AwsCredentials credentials, std::string endpoint, HttpsFetcher* fetcher,
               Clock* clock)
      : credentials_(std::move(credentials)),
        endpoint_(std::move(endpoint)),
        fetcher_(fetcher),
        clock_(clock) {}

  Result<std::map<std::string, std::string>> Tags(const std::string& region,
                                                  const std::string& instance_id) override {
    std::string base = endpoint_.empty() ? "https://ec2.{region}.amazonaws.com" : endpoint_;
    if (size_t at = base.find("{region}"); at != std::string::npos) base.replace(at, 8, region);
    BERTH_ASSIGN_OR_RETURN(ParsedUrl url, ParseUrl(base));
    SigV4Request r;
    // Parameters sorted by name, as the canonical query string requires.
    r.query = "Action=DescribeTags&Filter.1.Name=resource-id&Filter.1.Value.1=" +
              AwsUriEncode(instance_id) + "&Version=2016-11-15";
    const std::string date = FormatUtc(clock_->NowUnix(), "%Y%m%dT%H%M%SZ");
    r.headers["host"] = url.authority;
    r.headers["x-amz-date"] = date;
    if (!credentials_.session_token.empty()) {
      r.headers["x-amz-security-token"] = credentials_.session_token;
    }
    std::vector<std::string> headers = {
        "Authorization: " + SigV4Authorization(r, credentials_, region, "ec2"),
        std::string("X-Amz-Date: ") + date};
    if (!credentials_.session_token.empty()) {
      headers.push_back("X-Amz-Security-Token: " + credentials_.session_token);
    }
    auto body = fetcher_->Get(base + "/?" + r.query, headers);
    if (!body.ok()) {
      return Unavailable("EC2 DescribeTags for " + instance_id + ": " + body.status().message());
    }
    auto tags = ParseDescribeTagsResponse(*body);
    if (!tags.ok()) {
      return Unavailable("EC2 DescribeTags for " + instance_id + ": " + tags.status().message());
    }
    return tags;
  }

 private:
  AwsCredentials credentials_;
  std::string endpoint_;
  HttpsFetcher* fetcher_;
  Clock* clock_;
};

}  // namespace

Result<AwsCredentials> AwsCredentialsFromEnvironment() {
  const char* id = std::getenv("AWS_ACCESS_KEY_ID");
  const char* secret = std::getenv("AWS_SECRET_ACCESS_KEY");
  const char* token = std::getenv("AWS_SESSION_TOKEN");
  if (id == nullptr || *id == '\0' || secret == nullptr || *secret == '\0') {
    return FailedPrecondition(
        "--ec2-require-tag asks EC2 for instance tags, and berthd's environment has no "
        "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY");
  }
  AwsCredentials c;
  c.access_key_id = id;
  c.secret_access_key = SecretBytes(secret, std::strlen(secret));
  if (token != nullptr) c.session_token = token;
  return c;
}

std::string AwsUriEncode(const std::string& s) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out.push_back('%');
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    }
  }
  return out;
}

std::string SigV4Authorization(const SigV4Request& r, const AwsCredentials& credentials,
                               const std::string& region, const std::string& service) {
  std::string canonical_headers, signed_headers;
  for (const auto& [name, value] : r.headers) {  // std::map: sorted by name
    canonical_headers += name + ":" + value + "\n";
    signed_headers += (signed_headers.empty() ? "" : ";") + name;
  }
  const std::string canonical_request = r.method + "\n" + r.path + "\n" + r.query + "\n" +
                                        canonical_headers + "\n" + signed_headers + "\n" +
                                        HexSha256(r.payload);
  const std::string amz_date = r.headers.count("x-amz-date") ? r.headers.at("x-amz-date") : "";
  const std::string day = amz_date.substr(0, 8);
  const std::string scope = day + "/" + region + "/" + service + "/aws4_request";
  const std::string string_to_sign =
      "AWS4-HMAC-SHA256\n" + amz_date + "\n" + scope + "\n" + HexSha256(canonical_request);
  std::string k_secret = "AWS4" + std::string(credentials.secret_access_key.view());
  Bytes key = Hmac(AsBytes(k_secret), day);
  WipeString(k_secret);
  for (const std::string& part : {region, service, std::string("aws4_request")}) {
    key = Hmac(key, part);
  }
  const std::string signature = HexEncode(Hmac(key, string_to_sign));
  WipeMemory(key.data(), key.size());
  return "AWS4-HMAC-SHA256 Credential=" + credentials.access_key_id + "/" + scope +
         ", SignedHeaders=" + signed_headers + ", Signature=" + signature;
}

Result<std::map<std::string, std::string>> ParseDescribeTagsResponse(const std::string& xml) {
  if (xml.find("<DescribeTagsResponse") == std::string::npos) {
    return InvalidArgument("the answer is not a DescribeTagsResponse");
  }
  static const std::regex kItem("<item>([\\s\\S]*?)</item>");
  static const std::regex kKey("<key>([^<]*)</key>");
  static const std::regex kValue("<value>([^<]*)</value>");
  std::map<std::string, std::string> tags;
  for (auto it = std::sregex_iterator(xml.begin(), xml.end(), kItem); it != std::sregex_iterator();
       ++it) {
    const std::string item = (*it)[1];
    std::smatch key, value;
    if (!std::regex_search(item, key, kKey)) return InvalidArgument("a tag item has no key");
    std::string v;
    if (std::regex_search(item, value, kValue)) v = XmlUnescape(value[1]);
    tags[XmlUnescape(key[1])] = v;
  }
  return tags;
}

std::unique_ptr<Ec2TagSource> MakeEc2TagSource(AwsCredentials credentials, std::string endpoint,
                                               HttpsFetcher* fetcher, Clock* clock) {
  return std::make_unique<QueryApiTags>(std::move(credentials), std::move(endpoint), fetcher,
                                        clock);
}

Result<std::map<std::string, std::string>> ParseRequiredTags(
    const std::vector<std::string>& flags) {
  std::map<std::string, std::string> out;
  for (const auto& f : flags) {
    size_t eq = f.find('=');
    if (eq == std::string::npos || eq == 0) {
      return InvalidArgument("--ec2-require-tag " + f + ": expected KEY=VALUE");
    }
    out[f.substr(0, eq)] = f.substr(eq + 1);
  }
  return out;
}

}  // namespace berth::server
