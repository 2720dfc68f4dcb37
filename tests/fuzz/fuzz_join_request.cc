// IssueJoinTicket as berthd serves it, without the network: the request bytes as gRPC hands
// them over, parsed into v1::JoinRequest and given to server::JoinLogic with a real nonce
// issuer, the evidence verifiers of fuzz_evidence and no etcd (workers only). The request's
// own checks (node name, disk UUID, role), the nonce (size, HMAC, expiry), the channel binding
// and the evidence run as in berthd. The seeds carry valid nonces of this world, so mutations
// of everything but the nonce reach the evidence checks.
#include <cstddef>
#include <cstdint>

#include "berth/v1/berth.pb.h"
#include "server/join/join_logic.h"
#include "tests/fakes/fake_clock.h"
#include "tests/fuzz/fuzz_support.h"

namespace {

// Bootstrap tokens come from the Kubernetes API in berthd; here they are minted in memory
// (the API server is not the input under test).
class MemoryTokens : public berth::server::TokenIssuer {
 public:
  berth::Result<berth::server::BootstrapToken> Issue(const std::string&) override {
    return berth::server::GenerateBootstrapToken(berth::fuzz::kNow + 3600);
  }
};

struct World {
  berth::FakeClock clock{berth::fuzz::kNow};
  berth::server::NonceIssuer nonces;
  MemoryTokens tokens;
  berth::server::JoinLogic logic;
  World()
      : nonces(std::move(berth::server::NonceIssuer::Create(berth::fuzz::MasterSecret(), &clock,
                                                            std::chrono::seconds(300)))
                   .value()),
        logic(berth::server::JoinOptions{.cluster_id = "fuzz",
                                         .api_server_endpoint = "10.0.0.1:6443",
                                         .ca_cert_hashes = {"sha256:" + std::string(64, 'a')}},
              berth::fuzz::MasterSecret(), &nonces, &berth::fuzz::EvidenceWorld::Get().verifier(),
              &tokens, nullptr) {}
};

World& GetWorld() {
  static World* world = new World();
  return *world;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  berth::fuzz::Quiet();
  GetWorld();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  berth::v1::JoinRequest request;
  if (!request.ParseFromArray(data, static_cast<int>(size))) return 0;
  berth::server::Peer peer{.spki_sha256 = berth::fuzz::PeerSpki(), .address = "192.0.2.1:40000"};
  berth::fuzz::Outcome("IssueJoinTicket", GetWorld().logic.IssueJoinTicket(request, peer).status());
  return 0;
}
