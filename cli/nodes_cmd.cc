// berthctl nodes: the node records berthd keeps in etcd, through berthd's AdminService
// (its own port, mutual TLS with an operator certificate; docs/etcd.md).
//
//   berthctl nodes list      [--json]
//   berthctl nodes revoke    NAME
//   berthctl nodes authorize NAME --role control-plane [--ak-sha256 HEX]
//   berthctl nodes crl       [--out FILE]
// each with --server HOST:PORT --ca PEM --cert PEM --key PEM [--tls-server-name NAME].
//
// Exit codes: 0 done; 1 berthd refused or could not complete it (no such node, a removal that
// would cost quorum, ...); 2 bad flags, unreadable files, or berthd unreachable.
#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>

#include <ctime>
#include <iomanip>
#include <memory>

#include "berth/v1/nodes.grpc.pb.h"
#include "cli/admin_client.h"
#include "cli/commands.h"
#include "common/bytes.h"
#include "common/enrolment.h"
#include "common/etcd_client.h"
#include "common/node_names.h"
#include "common/rpc.h"
#include "common/time.h"

namespace berth::cli {

namespace {

// Kept under their old names here; the connection lives in admin_client.h.
int Exit(Context& ctx, const Status& st) { return AdminExit(ctx, st); }

template <typename Response, typename Fn>
Result<Response> Call(const AdminConnection& c, const char* method, Fn fn) {
  return CallAdmin<Response>(c, method, fn);
}

std::string Time(int64_t unix_seconds) {
  if (unix_seconds == 0) return "-";
  return Rfc3339(unix_seconds);
}

template <typename Message>
std::string Json(const Message& m) {
  std::string out;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  o.add_whitespace = true;
  (void)google::protobuf::util::MessageToJsonString(m, &out, o);
  return out;
}

void PrintNodes(std::ostream& out, const v1::AdminListNodesResponse& r) {
  out << std::left << std::setw(24) << "NAME" << std::setw(15) << "ROLE" << std::setw(9) << "STATE"
      << std::setw(38) << "DISK" << std::setw(18) << "AK" << std::setw(18) << "ETCD-MEMBER"
      << "LAST-JOIN\n";
  for (const auto& n : r.nodes()) {
    out << std::setw(24) << n.name() << std::setw(15) << NodeRoleName(n.role())
        << std::setw(9) << NodeStateName(n.state()) << std::setw(38)
        << (n.disk_uuid().empty() ? "-" : n.disk_uuid()) << std::setw(18)
        << (n.ak_sha256().empty() ? "-" : n.ak_sha256().substr(0, 16)) << std::setw(18)
        << (n.etcd_member_id() ? etcd::MemberIdHex(n.etcd_member_id()) : "-")
        << Time(n.last_join_unix()) << "\n";
  }
  for (const auto& a : r.authorizations()) {
    out << "authorized: " << a.name() << " as " << NodeRoleName(a.role())
        << (a.ak_sha256().empty() ? "" : " (AK " + a.ak_sha256().substr(0, 16) + ")") << " by "
        << a.authorized_by() << " at " << Time(a.authorized_unix()) << "\n";
  }
}

}  // namespace

void AddNodesCommands(CLI::App& app, Context& ctx) {
  CLI::App* nodes = Group(app, "nodes", "node records in etcd, through berthd's AdminService");

  auto list_conn = std::make_shared<AdminConnection>();
  auto json = std::make_shared<bool>(false);
  CLI::App* list = nodes->add_subcommand("list", "list every node berthd has recorded");
  AddConnectionFlags(list, *list_conn);
  list->add_flag("--json", *json, "print the records as JSON");
  list->callback([&ctx, list_conn, json] {
    auto r = Call<v1::AdminListNodesResponse>(
        *list_conn, "ListNodes", [](auto& stub, auto* c, auto* out) {
          return stub.ListNodes(c, v1::AdminListNodesRequest(), out);
        });
    if (!r.ok()) {
      ctx.exit_code = Exit(ctx, r.status());
      return;
    }
    if (*json) {
      *ctx.out << Json(*r);
    } else {
      PrintNodes(*ctx.out, *r);
    }
  });

  auto revoke_conn = std::make_shared<AdminConnection>();
  auto revoke_name = std::make_shared<std::string>();
  CLI::App* revoke = nodes->add_subcommand(
      "revoke",
      "revoke a node: no more tickets, its etcd certificates on the CRL, its etcd "
      "member removed, its bootstrap tokens deleted");
  revoke->add_option("name", *revoke_name, "node name")->required();
  AddConnectionFlags(revoke, *revoke_conn);
  revoke->callback([&ctx, revoke_conn, revoke_name] {
    auto r = Call<v1::AdminRevokeNodeResponse>(*revoke_conn, "RevokeNode",
                                               [&](auto& stub, auto* c, auto* out) {
                                                 v1::AdminRevokeNodeRequest request;
                                                 request.set_name(*revoke_name);
                                                 return stub.RevokeNode(c, request, out);
                                               });
    if (!r.ok()) {
      ctx.exit_code = Exit(ctx, r.status());
      return;
    }
    *ctx.out << "revoked " << r->node().name() << " at " << Time(r->node().revoked_unix()) << "\n";
    for (const auto& s : r->revoked_serials())
      *ctx.out << "  certificate on the CRL: " << s << "\n";
    if (r->removed_member_id() != 0) {
      *ctx.out << "  etcd member removed: " << etcd::MemberIdHex(r->removed_member_id()) << "\n";
    }
    for (const auto& t : r->deleted_tokens())
      *ctx.out << "  bootstrap token deleted: " << t << "\n";
  });

  auto auth_conn = std::make_shared<AdminConnection>();
  auto auth_name = std::make_shared<std::string>();
  auto auth_role = std::make_shared<std::string>();
  auto auth_ak = std::make_shared<std::string>();
  CLI::App* authorize = nodes->add_subcommand(
      "authorize",
      "authorize a node name (optionally only with one attestation key) to join "
      "as a control plane");
  authorize->add_option("name", *auth_name, "node name")->required();
  authorize->add_option("--role", *auth_role, "the role to grant")
      ->required()
      ->check(CLI::IsMember({"control-plane"}));
  authorize->add_option("--ak-sha256", *auth_ak, "only a node with this attestation key (hex)");
  AddConnectionFlags(authorize, *auth_conn);
  // Every option's storage is owned by its callback, so it outlives this function.
  authorize->callback([&ctx, auth_conn, auth_name, auth_role, auth_ak] {
    auto r = Call<v1::AdminAuthorizeNodeResponse>(*auth_conn, "AuthorizeNode",
                                                  [&](auto& stub, auto* c, auto* out) {
                                                    v1::AdminAuthorizeNodeRequest request;
                                                    request.set_name(*auth_name);
                                                    request.set_role(v1::NODE_ROLE_CONTROL_PLANE);
                                                    request.set_ak_sha256(*auth_ak);
                                                    return stub.AuthorizeNode(c, request, out);
                                                  });
    if (!r.ok()) {
      ctx.exit_code = Exit(ctx, r.status());
      return;
    }
    *ctx.out << "authorized " << r->authorization().name() << " as " << *auth_role << "\n";
  });

  auto crl_conn = std::make_shared<AdminConnection>();
  auto crl_out = std::make_shared<std::string>();
  CLI::App* crl = nodes->add_subcommand("crl", "print the etcd CA's current CRL (PEM)");
  crl->add_option("--out", *crl_out, "write it to this file instead");
  AddConnectionFlags(crl, *crl_conn);
  crl->callback([&ctx, crl_conn, crl_out] {
    auto r = Call<v1::AdminGetEtcdCrlResponse>(
        *crl_conn, "GetEtcdCrl", [](auto& stub, auto* c, auto* out) {
          return stub.GetEtcdCrl(c, v1::AdminGetEtcdCrlRequest(), out);
        });
    if (!r.ok()) {
      ctx.exit_code = Exit(ctx, r.status());
      return;
    }
    if (crl_out->empty()) {
      *ctx.out << r->crl();
      return;
    }
    ctx.exit_code = Exit(ctx, WriteFileAtomic(*crl_out, r->crl(), 0644));
  });
}

}  // namespace berth::cli
