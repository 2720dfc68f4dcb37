// The gRPC adapter of AdminService: unpacks each call and the operator's identity (the subject
// of the client certificate that the TLS layer verified against the operator CA) and forwards
// to NodeAdmin. It is served on its own port, never on the node-facing one (berthd_etcd.h).
#pragma once

#include "berth/v1/nodes.grpc.pb.h"
#include "server/nodes/admin.h"
#include "server/nodes/golden_ticket.h"

namespace berth::server {

class AdminServiceImpl final : public v1::AdminService::Service {
 public:
  explicit AdminServiceImpl(NodeAdmin* admin) : admin_(admin) {}

  grpc::Status ListNodes(grpc::ServerContext* context, const v1::AdminListNodesRequest* request,
                         v1::AdminListNodesResponse* response) override;
  grpc::Status RevokeNode(grpc::ServerContext* context, const v1::AdminRevokeNodeRequest* request,
                          v1::AdminRevokeNodeResponse* response) override;
  grpc::Status AuthorizeNode(grpc::ServerContext* context,
                             const v1::AdminAuthorizeNodeRequest* request,
                             v1::AdminAuthorizeNodeResponse* response) override;
  grpc::Status GetEtcdCrl(grpc::ServerContext* context, const v1::AdminGetEtcdCrlRequest* request,
                          v1::AdminGetEtcdCrlResponse* response) override;
  grpc::Status ApproveNode(grpc::ServerContext* context, const v1::ApprovalApproveRequest* request,
                           v1::ApprovalApproveResponse* response) override;
  grpc::Status DenyNode(grpc::ServerContext* context, const v1::ApprovalDenyRequest* request,
                        v1::ApprovalDenyResponse* response) override;
  grpc::Status IssueGoldenTicket(grpc::ServerContext* context,
                                 const v1::GoldenTicketIssueRequest* request,
                                 v1::GoldenTicketIssueResponse* response) override;

  // Golden tickets (golden_ticket.h); null: a release build, which refuses to issue them.
  void set_golden_tickets(GoldenTickets* golden) { golden_ = golden; }

 private:
  NodeAdmin* admin_;
  GoldenTickets* golden_ = nullptr;
};

// "CN=alice" from the verified client certificate, or "" when there is none (then the call is
// refused: the port requires one, so this is a second line of defence).
std::string OperatorFromContext(const grpc::ServerContext& context);

}  // namespace berth::server
