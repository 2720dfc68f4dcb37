// The part of golden tickets every build has: the refusal. The tickets themselves are in
// golden_ticket_impl.cc.
#include "server/nodes/golden_ticket.h"

#include <spdlog/spdlog.h>

namespace berth::server {

Status GoldenTicketsCompiledOut(std::string_view what, const std::string& who) {
  Status st = FailedPrecondition(
      "golden tickets are compiled out of this berthd (a release build, BERTH_GOLDEN_TICKETS=OFF), "
      "so it refuses to " +
      std::string(what) + " one; debug enrolment needs a debug build");
  spdlog::warn("audit call=GoldenTicket decision=refused who=\"{}\" code={} reason=\"{}\"", who,
               CodeName(st.code()), st.message());
  return st;
}

std::string PeerHost(std::string_view peer) {
  std::string_view p = peer;
  if (p.starts_with("ipv4:")) {
    p.remove_prefix(5);
    return std::string(p.substr(0, p.rfind(':')));
  }
  if (p.starts_with("ipv6:")) {
    p.remove_prefix(5);
    if (!p.empty() && p.front() == '[') {
      size_t end = p.find(']');
      std::string host(p.substr(1, end == std::string_view::npos ? p.npos : end - 1));
      // gRPC writes IPv4-mapped addresses as ::ffff:a.b.c.d.
      if (host.starts_with("::ffff:") && host.find('.') != std::string::npos) host = host.substr(7);
      return host;
    }
  }
  return std::string(p);
}

}  // namespace berth::server
