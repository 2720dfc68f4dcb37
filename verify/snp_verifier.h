// SEV-SNP report verification: the AMD chain, the report signature, the VCEK's TCB and chip,
// the channel binding and the policy. berthd uses SnpVerifier; berthctl uses the same pieces
// offline (VerifySnpReportOffline).
//
// What is checked, in order (each failure is PERMISSION_DENIED naming the check, malformed
// input INVALID_ARGUMENT):
//   chain:      ARK pinned for the report's product (SHA-256 of its DER) and self-signed;
//               ARK -> ASK (ASVK for a VLEK) -> VCEK (VLEK), each RSASSA-PSS with SHA-384,
//               MGF1-SHA-384 and salt length 48; each valid at the verification time; the
//               VCEK an EC P-384 key.
//   signature:  ECDSA P-384 / SHA-384 over report bytes [0, 0x2A0) with the VCEK's key.
//   tcb:        the VCEK's SPL extensions equal the report's reported_tcb (0x180).
//   chip:       the VCEK's hwID equals the report's chip_id.
//   report_data: binding || 32 zero bytes (SnpVerifier only; berthctl with --report-data).
//   policy:     snp_policy.h.
#pragma once

#include <map>
#include <optional>

#include "berth/v1/berth.pb.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/snp/report.h"
#include "verify/evidence.h"
#include "verify/policy_holder.h"
#include "verify/snp_certs.h"
#include "verify/snp_policy.h"

namespace berth::verify {

// The ARK each product's chain must end in, plus the ASK/ASVK that the ARK signed when known.
// Immutable once set up; thread-safe to read.
class SnpTrustAnchors {
 public:
  // AMD's production roots (common/snp/amd_roots.h), each ARK checked against its pinned
  // fingerprint.
  static Result<SnpTrustAnchors> Amd();
  // No product at all (tests build their own).
  SnpTrustAnchors() = default;
  SnpTrustAnchors(SnpTrustAnchors&&) = default;
  SnpTrustAnchors& operator=(SnpTrustAnchors&&) = default;

  // Replaces the ARK pinned for `product` with `ark`, dropping the product's known ASK and
  // ASVK (the new ARK did not sign them). For test chains and labs only: berthd reaches it
  // through --insecure-test-snp-ark, which logs a warning.
  Status PinArk(snp::Product product, X509Ptr ark);

  X509* ark(snp::Product product) const;
  X509* intermediate(snp::Product product, bool vlek) const;  // may be null
  std::string ark_sha256_hex(snp::Product product) const;

