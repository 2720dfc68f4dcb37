#include "tests/unit/common/tpm/synthetic_quote.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>

#include <cstring>
#include <memory>

namespace berth::testdata {
namespace {

struct BnFree {
  void operator()(BIGNUM* b) const { BN_free(b); }
};
using BnPtr = std::unique_ptr<BIGNUM, BnFree>;

BnPtr GetBn(EVP_PKEY* key, const char* name) {
  BIGNUM* bn = nullptr;
  EVP_PKEY_get_bn_param(key, name, &bn);
  return BnPtr(bn);
}

Result<Bytes> SignRaw(EVP_PKEY* key, std::span<const uint8_t> data, DigestAlg hash, bool pss) {
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  if (EVP_DigestSignInit(ctx.get(), &pctx, EvpMd(hash), nullptr, key) != 1) {
    return OpenSslError("sign init");
  }
  if (pss && (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
              EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) != 1)) {
    return OpenSslError("pss");
  }
  size_t len = 0;
  if (EVP_DigestSign(ctx.get(), nullptr, &len, data.data(), data.size()) != 1) {
    return OpenSslError("sign size");
  }
  Bytes sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len, data.data(), data.size()) != 1) {
    return OpenSslError("sign");
  }
  sig.resize(len);
  return sig;
}

}  // namespace

Result<SyntheticQuote> MakeSyntheticQuote(const SyntheticQuoteSpec& spec, EVP_PKEY* key) {
  SyntheticQuote out;
  TPMS_ATTEST attest;
  std::memset(&attest, 0, sizeof attest);
  attest.magic = spec.magic;
  attest.type = spec.type;
  attest.extraData.size = static_cast<uint16_t>(spec.extra_data.size());
  // An empty vector's data() may be null, which memcpy must not get even for 0 bytes (UBSan).
  if (!spec.extra_data.empty()) {
    std::memcpy(attest.extraData.buffer, spec.extra_data.data(), spec.extra_data.size());
  }
  if (spec.type == TPM2_ST_ATTEST_QUOTE) {
    TPMS_QUOTE_INFO& q = attest.attested.quote;
    Bytes concatenated;
    q.pcrSelect.count = static_cast<uint32_t>(spec.selection.size());
    for (size_t i = 0; i < spec.selection.size(); ++i) {
      const auto& [bank, indexes] = spec.selection[i];
      TPMS_PCR_SELECTION& s = q.pcrSelect.pcrSelections[i];
      s.hash = tpm::TpmAlgFromDigest(bank);
      s.sizeofSelect = 3;
      for (uint32_t index : indexes)
        s.pcrSelect[index / 8] |= static_cast<uint8_t>(1u << (index % 8));
      // The TPM concatenates in selection order: bank by bank, ascending index.
      for (uint32_t index = 0; index < 24; ++index) {
        if ((s.pcrSelect[index / 8] & (1u << (index % 8))) == 0) continue;
        Bytes value(DigestSize(bank), static_cast<uint8_t>(index + 1));
        if (auto b = spec.pcr_values.find(bank); b != spec.pcr_values.end()) {
          if (auto v = b->second.find(index); v != b->second.end()) value = v->second;
        }
        concatenated.insert(concatenated.end(), value.begin(), value.end());
        out.pcrs[bank][index] = value;
      }
    }
    Bytes digest = Digest(spec.sig_hash, concatenated);
    q.pcrDigest.size = static_cast<uint16_t>(digest.size());
    std::memcpy(q.pcrDigest.buffer, digest.data(), digest.size());
  }
  out.attest.resize(sizeof(TPMS_ATTEST));
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPMS_ATTEST_Marshal(&attest, out.attest.data(), out.attest.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) return tpm::TssError("marshalling TPMS_ATTEST", rc);
  out.attest.resize(offset);

  TPMT_SIGNATURE sig;
  std::memset(&sig, 0, sizeof sig);
  sig.sigAlg = spec.sig_alg;
  BERTH_ASSIGN_OR_RETURN(Bytes raw,
                         SignRaw(key, out.attest, spec.sig_hash, spec.sig_alg == TPM2_ALG_RSAPSS));
  if (spec.sig_alg == TPM2_ALG_ECDSA) {
    const unsigned char* p = raw.data();
    std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> es(
        d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(raw.size())), ECDSA_SIG_free);
    if (!es) return OpenSslError("decoding ECDSA signature");
    sig.signature.ecdsa.hash = tpm::TpmAlgFromDigest(spec.sig_hash);
    sig.signature.ecdsa.signatureR.size = 32;
    sig.signature.ecdsa.signatureS.size = 32;
    BN_bn2binpad(ECDSA_SIG_get0_r(es.get()), sig.signature.ecdsa.signatureR.buffer, 32);
    BN_bn2binpad(ECDSA_SIG_get0_s(es.get()), sig.signature.ecdsa.signatureS.buffer, 32);
  } else {
    TPMS_SIGNATURE_RSA& rsa =
        spec.sig_alg == TPM2_ALG_RSAPSS ? sig.signature.rsapss : sig.signature.rsassa;
    rsa.hash = tpm::TpmAlgFromDigest(spec.sig_hash);
    rsa.sig.size = static_cast<uint16_t>(raw.size());
    std::memcpy(rsa.sig.buffer, raw.data(), raw.size());
  }
  BERTH_ASSIGN_OR_RETURN(out.signature, tpm::MarshalSignature(sig));
  return out;
}

Result<Bytes> MakeTpmtPublic(EVP_PKEY* key, TPMA_OBJECT attributes) {
  TPMT_PUBLIC pub;
  std::memset(&pub, 0, sizeof pub);
  pub.nameAlg = TPM2_ALG_SHA256;
  pub.objectAttributes = attributes;
  if (EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
    pub.type = TPM2_ALG_RSA;
    BnPtr n = GetBn(key, OSSL_PKEY_PARAM_RSA_N);
    pub.parameters.rsaDetail.symmetric.algorithm = TPM2_ALG_NULL;
    pub.parameters.rsaDetail.scheme.scheme = TPM2_ALG_RSASSA;
    pub.parameters.rsaDetail.scheme.details.rsassa.hashAlg = TPM2_ALG_SHA256;
    pub.parameters.rsaDetail.keyBits = static_cast<uint16_t>(BN_num_bits(n.get()));
    pub.parameters.rsaDetail.exponent = 0;  // the default, 65537
    pub.unique.rsa.size = static_cast<uint16_t>(BN_num_bytes(n.get()));
    BN_bn2bin(n.get(), pub.unique.rsa.buffer);
  } else {
    pub.type = TPM2_ALG_ECC;
    BnPtr x = GetBn(key, OSSL_PKEY_PARAM_EC_PUB_X);
    BnPtr y = GetBn(key, OSSL_PKEY_PARAM_EC_PUB_Y);
    pub.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
    pub.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
    pub.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
    pub.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    pub.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    // Minimal big-endian, as a TPM may emit a coordinate with leading zeros stripped.
    pub.unique.ecc.x.size = static_cast<uint16_t>(BN_bn2bin(x.get(), pub.unique.ecc.x.buffer));
    pub.unique.ecc.y.size = static_cast<uint16_t>(BN_bn2bin(y.get(), pub.unique.ecc.y.buffer));
  }
  return tpm::MarshalPublic(pub);
}

}  // namespace berth::testdata
