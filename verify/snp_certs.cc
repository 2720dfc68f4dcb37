#include "verify/snp_certs.h"

#include <openssl/err.h>
#include <openssl/pem.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>

#include "common/time.h"

namespace berth::verify {

namespace {

std::string Hex2(uint64_t v) {
  Bytes b(8);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * (7 - i)));
  return HexEncode(b);
}

}  // namespace

std::string KdsVcekPath(snp::Product product, std::span<const uint8_t> chip_id,
                        const snp::Tcb& tcb) {
  std::string path = "/vcek/v1/" + std::string(snp::ProductName(product)) + "/";
  std::string query = "?";
  if (product == snp::Product::kTurin) {
    // Turin names a chip by the first 8 bytes of CHIP_ID and adds the FMC's SPL.
    path += HexEncode(chip_id.first(std::min(chip_id.size(), snp::kTurinHwIdSize)));
    query += "fmcSPL=" + std::to_string(tcb.fmc.value_or(0)) + "&";
  } else {
    path += HexEncode(chip_id);
  }
  query += "blSPL=" + std::to_string(tcb.bootloader) + "&teeSPL=" + std::to_string(tcb.tee) +
           "&snpSPL=" + std::to_string(tcb.snp) + "&ucodeSPL=" + std::to_string(tcb.microcode);
  return path + query;
}

std::string KdsCertChainPath(snp::Product product, bool vlek) {
  return std::string(vlek ? "/vlek/v1/" : "/vcek/v1/") + std::string(snp::ProductName(product)) +
         "/cert_chain";
}

std::string KdsCrlPath(snp::Product product, bool vlek) {
  return std::string(vlek ? "/vlek/v1/" : "/vcek/v1/") + std::string(snp::ProductName(product)) +
         "/crl";
}

std::string_view CertSourceName(CertSource s) {
  switch (s) {
    case CertSource::kSent:
      return "sent";
    case CertSource::kPinned:
      return "pinned";
    case CertSource::kCache:
      return "cache";
    case CertSource::kKds:
      return "kds";
  }
  return "?";
}

std::string SnpCertStore::IntermediatePath(snp::Product product, bool vlek) const {
  return dir_ + "/" + std::string(snp::ProductName(product)) + (vlek ? "/asvk.der" : "/ask.der");
}

std::string SnpCertStore::VcekPath(snp::Product product, std::span<const uint8_t> chip_id,
                                   uint64_t reported_tcb) const {
  return dir_ + "/" + std::string(snp::ProductName(product)) + "/vcek-" + HexEncode(chip_id) + "-" +
         Hex2(reported_tcb) + ".der";
}

Result<X509Ptr> SnpCertStore::LoadCached(const std::string& path) {
  auto der = ReadFile(path, 64 << 10);
  if (!der.ok()) return der.status();
  auto cert = CertFromDer(AsBytes(*der));
  if (!cert.ok()) {
    // Only verified certificates are ever written, so this is disk damage: say so and let the
    // caller fall back to KDS.
    spdlog::warn("SEV-SNP certificate cache: {} is unreadable ({}); ignoring it", path,
                 cert.status().message());
    return NotFound(path + " is damaged");
  }
  return cert;
}

Result<SourcedCert> SnpCertStore::Intermediate(snp::Product product, bool vlek) {
  const char* name = vlek ? "ASVK" : "ASK";
  if (has_cache()) {
    auto cached = LoadCached(IntermediatePath(product, vlek));
    if (cached.ok()) return SourcedCert{std::move(*cached), CertSource::kCache};
  }
  if (kds_ == nullptr) {
    return NotFound(std::string("no ") + name + " for " + std::string(snp::ProductName(product)) +
                    " is cached and KDS fetching is off");
  }
  BERTH_ASSIGN_OR_RETURN(std::string pem, kds_->Get(KdsCertChainPath(product, vlek)));
  // cert_chain is PEM: the ASK (or ASVK) first, then the ARK.
  auto certs = CertsFromPem(pem);
  if (!certs.ok()) return certs.status().WithContext("AMD KDS cert_chain");
  return SourcedCert{std::move(certs->front()), CertSource::kKds};
}

Result<SourcedCert> SnpCertStore::Vcek(snp::Product product, std::span<const uint8_t> chip_id,
                                       uint64_t reported_tcb) {
  if (has_cache()) {
    auto cached = LoadCached(VcekPath(product, chip_id, reported_tcb));
    if (cached.ok()) return SourcedCert{std::move(*cached), CertSource::kCache};
  }
  if (kds_ == nullptr) {
    return NotFound("no VCEK for this chip and reported TCB is cached and KDS fetching is off");
  }
  BERTH_ASSIGN_OR_RETURN(
      std::string der,
      kds_->Get(KdsVcekPath(product, chip_id, snp::DecodeTcb(reported_tcb, product))));
  auto cert = CertFromDer(AsBytes(der));
  if (!cert.ok()) return cert.status().WithContext("AMD KDS VCEK");
  return SourcedCert{std::move(*cert), CertSource::kKds};
}

