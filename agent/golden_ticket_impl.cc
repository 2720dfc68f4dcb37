// ReadGoldenTicket, compiled twice (agent/CMakeLists.txt): BERTH_GOLDEN_TICKETS=1 into
// agent_golden_on, 0 into agent_golden_off.
#include <spdlog/spdlog.h>

#include "agent/golden_ticket.h"

#ifndef BERTH_GOLDEN_TICKETS
#error "BERTH_GOLDEN_TICKETS must be defined to 0 or 1 by the build"
#endif

namespace berth::agent {

#if BERTH_GOLDEN_TICKETS

Result<v1::GoldenTicket> ReadGoldenTicket(const v1::EnrolmentConfig& config,
                                          const std::string& node_name, int64_t now_unix) {
  const v1::GoldenTicket& t = config.golden_ticket();
  if (t.id().size() != 32 || t.secret().size() != 32) {
    return InvalidArgument("the EnrolmentConfig's golden ticket is malformed (id or secret)");
  }
  if (!t.node_name().empty() && t.node_name() != node_name) {
    return FailedPrecondition("the golden ticket " + t.id() + " is for node " + t.node_name() +
                              ", and this node is " + node_name);
  }
  if (t.role() != config.role()) {
    return FailedPrecondition("the golden ticket " + t.id() +
                              " is for another role than the "
                              "EnrolmentConfig's");
  }
  if (now_unix >= t.expires_unix()) {
    return FailedPrecondition("the golden ticket " + t.id() + " has expired");
  }
  spdlog::warn(
      "INSECURE: joining with golden ticket {} (issued by {}), without attestation; "
      "this berth-agent is a debug build",
      t.id(), t.issued_by());
  return t;
}

#else

Result<v1::GoldenTicket> ReadGoldenTicket(const v1::EnrolmentConfig&, const std::string&, int64_t) {
  return GoldenTicketRefused();
}

#endif

}  // namespace berth::agent
