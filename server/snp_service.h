// berthd's SEV-SNP setup from its flags: the pinned ARKs (plus any test ARK), the certificate
// cache, KDS access and the verifier, owned together for the server's lifetime.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "common/clock.h"
#include "verify/policy_holder.h"
#include "verify/snp_certs.h"
#include "verify/snp_policy.h"
#include "verify/snp_verifier.h"

namespace berth::server {

struct SnpServerConfig {
  std::string cert_cache;  // --snp-cert-cache: directory of verified AMD certificates
  std::string kds_url;     // --snp-kds-url: e.g. https://kdsintf.amd.com; empty: never fetch
  std::string verify_at;   // --snp-verify-at: RFC 3339 certificate-validity time; empty: now
  // --insecure-test-snp-ark PRODUCT=FILE: replaces the ARK pinned for PRODUCT with the PEM or
  // DER certificate in FILE. For test chains only; berthd warns loudly when it is used.
  std::vector<std::string> insecure_test_arks;
  int kds_timeout_ms = 10000;
};

class SnpService {
 public:
  // INVALID_ARGUMENT naming the flag for an unusable configuration.
  static Result<std::unique_ptr<SnpService>> Create(const SnpServerConfig& config,
                                                    verify::SnpPolicy policy, Clock* clock);
  // berthd: verifies against the `sev_snp:` section of `holder`'s current policy (reloaded
  // without restarts); `holder` outlives the service.
  static Result<std::unique_ptr<SnpService>> Create(const SnpServerConfig& config,
                                                    const verify::PolicyHolder* holder,
                                                    Clock* clock);
  verify::EvidenceVerifier* verifier() { return verifier_.get(); }

 private:
  static Result<std::unique_ptr<SnpService>> Create(const SnpServerConfig& config,
                                                    verify::SnpPolicy policy,
                                                    const verify::PolicyHolder* holder,
                                                    Clock* clock);
  verify::SnpTrustAnchors anchors_;
  std::unique_ptr<verify::SnpKds> kds_;
  std::unique_ptr<verify::SnpCertStore> store_;
  std::unique_ptr<verify::SnpVerifier> verifier_;
};

}  // namespace berth::server
