#include "verify/snp_verifier.h"

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <ctime>

#include "common/binding.h"
#include "common/snp/amd_roots.h"
#include "common/time.h"

namespace berth::verify {

namespace {

std::string Fingerprint(X509* cert) {
  auto der = CertToDer(cert);
  return der.ok() ? HexEncode(Sha256(*der)) : "";
}

std::string LeafName(bool vlek) { return vlek ? "VLEK" : "VCEK"; }
std::string IntermediateName(bool vlek) { return vlek ? "ASVK" : "ASK"; }

std::string Hex64(uint64_t v) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out = "0x";
  for (int i = 15; i >= 0; --i) out.push_back(kDigits[(v >> (4 * i)) & 0xf]);
  return out;
}

struct RsaPssParamsFree {
  void operator()(RSA_PSS_PARAMS* p) const { RSA_PSS_PARAMS_free(p); }
};
struct X509AlgorFree {
  void operator()(X509_ALGOR* p) const { X509_ALGOR_free(p); }
};

int AlgorNid(const X509_ALGOR* alg) {
  const ASN1_OBJECT* obj = nullptr;
  X509_ALGOR_get0(&obj, nullptr, nullptr, alg);
  return OBJ_obj2nid(obj);
}

// AMD signs with RSASSA-PSS, SHA-384, MGF1-SHA-384, salt length 48, and nothing else. OpenSSL
// would verify other parameters too; requiring exactly these keeps a weaker choice out.
Status CheckPssParameters(X509* cert, const std::string& what) {
  const X509_ALGOR* alg = nullptr;
  X509_get0_signature(nullptr, &alg, cert);
  const ASN1_OBJECT* obj = nullptr;
  int ptype = 0;
  const void* pval = nullptr;
  X509_ALGOR_get0(&obj, &ptype, &pval, alg);
  auto refuse = [&](const std::string& why) {
    return PermissionDenied("chain: the " + what +
                            " is not signed with RSASSA-PSS SHA-384, "
                            "MGF1-SHA-384, salt 48 (" +
                            why + ")");
  };
  if (OBJ_obj2nid(obj) != NID_rsassaPss) {
    return refuse(std::string("signature algorithm ") + OBJ_nid2ln(OBJ_obj2nid(obj)));
  }
  if (ptype != V_ASN1_SEQUENCE) return refuse("no PSS parameters");
  const auto* seq = static_cast<const ASN1_STRING*>(pval);
  const unsigned char* p = ASN1_STRING_get0_data(seq);
  std::unique_ptr<RSA_PSS_PARAMS, RsaPssParamsFree> params(
      d2i_RSA_PSS_PARAMS(nullptr, &p, ASN1_STRING_length(seq)));
  if (!params) return refuse("unreadable PSS parameters");
  int hash = params->hashAlgorithm ? AlgorNid(params->hashAlgorithm) : NID_sha1;
  if (hash != NID_sha384) return refuse(std::string("hash ") + OBJ_nid2sn(hash));
  int mgf_hash = NID_sha1;
  if (params->maskGenAlgorithm) {
    if (AlgorNid(params->maskGenAlgorithm) != NID_mgf1)
      return refuse("mask generation is not MGF1");
    const ASN1_OBJECT* mobj = nullptr;
    int mtype = 0;
    const void* mval = nullptr;
    X509_ALGOR_get0(&mobj, &mtype, &mval, params->maskGenAlgorithm);
    if (mtype != V_ASN1_SEQUENCE) return refuse("MGF1 without a hash");
    const auto* mseq = static_cast<const ASN1_STRING*>(mval);
    const unsigned char* mp = ASN1_STRING_get0_data(mseq);
    std::unique_ptr<X509_ALGOR, X509AlgorFree> mhash(
        d2i_X509_ALGOR(nullptr, &mp, ASN1_STRING_length(mseq)));
    if (!mhash) return refuse("unreadable MGF1 hash");
    mgf_hash = AlgorNid(mhash.get());
  }
  if (mgf_hash != NID_sha384) return refuse(std::string("MGF1 hash ") + OBJ_nid2sn(mgf_hash));
  long salt = params->saltLength ? ASN1_INTEGER_get(params->saltLength) : 20;
  if (salt != 48) return refuse("salt length " + std::to_string(salt));
  return OkStatus();
}

std::string TimeText(const ASN1_TIME* t) {
  auto unix = Asn1TimeUnix(t);
  return unix.ok() ? Rfc3339(*unix) : "?";
}

Status CheckValidity(X509* cert, const std::string& what, int64_t at_unix) {
  time_t at = static_cast<time_t>(at_unix);
  if (X509_cmp_time(X509_get0_notBefore(cert), &at) != -1) {
    return PermissionDenied("chain: the " + what + " is not valid before " +
                            TimeText(X509_get0_notBefore(cert)) + " (verification time " +
                            Rfc3339(at_unix) + ")");
  }
  if (X509_cmp_time(X509_get0_notAfter(cert), &at) != 1) {
    return PermissionDenied("chain: the " + what + " expired at " +
                            TimeText(X509_get0_notAfter(cert)) + " (verification time " +
                            Rfc3339(at_unix) + ")");
  }
  return OkStatus();
}

// `cert` was issued and signed by `issuer`.
Status CheckLink(X509* issuer, const std::string& issuer_name, X509* cert,
                 const std::string& cert_name) {
  BERTH_RETURN_IF_ERROR(CheckPssParameters(cert, cert_name));
  int issued = X509_check_issued(issuer, cert);
  if (issued != X509_V_OK) {
    return PermissionDenied("chain: the " + cert_name + " is not issued by the " + issuer_name +
                            " (" + X509_verify_cert_error_string(issued) + ")");
  }
  EVP_PKEY* key = X509_get0_pubkey(issuer);
  if (key == nullptr || EVP_PKEY_get_base_id(key) != EVP_PKEY_RSA) {
    return PermissionDenied("chain: the " + issuer_name + " has no RSA key");
  }
  if (X509_verify(cert, key) != 1) {
    ERR_clear_error();
    return PermissionDenied("chain: the " + cert_name + "'s signature does not verify with the " +
                            issuer_name + "'s key");
  }
  return OkStatus();
}

Status CheckP384(X509* cert, const std::string& what) {
  EVP_PKEY* key = X509_get0_pubkey(cert);
  char group[64] = {0};
  size_t len = 0;
  if (key == nullptr || EVP_PKEY_get_base_id(key) != EVP_PKEY_EC ||
      EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &len) !=
          1 ||
      std::string_view(group, len) != "secp384r1") {
    ERR_clear_error();
    return PermissionDenied("chain: the " + what + "'s key is not an EC P-384 key");
  }
  return OkStatus();
}