 private:
  struct Anchor {
    X509Ptr ark, ask, asvk;
    std::string ark_sha256_hex;
  };
  std::map<snp::Product, Anchor> anchors_;
};

// ---- the individual checks ----

// The product a report is for: its CPUID fields (version 3+), else the endorsement key's
// productName. PERMISSION_DENIED when the two disagree; kUnknown when neither says.
Result<snp::Product> ResolveProduct(const snp::Report& report, const snp::EndorsementKeyInfo* leaf);

// For a report and endorsement key that name no product (version-2 reports, older VCEKs): the
// product whose pinned ARK issued `intermediate` (when given) or whose pinned ASK/ASVK issued
// `leaf`, by name. kUnknown when none did.
snp::Product ProductFromIssuer(const SnpTrustAnchors& anchors, X509* intermediate, X509* leaf,
                               bool vlek);

// ARK self-signed, ARK -> intermediate -> leaf as described above, at `at_unix`.
Status VerifySnpChain(X509* ark, X509* intermediate, X509* leaf, bool vlek, int64_t at_unix);
// The report's signature with the leaf's key.
Status VerifyReportSignature(const snp::Report& report, X509* leaf);
// The leaf's TCB extensions and hwID against the report.
Status CheckLeafMatchesReport(const snp::Report& report, const snp::EndorsementKeyInfo& leaf,
                              snp::Product product);

// What an authenticated report established.
struct SnpVerifiedReport {
  snp::Report report;
  snp::Product product = snp::Product::kUnknown;
  std::string leaf_spki_sha256_hex;  // SHA-256 of the VCEK/VLEK's SubjectPublicKeyInfo
  CertSource leaf_source = CertSource::kSent;
  CertSource intermediate_source = CertSource::kSent;
  std::string leaf_csp_id;  // a VLEK's cloud (EndorsementKeyInfo::csp_id)
  std::string crl;          // "crl checked" or "no crl", for audit lines
};

// AMD's CRL for the chain: issued and signed by `ark` (RSASSA-PSS, as AMD signs) and not
// dated in the future of `at_unix`. PERMISSION_DENIED naming what is wrong.
Status VerifyAmdCrl(X509_CRL* crl, X509* ark, int64_t at_unix);
// PERMISSION_DENIED when `cert` (named `what`) is on `crl`.
Status CheckNotRevoked(X509_CRL* crl, X509* cert, const std::string& what);

// ---- offline (berthctl) ----

struct SnpOfflineInput {
  Bytes report;
  Bytes leaf_der;                         // VCEK or VLEK
  std::optional<Bytes> intermediate_der;  // ASK or ASVK; default: the pinned one
  std::optional<Bytes> ark_der;           // default: the pinned one
  std::optional<Bytes> report_data;       // 64 bytes to compare; none: not compared
  int64_t at_unix = 0;
  const SnpPolicy* policy = nullptr;  // optional
};
// Signature, chain, TCB, chip, then report_data and policy when given.
Result<SnpVerifiedReport> VerifySnpReportOffline(const SnpOfflineInput& input,
                                                 const SnpTrustAnchors& anchors);

// ---- berthd ----

struct SnpVerifierOptions {
  // Certificates are checked for validity at this time (unix seconds) when set: a test hook
  // and berthd's --snp-verify-at, for fixtures whose certificates have expired. Otherwise the
  // clock's now.
  std::optional<int64_t> verify_at_unix;
  Clock* clock = nullptr;  // required when verify_at_unix is unset
};

// SEV-SNP evidence against the policy. Thread-safe; `anchors` and `store` (may be null: only
// sent certificates are used) outlive it.
class SnpVerifier : public EvidenceVerifier {
 public:
  SnpVerifier(SnpPolicy policy, const SnpTrustAnchors* anchors, SnpCertStore* store,
              SnpVerifierOptions options)
      : fixed_(std::make_shared<const SnpPolicy>(std::move(policy))),
        anchors_(anchors),
        store_(store),
        options_(options) {}
  // berthd: the `sev_snp:` section of `holder`'s current policy, one snapshot per verification
  // (policy_holder.h); a policy without one refuses SEV-SNP evidence. `holder` outlives it.
  SnpVerifier(const PolicyHolder* holder, const SnpTrustAnchors* anchors, SnpCertStore* store,
              SnpVerifierOptions options)
      : holder_(holder), anchors_(anchors), store_(store), options_(options) {}

  Result<VerifiedEvidence> Verify(const v1::Evidence& evidence,
                                  std::span<const uint8_t> binding) override;

  // Everything but the binding and the policy: the report authenticated by AMD's chain,
  // finding certificates the node did not send and caching those that verified.
  Result<SnpVerifiedReport> Authenticate(const v1::SevSnpEvidence& evidence);

 private:
  int64_t Now() const;
  // The policy in force, or PERMISSION_DENIED when it has no `sev_snp:` section.
  Result<std::shared_ptr<const SnpPolicy>> CurrentPolicy() const;
  Result<SnpVerifiedReport> Authenticate(const v1::SevSnpEvidence& evidence,
                                         const SnpPolicy& policy);
  // AMD's CRL (snp_certs.h) against the intermediate and the leaf; what it established.
  Result<std::string> CheckRevocation(snp::Product product, bool vlek, X509* ark,
                                      X509* intermediate, X509* leaf, const SnpPolicy& policy);
  // The leaf (VCEK/VLEK) for `report`, sent or found; fixes `product` when it was unknown.
  Result<SourcedCert> FindLeaf(const v1::SevSnpEvidence& evidence, const snp::Report& report,
                               snp::Product& product, const SnpPolicy& policy);

  std::shared_ptr<const SnpPolicy> fixed_;
  const PolicyHolder* holder_ = nullptr;
  const SnpTrustAnchors* anchors_;
  SnpCertStore* store_;
  SnpVerifierOptions options_;
};


}  // namespace berth::verify
