// Where berthd finds AMD certificates a node did not send: a cache directory on disk, filled
// only with certificates that verified to a pinned ARK, and (when configured and reachable)
// AMD's Key Distribution Service.
//
// Cache layout (one directory per product; files are DER, written atomically):
//   <dir>/<Product>/ask.der                         the ASK that signs VCEKs
//   <dir>/<Product>/asvk.der                        the ASVK that signs VLEKs
//   <dir>/<Product>/vcek-<chip_id hex>-<reported_tcb as 16 hex digits>.der
//   <dir>/<Product>/crl-vcek.der, crl-vlek.der       AMD's CRLs, verified by the ARK
// ARKs are not cached: they are pinned (compiled in), so a cached copy could add nothing.
#pragma once

#include <openssl/x509.h>

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "common/crypto.h"
#include "common/snp/report.h"

namespace berth::verify {

// An HTTP GET against AMD's KDS (https://kdsintf.amd.com), behind an interface so tests can
// point it at a local stand-in.
class SnpKds {
 public:
  virtual ~SnpKds() = default;
  // GET <base>/<path_and_query>. NOT_FOUND for HTTP 404, UNAVAILABLE when unreachable, rate
  // limited (429) or answering 5xx; the body otherwise.
  virtual Result<std::string> Get(const std::string& path_and_query) = 0;
};

// KDS paths (AMD "Versioned Chip Endorsement Key (VCEK) Certificate and KDS Interface").
std::string KdsVcekPath(snp::Product product, std::span<const uint8_t> chip_id,
                        const snp::Tcb& reported_tcb);
std::string KdsCertChainPath(snp::Product product, bool vlek);
// AMD's CRL of the VCEK (or VLEK) hierarchy of `product`: /vcek/v1/{product}/crl.
std::string KdsCrlPath(snp::Product product, bool vlek);


struct X509CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
using X509CrlPtr = std::unique_ptr<X509_CRL, X509CrlFree>;
// Checks a CRL before it is used or kept (berthd: issued and signed by the pinned ARK).
using CrlVerifier = std::function<Status(X509_CRL*)>;

// Where a certificate came from, for audit lines.
enum class CertSource { kSent, kPinned, kCache, kKds };
std::string_view CertSourceName(CertSource s);

struct SourcedCert {
  X509Ptr cert;
  CertSource source;
};

// Thread-safe. Either part may be absent (empty dir, null kds).
class SnpCertStore {
 public:
  SnpCertStore(std::string cache_dir, SnpKds* kds) : dir_(std::move(cache_dir)), kds_(kds) {}

  // The ASK (or ASVK when `vlek`) for `product`: the cache, else KDS's cert_chain. NOT_FOUND
  // when neither has it; UNAVAILABLE when KDS could not be asked. Unverified: the caller
  // checks the chain.
  Result<SourcedCert> Intermediate(snp::Product product, bool vlek);
  // The VCEK of `chip_id` at `reported_tcb`: the cache, else KDS.
  Result<SourcedCert> Vcek(snp::Product product, std::span<const uint8_t> chip_id,
                           uint64_t reported_tcb);

  // Records certificates that the caller has verified to a pinned ARK. Never call it with an
  // unverified certificate. Certificates already cached are left alone.
  Status RememberIntermediate(snp::Product product, bool vlek, X509* cert);
  Status RememberVcek(snp::Product product, std::span<const uint8_t> chip_id, uint64_t reported_tcb,
                      X509* cert);

  // AMD's CRL for `product` and the VCEK (or VLEK) hierarchy, as of `now_unix`: the one held
  // in memory or cached on disk, fetched again from KDS when there is none or it is past its
  // nextUpdate (at most once every 10 minutes, so an unreachable KDS is not asked for every
  // join). Only a CRL that `verify` accepts is used or kept. NOT_FOUND when none is at hand
  // (no cache, no KDS, or KDS failed and nothing older is known).
  Result<X509CrlPtr> Crl(snp::Product product, bool vlek, const CrlVerifier& verify,
                         int64_t now_unix);

  bool has_cache() const { return !dir_.empty(); }
  bool has_kds() const { return kds_ != nullptr; }

 private:
  struct CrlEntry {
    X509CrlPtr crl;
    int64_t next_update = 0;
    int64_t last_fetch = -1'000'000;
  };
  std::string IntermediatePath(snp::Product product, bool vlek) const;
  std::string VcekPath(snp::Product product, std::span<const uint8_t> chip_id,
                       uint64_t reported_tcb) const;
  Result<X509Ptr> LoadCached(const std::string& path);
  Status Store(const std::string& path, X509* cert);

  std::string CrlPath(snp::Product product, bool vlek) const;

  std::string dir_;
  SnpKds* kds_;
  std::mutex mu_;  // serialises cache writes (WriteFileAtomic's temp name is per process)
  std::mutex crl_mu_;  // held while a CRL is looked up (and, rarely, fetched)
  std::map<std::pair<snp::Product, bool>, CrlEntry> crls_;  // GUARDED_BY(crl_mu_)
};

}  // namespace berth::verify
