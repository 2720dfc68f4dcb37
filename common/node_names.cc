#include "common/node_names.h"

namespace berth {

std::string_view NodeStateName(v1::NodeState state) {
  switch (state) {
    case v1::NODE_STATE_JOINING:
      return "joining";
    case v1::NODE_STATE_JOINED:
      return "joined";
    case v1::NODE_STATE_REVOKED:
      return "revoked";
    case v1::NODE_STATE_PENDING:
      return "pending";
    default:
      return "unknown";
  }
}

std::string_view NodeRoleName(v1::NodeRole role) {
  switch (role) {
    case v1::NODE_ROLE_WORKER:
      return "worker";
    case v1::NODE_ROLE_CONTROL_PLANE:
      return "control-plane";
    default:
      return "unknown";
  }
}

}  // namespace berth
