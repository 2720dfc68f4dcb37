#include "tests/testing/snp_chain.h"

#include <gtest/gtest.h>
#include <openssl/ecdsa.h>
#include <openssl/rsa.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <ctime>

namespace berth::testing {

namespace {

void AddConfExtension(X509* cert, X509* issuer, int nid, const char* value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
  ASSERT_NE(ext, nullptr) << value;
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
}

void AddRawExtension(X509* cert, const char* oid, const Bytes& value) {
  ASN1_OBJECT* obj = OBJ_txt2obj(oid, 1);
  ASN1_OCTET_STRING* data = ASN1_OCTET_STRING_new();
  ASN1_OCTET_STRING_set(data, value.data(), static_cast<int>(value.size()));
  X509_EXTENSION* ext = X509_EXTENSION_create_by_OBJ(nullptr, obj, 0, data);
  X509_add_ext(cert, ext, -1);
  X509_EXTENSION_free(ext);
  ASN1_OCTET_STRING_free(data);
  ASN1_OBJECT_free(obj);
}

Bytes DerInteger(uint8_t v) {
  if (v < 0x80) return {0x02, 0x01, v};
  return {0x02, 0x02, 0x00, v};
}

X509Ptr NewCert(const std::string& cn, EVP_PKEY* key, X509* issuer, int64_t not_before,
                int64_t not_after) {
  X509Ptr cert(X509_new());
  X509_set_version(cert.get(), 2);
  Bytes serial = RandomBytes(8);
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial.data(), 8, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  ASN1_TIME_set(X509_getm_notBefore(cert.get()), static_cast<time_t>(not_before));
  ASN1_TIME_set(X509_getm_notAfter(cert.get()), static_cast<time_t>(not_after));
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>("berth test AMD"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8,
                             reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509_set_issuer_name(cert.get(), issuer ? X509_get_subject_name(issuer) : name);
  X509_set_pubkey(cert.get(), key);
  return cert;
}

void SignCert(X509* cert, EVP_PKEY* issuer_key, bool pss) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  ASSERT_EQ(EVP_DigestSignInit(ctx.get(), &pctx, EVP_sha384(), nullptr, issuer_key), 1);
  if (pss) {
    ASSERT_EQ(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
    ASSERT_EQ(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 48), 1);
    ASSERT_EQ(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha384()), 1);
  }
  ASSERT_GT(X509_sign_ctx(cert, ctx.get()), 0);
}

int64_t Now() { return static_cast<int64_t>(std::time(nullptr)); }

}  // namespace

EvpPkeyPtr GenerateP384Key() { return EvpPkeyPtr(EVP_EC_gen("P-384")); }

