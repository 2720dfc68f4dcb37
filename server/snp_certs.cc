#include "server/snp_certs.h"

#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <ctime>

#include "server/bootstrap_token.h"

namespace berth::server {

namespace {

size_t CollectBody(char* data, size_t size, size_t n, void* out) {
  static_cast<std::string*>(out)->append(data, size * n);
  return size * n;
}

class CurlKds : public SnpKds {
 public:
  CurlKds(std::string base_url, std::chrono::milliseconds timeout)
      : base_(std::move(base_url)), timeout_ms_(static_cast<long>(timeout.count())) {
    while (!base_.empty() && base_.back() == '/') base_.pop_back();
    static std::once_flag once;
    std::call_once(once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  }

  Result<std::string> Get(const std::string& path) override {
    std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), curl_easy_cleanup);
    if (!curl) return Internal("curl_easy_init failed");
    const std::string url = base_ + path;
    std::string body;
    char error[CURL_ERROR_SIZE] = {0};
    CURL* c = curl.get();
    curl_easy_setopt(c, CURLOPT_URL, url.c_str());
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, timeout_ms_);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, std::min(timeout_ms_, 5000L));
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https,http");
    curl_easy_setopt(c, CURLOPT_USERAGENT, "berthd/0.1");
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE, 1L << 20);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, CollectBody);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
    CURLcode rc = curl_easy_perform(c);
    if (rc != CURLE_OK) {
      return Unavailable("AMD KDS " + url + ": " +
                         (error[0] ? std::string(error) : curl_easy_strerror(rc)));
    }
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    if (status == 200) return body;
    std::string what = "AMD KDS " + url + " answered " + std::to_string(status);
    if (status == 404) return NotFound(what);
    if (status == 429 || status >= 500) return Unavailable(what);
    return FailedPrecondition(what);
  }

 private:
  std::string base_;
  long timeout_ms_;
};

std::string Hex2(uint64_t v) {
  Bytes b(8);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(v >> (8 * (7 - i)));
  return HexEncode(b);
}

}  // namespace

std::unique_ptr<SnpKds> MakeCurlKds(std::string base_url, std::chrono::milliseconds timeout) {
  return std::make_unique<CurlKds>(std::move(base_url), timeout);
}

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

Status CheckKdsUrl(const std::string& url) {
  auto refuse = [&](const std::string& why) {
    return InvalidArgument("--snp-kds-url " + url + ": " + why);
  };
  std::unique_ptr<CURLU, decltype(&curl_url_cleanup)> u(curl_url(), curl_url_cleanup);
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) {
    return refuse("not a URL");
  }
  auto part = [&](CURLUPart which) {
    char* value = nullptr;
    std::string out;
    if (curl_url_get(u.get(), which, &value, 0) == CURLUE_OK && value != nullptr) out = value;
    curl_free(value);
    return out;
  };
  const std::string scheme = part(CURLUPART_SCHEME), host = part(CURLUPART_HOST);
  if (!part(CURLUPART_USER).empty() || !part(CURLUPART_PASSWORD).empty()) {
    return refuse("a KDS URL carries no user name or password");
  }
  if (host.empty()) return refuse("no host");
  if (scheme == "https") return OkStatus();
  if (scheme != "http") return refuse("must be https:// (plain http only for a loopback stand-in)");
  // Plain http only where nobody else can answer: a loopback address, or "localhost", which
  // libcurl resolves to loopback itself, never through DNS.
  in_addr v4{};
  in6_addr v6{};
  const bool loopback =
      host == "localhost" ||
      (inet_pton(AF_INET, host.c_str(), &v4) == 1 && (ntohl(v4.s_addr) >> 24) == 127) ||
      (host.size() > 2 && host.front() == '[' && host.back() == ']' &&
       inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), &v6) == 1 &&
       IN6_IS_ADDR_LOOPBACK(&v6));
  if (!loopback) {
    return refuse("must be https:// (plain http only for a loopback stand-in; host " + host +
                  " is not a loopback address)");
  }
  return OkStatus();
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

}  // namespace berth::server