std::string SpkiSha256Hex(X509* cert) {
  auto h = CertSpkiSha256(cert);
  return h.ok() ? HexEncode(*h) : "";
}

}  // namespace

// ---- trust anchors ----

Result<SnpTrustAnchors> SnpTrustAnchors::Amd() {
  SnpTrustAnchors out;
  for (snp::Product product : snp::kAllProducts) {
    const snp::AmdRoots* roots = snp::AmdRootsFor(product);
    Anchor a;
    BERTH_ASSIGN_OR_RETURN(a.ark, CertFromPem(roots->ark_pem));
    BERTH_ASSIGN_OR_RETURN(a.ask, CertFromPem(roots->ask_pem));
    BERTH_ASSIGN_OR_RETURN(a.asvk, CertFromPem(roots->asvk_pem));
    a.ark_sha256_hex = Fingerprint(a.ark.get());
    if (a.ark_sha256_hex != roots->ark_sha256_hex) {
      return Internal("the compiled-in ARK for " + std::string(snp::ProductName(product)) +
                      " does not match its pinned fingerprint");
    }
    out.anchors_[product] = std::move(a);
  }
  return out;
}

Status SnpTrustAnchors::PinArk(snp::Product product, X509Ptr ark) {
  if (product == snp::Product::kUnknown) return InvalidArgument("no product to pin an ARK for");
  Anchor a;
  a.ark_sha256_hex = Fingerprint(ark.get());
  a.ark = std::move(ark);
  anchors_[product] = std::move(a);
  return OkStatus();
}

