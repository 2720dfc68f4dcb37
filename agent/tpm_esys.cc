// tpm2-tss ESYS implementation of Tpm. TSS2_RC values become Status in tpm::TssError only.
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_tctildr.h>

#include <cstring>

#include "agent/tpm.h"

namespace berth::agent {

namespace {

struct EsysFree {
  void operator()(void* p) const { Esys_Free(p); }
};
template <typename T>
using EsysPtr = std::unique_ptr<T, EsysFree>;

// The AK template: a restricted ECDSA P-256 signing key that never leaves the TPM. A
// primary key from a fixed template is re-derived identically on every boot.
TPM2B_PUBLIC AkTemplate() {
  TPM2B_PUBLIC t{};
  TPMT_PUBLIC& p = t.publicArea;
  p.type = TPM2_ALG_ECC;
  p.nameAlg = TPM2_ALG_SHA256;
  p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                       TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                       TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT | TPMA_OBJECT_NODA;
  p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_NULL;
  p.parameters.eccDetail.scheme.scheme = TPM2_ALG_ECDSA;
  p.parameters.eccDetail.scheme.details.ecdsa.hashAlg = TPM2_ALG_SHA256;
  p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
  p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
  return t;
}

Result<TPML_PCR_SELECTION> ToTpmSelection(const std::vector<v1::PcrSelection>& selection) {
  TPML_PCR_SELECTION out{};
  for (const auto& s : selection) {
    if (out.count >= TPM2_NUM_PCR_BANKS) return InvalidArgument("too many PCR banks selected");
    TPMS_PCR_SELECTION& t = out.pcrSelections[out.count++];
    BERTH_RETURN_IF_ERROR(tpm::DigestFromTpmAlg(static_cast<uint16_t>(s.bank())).status());
    t.hash = static_cast<TPMI_ALG_HASH>(s.bank());
    t.sizeofSelect = 3;
    for (uint32_t i : s.pcrs()) {
      if (i > 23) return InvalidArgument("PCR index " + std::to_string(i) + " is out of range");
      t.pcrSelect[i / 8] |= static_cast<uint8_t>(1u << (i % 8));
    }
  }
  return out;
}

bool SelectionEmpty(const TPML_PCR_SELECTION& sel) {
  for (uint32_t i = 0; i < sel.count; ++i) {
    for (uint32_t b = 0; b < sel.pcrSelections[i].sizeofSelect; ++b) {
      if (sel.pcrSelections[i].pcrSelect[b] != 0) return false;
    }
  }
  return true;
}

class EsysTpm : public Tpm {
 public:
  ~EsysTpm() override {
    if (ctx_ != nullptr) {
      if (ak_ != ESYS_TR_NONE) Esys_FlushContext(ctx_, ak_);
      Esys_Finalize(&ctx_);
    }
    if (tcti_ != nullptr) Tss2_TctiLdr_Finalize(&tcti_);
  }

  Status Open(const std::string& tcti) {
    TSS2_RC rc = Tss2_TctiLdr_Initialize(tcti.c_str(), &tcti_);
    if (rc != TSS2_RC_SUCCESS) return tpm::TssError("opening TPM via TCTI \"" + tcti + "\"", rc);
    rc = Esys_Initialize(&ctx_, tcti_, nullptr);
    if (rc != TSS2_RC_SUCCESS) return tpm::TssError("initialising ESYS", rc);
    TPM2B_SENSITIVE_CREATE sensitive{};
    TPM2B_PUBLIC in_public = AkTemplate();
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION creation_pcr{};
    TPM2B_PUBLIC* out_public = nullptr;
    rc = Esys_CreatePrimary(ctx_, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                            ESYS_TR_NONE, &sensitive, &in_public, &outside, &creation_pcr, &ak_,
                            &out_public, nullptr, nullptr, nullptr);
    if (rc != TSS2_RC_SUCCESS) return tpm::TssError("creating the attestation key", rc);
    EsysPtr<TPM2B_PUBLIC> owned(out_public);
    auto marshalled = tpm::MarshalPublic(out_public->publicArea);
    if (!marshalled.ok()) return marshalled.status();
    ak_public_ = std::move(*marshalled);
    return OkStatus();
  }

  Result<Bytes> AttestationKeyPublic() override { return ak_public_; }