Status SnpCertStore::Store(const std::string& path, X509* cert) {
  if (!has_cache()) return OkStatus();
  std::lock_guard<std::mutex> lock(mu_);
  if (ReadFile(path, 64 << 10).ok()) return OkStatus();
  BERTH_RETURN_IF_ERROR(MakeDirs(path.substr(0, path.rfind('/')), 0755));
  BERTH_ASSIGN_OR_RETURN(Bytes der, CertToDer(cert));
  BERTH_RETURN_IF_ERROR(WriteFileAtomic(path, der, 0644));
  spdlog::info("SEV-SNP certificate cache: stored {}", path);
  return OkStatus();
}

std::string SnpCertStore::CrlPath(snp::Product product, bool vlek) const {
  return dir_ + "/" + std::string(snp::ProductName(product)) +
         (vlek ? "/crl-vlek.der" : "/crl-vcek.der");
}

namespace {

Result<X509CrlPtr> ParseCrl(const std::string& der_or_pem) {
  const auto* p = reinterpret_cast<const unsigned char*>(der_or_pem.data());
  X509CrlPtr crl(d2i_X509_CRL(nullptr, &p, static_cast<long>(der_or_pem.size())));
  if (!crl) {
    ERR_clear_error();
    std::unique_ptr<BIO, decltype(&BIO_free)> bio(
        BIO_new_mem_buf(der_or_pem.data(), static_cast<int>(der_or_pem.size())), BIO_free);
    crl.reset(PEM_read_bio_X509_CRL(bio.get(), nullptr, nullptr, nullptr));
  }
  if (!crl) {
    ERR_clear_error();
    return InvalidArgument("not a CRL (DER or PEM)");
  }
  return crl;
}

int64_t NextUpdate(X509_CRL* crl) {
  const ASN1_TIME* next = X509_CRL_get0_nextUpdate(crl);
  std::tm tm{};
  if (next == nullptr || ASN1_TIME_to_tm(next, &tm) != 1) return 0;
  return static_cast<int64_t>(timegm(&tm));
}

}  // namespace

Result<X509CrlPtr> SnpCertStore::Crl(snp::Product product, bool vlek, const CrlVerifier& verify,
                                     int64_t now) {
  std::lock_guard<std::mutex> lock(crl_mu_);
  CrlEntry& e = crls_[{product, vlek}];
  const std::string what = std::string("AMD's ") + (vlek ? "VLEK" : "VCEK") + " CRL for " +
                           std::string(snp::ProductName(product));
  if (!e.crl && has_cache()) {
    if (auto file = ReadFile(CrlPath(product, vlek), 1 << 20); file.ok()) {
      auto crl = ParseCrl(*file);
      if (crl.ok() && verify(crl->get()).ok()) {
        e.next_update = NextUpdate(crl->get());
        e.crl = std::move(*crl);
      } else {
        spdlog::warn("SEV-SNP certificate cache: {} does not verify; ignoring it",
                     CrlPath(product, vlek));
      }
    }
  }
  if ((!e.crl || e.next_update <= now) && kds_ != nullptr && now - e.last_fetch >= 600) {
    e.last_fetch = now;
    auto body = kds_->Get(KdsCrlPath(product, vlek));
    Result<X509CrlPtr> fetched = body.ok() ? ParseCrl(*body) : Result<X509CrlPtr>(body.status());
    Status usable = fetched.ok() ? verify(fetched->get()) : fetched.status();
    if (usable.ok()) {
      e.next_update = NextUpdate(fetched->get());
      e.crl = std::move(*fetched);
      if (has_cache()) {
        std::lock_guard<std::mutex> write_lock(mu_);
        Status st = MakeDirs(dir_ + "/" + std::string(snp::ProductName(product)), 0755);
        if (st.ok()) st = WriteFileAtomic(CrlPath(product, vlek), *body, 0644);
        if (!st.ok()) spdlog::warn("SEV-SNP certificate cache: {}", st.ToString());
      }
      spdlog::info("fetched {} (next update {})", what, Rfc3339(e.next_update));
    } else {
      spdlog::warn("{} from KDS is not usable: {}", what, usable.ToString());
    }
  }
  if (!e.crl) return NotFound("no " + what + " is at hand");
  if (e.next_update <= now) {
    spdlog::warn("{} is past its next update ({}); using it until a newer one is fetched", what,
                 Rfc3339(e.next_update));
  }
  X509_CRL_up_ref(e.crl.get());
  return X509CrlPtr(e.crl.get());
}

Status SnpCertStore::RememberIntermediate(snp::Product product, bool vlek, X509* cert) {
  return Store(IntermediatePath(product, vlek), cert);
}

Status SnpCertStore::RememberVcek(snp::Product product, std::span<const uint8_t> chip_id,
                                  uint64_t reported_tcb, X509* cert) {
  return Store(VcekPath(product, chip_id, reported_tcb), cert);
}

}  // namespace berth::verify
