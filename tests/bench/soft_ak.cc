#include "tests/bench/soft_ak.h"

#include "common/tpm/sealed_boot.h"
#include "common/tpm/templates.h"

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/ecdsa.h>
#include <tss2/tss2_mu.h>

#include <cstring>

namespace berth::bench {

namespace {

Status SetEccPoint(EVP_PKEY* key, TPMT_PUBLIC& pub) {
  unsigned char point[65];
  size_t len = 0;
  if (EVP_PKEY_get_octet_string_param(key, OSSL_PKEY_PARAM_PUB_KEY, point, sizeof point, &len) !=
          1 ||
      len != sizeof point || point[0] != 0x04) {
    return OpenSslError("reading the P-256 public point");
  }
  pub.unique.ecc.x.size = 32;
  pub.unique.ecc.y.size = 32;
  std::memcpy(pub.unique.ecc.x.buffer, point + 1, 32);
  std::memcpy(pub.unique.ecc.y.buffer, point + 33, 32);
  return OkStatus();
}

}  // namespace

Result<SoftAk> SoftAk::Create(const std::vector<uint32_t>& pcrs) {
  BERTH_ASSIGN_OR_RETURN(EvpPkeyPtr key, GenerateP256Key());
  return FromKey(std::move(key), pcrs);
}

Result<SoftAk> SoftAk::FromKey(EvpPkeyPtr key, const std::vector<uint32_t>& pcrs) {
  return FromKey(std::move(key), pcrs, kAkAttributes);
}

Result<SoftAk> SoftAk::FromKey(EvpPkeyPtr key, const std::vector<uint32_t>& pcrs,
                               TPMA_OBJECT attributes) {
  SoftAk ak;
  if (EVP_PKEY_get_base_id(key.get()) != EVP_PKEY_EC || EVP_PKEY_get_bits(key.get()) != 256) {
    return InvalidArgument("the software attestation key must be an EC P-256 key");
  }
  ak.key_ = std::move(key);
  TPMT_PUBLIC& p = ak.public_;
  p = tpm::AkTemplate();  // what berth-agent makes in a TPM
  p.objectAttributes = attributes;
  BERTH_RETURN_IF_ERROR(SetEccPoint(ak.key_.get(), p));
  BERTH_ASSIGN_OR_RETURN(ak.public_area_, tpm::MarshalPublic(p));
  BERTH_ASSIGN_OR_RETURN(ak.name_, tpm::PublicName(p));
  ak.pcr_indices_ = pcrs;
  // PCR 15 holds what berth-agent measured in this boot: the EnrolmentConfig, keys not yet
  // released (common/tpm/sealed_boot.h). berthd replays the events sent with the quote.
  if (std::find(pcrs.begin(), pcrs.end(), seal::kPcr) == pcrs.end()) {
    ak.pcr_indices_.push_back(seal::kPcr);
    std::sort(ak.pcr_indices_.begin(), ak.pcr_indices_.end());
  }
  ak.seal_event_ = seal::EnrolmentConfigEvent(AsBytes("berth-bench enrolment config"));
  Bytes concatenated;
  for (uint32_t i : ak.pcr_indices_) {
    Bytes value = i == seal::kPcr ? seal::Replay(DigestAlg::kSha256, {ak.seal_event_})
                                  : Sha256(AsBytes("berth-bench pcr " + std::to_string(i)));
    concatenated.insert(concatenated.end(), value.begin(), value.end());
    ak.pcr_values_[DigestAlg::kSha256][i] = std::move(value);
  }
  ak.pcr_digest_ = Sha256(concatenated);
  return ak;
}

Result<std::string> SoftAk::PolicyYaml() const {
  BERTH_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToSpkiDer(key_.get()));
  std::string out = "tpm:\n  trusted_aks:\n    - name: berth-bench\n      sha256: " +
                    HexEncode(Sha256(spki)) + "\n  pcrs:\n    sha256:\n";
  for (const auto& [index, value] : pcr_values_.at(DigestAlg::kSha256)) {
    if (index == seal::kPcr) continue;  // berthd replays PCR 15 from the agent's events
    out += "      " + std::to_string(index) + ": " + HexEncode(value) + "\n";
  }
  return out;
}