  Result<tpm::PcrValues> ReadPcrs(const std::vector<v1::PcrSelection>& selection) override {
    BERTH_ASSIGN_OR_RETURN(TPML_PCR_SELECTION remaining, ToTpmSelection(selection));
    tpm::PcrValues out;
    // PCR_Read returns at most 8 digests per call: read, strike what came back, repeat.
    while (!SelectionEmpty(remaining)) {
      TPML_PCR_SELECTION* got_sel = nullptr;
      TPML_DIGEST* values = nullptr;
      TSS2_RC rc = Esys_PCR_Read(ctx_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &remaining,
                                 nullptr, &got_sel, &values);
      if (rc != TSS2_RC_SUCCESS) return tpm::TssError("reading PCRs", rc);
      EsysPtr<TPML_PCR_SELECTION> own_sel(got_sel);
      EsysPtr<TPML_DIGEST> own_values(values);
      uint32_t next = 0;
      bool progress = false;
      for (uint32_t i = 0; i < got_sel->count; ++i) {
        const TPMS_PCR_SELECTION& s = got_sel->pcrSelections[i];
        BERTH_ASSIGN_OR_RETURN(DigestAlg bank, tpm::DigestFromTpmAlg(s.hash));
        for (uint32_t pcr = 0; pcr < s.sizeofSelect * 8u; ++pcr) {
          if ((s.pcrSelect[pcr / 8] & (1u << (pcr % 8))) == 0) continue;
          if (next >= values->count) return Internal("TPM returned fewer PCR values than selected");
          const TPM2B_DIGEST& d = values->digests[next++];
          out[bank][pcr] = Bytes(d.buffer, d.buffer + d.size);
          for (uint32_t j = 0; j < remaining.count; ++j) {
            if (remaining.pcrSelections[j].hash == s.hash) {
              remaining.pcrSelections[j].pcrSelect[pcr / 8] &= ~static_cast<uint8_t>(1u << (pcr % 8));
            }
          }
          progress = true;
        }
      }
      // A bank the TPM does not implement returns nothing for it.
      if (!progress) return FailedPrecondition("the TPM does not implement a selected PCR bank");
    }
    return out;
  }

  Result<TpmQuote> Quote(const std::vector<v1::PcrSelection>& selection,
                         std::span<const uint8_t> extra_data) override {
    BERTH_ASSIGN_OR_RETURN(TPML_PCR_SELECTION sel, ToTpmSelection(selection));
    TPM2B_DATA qualifying{};
    if (extra_data.size() > sizeof qualifying.buffer) return InvalidArgument("extraData too long");
    qualifying.size = static_cast<uint16_t>(extra_data.size());
    std::memcpy(qualifying.buffer, extra_data.data(), extra_data.size());
    TPMT_SIG_SCHEME scheme{};
    scheme.scheme = TPM2_ALG_NULL;  // the AK's own scheme
    TPM2B_ATTEST* attest = nullptr;
    TPMT_SIGNATURE* signature = nullptr;
    TSS2_RC rc = Esys_Quote(ctx_, ak_, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &qualifying,
                            &scheme, &sel, &attest, &signature);
    if (rc != TSS2_RC_SUCCESS) return tpm::TssError("quoting PCRs", rc);
    EsysPtr<TPM2B_ATTEST> own_attest(attest);
    EsysPtr<TPMT_SIGNATURE> own_sig(signature);
    TpmQuote out;
    out.attest.assign(attest->attestationData, attest->attestationData + attest->size);
    BERTH_ASSIGN_OR_RETURN(out.signature, tpm::MarshalSignature(*signature));
    return out;
  }

 private:
  TSS2_TCTI_CONTEXT* tcti_ = nullptr;
  ESYS_CONTEXT* ctx_ = nullptr;
  ESYS_TR ak_ = ESYS_TR_NONE;
  Bytes ak_public_;
};

}  // namespace

Result<std::unique_ptr<Tpm>> OpenEsysTpm(const std::string& tcti) {
  auto tpm = std::make_unique<EsysTpm>();
  BERTH_RETURN_IF_ERROR(tpm->Open(tcti));
  return std::unique_ptr<Tpm>(std::move(tpm));
}

}  // namespace berth::agent
