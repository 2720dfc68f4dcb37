#include "common/tpm/quote.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/err.h>
#include <openssl/param_build.h>
#include <openssl/rsa.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_rc.h>

#include <cstring>

namespace berth::tpm {

Status TssError(std::string_view what, uint32_t rc) {
  const char* decoded = Tss2_RC_Decode(rc);
  char hex[16];
  snprintf(hex, sizeof hex, "0x%x", rc);
  std::string msg = std::string(what) + ": " + (decoded ? decoded : "unknown") + " (" + hex + ")";
  // TPM_RC_RETRY / YIELDED / TESTING and TCTI I/O errors are transient.
  uint32_t base = rc & 0xfff;
  if ((rc & 0xff0000) == 0x0a0000 /* TCTI layer */ || base == TPM2_RC_RETRY ||
      base == TPM2_RC_YIELDED || base == TPM2_RC_TESTING) {
    return Unavailable(std::move(msg));
  }
  return Internal(std::move(msg));
}

Result<DigestAlg> DigestFromTpmAlg(uint16_t alg) {
  switch (alg) {
    case TPM2_ALG_SHA1: return DigestAlg::kSha1;
    case TPM2_ALG_SHA256: return DigestAlg::kSha256;
    case TPM2_ALG_SHA384: return DigestAlg::kSha384;
    case TPM2_ALG_SHA512: return DigestAlg::kSha512;
  }
  char hex[8];
  snprintf(hex, sizeof hex, "0x%04x", alg);
  return InvalidArgument(std::string("unsupported TPM hash algorithm ") + hex);
}

uint16_t TpmAlgFromDigest(DigestAlg alg) {
  switch (alg) {
    case DigestAlg::kSha1: return TPM2_ALG_SHA1;
    case DigestAlg::kSha256: return TPM2_ALG_SHA256;
    case DigestAlg::kSha384: return TPM2_ALG_SHA384;
    case DigestAlg::kSha512: return TPM2_ALG_SHA512;
  }
  return TPM2_ALG_NULL;
}

std::string PcrName(DigestAlg bank, uint32_t index) {
  return std::string(DigestName(bank)) + ":" + std::to_string(index);
}

namespace {

template <typename T, typename F>
Result<T> UnmarshalExact(std::span<const uint8_t> data, F fn, std::string_view what) {
  T out;
  std::memset(&out, 0, sizeof out);
  size_t offset = 0;
  TSS2_RC rc = fn(data.data(), data.size(), &offset, &out);
  if (rc != TSS2_RC_SUCCESS) {
    return InvalidArgument("malformed " + std::string(what) + " (" +
                           std::to_string(data.size()) + " bytes): " +
                           (Tss2_RC_Decode(rc) ? Tss2_RC_Decode(rc) : "unmarshal failed"));
  }
  if (offset != data.size()) {
    return InvalidArgument("malformed " + std::string(what) + ": " +
                           std::to_string(data.size() - offset) + " trailing bytes");
  }
  return out;
}

}  // namespace

Result<TPMT_PUBLIC> ParsePublic(std::span<const uint8_t> data) {
  // A TPM2B_PUBLIC starts with a big-endian size equal to the rest of the buffer.
  if (data.size() >= 2 && static_cast<size_t>((data[0] << 8) | data[1]) == data.size() - 2) {
    auto b = UnmarshalExact<TPM2B_PUBLIC>(data, Tss2_MU_TPM2B_PUBLIC_Unmarshal, "TPM2B_PUBLIC");
    if (b.ok()) return b->publicArea;
  }
  return UnmarshalExact<TPMT_PUBLIC>(data, Tss2_MU_TPMT_PUBLIC_Unmarshal, "TPMT_PUBLIC");
}

Result<Bytes> MarshalPublic(const TPMT_PUBLIC& pub) {
  Bytes out(sizeof(TPMT_PUBLIC));
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPMT_PUBLIC_Marshal(&pub, out.data(), out.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) return TssError("marshalling TPMT_PUBLIC", rc);
  out.resize(offset);
  return out;
}

Result<Bytes> PublicName(const TPMT_PUBLIC& pub) {
  BERTH_ASSIGN_OR_RETURN(DigestAlg alg, DigestFromTpmAlg(pub.nameAlg));
  BERTH_ASSIGN_OR_RETURN(Bytes marshalled, MarshalPublic(pub));
  Bytes digest = Digest(alg, marshalled);
  Bytes name = {static_cast<uint8_t>(pub.nameAlg >> 8), static_cast<uint8_t>(pub.nameAlg)};
  name.insert(name.end(), digest.begin(), digest.end());
  return name;
}

Result<EvpPkeyPtr> PublicToEvp(const TPMT_PUBLIC& pub) {
  if (pub.type == TPM2_ALG_RSA) {
    const auto& rsa = pub.unique.rsa;
    if (rsa.size == 0) return InvalidArgument("TPMT_PUBLIC has an empty RSA modulus");
    const uint32_t exponent =
        pub.parameters.rsaDetail.exponent ? pub.parameters.rsaDetail.exponent : 65537;
    const uint8_t e[] = {static_cast<uint8_t>(exponent >> 24), static_cast<uint8_t>(exponent >> 16),
                         static_cast<uint8_t>(exponent >> 8), static_cast<uint8_t>(exponent)};
    return RsaPublicKeyFromParams(std::span<const uint8_t>(rsa.buffer, rsa.size), e);
  }
  if (pub.type == TPM2_ALG_ECC) {
    const char* group = nullptr;
    size_t field = 0;
    switch (pub.parameters.eccDetail.curveID) {
      case TPM2_ECC_NIST_P256: group = "P-256"; field = 32; break;
      case TPM2_ECC_NIST_P384: group = "P-384"; field = 48; break;
      case TPM2_ECC_NIST_P521: group = "P-521"; field = 66; break;
      default:
        return InvalidArgument("unsupported ECC curve " +
                               std::to_string(pub.parameters.eccDetail.curveID));
    }
    const auto& x = pub.unique.ecc.x;
    const auto& y = pub.unique.ecc.y;
    if (x.size > field || y.size > field) return InvalidArgument("ECC point larger than its curve");
    Bytes point(1 + 2 * field, 0);
    point[0] = 0x04;
    std::memcpy(point.data() + 1 + field - x.size, x.buffer, x.size);
    std::memcpy(point.data() + 1 + 2 * field - y.size, y.buffer, y.size);
    return EcPublicKeyFromPoint(group, point);
  }
  return InvalidArgument("unsupported TPM key type " + std::to_string(pub.type));
}

Status CheckAttestationKeyAttributes(const TPMT_PUBLIC& pub) {
  const TPMA_OBJECT a = pub.objectAttributes;
  struct { TPMA_OBJECT bit; bool want; const char* name; } checks[] = {
      {TPMA_OBJECT_FIXEDTPM, true, "fixedTPM"},
      {TPMA_OBJECT_FIXEDPARENT, true, "fixedParent"},
      {TPMA_OBJECT_SENSITIVEDATAORIGIN, true, "sensitiveDataOrigin"},
      {TPMA_OBJECT_RESTRICTED, true, "restricted"},
      {TPMA_OBJECT_SIGN_ENCRYPT, true, "sign"},
      {TPMA_OBJECT_DECRYPT, false, "decrypt"},
  };
  for (const auto& c : checks) {
    if (((a & c.bit) != 0) != c.want) {
      return PermissionDenied(std::string("the attestation key ") + (c.want ? "lacks" : "has") +
                              " the " + c.name + " attribute");
    }
  }
  return OkStatus();
}

Result<TPMS_ATTEST> ParseAttest(std::span<const uint8_t> data) {
  return UnmarshalExact<TPMS_ATTEST>(data, Tss2_MU_TPMS_ATTEST_Unmarshal, "TPMS_ATTEST");
}

Result<TPMT_SIGNATURE> ParseSignature(std::span<const uint8_t> data) {
  return UnmarshalExact<TPMT_SIGNATURE>(data, Tss2_MU_TPMT_SIGNATURE_Unmarshal, "TPMT_SIGNATURE");
}

Result<Bytes> MarshalSignature(const TPMT_SIGNATURE& sig) {
  Bytes out(sizeof(TPMT_SIGNATURE));
  size_t offset = 0;
  TSS2_RC rc = Tss2_MU_TPMT_SIGNATURE_Marshal(&sig, out.data(), out.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) return TssError("marshalling TPMT_SIGNATURE", rc);
  out.resize(offset);
  return out;
}

Status VerifySignature(EVP_PKEY* key, std::span<const uint8_t> attest, const TPMT_SIGNATURE& sig) {
  const int key_type = EVP_PKEY_get_base_id(key);
  uint16_t hash_alg = 0;
  Bytes der_sig;
  int padding = 0;
  switch (sig.sigAlg) {
    case TPM2_ALG_RSASSA:
    case TPM2_ALG_RSAPSS: {
      if (key_type != EVP_PKEY_RSA)
        return PermissionDenied("an RSA signature does not fit the AK's key type");
      const TPMS_SIGNATURE_RSA& rsa =
          sig.sigAlg == TPM2_ALG_RSASSA ? sig.signature.rsassa : sig.signature.rsapss;
      hash_alg = rsa.hash;
      der_sig.assign(rsa.sig.buffer, rsa.sig.buffer + rsa.sig.size);
      padding = sig.sigAlg == TPM2_ALG_RSASSA ? RSA_PKCS1_PADDING : RSA_PKCS1_PSS_PADDING;
      break;
    }
    case TPM2_ALG_ECDSA: {
      if (key_type != EVP_PKEY_EC)
        return PermissionDenied("an ECDSA signature does not fit the AK's key type");
      const TPMS_SIGNATURE_ECC& ecc = sig.signature.ecdsa;
      hash_alg = ecc.hash;
      std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> es(ECDSA_SIG_new(), ECDSA_SIG_free);
      BIGNUM* r = BN_bin2bn(ecc.signatureR.buffer, ecc.signatureR.size, nullptr);
      BIGNUM* s = BN_bin2bn(ecc.signatureS.buffer, ecc.signatureS.size, nullptr);
      if (!es || !r || !s || ECDSA_SIG_set0(es.get(), r, s) != 1) {
        BN_free(r);
        BN_free(s);
        return OpenSslError("building an ECDSA signature");
      }
      unsigned char* der = nullptr;
      int n = i2d_ECDSA_SIG(es.get(), &der);
      if (n <= 0) return OpenSslError("encoding an ECDSA signature");
      der_sig.assign(der, der + n);
      OPENSSL_free(der);
      break;
    }
    default:
      return InvalidArgument("unsupported signature algorithm " + std::to_string(sig.sigAlg));
  }
  BERTH_ASSIGN_OR_RETURN(DigestAlg alg, DigestFromTpmAlg(hash_alg));

  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  EVP_PKEY_CTX* pctx = nullptr;
  if (!ctx || EVP_DigestVerifyInit(ctx.get(), &pctx, EvpMd(alg), nullptr, key) != 1) {
    return OpenSslError("initialising signature verification");
  }
  if (padding != 0) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, padding) != 1)
      return OpenSslError("setting RSA padding");
    if (padding == RSA_PKCS1_PSS_PADDING &&
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) != 1) {
      return OpenSslError("setting the PSS salt length");
    }
  }
  int rc =
      EVP_DigestVerify(ctx.get(), der_sig.data(), der_sig.size(), attest.data(), attest.size());
  ERR_clear_error();
  if (rc != 1)
    return PermissionDenied("the quote signature does not verify with the attestation key");
  return OkStatus();
}

