// Who may join beyond what the evidence proves: the `admission:` section of berthd's policy
// (docs/lifecycle.md). Both settings apply to nodes seen for the first time (no record, or a
// pending one); a node that has joined before rejoins and joins again as before.
//
//   admission:
//     approval: required            # or "none" (the default): an operator approves each new
//                                   # node (berthctl nodes approve NAME) before it gets a ticket
//     ec2_preauthorized_only: true  # only EC2 instances an SNS "running" event pre-authorized
//                                   # may join, once each (docs/lifecycle.md "Cloud events"),
//                                   # proving it with the instance's signed identity document
//     ec2_identity: {...}           # accounts, regions and signing certificates for those
//                                   # documents (verify/ec2_identity_policy.h)
#pragma once

#include <yaml-cpp/yaml.h>

#include "common/status.h"
#include "verify/ec2_identity_policy.h"

namespace berth::verify {

struct AdmissionPolicy {
  bool approval_required = false;
  bool ec2_preauthorized_only = false;
  Ec2IdentityPolicy ec2_identity;
};

// Parses the `admission:` node (absent: the defaults). Unknown keys and values are errors.
Status ParseAdmissionPolicy(const YAML::Node& node, AdmissionPolicy& out);

}  // namespace berth::verify
