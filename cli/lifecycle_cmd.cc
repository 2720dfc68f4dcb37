// berthctl's node-lifecycle commands (docs/lifecycle.md), through berthd's AdminService:
//
//   berthctl nodes approve NAME [--ak-sha256 HEX]   a pending node may join
//   berthctl nodes deny    NAME                     a pending node never joins (revoked)
//   berthctl golden-ticket --node-address ADDR --enrolment FILE
//                          [--node-name NAME] [--role worker|control-plane] [--ttl SECONDS]
//       asks berthd for a golden ticket (debug builds of berthd only) and writes it into the
//       node's EnrolmentConfig FILE (atomically, 0600: it now holds a secret)
// each with --server HOST:PORT --ca PEM --cert PEM --key PEM [--tls-server-name NAME].
//
// Exit codes: 0 done; 1 berthd refused (no such node, not pending, a release build); 2 bad
// flags or files, or berthd unreachable.
#include <memory>

#include "cli/admin_client.h"
#include "cli/commands.h"
#include "common/bytes.h"
#include "common/enrolment.h"

namespace berth::cli {

namespace {

std::string Role(v1::NodeRole r) {
  return r == v1::NODE_ROLE_CONTROL_PLANE ? "control-plane" : "worker";
}

}  // namespace

void AddLifecycleCommands(CLI::App& app, Context& ctx) {
  CLI::App* nodes = Group(app, "nodes", "node records in etcd, through berthd's AdminService");

  auto approve_conn = std::make_shared<AdminConnection>();
  auto approve_name = std::make_shared<std::string>();
  auto approve_ak = std::make_shared<std::string>();
  CLI::App* approve = nodes->add_subcommand(
      "approve", "let a node pending approval join (the attestation key it was seen with)");
  approve->add_option("name", *approve_name, "node name")->required();
  approve->add_option("--ak-sha256", *approve_ak,
                      "approve only if the node is pending with this attestation key (hex)");
  AddConnectionFlags(approve, *approve_conn);
  approve->callback([&ctx, approve_conn, approve_name, approve_ak] {
    auto r = CallAdmin<v1::ApprovalApproveResponse>(*approve_conn, "ApproveNode",
                                                    [&](auto& stub, auto* c, auto* out) {
                                                      v1::ApprovalApproveRequest request;
                                                      request.set_name(*approve_name);
                                                      request.set_ak_sha256(*approve_ak);
                                                      return stub.ApproveNode(c, request, out);
                                                    });
    if (!r.ok()) {
      ctx.exit_code = AdminExit(ctx, r.status());
      return;
    }
    *ctx.out << "approved " << r->node().name()
             << " (attestation key sha256:" << r->node().ak_sha256() << ")\n";
  });

  auto deny_conn = std::make_shared<AdminConnection>();
  auto deny_name = std::make_shared<std::string>();
  CLI::App* deny = nodes->add_subcommand("deny", "refuse a node pending approval, for good");
  deny->add_option("name", *deny_name, "node name")->required();
  AddConnectionFlags(deny, *deny_conn);
  deny->callback([&ctx, deny_conn, deny_name] {
    auto r = CallAdmin<v1::ApprovalDenyResponse>(*deny_conn, "DenyNode",
                                                 [&](auto& stub, auto* c, auto* out) {
                                                   v1::ApprovalDenyRequest request;
                                                   request.set_name(*deny_name);
                                                   return stub.DenyNode(c, request, out);
                                                 });
    if (!r.ok()) {
      ctx.exit_code = AdminExit(ctx, r.status());
      return;
    }
    *ctx.out << "denied " << r->node().name() << ": revoked\n";
  });

  struct GoldenFlags {
    AdminConnection conn;
    std::string address, name, role = "worker", enrolment;
    int64_t ttl = 0;
  };
  auto g = std::make_shared<GoldenFlags>();
  CLI::App* golden = app.add_subcommand(
      "golden-ticket",
      "DEBUG ENROLMENT: get a single-use ticket that lets one node join without attestation "
      "(debug builds of berthd only) and write it into its EnrolmentConfig");
  golden->add_option("--node-address", g->address, "the address the node calls berthd from")
      ->required();
  golden->add_option("--node-name", g->name, "the node's name (default: any, fixed at use)");
  golden->add_option("--role", g->role, "worker or control-plane")
      ->check(CLI::IsMember({"worker", "control-plane"}))
      ->capture_default_str();
  golden->add_option("--ttl", g->ttl, "seconds the ticket is valid (default 900, at most 86400)");
  golden
      ->add_option("--enrolment", g->enrolment,
                   "the node's EnrolmentConfig (binary), updated in place")
      ->required();
  AddConnectionFlags(golden, g->conn);
  golden->callback([&ctx, g] {
    auto config = ReadEnrolmentConfigUnvalidated(g->enrolment);
    if (!config.ok()) {
      ctx.exit_code = AdminExit(ctx, InvalidArgument(config.status().message()));
      return;
    }
    const v1::NodeRole role =
        g->role == "control-plane" ? v1::NODE_ROLE_CONTROL_PLANE : v1::NODE_ROLE_WORKER;
    if (config->role() != role) {
      ctx.exit_code =
          AdminExit(ctx, InvalidArgument(g->enrolment + " is for a " + Role(config->role()) +
                                         ", not a " + g->role + " (--role)"));
      return;
    }
    auto r = CallAdmin<v1::GoldenTicketIssueResponse>(
        g->conn, "IssueGoldenTicket", [&](auto& stub, auto* c, auto* out) {
          v1::GoldenTicketIssueRequest request;
          request.set_node_address(g->address);
          request.set_node_name(g->name);
          request.set_role(role);
          request.set_ttl_seconds(g->ttl);
          return stub.IssueGoldenTicket(c, request, out);
        });
    if (!r.ok()) {
      ctx.exit_code = AdminExit(ctx, r.status());
      return;
    }
    *config->mutable_golden_ticket() = r->ticket();
    std::string bytes = config->SerializeAsString();
    Status written = WriteFileAtomic(g->enrolment, bytes, 0600);
    WipeString(bytes);
    WipeString(*config->mutable_golden_ticket()->mutable_secret());
    WipeString(*r->mutable_ticket()->mutable_secret());
    if (!written.ok()) {
      ctx.exit_code = AdminExit(ctx, InvalidArgument(written.message()));
      return;
    }
    *ctx.out << "golden ticket " << r->ticket().id() << " for " << g->role << " "
             << (g->name.empty() ? "(any name)" : g->name) << " at " << g->address
             << ", single use, written to " << g->enrolment << "\n";
  });
}

}  // namespace berth::cli
