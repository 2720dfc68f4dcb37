// The names of a node's state and role as operators read them: in audit lines, refusals and
// `berthctl nodes list`. Shared by berthd and berthctl.
#pragma once

#include <string_view>

#include "berth/v1/nodes.pb.h"

namespace berth {

std::string_view NodeStateName(v1::NodeState state);  // "joining", "joined", "revoked", "pending"
std::string_view NodeRoleName(v1::NodeRole role);     // "worker", "control-plane"

}  // namespace berth
