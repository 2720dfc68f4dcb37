// Golden tickets, compiled twice (server/CMakeLists.txt): with BERTH_GOLDEN_TICKETS=1 into
// server_golden_on, with 0 into server_golden_off. Only the debug flavour has any code that
// issues or accepts a ticket.
#include <spdlog/spdlog.h>

#include "common/audit.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "common/enrolment.h"
#include "common/time.h"
#include "server/nodes/golden_ticket.h"
#include "server/nodes/records.h"

#ifndef BERTH_GOLDEN_TICKETS
#error "BERTH_GOLDEN_TICKETS must be defined to 0 or 1 by the build"
#endif

#if BERTH_GOLDEN_TICKETS
#include <openssl/crypto.h>

#include <regex>
#endif

namespace berth::server {

#if BERTH_GOLDEN_TICKETS

namespace {

constexpr int64_t kMinTtl = 60;

std::string Key(const std::string& id) { return "golden-tickets/" + id; }

bool IsTicketId(std::string_view id) {
  static const std::regex kId("^[0-9a-f]{32}$");
  return std::regex_match(id.begin(), id.end(), kId);
}

// An IP literal or a DNS name.
bool IsAddress(std::string_view a) {
  static const std::regex kAddress("^[0-9A-Za-z.:-]{1,253}$");
  return std::regex_match(a.begin(), a.end(), kAddress);
}

class EtcdGoldenTickets : public GoldenTickets {
 public:
  EtcdGoldenTickets(NodeStore* store, Clock* clock, GoldenTicketOptions options)
      : store_(store), clock_(clock), options_(std::move(options)) {}

  Result<v1::GoldenTicketIssueResponse> Issue(const v1::GoldenTicketIssueRequest& request,
                                              const std::string& by) override {
    // Golden tickets are audited at warning level, granted or not (docs/lifecycle.md).
    AuditLine audit("IssueGoldenTicket");
    audit.Quoted("operator", by).Add("node", request.node_name());
    audit.Add("address", request.node_address());
    auto refuse = [&](Status st) {
      audit.Log(st, "granted", "refused", /*loud=*/true);
      return st;
    };
    if (!IsAddress(request.node_address())) {
      return refuse(InvalidArgument("--node-address \"" + request.node_address() +
                                    "\" is not an IP address or host name"));
    }
    if (!request.node_name().empty() && !IsValidNodeName(request.node_name())) {
      return refuse(InvalidArgument("--node-name \"" + request.node_name() +
                                    "\" is not a valid Kubernetes node name"));
    }
    v1::NodeRole role =
        request.role() == v1::NODE_ROLE_UNSPECIFIED ? v1::NODE_ROLE_WORKER : request.role();
    if (role != v1::NODE_ROLE_WORKER && role != v1::NODE_ROLE_CONTROL_PLANE) {
      return refuse(InvalidArgument("unknown role"));
    }
    int64_t ttl = request.ttl_seconds() == 0 ? options_.default_ttl.count() : request.ttl_seconds();
    if (ttl < kMinTtl || ttl > options_.max_ttl.count()) {
      return refuse(InvalidArgument("--ttl must be between " + std::to_string(kMinTtl) + " and " +
                                    std::to_string(options_.max_ttl.count()) + " seconds"));
    }
    const int64_t now = clock_->NowUnix();
    v1::GoldenTicketIssueResponse out;
    v1::GoldenTicket* t = out.mutable_ticket();
    t->set_id(HexEncode(RandomBytes(16)));
    Bytes secret = RandomBytes(32);
    t->set_secret(ToString(secret));
    t->set_node_name(request.node_name());
    t->set_node_address(request.node_address());
    t->set_role(role);
    t->set_expires_unix(now + ttl);
    t->set_cluster_id(options_.cluster_id);
    t->set_issued_by(by);
    v1::GoldenTicketRecord record;
    record.set_version(1);
    record.set_id(t->id());
    record.set_secret_sha256(HexEncode(Sha256(secret)));
    WipeMemory(secret.data(), secret.size());
    record.set_node_name(t->node_name());
    record.set_node_address(t->node_address());
    record.set_role(role);
    record.set_expires_unix(t->expires_unix());
    record.set_issued_by(by);
    record.set_issued_unix(now);
    Status st = store_->PutIfAbsent(Key(t->id()), RecordToJson(record));
    if (!st.ok()) {
      WipeString(*t->mutable_secret());
      return refuse(st);
    }
    audit.Add("ticket", t->id()).Add("role", NodeRoleName(role));
    audit.Add("expires", Rfc3339(t->expires_unix())).Log(OkStatus(), "granted", "refused", true);
    return out;
  }

