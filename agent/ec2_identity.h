// The node's side of EC2 pre-authorization (docs/lifecycle.md "Cloud events"): the instance
// identity document and its AWS signature, read from the instance metadata service with
// IMDSv2 (a PUT for a session token, then GETs carrying it), sent with the join so that berthd
// can check the instance ID the node claims (server/cloud/ec2_identity.h).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <string>

#include "berth/v1/berth.pb.h"
#include "common/status.h"

namespace berth::agent {

inline constexpr char kDefaultImdsUrl[] = "http://169.254.169.254";

// HTTP against the instance metadata service, behind an interface so tests serve their own.
class InstanceMetadata {
 public:
  virtual ~InstanceMetadata() = default;
  // `method` "PUT" or "GET" of `path` with `headers`. UNAVAILABLE when unreachable or not
  // 200; the body otherwise.
  virtual Result<std::string> Request(const std::string& method, const std::string& path,
                                      const std::map<std::string, std::string>& headers) = 0;
};

// libcurl against `base_url` (http://169.254.169.254; a loopback stand-in in tests). Redirects
// are not followed; proxies from the environment are not used.
std::unique_ptr<InstanceMetadata> MakeCurlInstanceMetadata(std::string base_url,
                                                           std::chrono::milliseconds timeout);

// IMDSv2: a token, then the document and its RSA-2048 PKCS#7 signature (base64 on the wire,
// DER in the result). Errors name the path that failed.
Result<v1::Ec2InstanceIdentity> FetchEc2Identity(InstanceMetadata& imds);

}  // namespace berth::agent
