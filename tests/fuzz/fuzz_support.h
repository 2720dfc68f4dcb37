// What the libFuzzer targets (tests/fuzz/fuzz_*.cc) and their seed generator (fuzz_seeds.cc)
// share: the testdata, quiet logs, and the fixed world the structured targets run in (clock,
// master secret, peer, etcd keys, evidence policy). The seeds are made for this world so that
// a seed gets as deep into berthd's or the agent's checks as real input would.
//
// Not thread-safe; libFuzzer runs one input at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "agent/etcd_join.h"
#include "common/bytes.h"
#include "common/clock.h"
#include "common/secret.h"
#include "tests/fakes/fake_clock.h"
#include "verify/evidence.h"
#include "verify/snp_verifier.h"

namespace berth::fuzz {

// $BERTH_TESTDATA, else the folder CMake was configured with (../shared/testdata/attestation).
std::string TestdataDir();
// A file of the testdata; empty when the testdata is absent (the targets still run).
Bytes ReadTestdata(const std::string& rel);

// Turns logging off (spdlog, protobuf): the join logic writes an audit line per call and
// protobuf one per malformed string, which would dominate.
void Quiet();
// With BERTH_FUZZ_VERBOSE set, prints `what` and the outcome of an input to stderr (to see how
// deep a seed gets: `BERTH_FUZZ_VERBOSE=1 build-fuzz/tests/fuzz/fuzz_evidence <seed>`).
void Outcome(const char* what, const Status& status);

// 2025-01-01T00:00:00Z: inside the validity of every certificate in the testdata.
inline constexpr int64_t kNow = 1735689600;
inline constexpr char kNodeName[] = "fuzz-node";
inline constexpr char kPeerUrl[] = "https://10.0.0.1:2380";

// The berthd master secret of the join target (a fixed test value, not a secret): the seed
// generator issues nonces with it that the target accepts.
SecretBytes MasterSecret();
// The caller's TLS key hash as the join target's transport reports it.
Bytes PeerSpki();
// The binding the evidence target checks evidence against: the extraData of the GCE quotes in
// the testdata (0x9009), so that their seeds pass the quote checks and reach the event log.
Bytes EvidenceBinding();

// This boot's etcd keys in the ticket target: fixed P-256 test keys, so that the seed
// generator can make certificates for them.
agent::EtcdKeys FixedEtcdKeys();

// berthd's evidence verifiers (TPM and SEV-SNP behind the dispatcher) with a policy that
// trusts the GCE AK of the testdata and pins its sha256 PCR 0, and accepts SEV-SNP reports of
// the virtee measurement; certificates checked at kNow. Built once.
class EvidenceWorld {
 public:
  static EvidenceWorld& Get();
  verify::EvidenceVerifier& verifier() { return *dispatcher_; }

 private:
  EvidenceWorld();
  FakeClock clock_{kNow};
  std::unique_ptr<verify::TpmEvidenceVerifier> tpm_;
  verify::SnpTrustAnchors anchors_;
  std::unique_ptr<verify::SnpVerifier> snp_;
  std::unique_ptr<verify::EvidenceDispatcher> dispatcher_;
};

// The real TPM evidence of the GCE machine (sha256 quote, PCRs, event log, AK), as the agent
// would send it; empty evidence when the testdata is absent.
v1::Evidence GceTpmEvidence(const std::string& folder, const std::string& bank);

}  // namespace berth::fuzz
