#include "server/nodes/admin_service.h"

#include <grpc/grpc_security_constants.h>
#include <grpcpp/security/auth_context.h>

#include "common/rpc.h"

namespace berth::server {

std::string OperatorFromContext(const grpc::ServerContext& context) {
  auto auth = context.auth_context();
  if (auth == nullptr || !auth->IsPeerAuthenticated()) return "";
  auto cn = auth->FindPropertyValues(GRPC_X509_CN_PROPERTY_NAME);
  if (cn.empty()) return "";
  return "CN=" + std::string(cn.front().data(), cn.front().size());
}

namespace {

template <typename Response, typename Fn>
grpc::Status Serve(grpc::ServerContext* context, Response* response, Fn fn) {
  const std::string by = OperatorFromContext(*context);
  if (by.empty()) {
    return ToGrpcStatus(Unauthenticated("AdminService requires an operator client certificate"));
  }
  Result<Response> result = fn(by);
  if (!result.ok()) return ToGrpcStatus(result.status());
  *response = std::move(result).value();
  return grpc::Status::OK;
}

}  // namespace

grpc::Status AdminServiceImpl::ListNodes(grpc::ServerContext* context,
                                         const v1::AdminListNodesRequest*,
                                         v1::AdminListNodesResponse* response) {
  return Serve(context, response, [&](const std::string&) { return admin_->ListNodes(); });
}

grpc::Status AdminServiceImpl::RevokeNode(grpc::ServerContext* context,
                                          const v1::AdminRevokeNodeRequest* request,
                                          v1::AdminRevokeNodeResponse* response) {
  return Serve(context, response,
               [&](const std::string& by) { return admin_->RevokeNode(request->name(), by); });
}

grpc::Status AdminServiceImpl::AuthorizeNode(grpc::ServerContext* context,
                                             const v1::AdminAuthorizeNodeRequest* request,
                                             v1::AdminAuthorizeNodeResponse* response) {
  return Serve(context, response,
               [&](const std::string& by) { return admin_->AuthorizeNode(*request, by); });
}

grpc::Status AdminServiceImpl::GetEtcdCrl(grpc::ServerContext* context,
                                          const v1::AdminGetEtcdCrlRequest*,
                                          v1::AdminGetEtcdCrlResponse* response) {
  return Serve(context, response, [&](const std::string&) { return admin_->GetEtcdCrl(); });
}

grpc::Status AdminServiceImpl::ApproveNode(grpc::ServerContext* context,
                                           const v1::ApprovalApproveRequest* request,
                                           v1::ApprovalApproveResponse* response) {
  return Serve(context, response,
               [&](const std::string& by) { return admin_->ApproveNode(*request, by); });
}

grpc::Status AdminServiceImpl::DenyNode(grpc::ServerContext* context,
                                        const v1::ApprovalDenyRequest* request,
                                        v1::ApprovalDenyResponse* response) {
  return Serve(context, response,
               [&](const std::string& by) { return admin_->DenyNode(request->name(), by); });
}

grpc::Status AdminServiceImpl::IssueGoldenTicket(grpc::ServerContext* context,
                                                 const v1::GoldenTicketIssueRequest* request,
                                                 v1::GoldenTicketIssueResponse* response) {
  return Serve(context, response,
               [&](const std::string& by) -> Result<v1::GoldenTicketIssueResponse> {
                 if (golden_ == nullptr) return GoldenTicketsCompiledOut("issue", by);
                 return golden_->Issue(*request, by);
               });
}

}  // namespace berth::server
