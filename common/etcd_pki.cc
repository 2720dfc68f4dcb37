#include "common/etcd_pki.h"

#include <arpa/inet.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <algorithm>
#include <ctime>

#include "common/bytes.h"
#include "common/enrolment.h"
#include "common/time.h"

namespace berth {

namespace {

constexpr size_t kMaxAddresses = 16;
constexpr int64_t kCrlValiditySeconds = 30 * 24 * 3600;

struct X509ReqFree {
  void operator()(X509_REQ* r) const { X509_REQ_free(r); }
};
struct X509CrlFree {
  void operator()(X509_CRL* c) const { X509_CRL_free(c); }
};
struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
struct Asn1IntegerFree {
  void operator()(ASN1_INTEGER* a) const { ASN1_INTEGER_free(a); }
};
struct Asn1TimeFree {
  void operator()(ASN1_TIME* t) const { ASN1_TIME_free(t); }
};
struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

Result<std::string> DescribeKey(EVP_PKEY* key, std::string_view which) {
  const std::string where = "etcd " + std::string(which) + " CSR";
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_EC: {
      char group[64] = {0};
      size_t len = 0;
      if (EVP_PKEY_get_utf8_string_param(key, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group,
                                         &len) != 1) {
        return OpenSslError(where + ": reading the EC key's curve", Code::kInvalidArgument);
      }
      std::string curve(group, len);
      if (curve == "prime256v1" || curve == "P-256") return std::string("EC P-256");
      if (curve == "secp384r1" || curve == "P-384") return std::string("EC P-384");
      return InvalidArgument(where + ": EC curve " + curve + " is not P-256 or P-384");
    }
    case EVP_PKEY_RSA: {
      int bits = EVP_PKEY_get_bits(key);
      if (bits < 2048) {
        return InvalidArgument(where + ": RSA key of " + std::to_string(bits) +
                               " bits is too small (at least 2048)");
      }
      if (bits > 8192) {
        return InvalidArgument(where + ": RSA key of " + std::to_string(bits) +
                               " bits is too large (at most 8192)");
      }
      return "RSA " + std::to_string(bits);
    }
    default:
      return InvalidArgument(where + ": key type " +
                             std::string(OBJ_nid2sn(EVP_PKEY_get_base_id(key))) +
                             " is not EC (P-256, P-384) or RSA");
  }
}

}  // namespace

Result<EvpPkeyPtr> CheckEtcdCsr(std::span<const uint8_t> der, const std::string& node_name,
                                std::string_view which) {
  const std::string where = "etcd " + std::string(which) + " CSR";
  if (der.empty()) return InvalidArgument(where + " is missing");
  if (der.size() > 64 * 1024) return InvalidArgument(where + " is larger than 64 KiB");
  const unsigned char* p = der.data();
  std::unique_ptr<X509_REQ, X509ReqFree> req(
      d2i_X509_REQ(nullptr, &p, static_cast<long>(der.size())));
  if (!req) return OpenSslError(where + ": not a DER PKCS#10 request", Code::kInvalidArgument);
  if (p != der.data() + der.size())
    return InvalidArgument(where + ": trailing data after the request");
  EVP_PKEY* key = X509_REQ_get0_pubkey(req.get());
  if (key == nullptr) return OpenSslError(where + ": no public key", Code::kInvalidArgument);
  BERTH_ASSIGN_OR_RETURN(std::string key_type, DescribeKey(key, which));
  if (X509_REQ_verify(req.get(), key) != 1) {
    ERR_clear_error();
    return InvalidArgument(where + ": its signature does not verify with the " + key_type +
                           " key it carries");
  }
  X509_NAME* subject = X509_REQ_get_subject_name(req.get());
  if (X509_NAME_entry_count(subject) != 1) {
    return InvalidArgument(where + ": the subject must be exactly CN=" + node_name);
  }
  X509_NAME_ENTRY* entry = X509_NAME_get_entry(subject, 0);
  if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(entry)) != NID_commonName) {
    return InvalidArgument(where + ": the subject must be exactly CN=" + node_name);
  }
  const ASN1_STRING* cn = X509_NAME_ENTRY_get_data(entry);
  std::string cn_text(reinterpret_cast<const char*>(ASN1_STRING_get0_data(cn)),
                      static_cast<size_t>(ASN1_STRING_length(cn)));
  if (cn_text != node_name) {
    return InvalidArgument(where + ": CN \"" + cn_text + "\" is not the node name \"" + node_name +
                           "\"");
  }
  EVP_PKEY_up_ref(key);
  return EvpPkeyPtr(key);
}