  Result<verify::VerifiedEvidence> Verify(const v1::JoinRequest& request,
                                          const std::string& peer_address,
                                          std::span<const uint8_t> peer_spki_sha256) override {
    const v1::GoldenTicket& t = request.golden_ticket();
    const std::string node = request.node_name();
    const std::string peer_key = HexEncode(peer_spki_sha256);
    const std::string host = PeerHost(peer_address);
    AuditLine audit("UseGoldenTicket");
    audit.Add("node", node).Add("peer", peer_address).Add("ticket", IsTicketId(t.id()) ? t.id() : "");
    auto refuse = [&](Status st) {
      audit.Log(st, "granted", "refused", /*loud=*/true);
      return st;
    };
    if (!IsTicketId(t.id())) return refuse(InvalidArgument("the golden ticket has no valid id"));
    BERTH_ASSIGN_OR_RETURN(std::optional<StoredValue> stored, store_->GetValue(Key(t.id())));
    if (!stored) return refuse(PermissionDenied("golden ticket " + t.id() + " is unknown"));
    v1::GoldenTicketRecord r;
    BERTH_RETURN_IF_ERROR(RecordFromJson(stored->key, stored->value, &r));
    Bytes presented = Sha256(AsBytes(t.secret()));
    auto expected = HexDecode(r.secret_sha256());
    if (!expected.ok() || expected->size() != presented.size() ||
        CRYPTO_memcmp(expected->data(), presented.data(), presented.size()) != 0) {
      return refuse(PermissionDenied("golden ticket " + t.id() + ": the secret does not match"));
    }
    const int64_t now = clock_->NowUnix();
    if (now >= r.expires_unix()) {
      return refuse(
          PermissionDenied("golden ticket " + t.id() + " expired at " + Rfc3339(r.expires_unix())));
    }
    if (r.used_unix() != 0 && !(r.used_by_peer_key() == peer_key && r.used_by_node() == node)) {
      return refuse(PermissionDenied("golden ticket " + t.id() + " was used at " +
                                     Rfc3339(r.used_unix()) + " by node " + r.used_by_node() +
                                     "; a ticket admits one join"));
    }
    if (!r.node_name().empty() && r.node_name() != node) {
      return refuse(PermissionDenied("golden ticket " + t.id() + " is for node " + r.node_name() +
                                     ", not " + node));
    }
    if (host != r.node_address()) {
      return refuse(PermissionDenied("golden ticket " + t.id() + " is for a node at " +
                                     r.node_address() + ", and this one calls from " + host));
    }
    if (request.role() != r.role()) {
      return refuse(PermissionDenied("golden ticket " + t.id() + " is for a " +
                                     std::string(NodeRoleName(r.role())) + ", not a " +
                                     std::string(NodeRoleName(request.role()))));
    }
    const bool retry = r.used_unix() != 0;
    if (!retry) {
      r.set_used_unix(now);
      r.set_used_by_node(node);
      r.set_used_by_peer_key(peer_key);
    }
    verify::VerifiedEvidence out;
    out.ak_sha256_hex = peer_key;  // the only identity the node proved: this boot's TLS key
    out.ak_name = "golden-ticket";
    out.rule = "golden ticket " + t.id() + " issued by " + r.issued_by() + " (no attestation)";
    out.golden = verify::GoldenUse{.ticket_id = t.id(),
                           .role_grant = "golden ticket " + t.id() + " issued by " + r.issued_by(),
                           .key = stored->key,
                           .mod_revision = stored->mod_revision,
                           .used_record = RecordToJson(r)};
    audit.Add("use", retry ? "retry" : "first").Log(OkStatus(), "granted", "refused", true);
    return out;
  }

 private:
  NodeStore* store_;
  Clock* clock_;
  GoldenTicketOptions options_;
};

}  // namespace

std::unique_ptr<GoldenTickets> MakeGoldenTickets(NodeStore* store, Clock* clock,
                                                 GoldenTicketOptions options) {
  spdlog::warn(
      "INSECURE: this berthd is a debug build: it issues and accepts golden tickets "
      "(joins without attestation); never run it in production");
  return std::make_unique<EtcdGoldenTickets>(store, clock, std::move(options));
}

bool GoldenTicketsCompiledIn() { return true; }

#else  // release build: nothing that issues or accepts a ticket

std::unique_ptr<GoldenTickets> MakeGoldenTickets(NodeStore*, Clock*, GoldenTicketOptions) {
  return nullptr;
}

bool GoldenTicketsCompiledIn() { return false; }

#endif

}  // namespace berth::server
