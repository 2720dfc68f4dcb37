// Golden tickets: debug enrolment without attestation (docs/lifecycle.md "Golden tickets"),
// as in Monogon's stopgap, done safely:
//   - compiled in only when the build enables it (CMake -DBERTH_GOLDEN_TICKETS=ON, default OFF,
//     like Android's ALLOW_PERMISSIVE_SELINUX): the implementation lives in golden_ticket_impl.cc,
//     built into two libraries (server_golden_on, server_golden_off) of which each executable
//     links one; server_lib never references it, so a release berthd contains no code that
//     issues or accepts a ticket, and refuses both with a clear error;
//   - issued only to an operator (AdminService, client certificate), for one node address (and
//     name, when given) and role, for a short time (15 minutes by default, 24 hours at most);
//   - single-use: berthd stores the SHA-256 of its secret in etcd, and the join that presents it
//     marks it used in the same etcd transaction as the node's record. A retry of that join
//     from the same TLS key (the same boot) is the same use; any other presentation is refused;
//   - every issue and use is audited;
//   - control planes still make their etcd keys on the node and send CSRs; the ticket carries
//     no key, and berthd signs the CSRs at the join (unlike Monogon's ticket, which carried
//     every certificate and key, minted off the node).
#pragma once

#include <chrono>
#include <memory>
#include <span>
#include <string>

#include "berth/v1/nodes.pb.h"
#include "common/clock.h"
#include "server/nodes/store.h"
#include "verify/evidence.h"

namespace berth::server {

class GoldenTickets {
 public:
  virtual ~GoldenTickets() = default;
  // A new ticket (INVALID_ARGUMENT for a bad address, name, role or TTL), recorded in etcd.
  virtual Result<v1::GoldenTicketIssueResponse> Issue(const v1::GoldenTicketIssueRequest& request,
                                                      const std::string& by) = 0;
  // Whether the ticket in `request` admits this join from `peer_address` (gRPC's
  // "ipv4:10.0.0.5:43122") over the TLS key `peer_spki_sha256`. PERMISSION_DENIED naming why
  // not (unknown, wrong secret, expired, used, another node, address or role).
  virtual Result<verify::VerifiedEvidence> Verify(const v1::JoinRequest& request,
                                          const std::string& peer_address,
                                          std::span<const uint8_t> peer_spki_sha256) = 0;
};

struct GoldenTicketOptions {
  std::string cluster_id;
  std::chrono::seconds default_ttl{900};
  std::chrono::seconds max_ttl{24 * 3600};
};

// Defined in golden_ticket_impl.cc, once per build flavour: with BERTH_GOLDEN_TICKETS the
// real thing; in release builds null. `store` and `clock` outlive the result.
std::unique_ptr<GoldenTickets> MakeGoldenTickets(NodeStore* store, Clock* clock,
                                                 GoldenTicketOptions options);
using GoldenTicketsFactory = std::unique_ptr<GoldenTickets> (*)(NodeStore*, Clock*,
                                                                GoldenTicketOptions);
// Whether this flavour compiled them in (also from golden_ticket_impl.cc).
bool GoldenTicketsCompiledIn();

// What a berthd without golden tickets answers to `what` ("issue", "accept"): FAILED_PRECONDITION
// saying it is a release build, audited.
Status GoldenTicketsCompiledOut(std::string_view what, const std::string& who);

// The host of a gRPC peer string ("ipv4:10.0.0.5:43122" -> "10.0.0.5", "ipv6:[::1]:5" -> "::1").
std::string PeerHost(std::string_view peer);

}  // namespace berth::server
