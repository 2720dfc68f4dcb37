#include "agent/golden_ticket.h"

namespace berth::agent {

Status GoldenTicketRefused() {
  return FailedPrecondition(
      "the EnrolmentConfig carries a golden ticket, and this berth-agent is a release build "
      "(BERTH_GOLDEN_TICKETS=OFF) that does not read them: remove the ticket (berthctl enrolment "
      "write) or boot a debug build");
}

}  // namespace berth::agent
