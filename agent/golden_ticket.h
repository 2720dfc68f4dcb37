// The node's side of golden tickets (debug enrolment; server/nodes/golden_ticket.h,
// docs/lifecycle.md): a ticket in the EnrolmentConfig replaces attestation for one first join.
//
// Compiled in only when the build enables it (-DBERTH_GOLDEN_TICKETS=ON): ReadGoldenTicket is
// defined in golden_ticket_impl.cc, built into agent_golden_on and agent_golden_off, and
// berth-agent's main.cc hands the one it links to the boot flow (AgentDeps); agent_lib never
// references it. A release agent that finds a ticket refuses to boot with GoldenTicketRefused().
#pragma once

#include <string>

#include "berth/v1/berth.pb.h"
#include "common/status.h"

namespace berth::agent {

// The EnrolmentConfig's golden ticket, checked for this node: its name (when the ticket names
// one), its expiry at `now_unix`. Release builds: GoldenTicketRefused().
Result<v1::GoldenTicket> ReadGoldenTicket(const v1::EnrolmentConfig& config,
                                          const std::string& node_name, int64_t now_unix);
using GoldenTicketReader = Result<v1::GoldenTicket> (*)(const v1::EnrolmentConfig&,
                                                        const std::string&, int64_t);

// FAILED_PRECONDITION: this agent is a release build and does not read golden tickets.
Status GoldenTicketRefused();

}  // namespace berth::agent