SnpTestChain::SnpTestChain(snp::Product product, int rsa_bits) : product_(product) {
  ark_key_ = std::move(GenerateRsaKey(rsa_bits)).value();
  ask_key_ = std::move(GenerateRsaKey(rsa_bits)).value();
  const std::string p(snp::ProductName(product));
  const int64_t from = Now() - 86400 * 365, to = Now() + 86400 * 365 * 20;
  ark_ = NewCert("ARK-" + p, ark_key_.get(), nullptr, from, to);
  AddConfExtension(ark_.get(), ark_.get(), NID_key_usage, "critical,keyCertSign,cRLSign");
  AddConfExtension(ark_.get(), ark_.get(), NID_basic_constraints, "critical,CA:TRUE");
  SignCert(ark_.get(), ark_key_.get(), true);
  ask_ = NewCert("SEV-" + p, ask_key_.get(), ark_.get(), from, to);
  AddConfExtension(ask_.get(), ark_.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  AddConfExtension(ask_.get(), ark_.get(), NID_key_usage, "critical,keyCertSign");
  SignCert(ask_.get(), ark_key_.get(), true);
  asvk_key_ = std::move(GenerateRsaKey(rsa_bits)).value();
  asvk_ = NewCert("SEV-VLEK-" + p, asvk_key_.get(), ark_.get(), from, to);
  AddConfExtension(asvk_.get(), ark_.get(), NID_basic_constraints, "critical,CA:TRUE,pathlen:0");
  AddConfExtension(asvk_.get(), ark_.get(), NID_key_usage, "critical,keyCertSign");
  SignCert(asvk_.get(), ark_key_.get(), true);
}

Bytes SnpTestChain::AsvkDer() const { return std::move(CertToDer(asvk_.get())).value(); }

SnpIssued SnpTestChain::IssueVlek(const SnpVcekSpec& spec) const {
  SnpIssued out;
  out.key = GenerateP384Key();
  const int64_t from = spec.not_before ? spec.not_before : Now() - 86400;
  const int64_t to = spec.not_after ? spec.not_after : Now() + 86400 * 365;
  out.cert = NewCert("SEV-VLEK", out.key.get(), asvk_.get(), from, to);
  X509* c = out.cert.get();
  AddRawExtension(c, "1.3.6.1.4.1.3704.1.1", DerInteger(0));
  std::string name = spec.product_name.value_or(std::string(snp::ProductName(product_)) + "-B0");
  Bytes ia5 = {0x16, static_cast<uint8_t>(name.size())};
  ia5.insert(ia5.end(), name.begin(), name.end());
  AddRawExtension(c, "1.3.6.1.4.1.3704.1.2", ia5);
  AddRawExtension(c, "1.3.6.1.4.1.3704.1.3.1", DerInteger(spec.tcb.bootloader));
  AddRawExtension(c, "1.3.6.1.4.1.3704.1.3.2", DerInteger(spec.tcb.tee));
  AddRawExtension(c, "1.3.6.1.4.1.3704.1.3.3", DerInteger(spec.tcb.snp));
  AddRawExtension(c, "1.3.6.1.4.1.3704.1.3.8", DerInteger(spec.tcb.microcode));
  if (spec.tcb.fmc) AddRawExtension(c, "1.3.6.1.4.1.3704.1.3.9", DerInteger(*spec.tcb.fmc));
  if (spec.csp_id) {
    Bytes csp = {0x16, static_cast<uint8_t>(spec.csp_id->size())};
    csp.insert(csp.end(), spec.csp_id->begin(), spec.csp_id->end());
    AddRawExtension(c, "1.3.6.1.4.1.3704.1.5", csp);
  }
  SignCert(c, asvk_key_.get(), true);
  return out;
}

Bytes SnpTestChain::MakeCrl(const std::vector<X509*>& revoked, int64_t next_update) const {
  std::unique_ptr<X509_CRL, decltype(&X509_CRL_free)> crl(X509_CRL_new(), X509_CRL_free);
  X509_CRL_set_version(crl.get(), 1);
  X509_CRL_set_issuer_name(crl.get(), X509_get_subject_name(ark_.get()));
  ASN1_TIME* last = ASN1_TIME_set(nullptr, static_cast<time_t>(Now() - 3600));
  ASN1_TIME* next =
      ASN1_TIME_set(nullptr, static_cast<time_t>(next_update ? next_update : Now() + 7 * 86400));
  X509_CRL_set1_lastUpdate(crl.get(), last);
  X509_CRL_set1_nextUpdate(crl.get(), next);
  for (X509* cert : revoked) {
    X509_REVOKED* r = X509_REVOKED_new();
    X509_REVOKED_set_serialNumber(r, X509_get_serialNumber(cert));
    X509_REVOKED_set_revocationDate(r, last);
    X509_CRL_add0_revoked(crl.get(), r);
  }
  ASN1_TIME_free(last);
  ASN1_TIME_free(next);
  X509_CRL_sort(crl.get());
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  EXPECT_EQ(EVP_DigestSignInit(ctx.get(), &pctx, EVP_sha384(), nullptr, ark_key_.get()), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 48), 1);
  EXPECT_EQ(EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha384()), 1);
  EXPECT_GT(X509_CRL_sign_ctx(crl.get(), ctx.get()), 0);
  unsigned char* der = nullptr;
  int len = i2d_X509_CRL(crl.get(), &der);
  Bytes out(der, der + len);
  OPENSSL_free(der);
  return out;
}

Bytes SnpTestChain::ArkDer() const { return std::move(CertToDer(ark_.get())).value(); }
Bytes SnpTestChain::AskDer() const { return std::move(CertToDer(ask_.get())).value(); }
std::string SnpTestChain::ArkPem() const { return std::move(CertToPem(ark_.get())).value(); }

