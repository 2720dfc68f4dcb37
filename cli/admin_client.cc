#include "cli/admin_client.h"

#include "common/bytes.h"
#include "common/enrolment.h"
#include "common/rpc.h"

namespace berth::cli {

void AddConnectionFlags(CLI::App* cmd, AdminConnection& c) {
  cmd->add_option("--server", c.server, "berthd's AdminService, host:port")->required();
  cmd->add_option("--ca", c.ca, "CA of berthd's TLS certificate (PEM)")->required();
  cmd->add_option("--cert", c.cert, "operator client certificate (PEM)")->required();
  cmd->add_option("--key", c.key, "operator client key (PEM)")->required();
  cmd->add_option("--tls-server-name", c.tls_server_name, "name to expect in berthd's certificate");
}

Result<std::unique_ptr<v1::AdminService::Stub>> Connect(const AdminConnection& c) {
  if (!IsValidEndpoint(c.server))
    return InvalidArgument("--server " + c.server + " is not host:port");
  grpc::SslCredentialsOptions ssl;
  BERTH_ASSIGN_OR_RETURN(ssl.pem_root_certs, ReadFile(c.ca));
  BERTH_ASSIGN_OR_RETURN(ssl.pem_cert_chain, ReadFile(c.cert));
  BERTH_ASSIGN_OR_RETURN(SecretBytes key, ReadSecretFile(c.key));
  ssl.pem_private_key = std::string(key.view());
  grpc::ChannelArguments args = ClientChannelArguments();
  if (!c.tls_server_name.empty()) args.SetSslTargetNameOverride(c.tls_server_name);
  auto channel = grpc::CreateCustomChannel(c.server, grpc::SslCredentials(ssl), args);
  WipeString(ssl.pem_private_key);
  return v1::AdminService::NewStub(channel);
}

int AdminExit(Context& ctx, const Status& st) {
  if (st.ok()) return kExitOk;
  *ctx.err << st.ToString() << "\n";
  switch (st.code()) {
    case Code::kNotFound:
    case Code::kFailedPrecondition:
    case Code::kPermissionDenied:
    case Code::kAborted:
      return kExitCheckFailed;
    default:
      return kExitBadInput;
  }
}

}  // namespace berth::cli
