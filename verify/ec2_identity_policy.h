// The policy's rules for EC2 instance identity documents (`admission.ec2_identity:`, part of
// verify/admission_policy.h); server/cloud/ec2_identity.h verifies documents against them.
#pragma once

#include <yaml-cpp/yaml.h>

#include <map>
#include <string>
#include <vector>

#include "common/status.h"

namespace berth::verify {

// The policy's `admission.ec2_identity:` section:
//
//   ec2_identity:
//     account_ids: ["123456789012"]   # optional: the documents' accountId must be one of these
//     regions: [eu-west-1]            # optional: ... and their region one of these
//     certificates:                   # optional: a region's signing certificate(s), PEM; these
//       eu-west-1: |                  # replace the compiled-in one for that region (a region
//         -----BEGIN CERTIFICATE----- # AWS added, a certificate AWS replaced, or a test CA)
struct Ec2IdentityPolicy {
  std::vector<std::string> account_ids;             // empty: any
  std::vector<std::string> regions;                 // empty: any
  std::map<std::string, std::string> certificates;  // region -> PEM bundle
};
// Parses the section (absent: defaults). INVALID_ARGUMENT naming the key for anything
// malformed: an account ID that is not 12 digits, a certificate that does not parse.
Status ParseEc2IdentityPolicy(const YAML::Node& node, Ec2IdentityPolicy& out);

// True for a region name of AWS's form (eu-west-1, us-gov-east-1).
bool IsAwsRegionName(const std::string& s);

}  // namespace berth::verify