SnpIssued SnpTestChain::IssueVcek(const SnpVcekSpec& spec) const {
  SnpIssued out;
  out.key = GenerateP384Key();
  const int64_t from = spec.not_before ? spec.not_before : Now() - 86400;
  const int64_t to = spec.not_after ? spec.not_after : Now() + 86400 * 365;
  out.cert = NewCert("SEV-VCEK", out.key.get(), ask_.get(), from, to);
  X509* c = out.cert.get();
  AddRawExtension(c, "1.3.6.1.4.1.3704.1.1", DerInteger(0));
  std::string name = spec.product_name.value_or(std::string(snp::ProductName(product_)) + "-B0");
  if (!name.empty()) {
    Bytes ia5 = {0x16, static_cast<uint8_t>(name.size())};
    ia5.insert(ia5.end(), name.begin(), name.end());
    AddRawExtension(c, "1.3.6.1.4.1.3704.1.2", ia5);
  }
  if (spec.include_tcb) {
    AddRawExtension(c, "1.3.6.1.4.1.3704.1.3.1", DerInteger(spec.tcb.bootloader));
    AddRawExtension(c, "1.3.6.1.4.1.3704.1.3.2", DerInteger(spec.tcb.tee));
    AddRawExtension(c, "1.3.6.1.4.1.3704.1.3.3", DerInteger(spec.tcb.snp));
    AddRawExtension(c, "1.3.6.1.4.1.3704.1.3.8", DerInteger(spec.tcb.microcode));
    if (spec.tcb.fmc) AddRawExtension(c, "1.3.6.1.4.1.3704.1.3.9", DerInteger(*spec.tcb.fmc));
  }
  if (!spec.hwid.empty()) AddRawExtension(c, "1.3.6.1.4.1.3704.1.4", spec.hwid);
  SignCert(c, ask_key_.get(), spec.pss);
  return out;
}

void SignSnpReport(Bytes& report, EVP_PKEY* key) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  ASSERT_EQ(EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha384(), nullptr, key), 1);
  size_t len = 0;
  ASSERT_EQ(EVP_DigestSign(ctx.get(), nullptr, &len, report.data(), snp::kSignedSize), 1);
  Bytes der(len);
  ASSERT_EQ(EVP_DigestSign(ctx.get(), der.data(), &len, report.data(), snp::kSignedSize), 1);
  const unsigned char* p = der.data();
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(len)), ECDSA_SIG_free);
  ASSERT_TRUE(sig);
  std::memset(report.data() + snp::kSignatureOffset, 0, snp::kReportSize - snp::kSignatureOffset);
  auto put_le = [&](const BIGNUM* bn, size_t off) {
    uint8_t be[48];
    BN_bn2binpad(bn, be, 48);
    for (int i = 0; i < 48; ++i) report[off + i] = be[47 - i];
  };
  put_le(ECDSA_SIG_get0_r(sig.get()), snp::kSignatureOffset);
  put_le(ECDSA_SIG_get0_s(sig.get()), snp::kSignatureOffset + 72);
}

Bytes MakeSnpReport(const SnpReportSpec& s, EVP_PKEY* key) {
  Bytes r(snp::kReportSize, 0);
  auto put32 = [&](size_t off, uint32_t v) {
    for (int i = 0; i < 4; ++i) r[off + i] = static_cast<uint8_t>(v >> (8 * i));
  };
  auto put64 = [&](size_t off, uint64_t v) {
    for (int i = 0; i < 8; ++i) r[off + i] = static_cast<uint8_t>(v >> (8 * i));
  };
  auto put = [&](size_t off, const Bytes& b, size_t size) {
    if (!b.empty()) std::memcpy(r.data() + off, b.data(), std::min(b.size(), size));
  };
  put32(0x00, s.version);
  put64(0x08, s.policy);
  put32(0x30, s.vmpl);
  put32(0x34, snp::kSignatureAlgoEcdsaP384Sha384);
  put64(0x38, s.current_tcb ? s.current_tcb : s.reported_tcb);
  put32(0x48, static_cast<uint32_t>(s.signing_key) << 2 | (s.mask_chip_key ? 2u : 0u) |
                  (s.author_key_digest.empty() ? 0u : 1u));
  put(0x50, s.report_data, 64);
  put(0x90, s.measurement, 48);
  put(0xC0, s.host_data, 32);
  put(0xE0, s.id_key_digest, 48);
  put(0x110, s.author_key_digest, 48);
  put64(0x180, s.reported_tcb);
  if (s.version >= 3) {
    r[0x188] = s.cpuid_family;
    r[0x189] = s.cpuid_model;
  }
  if (!s.mask_chip_key) put(0x1A0, s.chip_id, 64);
  put64(0x1E0, s.committed_tcb ? s.committed_tcb : s.reported_tcb);
  r[0x1E8] = 4;  // firmware 1.55 build 4
  r[0x1E9] = 55;
  r[0x1EA] = 1;
  put64(0x1F0, s.launch_tcb ? s.launch_tcb : s.reported_tcb);
  SignSnpReport(r, key);
  return r;
}

}  // namespace berth::testing