X509* SnpTrustAnchors::ark(snp::Product product) const {
  auto it = anchors_.find(product);
  return it == anchors_.end() ? nullptr : it->second.ark.get();
}

X509* SnpTrustAnchors::intermediate(snp::Product product, bool vlek) const {
  auto it = anchors_.find(product);
  if (it == anchors_.end()) return nullptr;
  return vlek ? it->second.asvk.get() : it->second.ask.get();
}

std::string SnpTrustAnchors::ark_sha256_hex(snp::Product product) const {
  auto it = anchors_.find(product);
  return it == anchors_.end() ? "" : it->second.ark_sha256_hex;
}

// ---- checks ----

Result<snp::Product> ResolveProduct(const snp::Report& report,
                                    const snp::EndorsementKeyInfo* leaf) {
  snp::Product from_report = report.product();
  snp::Product from_leaf = leaf ? snp::ProductFromName(leaf->product_name) : snp::Product::kUnknown;
  if (from_report != snp::Product::kUnknown && from_leaf != snp::Product::kUnknown &&
      from_report != from_leaf) {
    return PermissionDenied("chain: the report comes from a " +
                            std::string(snp::ProductName(from_report)) +
                            " chip but the endorsement key is for " + leaf->product_name);
  }
  return from_report != snp::Product::kUnknown ? from_report : from_leaf;
}

snp::Product ProductFromIssuer(const SnpTrustAnchors& anchors, X509* intermediate, X509* leaf,
                               bool vlek) {
  for (snp::Product p : snp::kAllProducts) {
    X509* issuer = intermediate ? anchors.ark(p) : anchors.intermediate(p, vlek);
    X509* subject = intermediate ? intermediate : leaf;
    if (issuer != nullptr && X509_check_issued(issuer, subject) == X509_V_OK) return p;
  }
  return snp::Product::kUnknown;
}

Status VerifySnpChain(X509* ark, X509* intermediate, X509* leaf, bool vlek, int64_t at_unix) {
  const std::string inter = IntermediateName(vlek), leaf_name = LeafName(vlek);
  BERTH_RETURN_IF_ERROR(CheckLink(ark, "ARK", ark, "ARK"));
  BERTH_RETURN_IF_ERROR(CheckValidity(ark, "ARK", at_unix));
  BERTH_RETURN_IF_ERROR(CheckLink(ark, "ARK", intermediate, inter));
  if (X509_check_ca(intermediate) < 1) {
    return PermissionDenied("chain: the " + inter + " is not a CA certificate");
  }
  BERTH_RETURN_IF_ERROR(CheckValidity(intermediate, inter, at_unix));
  BERTH_RETURN_IF_ERROR(CheckLink(intermediate, inter, leaf, leaf_name));
  BERTH_RETURN_IF_ERROR(CheckValidity(leaf, leaf_name, at_unix));
  BERTH_RETURN_IF_ERROR(CheckP384(leaf, leaf_name));
  return OkStatus();
}

Status VerifyReportSignature(const snp::Report& report, X509* leaf) {
  const std::string name = LeafName(report.signing_key == snp::SigningKey::kVlek);
  if (report.signature_high_nonzero) {
    return PermissionDenied("signature: R or S has non-zero bytes above bit 384");
  }
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(ECDSA_SIG_new(), ECDSA_SIG_free);
  BIGNUM* r = BN_bin2bn(report.signature_r.data(), 48, nullptr);
  BIGNUM* s = BN_bin2bn(report.signature_s.data(), 48, nullptr);
  if (!sig || !r || !s || ECDSA_SIG_set0(sig.get(), r, s) != 1) {
    BN_free(r);
    BN_free(s);
    return OpenSslError("building an ECDSA signature");
  }
  unsigned char* der = nullptr;
  int der_len = i2d_ECDSA_SIG(sig.get(), &der);
  if (der_len <= 0) return OpenSslError("encoding an ECDSA signature");
  Bytes sig_der(der, der + der_len);
  OPENSSL_free(der);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY* key = X509_get0_pubkey(leaf);
  if (!ctx || key == nullptr ||
      EVP_DigestVerifyInit(ctx.get(), nullptr, EVP_sha384(), nullptr, key) != 1) {
    return OpenSslError("signature: preparing to verify with the " + name + "'s key",
                        Code::kPermissionDenied);
  }
  auto signed_bytes = report.signed_bytes();
  int ok = EVP_DigestVerify(ctx.get(), sig_der.data(), sig_der.size(), signed_bytes.data(),
                            signed_bytes.size());
  ERR_clear_error();
  if (ok != 1) {
    return PermissionDenied("signature: the report's signature does not verify with the " + name +
                            "'s key");
  }
  return OkStatus();
}