Result<CertSpec> EtcdMemberCertSpec(const std::string& node_name,
                                    const std::vector<std::string>& addresses,
                                    std::chrono::seconds validity) {
  if (addresses.size() > kMaxAddresses) {
    return InvalidArgument("the request names " + std::to_string(addresses.size()) +
                           " node addresses; at most " + std::to_string(kMaxAddresses));
  }
  CertSpec spec{
      .common_name = node_name, .server_auth = true, .client_auth = true, .validity = validity};
  auto add = [](std::vector<std::string>& list, const std::string& v) {
    if (std::find(list.begin(), list.end(), v) == list.end()) list.push_back(v);
  };
  add(spec.dns_names, node_name);
  for (const auto& a : addresses) {
    if (IsIpLiteral(a)) {
      add(spec.ip_addresses, a);
    } else if (IsValidNodeName(a)) {
      add(spec.dns_names, a);
    } else {
      return InvalidArgument("node address \"" + a + "\" is neither an IP address nor a DNS name");
    }
  }
  add(spec.dns_names, "localhost");
  add(spec.ip_addresses, "127.0.0.1");
  add(spec.ip_addresses, "::1");
  return spec;
}

std::string SerialHex(X509* cert) {
  std::unique_ptr<BIGNUM, BnFree> bn(ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr));
  if (!bn) return "";
  char* hex = BN_bn2hex(bn.get());
  std::string out = Lower(hex);
  OPENSSL_free(hex);
  return out;
}

Result<std::unique_ptr<EtcdCa>> EtcdCa::Load(const std::string& cert_path,
                                             const std::string& key_path,
                                             std::chrono::seconds cert_validity) {
  BERTH_ASSIGN_OR_RETURN(std::string cert_pem, ReadFile(cert_path, 1 << 20));
  BERTH_ASSIGN_OR_RETURN(SecretBytes key_pem, ReadSecretFile(key_path));
  auto ca = FromPem(cert_pem, key_pem, cert_validity);
  if (!ca.ok()) return ca.status().WithContext("etcd CA " + cert_path + ", " + key_path);
  return ca;
}

Result<std::unique_ptr<EtcdCa>> EtcdCa::FromPem(const std::string& cert_pem,
                                                const SecretBytes& key_pem,
                                                std::chrono::seconds cert_validity) {
  std::unique_ptr<EtcdCa> ca(new EtcdCa());
  BERTH_ASSIGN_OR_RETURN(ca->cert_, CertFromPem(cert_pem));
  auto key = PrivateKeyFromPem(key_pem.view());
  if (!key.ok()) return InvalidArgument("the CA key is not a PEM private key");
  ca->key_ = std::move(*key);
  if (X509_check_ca(ca->cert_.get()) == 0) {
    return InvalidArgument("the certificate is not a CA certificate");
  }
  if (X509_check_private_key(ca->cert_.get(), ca->key_.get()) != 1) {
    ERR_clear_error();
    return InvalidArgument("the key is not the CA certificate's key");
  }
  BERTH_ASSIGN_OR_RETURN(ca->cert_pem_, CertToPem(ca->cert_.get()));
  ca->cert_validity_ = cert_validity;
  return ca;
}

Result<IssuedEtcdCert> EtcdCa::Issue(std::string_view kind, EVP_PKEY* key,
                                     const std::string& node_name,
                                     const std::vector<std::string>& addresses,
                                     int64_t now_unix) const {
  BERTH_ASSIGN_OR_RETURN(CertSpec spec, EtcdMemberCertSpec(node_name, addresses, cert_validity_));
  BERTH_ASSIGN_OR_RETURN(X509Ptr cert, IssueCert(spec, key, cert_.get(), key_.get()));
  IssuedEtcdCert out;
  BERTH_ASSIGN_OR_RETURN(out.pem, CertToPem(cert.get()));
  BERTH_ASSIGN_OR_RETURN(Bytes spki, CertSpkiSha256(cert.get()));
  BERTH_ASSIGN_OR_RETURN(int64_t not_before, Asn1TimeUnix(X509_get0_notBefore(cert.get())));
  BERTH_ASSIGN_OR_RETURN(int64_t not_after, Asn1TimeUnix(X509_get0_notAfter(cert.get())));
  out.log.set_version(1);
  out.log.set_serial(SerialHex(cert.get()));
  out.log.set_node(node_name);
  out.log.set_kind(std::string(kind));
  out.log.set_not_before_unix(not_before);
  out.log.set_not_after_unix(not_after);
  out.log.set_spki_sha256(HexEncode(spki));
  out.log.set_issued_unix(now_unix);
  return out;
}

