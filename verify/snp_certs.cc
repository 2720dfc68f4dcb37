#include "verify/snp_certs.h"

#include <spdlog/spdlog.h>

#include <algorithm>

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

Status SnpCertStore::RememberIntermediate(snp::Product product, bool vlek, X509* cert) {
  return Store(IntermediatePath(product, vlek), cert);
}

Status SnpCertStore::RememberVcek(snp::Product product, std::span<const uint8_t> chip_id,
                                  uint64_t reported_tcb, X509* cert) {
  return Store(VcekPath(product, chip_id, reported_tcb), cert);
}

}  // namespace berth::verify