Status CheckLeafMatchesReport(const snp::Report& report, const snp::EndorsementKeyInfo& leaf,
                              snp::Product product) {
  const bool vlek = report.signing_key == snp::SigningKey::kVlek;
  const std::string name = LeafName(vlek);
  if (!leaf.has_tcb) {
    return PermissionDenied("tcb: the " + name +
                            " lacks the TCB extensions 1.3.6.1.4.1.3704.1.3.x");
  }
  snp::Tcb reported = snp::DecodeTcb(report.reported_tcb, product);
  snp::Tcb certified = leaf.tcb;
  if (product != snp::Product::kTurin) certified.fmc.reset();
  if (product == snp::Product::kTurin && !certified.fmc) {
    return PermissionDenied("tcb: the Turin " + name + " lacks the FMC SPL extension");
  }
  if (certified != reported) {
    return PermissionDenied("tcb: the " + name + " is for TCB " + certified.ToString() +
                            ", the report's reported_tcb is " + reported.ToString() + " (" +
                            Hex64(report.reported_tcb) + ")");
  }
  if (vlek) return OkStatus();  // VLEKs are not tied to a chip
  if (report.mask_chip_key) {
    return PermissionDenied(
        "chip: the report's chip_id is masked (MASK_CHIP_KEY), so it cannot be "
        "matched to the VCEK");
  }
  std::span<const uint8_t> chip(report.chip_id);
  bool match = false;
  if (leaf.hwid.size() == snp::kChipIdSize) {
    match = std::equal(leaf.hwid.begin(), leaf.hwid.end(), chip.begin());
  } else if (product == snp::Product::kTurin && leaf.hwid.size() == snp::kTurinHwIdSize) {
    match = std::equal(leaf.hwid.begin(), leaf.hwid.end(), chip.begin()) &&
            std::all_of(chip.begin() + snp::kTurinHwIdSize, chip.end(),
                        [](uint8_t b) { return b == 0; });
  }
  if (!match) {
    return PermissionDenied("chip: the VCEK's hwID " + HexEncode(leaf.hwid) +
                            " is not the report's chip_id " + HexEncode(chip));
  }
  return OkStatus();
}

Status VerifyAmdCrl(X509_CRL* crl, X509* ark, int64_t at_unix) {
  if (X509_NAME_cmp(X509_CRL_get_issuer(crl), X509_get_subject_name(ark)) != 0) {
    return PermissionDenied("crl: the CRL is not issued by the ARK");
  }
  EVP_PKEY* key = X509_get0_pubkey(ark);
  if (key == nullptr || X509_CRL_verify(crl, key) != 1) {
    ERR_clear_error();
    return PermissionDenied("crl: the CRL's signature does not verify with the ARK's key");
  }
  time_t at = static_cast<time_t>(at_unix);
  if (X509_cmp_time(X509_CRL_get0_lastUpdate(crl), &at) == 1) {
    return PermissionDenied("crl: the CRL is dated after the verification time");
  }
  return OkStatus();
}

Status CheckNotRevoked(X509_CRL* crl, X509* cert, const std::string& what) {
  X509_REVOKED* entry = nullptr;
  if (X509_CRL_get0_by_serial(crl, &entry, X509_get_serialNumber(cert)) == 1) {
    BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get_serialNumber(cert), nullptr);
    char* hex = bn ? BN_bn2hex(bn) : nullptr;
    std::string serial = hex ? hex : "?";
    OPENSSL_free(hex);
    BN_free(bn);
    return PermissionDenied("crl: the " + what + " (serial " + serial +
                            ") is revoked by AMD's CRL");
  }
  return OkStatus();
}

// ---- offline ----

