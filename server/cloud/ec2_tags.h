// Tags of EC2 instances, for filtering the instances an SNS "running" event may pre-authorize
// (berthd --ec2-require-tag KEY=VALUE; docs/lifecycle.md "Cloud events"). State-change events
// carry no tags, so berthd asks EC2: DescribeTags (Query API, version 2016-11-15) over HTTPS,
// signed with AWS Signature Version 4 using credentials from berthd's environment.
#pragma once

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "common/secret.h"
#include "common/status.h"
#include "server/cloud/sns.h"

namespace berth::server {

struct AwsCredentials {
  std::string access_key_id;
  SecretBytes secret_access_key;
  std::string session_token;  // temporary credentials only
};

// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and (optional) AWS_SESSION_TOKEN.
// FAILED_PRECONDITION naming what is missing.
Result<AwsCredentials> AwsCredentialsFromEnvironment();

// One request to sign. `headers` are lowercase names with trimmed values and must include
// "host" and "x-amz-date" (YYYYMMDD'T'HHMMSS'Z'); `query` is already in canonical form
// (parameters sorted by name, each name and value URI-encoded).
struct SigV4Request {
  std::string method = "GET";
  std::string path = "/";
  std::string query;
  std::map<std::string, std::string> headers;
  std::string payload;
};

// The Authorization header's value: AWS4-HMAC-SHA256 Credential=..., SignedHeaders=...,
// Signature=... (every header in `request.headers` is signed).
std::string SigV4Authorization(const SigV4Request& request, const AwsCredentials& credentials,
                               const std::string& region, const std::string& service);

// RFC 3986 unreserved characters kept, everything else %XX (uppercase), as SigV4 requires.
std::string AwsUriEncode(const std::string& s);

// The tags of DescribeTags' XML answer (key -> value). INVALID_ARGUMENT when it is not one.
Result<std::map<std::string, std::string>> ParseDescribeTagsResponse(const std::string& xml);

class Ec2TagSource {
 public:
  virtual ~Ec2TagSource() = default;
  // The instance's tags. UNAVAILABLE when EC2 cannot be asked (SNS delivers the event again).
  virtual Result<std::map<std::string, std::string>> Tags(const std::string& region,
                                                          const std::string& instance_id) = 0;
};

// DescribeTags at `endpoint` ("https://ec2.{region}.amazonaws.com" when empty; "{region}" is
// replaced) through `fetcher`, with `clock` for the request time. All outlive it.
std::unique_ptr<Ec2TagSource> MakeEc2TagSource(AwsCredentials credentials, std::string endpoint,
                                               HttpsFetcher* fetcher, Clock* clock);

// "KEY=VALUE" flags -> the tags an instance must have. INVALID_ARGUMENT for a malformed one.
Result<std::map<std::string, std::string>> ParseRequiredTags(const std::vector<std::string>& flags);

}  // namespace berth::server
