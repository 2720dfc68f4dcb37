#include "server/snp_service.h"

#include <spdlog/spdlog.h>

#include "common/time.h"
#include "server/cloud/amd_kds.h"

namespace berth::server {

Result<std::unique_ptr<SnpService>> SnpService::Create(const SnpServerConfig& config,
                                                       verify::SnpPolicy policy, Clock* clock) {
  return Create(config, std::move(policy), nullptr, clock);
}

Result<std::unique_ptr<SnpService>> SnpService::Create(const SnpServerConfig& config,
                                                       const verify::PolicyHolder* holder,
                                                       Clock* clock) {
  return Create(config, verify::SnpPolicy{}, holder, clock);
}

Result<std::unique_ptr<SnpService>> SnpService::Create(const SnpServerConfig& config,
                                                       verify::SnpPolicy policy,
                                                       const verify::PolicyHolder* holder,
                                                       Clock* clock) {
  auto service = std::unique_ptr<SnpService>(new SnpService());
  BERTH_ASSIGN_OR_RETURN(service->anchors_, verify::SnpTrustAnchors::Amd());
  for (const std::string& entry : config.insecure_test_arks) {
    size_t eq = entry.find('=');
    snp::Product product = eq == std::string::npos ? snp::Product::kUnknown
                                                   : snp::ProductFromName(entry.substr(0, eq));
    if (product == snp::Product::kUnknown) {
      return InvalidArgument("--insecure-test-snp-ark " + entry +
                             ": expected PRODUCT=FILE with PRODUCT Milan, Genoa or Turin");
    }
    std::string path = entry.substr(eq + 1);
    auto text = ReadFile(path, 64 << 10);
    if (!text.ok()) return text.status().WithContext("--insecure-test-snp-ark");
    auto der = snp::CertificateToDer(*text);
    if (!der.ok()) return der.status().WithContext("--insecure-test-snp-ark " + path);
    BERTH_ASSIGN_OR_RETURN(X509Ptr ark, CertFromDer(*der));
    BERTH_RETURN_IF_ERROR(service->anchors_.PinArk(product, std::move(ark)));
    spdlog::warn(
        "INSECURE: the SEV-SNP ARK pinned for {} is replaced by {} (sha256:{}); "
        "this is for test chains only, never for production",
        snp::ProductName(product), path, service->anchors_.ark_sha256_hex(product));
  }
  verify::SnpVerifierOptions options;
  options.clock = clock;
  if (!config.verify_at.empty()) {
    auto at = ParseRfc3339(config.verify_at);
    if (!at.ok()) return at.status().WithContext("--snp-verify-at");
    options.verify_at_unix = *at;
    spdlog::warn("SEV-SNP certificates are checked for validity at {}, not now", config.verify_at);
  }
  if (!config.kds_url.empty()) {
    BERTH_RETURN_IF_ERROR(CheckKdsUrl(config.kds_url));
    service->kds_ = MakeCurlKds(config.kds_url, std::chrono::milliseconds(config.kds_timeout_ms));
  }
  if (!config.cert_cache.empty()) {
    BERTH_RETURN_IF_ERROR(MakeDirs(config.cert_cache, 0755).WithContext("--snp-cert-cache"));
  }
  service->store_ = std::make_unique<verify::SnpCertStore>(config.cert_cache, service->kds_.get());
  if (holder != nullptr) {
    service->verifier_ = std::make_unique<verify::SnpVerifier>(holder, &service->anchors_,
                                                       service->store_.get(), options);
  } else {
    service->verifier_ = std::make_unique<verify::SnpVerifier>(
        std::move(policy), &service->anchors_, service->store_.get(), options);
  }
  return service;
}

}  // namespace berth::server