Result<SnpVerifiedReport> VerifySnpReportOffline(const SnpOfflineInput& in,
                                                 const SnpTrustAnchors& anchors) {
  SnpVerifiedReport out;
  auto report = snp::ParseReport(in.report);
  if (!report.ok()) return report.status().WithContext("report");
  out.report = std::move(*report);
  const bool vlek = out.report.signing_key == snp::SigningKey::kVlek;
  auto leaf = CertFromDer(in.leaf_der);
  if (!leaf.ok()) return leaf.status().WithContext(LeafName(vlek));
  auto info = snp::ParseEndorsementKeyInfo(leaf->get());
  if (!info.ok()) return info.status().WithContext(LeafName(vlek));
  BERTH_ASSIGN_OR_RETURN(out.product, ResolveProduct(out.report, &*info));
  if (out.report.signing_key == snp::SigningKey::kNone) {
    return PermissionDenied("signature: the report is not signed (SIGNING_KEY none)");
  }
  X509Ptr given_ark, given_inter;
  X509* ark = nullptr;
  X509* inter = nullptr;
  if (in.intermediate_der) {
    auto c = CertFromDer(*in.intermediate_der);
    if (!c.ok()) return c.status().WithContext(IntermediateName(vlek));
    given_inter = std::move(*c);
  }
  if (out.product == snp::Product::kUnknown && !in.ark_der) {
    out.product = ProductFromIssuer(anchors, given_inter.get(), leaf->get(), vlek);
    if (out.product == snp::Product::kUnknown) {
      return PermissionDenied(
          "chain: neither the report nor the " + LeafName(vlek) + " names an AMD product, and " +
          (given_inter ? "the " + IntermediateName(vlek) + " is not issued by any pinned ARK"
                       : "the " + LeafName(vlek) + " is not issued by any pinned " +
                             IntermediateName(vlek)));
    }
  }
  if (in.ark_der) {
    auto c = CertFromDer(*in.ark_der);
    if (!c.ok()) return c.status().WithContext("ARK");
    given_ark = std::move(*c);
    ark = given_ark.get();
  } else {
    ark = anchors.ark(out.product);
    if (ark == nullptr) {
      return InvalidArgument("no ARK is pinned for product " +
                             std::string(snp::ProductName(out.product)) +
                             " (the report and the endorsement key do not name a product)");
    }
  }
  if (given_inter) {
    inter = given_inter.get();
  } else {
    inter = anchors.intermediate(out.product, vlek);
    if (inter == nullptr) {
      return InvalidArgument("no " + IntermediateName(vlek) + " is known for product " +
                             std::string(snp::ProductName(out.product)));
    }
  }
  out.intermediate_source = in.intermediate_der ? CertSource::kSent : CertSource::kPinned;
  BERTH_RETURN_IF_ERROR(VerifySnpChain(ark, inter, leaf->get(), vlek, in.at_unix));
  BERTH_RETURN_IF_ERROR(VerifyReportSignature(out.report, leaf->get()));
  BERTH_RETURN_IF_ERROR(CheckLeafMatchesReport(out.report, *info, out.product));
  out.leaf_spki_sha256_hex = SpkiSha256Hex(leaf->get());
  if (in.report_data) {
    std::span<const uint8_t> actual(out.report.report_data);
    if (!std::equal(actual.begin(), actual.end(), in.report_data->begin(), in.report_data->end())) {
      return PermissionDenied("report_data: is " + HexEncode(actual) + ", expected " +
                              HexEncode(*in.report_data));
    }
  }
  out.leaf_csp_id = info->csp_id;
  if (in.policy) {
    BERTH_RETURN_IF_ERROR(in.policy->Check(out.report, out.product));
    if (vlek) BERTH_RETURN_IF_ERROR(in.policy->CheckVlekCsp(out.leaf_csp_id));
  }
  return out;
}

// ---- berthd ----

int64_t SnpVerifier::Now() const {
  if (options_.verify_at_unix) return *options_.verify_at_unix;
  return options_.clock->NowUnix();
}