Result<std::string> EtcdCa::MakeCrl(const std::vector<v1::EtcdRevokedCertificate>& revoked,
                                    int64_t now_unix, int64_t number) const {
  std::unique_ptr<X509_CRL, X509CrlFree> crl(X509_CRL_new());
  if (!crl) return OpenSslError("allocating a CRL");
  X509_CRL_set_version(crl.get(), X509_CRL_VERSION_2);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(cert_.get()));
  std::unique_ptr<ASN1_TIME, Asn1TimeFree> this_update(ASN1_TIME_set(nullptr, now_unix));
  std::unique_ptr<ASN1_TIME, Asn1TimeFree> next_update(
      ASN1_TIME_set(nullptr, now_unix + kCrlValiditySeconds));
  if (!this_update || !next_update || X509_CRL_set1_lastUpdate(crl.get(), this_update.get()) != 1 ||
      X509_CRL_set1_nextUpdate(crl.get(), next_update.get()) != 1) {
    return OpenSslError("setting the CRL's times");
  }
  for (const auto& r : revoked) {
    BIGNUM* raw = nullptr;
    if (r.serial().empty() ||
        BN_hex2bn(&raw, r.serial().c_str()) != static_cast<int>(r.serial().size())) {
      BN_free(raw);
      return DataLoss("revoked serial \"" + r.serial() + "\" stored in etcd is not hex");
    }
    std::unique_ptr<BIGNUM, BnFree> bn(raw);
    std::unique_ptr<ASN1_INTEGER, Asn1IntegerFree> serial(BN_to_ASN1_INTEGER(bn.get(), nullptr));
    std::unique_ptr<ASN1_TIME, Asn1TimeFree> when(ASN1_TIME_set(nullptr, r.revoked_unix()));
    X509_REVOKED* entry = X509_REVOKED_new();
    if (!serial || !when || entry == nullptr ||
        X509_REVOKED_set_serialNumber(entry, serial.get()) != 1 ||
        X509_REVOKED_set_revocationDate(entry, when.get()) != 1 ||
        X509_CRL_add0_revoked(crl.get(), entry) != 1) {
      X509_REVOKED_free(entry);
      return OpenSslError("adding serial " + r.serial() + " to the CRL");
    }
  }
  X509_CRL_sort(crl.get());
  std::unique_ptr<ASN1_INTEGER, Asn1IntegerFree> crl_number(ASN1_INTEGER_new());
  if (!crl_number || ASN1_INTEGER_set_int64(crl_number.get(), number) != 1 ||
      X509_CRL_add1_ext_i2d(crl.get(), NID_crl_number, crl_number.get(), 0, 0) != 1) {
    return OpenSslError("adding the CRL number");
  }
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, cert_.get(), nullptr, nullptr, crl.get(), 0);
  X509_EXTENSION* akid =
      X509V3_EXT_conf_nid(nullptr, &ctx, NID_authority_key_identifier, "keyid:always");
  if (akid == nullptr) return OpenSslError("building the CRL's authority key identifier");
  int added = X509_CRL_add_ext(crl.get(), akid, -1);
  X509_EXTENSION_free(akid);
  if (added != 1) return OpenSslError("adding the CRL's authority key identifier");
  if (X509_CRL_sign(crl.get(), key_.get(), EVP_sha256()) <= 0)
    return OpenSslError("signing the CRL");
  std::unique_ptr<BIO, BioFree> bio(BIO_new(BIO_s_mem()));
  if (!bio || PEM_write_bio_X509_CRL(bio.get(), crl.get()) != 1)
    return OpenSslError("encoding the CRL");
  char* data = nullptr;
  long n = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<size_t>(n));
}

}  // namespace berth
