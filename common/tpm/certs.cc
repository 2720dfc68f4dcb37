#include "common/tpm/certs.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/x509_vfy.h>

#include "common/tpm/quote.h"

namespace berth::tpm {

namespace {

struct StoreFree {
  void operator()(X509_STORE* p) const { X509_STORE_free(p); }
};
struct StoreCtxFree {
  void operator()(X509_STORE_CTX* p) const { X509_STORE_CTX_free(p); }
};
struct StackFree {
  void operator()(STACK_OF(X509) * p) const { sk_X509_free(p); }
};

// Errors that come from what TPM certificates legitimately contain rather than from a broken
// chain: TCG extensions OpenSSL does not know (sometimes marked critical), and key purposes
// that fit no TLS use. Everything else (signatures, validity, issuer CA flags) stays fatal.
int TolerateTpmCertificateQuirks(int ok, X509_STORE_CTX* ctx) {
  if (ok) return ok;
  switch (X509_STORE_CTX_get_error(ctx)) {
    case X509_V_ERR_UNHANDLED_CRITICAL_EXTENSION:
    case X509_V_ERR_INVALID_PURPOSE:
      X509_STORE_CTX_set_error(ctx, X509_V_OK);
      return 1;
    default:
      return 0;
  }
}

}  // namespace

namespace {
std::string NameText(X509_NAME* name) {
  if (name == nullptr || X509_NAME_entry_count(name) == 0) return "(empty subject)";
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return "?";
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  char* p = nullptr;
  long n = BIO_get_mem_data(bio, &p);
  std::string out(p, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}
}  // namespace

std::string CertSubject(X509* cert) { return NameText(X509_get_subject_name(cert)); }
std::string CertIssuer(X509* cert) { return NameText(X509_get_issuer_name(cert)); }

Result<VerifiedCertChain> VerifyTpmCertChain(X509* leaf, const std::vector<X509*>& intermediates,
                                             const std::vector<X509*>& trusted, int64_t at_unix) {
  if (trusted.empty()) return InvalidArgument("no trusted CA certificate is configured");
  std::unique_ptr<X509_STORE, StoreFree> store(X509_STORE_new());
  std::unique_ptr<STACK_OF(X509), StackFree> untrusted(sk_X509_new_null());
  std::unique_ptr<X509_STORE_CTX, StoreCtxFree> ctx(X509_STORE_CTX_new());
  if (!store || !untrusted || !ctx) return OpenSslError("allocating a certificate store");
  for (X509* t : trusted) {
    if (X509_STORE_add_cert(store.get(), t) != 1) {
      // The same CA listed twice is harmless.
      unsigned long err = ERR_peek_last_error();
      if (ERR_GET_REASON(err) != X509_R_CERT_ALREADY_IN_HASH_TABLE) {
        return OpenSslError("adding a trusted CA certificate");
      }
      ERR_clear_error();
    }
  }
  for (X509* i : intermediates) sk_X509_push(untrusted.get(), i);
  if (X509_STORE_CTX_init(ctx.get(), store.get(), leaf, untrusted.get()) != 1) {
    return OpenSslError("initialising certificate verification");
  }
  X509_VERIFY_PARAM* param = X509_STORE_CTX_get0_param(ctx.get());
  // A chain may end at a trusted intermediate: manufacturers' bundles hold both levels.
  X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_PARTIAL_CHAIN);
  X509_VERIFY_PARAM_set_time(param, static_cast<time_t>(at_unix));
  X509_STORE_CTX_set_verify_cb(ctx.get(), TolerateTpmCertificateQuirks);
  int rc = X509_verify_cert(ctx.get());
  if (rc != 1) {
    int err = X509_STORE_CTX_get_error(ctx.get());
    X509* at = X509_STORE_CTX_get_current_cert(ctx.get());
    ERR_clear_error();
    return PermissionDenied("certificate " + CertSubject(at ? at : leaf) + " (depth " +
                            std::to_string(X509_STORE_CTX_get_error_depth(ctx.get())) +
                            "): " + X509_verify_cert_error_string(err));
  }
  VerifiedCertChain out;
  out.leaf_subject = CertSubject(leaf);
  STACK_OF(X509)* chain = X509_STORE_CTX_get0_chain(ctx.get());
  if (chain != nullptr && sk_X509_num(chain) > 0) {
    out.anchor_subject = CertSubject(sk_X509_value(chain, sk_X509_num(chain) - 1));
  }
  return out;
}

Status CheckCertKeyMatches(X509* cert, const TPMT_PUBLIC& pub, std::string_view what) {
  EVP_PKEY* cert_key = X509_get0_pubkey(cert);
  if (cert_key == nullptr) {
    return OpenSslError(std::string(what) + ": reading its public key", Code::kInvalidArgument);
  }
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr tpm_key, PublicToEvp(pub));
  int eq = EVP_PKEY_eq(cert_key, tpm_key.get());
  ERR_clear_error();
  if (eq != 1) {
    return PermissionDenied(std::string(what) + " certifies another key than the one presented");
  }
  return OkStatus();
}

Result<std::vector<X509Ptr>> CertsFromDerList(const std::vector<std::string>& ders) {
  std::vector<X509Ptr> out;
  for (size_t i = 0; i < ders.size(); ++i) {
    auto cert = CertFromDer(AsBytes(ders[i]));
    if (!cert.ok()) return cert.status().WithContext("certificate " + std::to_string(i));
    out.push_back(std::move(*cert));
  }
  return out;
}

Result<Bytes> TrimDerCertificate(std::span<const uint8_t> nv) {
  // SEQUENCE, then a DER length: short form, or 0x81-0x83 and that many length bytes.
  if (nv.size() < 2 || nv[0] != 0x30) {
    return InvalidArgument("NV contents do not start with a DER certificate");
  }
  size_t header = 2, length = nv[1];
  if (nv[1] & 0x80) {
    size_t n = nv[1] & 0x7f;
    if (n == 0 || n > 3 || nv.size() < 2 + n) {
      return InvalidArgument("NV contents hold a malformed DER length");
    }
    length = 0;
    for (size_t i = 0; i < n; ++i) length = (length << 8) | nv[2 + i];
    header += n;
  }
  if (header + length > nv.size()) {
    return InvalidArgument("the DER certificate in NV is truncated (" +
                           std::to_string(header + length) + " bytes announced, " +
                           std::to_string(nv.size()) + " stored)");
  }
  return Bytes(nv.begin(), nv.begin() + static_cast<long>(header + length));
}

}  // namespace berth::tpm