Result<SourcedCert> SnpVerifier::FindLeaf(const v1::SevSnpEvidence& evidence,
                                          const snp::Report& report, snp::Product& product,
                                          const SnpPolicy& policy) {
  const bool vlek = report.signing_key == snp::SigningKey::kVlek;
  if (!evidence.vcek().empty()) {
    auto cert = CertFromDer(AsBytes(evidence.vcek()));
    if (!cert.ok()) return cert.status().WithContext("evidence " + LeafName(vlek));
    return SourcedCert{std::move(*cert), CertSource::kSent};
  }
  if (vlek) {
    return FailedPrecondition(
        "chain: the report is signed by a VLEK and the node sent none "
        "(VLEKs are neither cached nor fetched)");
  }
  if (store_ == nullptr || (!store_->has_cache() && !store_->has_kds())) {
    return FailedPrecondition(
        "chain: the node sent no VCEK, and this berthd has neither a "
        "certificate cache nor KDS access");
  }
  if (report.mask_chip_key) {
    return FailedPrecondition(
        "chain: the node sent no VCEK and its chip_id is masked, so none "
        "can be looked up");
  }
  std::vector<snp::Product> candidates;
  if (product != snp::Product::kUnknown) {
    candidates.push_back(product);
  } else {
    // A version-2 report does not name its product; Turin only makes version 3 and later.
    for (snp::Product p : {snp::Product::kMilan, snp::Product::kGenoa}) {
      if (policy.CheckProduct(p).ok()) candidates.push_back(p);
    }
  }
  Status last = NotFound("no candidate product");
  for (snp::Product p : candidates) {
    auto found = store_->Vcek(p, report.chip_id, report.reported_tcb);
    if (found.ok()) {
      product = p;
      return found;
    }
    if (found.status().code() != Code::kNotFound) {
      return found.status().WithContext("finding the VCEK the node did not send");
    }
    last = found.status();
  }
  return FailedPrecondition("chain: the node sent no VCEK and none was found for chip " +
                            HexEncode(std::span<const uint8_t>(report.chip_id).first(8)) +
                            "... at reported_tcb " + Hex64(report.reported_tcb) + ": " +
                            last.message());
}

Result<std::string> SnpVerifier::CheckRevocation(snp::Product product, bool vlek, X509* ark,
                                                 X509* intermediate, X509* leaf,
                                                 const SnpPolicy& policy) {
  const std::string what = std::string("AMD's ") + (vlek ? "VLEK" : "VCEK") + " CRL";
  Result<X509CrlPtr> crl = NotFound("this berthd has neither a certificate cache nor KDS access");
  if (store_ != nullptr) {
    const int64_t now = Now();
    crl = store_->Crl(product, vlek, [&](X509_CRL* c) { return VerifyAmdCrl(c, ark, now); }, now);
  }
  if (!crl.ok()) {
    if (policy.require_crl) {
      return FailedPrecondition("crl: sev_snp.require_crl, and no usable " + what +
                                " is at hand: " + crl.status().message());
    }
    return std::string("no crl");
  }
  BERTH_RETURN_IF_ERROR(CheckNotRevoked(crl->get(), intermediate, IntermediateName(vlek)));
  BERTH_RETURN_IF_ERROR(CheckNotRevoked(crl->get(), leaf, LeafName(vlek)));
  return std::string("crl checked");
}

Result<std::shared_ptr<const SnpPolicy>> SnpVerifier::CurrentPolicy() const {
  if (holder_ == nullptr) return fixed_;
  std::shared_ptr<const Policy> policy = holder_->Current();
  if (!policy->sev_snp.has_value()) {
    return PermissionDenied("SEV-SNP evidence is not accepted by this berthd's policy");
  }
  // Shares ownership of the whole policy, so the section lives as long as the snapshot.
  return std::shared_ptr<const SnpPolicy>(policy, &*policy->sev_snp);
}

Result<SnpVerifiedReport> SnpVerifier::Authenticate(const v1::SevSnpEvidence& evidence) {
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<const SnpPolicy> policy, CurrentPolicy());
  return Authenticate(evidence, *policy);
}

