#include "common/tpm/policy.h"

#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <openssl/evp.h>
#include <tss2/tss2_mu.h>

#include <algorithm>
#include <cstring>

namespace berth::tpm {

namespace {

constexpr uint32_t kCcPolicyPcr = 0x0000017F;        // TPM_CC_PolicyPCR
constexpr uint32_t kCcPolicyAuthorize = 0x0000016A;  // TPM_CC_PolicyAuthorize

void AppendU32(Bytes& out, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) out.push_back(static_cast<uint8_t>(v >> shift));
}

void Append(Bytes& out, std::span<const uint8_t> data) {
  out.insert(out.end(), data.begin(), data.end());
}

}  // namespace

Result<Bytes> PolicyPcrDigest(DigestAlg bank, const std::vector<uint32_t>& pcrs,
                              const PcrValues& values) {
  if (pcrs.empty()) return InvalidArgument("a PCR policy needs at least one PCR");
  std::vector<uint32_t> sorted = pcrs;
  std::sort(sorted.begin(), sorted.end());
  if (std::adjacent_find(sorted.begin(), sorted.end()) != sorted.end()) {
    return InvalidArgument("a PCR policy names a PCR twice");
  }
  TPML_PCR_SELECTION selection{};
  selection.count = 1;
  selection.pcrSelections[0].hash = TpmAlgFromDigest(bank);
  selection.pcrSelections[0].sizeofSelect = 3;
  Bytes concatenated;
  auto bank_values = values.find(bank);
  for (uint32_t pcr : sorted) {
    if (pcr > 23) return InvalidArgument("PCR " + std::to_string(pcr) + " does not exist");
    selection.pcrSelections[0].pcrSelect[pcr / 8] |= static_cast<uint8_t>(1u << (pcr % 8));
    const Bytes* value = nullptr;
    if (bank_values != values.end()) {
      if (auto it = bank_values->second.find(pcr); it != bank_values->second.end()) {
        value = &it->second;
      }
    }
    if (value == nullptr || value->size() != DigestSize(bank)) {
      return InvalidArgument("no " + PcrName(bank, pcr) + " value for the PCR policy");
    }
    Append(concatenated, *value);
  }
  uint8_t marshalled[sizeof(TPML_PCR_SELECTION)];
  size_t offset = 0;
  if (Tss2_MU_TPML_PCR_SELECTION_Marshal(&selection, marshalled, sizeof marshalled, &offset) !=
      TSS2_RC_SUCCESS) {
    return Internal("marshalling a PCR selection");
  }
  Bytes update(32, 0);  // the session's digest before: all zero
  AppendU32(update, kCcPolicyPcr);
  Append(update, std::span<const uint8_t>(marshalled, offset));
  Append(update, Sha256(concatenated));
  return Sha256(update);
}

Bytes PolicyAuthorizeDigest(std::span<const uint8_t> key_name, std::span<const uint8_t> policy_ref) {
  Bytes update(32, 0);
  AppendU32(update, kCcPolicyAuthorize);
  Append(update, key_name);
  Bytes digest = Sha256(update);
  Append(digest, policy_ref);
  return Sha256(digest);
}

Result<TPMT_PUBLIC> EcSigningKeyPublic(EVP_PKEY* key) {
  if (EVP_PKEY_get_base_id(key) != EVP_PKEY_EC || EVP_PKEY_get_bits(key) != 256) {
    return InvalidArgument("the boot-policy key must be an EC P-256 key");
  }
  unsigned char point[65];
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &len) !=
          1 ||
      len != sizeof point || point[0] != 0x04) {
    return OpenSslError("reading the P-256 public point");
  }
  TPMT_PUBLIC p{};
  p.type = TPM2_ALG_ECC;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_USERWITHAUTH;
  p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
  p.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
  p.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  p.unique.ecc.x.size = 32;
  p.unique.ecc.y.size = 32;
  std::memcpy(p.unique.ecc.x.buffer, point + 1, 32);
  std::memcpy(p.unique.ecc.y.buffer, point + 33, 32);
  return p;
}

Result<TPMT_SIGNATURE> SignPolicy(EVP_PKEY* key, std::span<const uint8_t> approved_policy,
                                  std::span<const uint8_t> policy_ref) {
  Bytes message(approved_policy.begin(), approved_policy.end());
  Append(message, policy_ref);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t der_len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &der_len, message.data(), message.size()) != 1) {
    return OpenSslError("signing a boot policy");
  }
  Bytes der(der_len);
  if (EVP_DigestSign(ctx.get(), der.data(), &der_len, message.data(), message.size()) != 1) {
    return OpenSslError("signing a boot policy");
  }
  const unsigned char* p = der.data();
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> sig(
      d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(der_len)), ECDSA_SIG_free);
  if (!sig) return OpenSslError("reading an ECDSA signature");
  TPMT_SIGNATURE out{};
  out.sigAlg = TPM2_ALG_ECDSA;
  out.signature.ecdsa.hash = TPM2_ALG_SHA256;
  const BIGNUM* r = ECDSA_SIG_get0_r(sig.get());
  const BIGNUM* s = ECDSA_SIG_get0_s(sig.get());
  if (BN_bn2binpad(r, out.signature.ecdsa.signatureR.buffer, 32) != 32 ||
      BN_bn2binpad(s, out.signature.ecdsa.signatureS.buffer, 32) != 32) {
    return OpenSslError("encoding an ECDSA signature");
  }
  out.signature.ecdsa.signatureR.size = 32;
  out.signature.ecdsa.signatureS.size = 32;
  return out;
}

Status VerifyPolicySignature(const TPMT_PUBLIC& key, std::span<const uint8_t> approved_policy,
                             std::span<const uint8_t> policy_ref, const TPMT_SIGNATURE& signature) {
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr evp, PublicToEvp(key));
  Bytes message(approved_policy.begin(), approved_policy.end());
  Append(message, policy_ref);
  return VerifySignature(evp.get(), message, signature);
}

}  // namespace berth::tpm
