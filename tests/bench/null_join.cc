#include "tests/bench/null_join.h"

#include <string>

#include "server/join/nonce.h"

namespace berth::bench {

grpc::Status NullJoinService::Challenge(grpc::ServerContext*, const v1::ChallengeRequest*,
                                        v1::ChallengeResponse* response) {
  challenges_++;
  response->set_nonce(std::string(server::kNonceSize, 'n'));
  response->set_expires_unix(4102444800);  // 2100-01-01: never checked
  return grpc::Status::OK;
}

grpc::Status NullJoinService::IssueJoinTicket(grpc::ServerContext*, const v1::JoinRequest*,
                                              v1::JoinTicket* response) {
  tickets_++;
  // Fixed bytes of the sizes berthd sends; no key is derived and no token exists anywhere.
  response->set_disk_key(std::string(32, 'k'));
  auto* kubeadm = response->mutable_kubeadm();
  kubeadm->set_api_server_endpoint("127.0.0.1:6443");
  kubeadm->set_token("abcdef.0123456789abcdef");
  kubeadm->add_ca_cert_hashes("sha256:" + std::string(64, '0'));
  kubeadm->set_kubernetes_version("v1.31.0");
  return grpc::Status::OK;
}

}  // namespace berth::bench