Result<SnpVerifiedReport> SnpVerifier::Authenticate(const v1::SevSnpEvidence& evidence,
                                                    const SnpPolicy& policy) {
  SnpVerifiedReport out;
  auto report = snp::ParseReport(AsBytes(evidence.report()));
  if (!report.ok()) return report.status().WithContext("SEV-SNP report");
  out.report = std::move(*report);
  const snp::Report& r = out.report;
  if (r.signing_key == snp::SigningKey::kNone) {
    return PermissionDenied("signature: the report is not signed (SIGNING_KEY none)");
  }
  const bool vlek = r.signing_key == snp::SigningKey::kVlek;
  snp::Product product = r.product();
  if (product != snp::Product::kUnknown) BERTH_RETURN_IF_ERROR(policy.CheckProduct(product));

  BERTH_ASSIGN_OR_RETURN(SourcedCert leaf, FindLeaf(evidence, r, product, policy));
  auto info = snp::ParseEndorsementKeyInfo(leaf.cert.get());
  if (!info.ok()) return info.status().WithContext(LeafName(vlek));
  if (leaf.source == CertSource::kSent) {
    BERTH_ASSIGN_OR_RETURN(product, ResolveProduct(r, &*info));
  } else {
    BERTH_ASSIGN_OR_RETURN(snp::Product named, ResolveProduct(r, &*info));
    if (named != snp::Product::kUnknown && named != product) {
      return PermissionDenied("chain: the " + std::string(CertSourceName(leaf.source)) + " " +
                              LeafName(vlek) + " is for " + info->product_name + ", not " +
                              std::string(snp::ProductName(product)));
    }
  }
  if (product == snp::Product::kUnknown) {
    // An older VCEK without productName: the product whose pinned ASK issued it.
    product = ProductFromIssuer(*anchors_, nullptr, leaf.cert.get(), vlek);
  }
  if (product == snp::Product::kUnknown) {
    return PermissionDenied("chain: neither the report nor the " + LeafName(vlek) +
                            " names an AMD product, and no pinned " + IntermediateName(vlek) +
                            " issued the " + LeafName(vlek));
  }
  BERTH_RETURN_IF_ERROR(policy.CheckProduct(product));
  X509* ark = anchors_->ark(product);
  if (ark == nullptr) {
    return PermissionDenied("chain: no ARK is pinned for " +
                            std::string(snp::ProductName(product)));
  }

  SourcedCert inter{nullptr, CertSource::kSent};
  X509* inter_cert = nullptr;
  if (!evidence.ask().empty()) {
    auto cert = CertFromDer(AsBytes(evidence.ask()));
    if (!cert.ok()) return cert.status().WithContext("evidence " + IntermediateName(vlek));
    inter.cert = std::move(*cert);
    inter_cert = inter.cert.get();
  } else if (X509* pinned = anchors_->intermediate(product, vlek); pinned != nullptr) {
    inter.source = CertSource::kPinned;
    inter_cert = pinned;
  } else if (store_ != nullptr) {
    auto found = store_->Intermediate(product, vlek);
    if (!found.ok()) {
      if (found.status().code() != Code::kNotFound) {
        return found.status().WithContext("finding the " + IntermediateName(vlek));
      }
      return FailedPrecondition("chain: the node sent no " + IntermediateName(vlek) + ": " +
                                found.status().message());
    }
    inter = std::move(*found);
    inter_cert = inter.cert.get();
  } else {
    return FailedPrecondition("chain: the node sent no " + IntermediateName(vlek) +
                              " and none is known for " + std::string(snp::ProductName(product)));
  }

  BERTH_RETURN_IF_ERROR(VerifySnpChain(ark, inter_cert, leaf.cert.get(), vlek, Now()));
  BERTH_RETURN_IF_ERROR(VerifyReportSignature(r, leaf.cert.get()));
  BERTH_RETURN_IF_ERROR(CheckLeafMatchesReport(r, *info, product));
  BERTH_ASSIGN_OR_RETURN(out.crl, CheckRevocation(product, vlek, ark, inter_cert,
                                                  leaf.cert.get(), policy));
  out.leaf_csp_id = info->csp_id;

  // Only now, verified to the pinned ARK, may certificates enter the cache.
  if (store_ != nullptr) {
    if (inter.cert && inter.source != CertSource::kCache) {
      Status st = store_->RememberIntermediate(product, vlek, inter_cert);
      if (!st.ok()) spdlog::warn("SEV-SNP certificate cache: {}", st.ToString());
    }
    if (!vlek && leaf.source != CertSource::kCache) {
      Status st = store_->RememberVcek(product, r.chip_id, r.reported_tcb, leaf.cert.get());
      if (!st.ok()) spdlog::warn("SEV-SNP certificate cache: {}", st.ToString());
    }
  }
  out.product = product;
  out.leaf_spki_sha256_hex = SpkiSha256Hex(leaf.cert.get());
  out.leaf_source = leaf.source;
  out.intermediate_source = inter.source;
  return out;
}