Result<v1::Evidence> SoftAk::Quote(std::span<const uint8_t> extra_data) const {
  TPMS_ATTEST attest{};
  attest.magic = TPM2_GENERATED_VALUE;
  attest.type = TPM2_ST_ATTEST_QUOTE;
  attest.qualifiedSigner.size = static_cast<uint16_t>(name_.size());
  std::memcpy(attest.qualifiedSigner.name, name_.data(), name_.size());
  if (extra_data.size() > sizeof attest.extraData.buffer)
    return InvalidArgument("extraData too long");
  attest.extraData.size = static_cast<uint16_t>(extra_data.size());
  std::memcpy(attest.extraData.buffer, extra_data.data(), extra_data.size());
  attest.clockInfo.clock = 1000;
  attest.clockInfo.safe = TPM2_YES;
  attest.firmwareVersion = 0x2019101100000000ull;
  TPML_PCR_SELECTION& sel = attest.attested.quote.pcrSelect;
  sel.count = 1;
  sel.pcrSelections[0].hash = TPM2_ALG_SHA256;
  sel.pcrSelections[0].sizeofSelect = 3;
  for (uint32_t i : pcr_indices_) sel.pcrSelections[0].pcrSelect[i / 8] |= 1u << (i % 8);
  attest.attested.quote.pcrDigest.size = static_cast<uint16_t>(pcr_digest_.size());
  std::memcpy(attest.attested.quote.pcrDigest.buffer, pcr_digest_.data(), pcr_digest_.size());

  Bytes attest_bytes(sizeof(TPMS_ATTEST));
  size_t offset = 0;
  TSS2_RC rc =
      Tss2_MU_TPMS_ATTEST_Marshal(&attest, attest_bytes.data(), attest_bytes.size(), &offset);
  if (rc != TSS2_RC_SUCCESS) return tpm::TssError("marshalling TPMS_ATTEST", rc);
  attest_bytes.resize(offset);

  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  size_t der_len = 0;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, EVP_sha256(), nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &der_len, attest_bytes.data(), attest_bytes.size()) != 1) {
    return OpenSslError("signing the quote");
  }
  Bytes der(der_len);
  if (EVP_DigestSign(ctx.get(), der.data(), &der_len, attest_bytes.data(), attest_bytes.size()) !=
      1) {
    return OpenSslError("signing the quote");
  }
  const unsigned char* p = der.data();
  std::unique_ptr<ECDSA_SIG, decltype(&ECDSA_SIG_free)> es(d2i_ECDSA_SIG(nullptr, &p, der_len),
                                                           ECDSA_SIG_free);
  if (!es) return OpenSslError("decoding the ECDSA signature");
  TPMT_SIGNATURE sig{};
  sig.sigAlg = TPM2_ALG_ECDSA;
  sig.signature.ecdsa.hash = TPM2_ALG_SHA256;
  sig.signature.ecdsa.signatureR.size = static_cast<uint16_t>(
      BN_bn2binpad(ECDSA_SIG_get0_r(es.get()), sig.signature.ecdsa.signatureR.buffer, 32));
  sig.signature.ecdsa.signatureS.size = static_cast<uint16_t>(
      BN_bn2binpad(ECDSA_SIG_get0_s(es.get()), sig.signature.ecdsa.signatureS.buffer, 32));
  BERTH_ASSIGN_OR_RETURN(Bytes sig_bytes, tpm::MarshalSignature(sig));

  v1::Evidence evidence;
  v1::TpmEvidence* tpm = evidence.mutable_tpm();
  tpm->set_ak_public(ToString(public_area_));
  tpm->set_quote(ToString(attest_bytes));
  tpm->set_signature(ToString(sig_bytes));
  v1::PcrBank* bank = tpm->add_pcrs();
  bank->set_bank(v1::HASH_ALGORITHM_SHA256);
  for (const auto& [index, value] : pcr_values_.at(DigestAlg::kSha256)) {
    v1::PcrValue* v = bank->add_values();
    v->set_index(index);
    v->set_digest(ToString(value));
  }
  v1::TpmAgentEvent* event = tpm->add_agent_events();
  event->set_pcr(seal::kPcr);
  event->set_data(ToString(seal_event_));
  return evidence;
}

}  // namespace berth::bench