Result<VerifiedQuote> VerifyQuote(EVP_PKEY* ak, std::span<const uint8_t> attest_bytes,
                                  std::span<const uint8_t> signature_bytes, const PcrValues& pcrs,
                                  std::optional<std::span<const uint8_t>> expected_extra_data) {
  // The signature is checked over the raw bytes before anything inside them is trusted.
  BERTH_ASSIGN_OR_RETURN(TPMT_SIGNATURE sig, ParseSignature(signature_bytes));
  BERTH_RETURN_IF_ERROR(VerifySignature(ak, attest_bytes, sig));
  const uint16_t sig_hash_alg = sig.sigAlg == TPM2_ALG_ECDSA ? sig.signature.ecdsa.hash
                                                             : sig.signature.rsassa.hash;
  BERTH_ASSIGN_OR_RETURN(DigestAlg sig_hash, DigestFromTpmAlg(sig_hash_alg));

  BERTH_ASSIGN_OR_RETURN(TPMS_ATTEST attest, ParseAttest(attest_bytes));
  if (attest.magic != TPM2_GENERATED_VALUE) {
    return PermissionDenied(
        "the quote's magic is not TPM_GENERATED_VALUE: it was not made by a TPM");
  }
  if (attest.type != TPM2_ST_ATTEST_QUOTE)
    return PermissionDenied("the attestation is not a quote");

  VerifiedQuote out;
  out.signature_hash = sig_hash;
  out.extra_data.assign(attest.extraData.buffer, attest.extraData.buffer + attest.extraData.size);
  if (expected_extra_data.has_value()) {
    const auto& want = *expected_extra_data;
    if (out.extra_data.size() != want.size() ||
        !std::equal(want.begin(), want.end(), out.extra_data.begin())) {
      auto describe = [](std::span<const uint8_t> b) {
        return b.empty() ? std::string("empty") : HexEncode(b);
      };
      return PermissionDenied("the quote's extraData (" + describe(out.extra_data) +
                              ") is not the expected nonce (" + describe(want) + ")");
    }
  }

  const TPMS_QUOTE_INFO& q = attest.attested.quote;
  Bytes concatenated;
  for (uint32_t i = 0; i < q.pcrSelect.count; ++i) {
    const TPMS_PCR_SELECTION& s = q.pcrSelect.pcrSelections[i];
    BERTH_ASSIGN_OR_RETURN(DigestAlg bank, DigestFromTpmAlg(s.hash));
    for (uint32_t byte = 0; byte < s.sizeofSelect; ++byte) {
      for (uint32_t bit = 0; bit < 8; ++bit) {
        if ((s.pcrSelect[byte] & (1u << bit)) == 0) continue;
        const uint32_t index = byte * 8 + bit;
        auto b = pcrs.find(bank);
        const Bytes* value = nullptr;
        if (b != pcrs.end()) {
          auto v = b->second.find(index);
          if (v != b->second.end()) value = &v->second;
        }
        // A well-formed request that lacks a quoted PCR fails a check (the verifier cannot
        // confirm pcrDigest); it is not malformed input.
        if (value == nullptr) {
          return PermissionDenied("PCR " + PcrName(bank, index) +
                                  " is selected in the quote but no value was given for it");
        }
        if (value->size() != DigestSize(bank)) {
          return InvalidArgument("PCR " + PcrName(bank, index) + " value has " +
                                 std::to_string(value->size()) + " bytes, not " +
                                 std::to_string(DigestSize(bank)));
        }
        concatenated.insert(concatenated.end(), value->begin(), value->end());
        out.selection.push_back({bank, index});
        out.pcrs[bank][index] = *value;
      }
    }
  }
  if (out.selection.empty()) return PermissionDenied("the quote selects no PCRs");
  Bytes digest = Digest(sig_hash, concatenated);
  if (q.pcrDigest.size != digest.size() ||
      std::memcmp(q.pcrDigest.buffer, digest.data(), digest.size()) != 0) {
    return PermissionDenied("the quote's pcrDigest does not match the PCR values given");
  }
  return out;
}

}  // namespace berth::tpm