Result<VerifiedEvidence> SnpVerifier::Verify(const v1::Evidence& evidence,
                                             std::span<const uint8_t> binding) {
  if (evidence.kind_case() != v1::Evidence::kSevSnp) {
    return InvalidArgument("the evidence is not SEV-SNP evidence");
  }
  BERTH_ASSIGN_OR_RETURN(std::shared_ptr<const SnpPolicy> snapshot, CurrentPolicy());
  const SnpPolicy& policy = *snapshot;
  const v1::SevSnpEvidence& e = evidence.sev_snp();
  BERTH_ASSIGN_OR_RETURN(SnpVerifiedReport verified, Authenticate(e, policy));
  const snp::Report& r = verified.report;
  // The node's own identity key: without one, nothing could tell this guest from any other
  // guest the same VCEK/VLEK signs for.
  if (e.identity_public().empty() || e.identity_proof().empty()) {
    return PermissionDenied(
        "identity: the SEV-SNP evidence carries no node identity key and proof (berth-agent "
        "too old?): the VCEK/VLEK names a host or a cloud region, not a node");
  }
  auto identity = PublicKeyFromSpkiDer(AsBytes(e.identity_public()));
  char group[64] = {0};
  size_t group_len = 0;
  if (!identity.ok() || EVP_PKEY_get_base_id(identity->get()) != EVP_PKEY_EC ||
      EVP_PKEY_get_utf8_string_param(identity->get(), OSSL_PKEY_PARAM_GROUP_NAME, group,
                                     sizeof group, &group_len) != 1 ||
      std::string_view(group, group_len) != "prime256v1") {
    ERR_clear_error();
    return InvalidArgument("identity: the node identity key is not an EC P-256 public key");
  }
  Bytes expected = SnpReportData(binding, AsBytes(e.identity_public()));
  if (!std::equal(r.report_data.begin(), r.report_data.end(), expected.begin(), expected.end())) {
    return PermissionDenied(
        "report_data: does not equal the channel binding of this call (challenge nonce and TLS "
        "client key) and the node identity key it presents");
  }
  // The report commits to the key; only the proof shows the caller holds it (any guest on
  // the host can get a report committing to someone else's public key).
  if (!EcdsaVerifySha256(identity->get(), SnpIdentityProofMessage(binding),
                         AsBytes(e.identity_proof()))) {
    return PermissionDenied(
        "identity: the identity proof does not verify with the node identity key for this "
        "call (replayed, or made by another key)");
  }
  BERTH_RETURN_IF_ERROR(policy.Check(r, verified.product));
  if (r.signing_key == snp::SigningKey::kVlek) {
    BERTH_RETURN_IF_ERROR(policy.CheckVlekCsp(verified.leaf_csp_id));
  }
  VerifiedEvidence out;
  out.ak_sha256_hex = HexEncode(Sha256(AsBytes(e.identity_public())));
  out.platform_key_sha256_hex = verified.leaf_spki_sha256_hex;
  out.ak_name = "snp-node-" + out.ak_sha256_hex.substr(0, 16);
  out.rule = policy.Describe() + ", product " + std::string(snp::ProductName(verified.product)) +
             ", measurement " + HexEncode(r.measurement).substr(0, 16) + "..., " +
             std::string(snp::SigningKeyName(r.signing_key)) + " " +
             std::string(CertSourceName(verified.leaf_source)) + " sha256:" +
             verified.leaf_spki_sha256_hex.substr(0, 16) + "..., " + verified.crl;
  return out;
}

}  // namespace berth::verify
