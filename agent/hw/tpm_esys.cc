// tpm2-tss ESYS implementation of Tpm. TSS2_RC values become Status in tpm::TssError only.
#include <spdlog/spdlog.h>
#include <tss2/tss2_esys.h>
#include <tss2/tss2_mu.h>
#include <tss2/tss2_tctildr.h>

#include <cstring>
#include <optional>
#include <utility>

#include "agent/hw/tpm.h"
#include "common/tpm/certs.h"
#include "common/tpm/credential.h"
#include "common/tpm/policy.h"
#include "common/tpm/templates.h"

namespace berth::agent {

namespace {

struct EsysFree {
  void operator()(void* p) const { Esys_Free(p); }
};
template <typename T>
using EsysPtr = std::unique_ptr<T, EsysFree>;

// The AK template (common/tpm/templates.h), as ESYS takes it.
TPM2B_PUBLIC AkTemplate() {
  TPM2B_PUBLIC t{};
  t.publicArea = tpm::AkTemplate();
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

// TPM_RC_HANDLE (and the variants naming a handle or parameter): the NV index or persistent
// object does not exist.
bool IsMissingHandle(TSS2_RC rc) {
  return (rc & 0xff0000) == 0 && ((rc & 0x3f) == (TPM2_RC_HANDLE & 0x3f)) && (rc & TPM2_RC_FMT1);
}

// Whether a persistent key was made from `tmpl` (same type, algorithms, attributes, policy,
// symmetric scheme and size): then it is the key CreatePrimary would re-derive.
bool MatchesTemplate(const TPMT_PUBLIC& key, const TPMT_PUBLIC& tmpl) {
  if (key.type != tmpl.type || key.nameAlg != tmpl.nameAlg ||
      key.objectAttributes != tmpl.objectAttributes ||
      key.authPolicy.size != tmpl.authPolicy.size ||
      std::memcmp(key.authPolicy.buffer, tmpl.authPolicy.buffer, tmpl.authPolicy.size) != 0) {
    return false;
  }
  if (key.type == TPM2_ALG_RSA) {
    const auto &a = key.parameters.rsaDetail, &b = tmpl.parameters.rsaDetail;
    return a.symmetric.algorithm == b.symmetric.algorithm &&
           a.symmetric.keyBits.aes == b.symmetric.keyBits.aes &&
           a.symmetric.mode.aes == b.symmetric.mode.aes && a.scheme.scheme == b.scheme.scheme &&
           a.keyBits == b.keyBits && (a.exponent == b.exponent || a.exponent == 65537);
  }
  const auto &a = key.parameters.eccDetail, &b = tmpl.parameters.eccDetail;
  return a.symmetric.algorithm == b.symmetric.algorithm &&
         a.symmetric.keyBits.aes == b.symmetric.keyBits.aes &&
         a.symmetric.mode.aes == b.symmetric.mode.aes && a.scheme.scheme == b.scheme.scheme &&
         a.curveID == b.curveID && a.kdf.scheme == b.kdf.scheme;
}

class EsysTpm : public Tpm {
 public:
  ~EsysTpm() override {
    if (ctx_ != nullptr) {
      if (ek_ != ESYS_TR_NONE && !ek_persistent_) Esys_FlushContext(ctx_, ek_);
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
    if (auto provisioned = ProvisionedAk(); provisioned.has_value()) {
      in_public.publicArea = provisioned->first;
      ak_certificate_ = std::move(provisioned->second);
    }
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

  Result<std::vector<Bytes>> AttestationKeyCertificateChain() override {
    if (ak_certificate_.empty()) return std::vector<Bytes>{};
    return std::vector<Bytes>{ak_certificate_};
  }

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
              remaining.pcrSelections[j].pcrSelect[pcr / 8] &=
                  ~static_cast<uint8_t>(1u << (pcr % 8));
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

  Result<Endorsement> EndorsementKey() override {
    BERTH_RETURN_IF_ERROR(LoadEndorsementKey());
    return endorsement_;
  }

  Result<SecretBytes> ActivateCredential(std::span<const uint8_t> credential_blob,
                                         std::span<const uint8_t> encrypted_secret) override {
    TPM2B_ID_OBJECT blob;
    TPM2B_ENCRYPTED_SECRET secret;
    std::memset(&blob, 0, sizeof blob);
    std::memset(&secret, 0, sizeof secret);
    size_t offset = 0;
    if (Tss2_MU_TPM2B_ID_OBJECT_Unmarshal(credential_blob.data(), credential_blob.size(), &offset,
                                          &blob) != TSS2_RC_SUCCESS ||
        offset != credential_blob.size()) {
      return InvalidArgument("berthd's credential blob is not a TPM2B_ID_OBJECT");
    }
    offset = 0;
    if (Tss2_MU_TPM2B_ENCRYPTED_SECRET_Unmarshal(encrypted_secret.data(), encrypted_secret.size(),
                                                 &offset, &secret) != TSS2_RC_SUCCESS ||
        offset != encrypted_secret.size()) {
      return InvalidArgument("berthd's encrypted secret is not a TPM2B_ENCRYPTED_SECRET");
    }
    BERTH_RETURN_IF_ERROR(LoadEndorsementKey());

    // The EK's authPolicy is PolicySecret(TPM_RH_ENDORSEMENT): satisfy it in a policy session.
    TPMT_SYM_DEF no_symmetric{};
    no_symmetric.algorithm = TPM2_ALG_NULL;
    ESYS_TR session = ESYS_TR_NONE;
    TSS2_RC rc = Esys_StartAuthSession(ctx_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                       ESYS_TR_NONE, nullptr, TPM2_SE_POLICY, &no_symmetric,
                                       TPM2_ALG_SHA256, &session);
    if (rc != TSS2_RC_SUCCESS) return tpm::TssError("starting a policy session for the EK", rc);
    rc = Esys_PolicySecret(ctx_, ESYS_TR_RH_ENDORSEMENT, session, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                           ESYS_TR_NONE, nullptr, nullptr, nullptr, 0, nullptr, nullptr);
    if (rc != TSS2_RC_SUCCESS) {
      Esys_FlushContext(ctx_, session);
      return tpm::TssError("PolicySecret(endorsement) for the EK", rc);
    }
    TPM2B_DIGEST* cert_info = nullptr;
    rc = Esys_ActivateCredential(ctx_, ak_, ek_, ESYS_TR_PASSWORD, session, ESYS_TR_NONE, &blob,
                                 &secret, &cert_info);
    // The session ends with the command when it succeeds; flush it either way.
    Esys_FlushContext(ctx_, session);
    if (rc != TSS2_RC_SUCCESS) {
      Status st = tpm::TssError("activating berthd's credential with this TPM's AK and EK", rc);
      // A blob this TPM cannot open is not a transient failure.
      return Status(st.code() == Code::kUnavailable ? Code::kUnavailable : Code::kPermissionDenied,
                    st.message());
    }
    SecretBytes out(cert_info->buffer, cert_info->size);
    WipeMemory(cert_info->buffer, cert_info->size);
    Esys_Free(cert_info);
    return out;
  }

  Status MeasureEvent(uint32_t pcr, std::span<const uint8_t> event_data) override {
    if (pcr > 23) return InvalidArgument("PCR index " + std::to_string(pcr) + " is out of range");
    TPM2B_EVENT event{};
    if (event_data.size() > sizeof event.buffer) return InvalidArgument("event data too long");
    event.size = static_cast<uint16_t>(event_data.size());
    std::memcpy(event.buffer, event_data.data(), event_data.size());
    TPML_DIGEST_VALUES* digests = nullptr;
    TSS2_RC rc = Esys_PCR_Event(ctx_, ESYS_TR_PCR0 + pcr, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                ESYS_TR_NONE, &event, &digests);
    if (rc != TSS2_RC_SUCCESS) {
      return tpm::TssError("measuring an event into PCR " + std::to_string(pcr), rc);
    }
    Esys_Free(digests);
    return OkStatus();
  }

  Result<SealedSecret> SealAuthorized(const SecretBytes& secret,
                                      std::span<const uint8_t> authorizing_key,
                                      std::span<const uint8_t> policy_ref) override {
    if (secret.empty() || secret.size() > 128) {
      return InvalidArgument("a sealed secret must be 1 to 128 bytes");
    }
    BERTH_ASSIGN_OR_RETURN(TPMT_PUBLIC key, tpm::ParsePublic(authorizing_key));
    BERTH_ASSIGN_OR_RETURN(Bytes key_name, tpm::PublicName(key));
    Bytes auth_policy = tpm::PolicyAuthorizeDigest(key_name, policy_ref);
    UnloadEndorsementKey();
    BERTH_ASSIGN_OR_RETURN(ESYS_TR srk, CreateStoragePrimary());
    TPM2B_SENSITIVE_CREATE sensitive{};
    sensitive.sensitive.data.size = static_cast<uint16_t>(secret.size());
    std::memcpy(sensitive.sensitive.data.buffer, secret.data(), secret.size());
    TPM2B_PUBLIC in_public{};
    TPMT_PUBLIC& p = in_public.publicArea;
    p.type = TPM2_ALG_KEYEDHASH;
    p.nameAlg = TPM2_ALG_SHA256;
    // Only the policy opens it (no userWithAuth), never a password guess (noDA).
    p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_NODA;
    p.parameters.keyedHashDetail.scheme.scheme = TPM2_ALG_NULL;
    p.authPolicy.size = static_cast<uint16_t>(auth_policy.size());
    std::memcpy(p.authPolicy.buffer, auth_policy.data(), auth_policy.size());
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION creation_pcr{};
    TPM2B_PRIVATE* out_private = nullptr;
    TPM2B_PUBLIC* out_public = nullptr;
    TSS2_RC rc = Esys_Create(ctx_, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &sensitive,
                             &in_public, &outside, &creation_pcr, &out_private, &out_public,
                             nullptr, nullptr, nullptr);
    WipeMemory(&sensitive, sizeof sensitive);
    Esys_FlushContext(ctx_, srk);
    if (rc != TSS2_RC_SUCCESS) return tpm::TssError("sealing a secret to an authorized policy", rc);
    EsysPtr<TPM2B_PRIVATE> owned_private(out_private);
    EsysPtr<TPM2B_PUBLIC> owned_public(out_public);
    SealedSecret out;
    BERTH_ASSIGN_OR_RETURN(out.public_area, MarshalTpm2bPublic(*out_public));
    BERTH_ASSIGN_OR_RETURN(out.private_area, MarshalTpm2bPrivate(*out_private));
    return out;
  }

  Result<SecretBytes> UnsealAuthorized(const SealedSecret& sealed,
                                       std::span<const uint8_t> authorizing_key,
                                       std::span<const uint8_t> policy_ref,
                                       const AuthorizedPolicy& policy) override {
    TPM2B_PUBLIC object_public{};
    TPM2B_PRIVATE object_private{};
    size_t offset = 0;
    if (Tss2_MU_TPM2B_PUBLIC_Unmarshal(sealed.public_area.data(), sealed.public_area.size(),
                                       &offset, &object_public) != TSS2_RC_SUCCESS ||
        offset != sealed.public_area.size()) {
      return InvalidArgument("the sealed secret's public area is not a TPM2B_PUBLIC");
    }
    offset = 0;
    if (Tss2_MU_TPM2B_PRIVATE_Unmarshal(sealed.private_area.data(), sealed.private_area.size(),
                                        &offset, &object_private) != TSS2_RC_SUCCESS ||
        offset != sealed.private_area.size()) {
      return InvalidArgument("the sealed secret's private area is not a TPM2B_PRIVATE");
    }
    BERTH_ASSIGN_OR_RETURN(TPMT_PUBLIC key, tpm::ParsePublic(authorizing_key));
    BERTH_ASSIGN_OR_RETURN(Bytes key_name, tpm::PublicName(key));
    BERTH_ASSIGN_OR_RETURN(TPMT_SIGNATURE signature, tpm::ParseSignature(policy.signature));
    if (policy.approved_policy.size() != 32) {
      return InvalidArgument("an approved policy must be a SHA-256 digest");
    }
    if (policy_ref.size() > sizeof(TPM2B_NONCE::buffer)) return InvalidArgument("policyRef too long");
    // A blob made for another key (or another policyRef) can never be opened: say so plainly
    // rather than as the TPM's policy failure.
    if (Bytes want = tpm::PolicyAuthorizeDigest(key_name, policy_ref);
        object_public.publicArea.authPolicy.size != want.size() ||
        std::memcmp(object_public.publicArea.authPolicy.buffer, want.data(), want.size()) != 0) {
      return PermissionDenied("the sealed secret was not sealed to this boot-policy key");
    }
    TPML_PCR_SELECTION selection{};
    selection.count = 1;
    selection.pcrSelections[0].hash = tpm::TpmAlgFromDigest(policy.bank);
    selection.pcrSelections[0].sizeofSelect = 3;
    for (uint32_t pcr : policy.pcrs) {
      if (pcr > 23) return InvalidArgument("PCR " + std::to_string(pcr) + " does not exist");
      selection.pcrSelections[0].pcrSelect[pcr / 8] |= static_cast<uint8_t>(1u << (pcr % 8));
    }

    UnloadEndorsementKey();
    // Everything that holds a handle is released on every path out.
    ESYS_TR session = ESYS_TR_NONE, verify_key = ESYS_TR_NONE, srk = ESYS_TR_NONE,
            object = ESYS_TR_NONE;
    auto release = [&] {
      for (ESYS_TR h : {session, verify_key, object, srk}) {
        if (h != ESYS_TR_NONE) Esys_FlushContext(ctx_, h);
      }
    };
    TPMT_SYM_DEF no_symmetric{};
    no_symmetric.algorithm = TPM2_ALG_NULL;
    TSS2_RC rc = Esys_StartAuthSession(ctx_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE,
                                       ESYS_TR_NONE, nullptr, TPM2_SE_POLICY, &no_symmetric,
                                       TPM2_ALG_SHA256, &session);
    if (rc != TSS2_RC_SUCCESS) return tpm::TssError("starting a policy session", rc);
    TPM2B_DIGEST no_digest{};
    rc = Esys_PolicyPCR(ctx_, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &no_digest,
                        &selection);
    if (rc != TSS2_RC_SUCCESS) {
      release();
      return tpm::TssError("PolicyPCR", rc);
    }
    TPM2B_DIGEST* reached = nullptr;
    rc = Esys_PolicyGetDigest(ctx_, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &reached);
    if (rc != TSS2_RC_SUCCESS) {
      release();
      return tpm::TssError("PolicyGetDigest", rc);
    }
    EsysPtr<TPM2B_DIGEST> owned_reached(reached);
    if (reached->size != 32 ||
        std::memcmp(reached->buffer, policy.approved_policy.data(), 32) != 0) {
      release();
      return PermissionDenied("this boot's " + std::string(DigestName(policy.bank)) + " PCRs " +
                              DescribePcrList(policy.pcrs) + " are not the approved ones");
    }
    TPM2B_PUBLIC key_public{};
    key_public.publicArea = key;
    rc = Esys_LoadExternal(ctx_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, nullptr, &key_public,
                           ESYS_TR_RH_OWNER, &verify_key);
    if (rc != TSS2_RC_SUCCESS) {
      release();
      return tpm::TssError("loading the boot-policy key", rc);
    }
    TPM2B_DIGEST a_hash{};
    Bytes message = policy.approved_policy;
    message.insert(message.end(), policy_ref.begin(), policy_ref.end());
    Bytes hashed = Sha256(message);
    a_hash.size = 32;
    std::memcpy(a_hash.buffer, hashed.data(), 32);
    TPMT_TK_VERIFIED* ticket = nullptr;
    rc = Esys_VerifySignature(ctx_, verify_key, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &a_hash,
                              &signature, &ticket);
    if (rc != TSS2_RC_SUCCESS) {
      release();
      Status st = tpm::TssError("checking the boot policy's signature", rc);
      return st.code() == Code::kUnavailable
                 ? st
                 : PermissionDenied("the boot policy's signature is not the boot-policy key's");
    }
    EsysPtr<TPMT_TK_VERIFIED> owned_ticket(ticket);
    // The ticket is all PolicyAuthorize needs of the key: free its slot (a TPM without a
    // resource manager has three) before the storage key and the object are loaded.
    Esys_FlushContext(ctx_, verify_key);
    verify_key = ESYS_TR_NONE;
    TPM2B_DIGEST approved{};
    approved.size = 32;
    std::memcpy(approved.buffer, policy.approved_policy.data(), 32);
    TPM2B_NONCE ref{};
    ref.size = static_cast<uint16_t>(policy_ref.size());
    std::memcpy(ref.buffer, policy_ref.data(), policy_ref.size());
    TPM2B_NAME name{};
    name.size = static_cast<uint16_t>(key_name.size());
    std::memcpy(name.name, key_name.data(), key_name.size());
    rc = Esys_PolicyAuthorize(ctx_, session, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &approved,
                              &ref, &name, ticket);
    if (rc != TSS2_RC_SUCCESS) {
      release();
      return tpm::TssError("PolicyAuthorize", rc);
    }
    auto made = CreateStoragePrimary();
    if (!made.ok()) {
      release();
      return made.status();
    }
    srk = *made;
    rc = Esys_Load(ctx_, srk, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, &object_private,
                   &object_public, &object);
    if (rc != TSS2_RC_SUCCESS) {
      release();
      Status st = tpm::TssError("loading the sealed secret", rc);
      // TPM_RC_INTEGRITY: the private area was not made under this TPM's storage key.
      if ((rc & TPM2_RC_FMT1) != 0 && (rc & 0x3f) == (TPM2_RC_INTEGRITY & 0x3f)) {
        return PermissionDenied("the sealed secret does not belong to this TPM (" +
                                std::string(st.message()) + ")");
      }
      return st;
    }
    TPM2B_SENSITIVE_DATA* data = nullptr;
    rc = Esys_Unseal(ctx_, object, session, ESYS_TR_NONE, ESYS_TR_NONE, &data);
    session = ESYS_TR_NONE;  // a policy session ends with the command that uses it
    release();
    if (rc != TSS2_RC_SUCCESS) return tpm::TssError("unsealing the secret", rc);
    SecretBytes out(data->buffer, data->size);
    WipeMemory(data->buffer, data->size);
    Esys_Free(data);
    return out;
  }

 private:
  // The storage root key from the TCG provisioning guidance's ECC P-256 template, under the
  // owner hierarchy: the same key on every call, so sealed blobs stay loadable across boots.
  Result<ESYS_TR> CreateStoragePrimary() {
    TPM2B_SENSITIVE_CREATE sensitive{};
    TPM2B_PUBLIC in_public{};
    TPMT_PUBLIC& p = in_public.publicArea;
    p.type = TPM2_ALG_ECC;
    p.nameAlg = TPM2_ALG_SHA256;
    p.objectAttributes = TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT |
                         TPMA_OBJECT_SENSITIVEDATAORIGIN | TPMA_OBJECT_USERWITHAUTH |
                         TPMA_OBJECT_NODA | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_DECRYPT;
    p.parameters.eccDetail.symmetric.algorithm = TPM2_ALG_AES;
    p.parameters.eccDetail.symmetric.keyBits.aes = 128;
    p.parameters.eccDetail.symmetric.mode.aes = TPM2_ALG_CFB;
    p.parameters.eccDetail.scheme.scheme = TPM2_ALG_NULL;
    p.parameters.eccDetail.curveID = TPM2_ECC_NIST_P256;
    p.parameters.eccDetail.kdf.scheme = TPM2_ALG_NULL;
    TPM2B_DATA outside{};
    TPML_PCR_SELECTION creation_pcr{};
    ESYS_TR srk = ESYS_TR_NONE;
    TSS2_RC rc = Esys_CreatePrimary(ctx_, ESYS_TR_RH_OWNER, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                    ESYS_TR_NONE, &sensitive, &in_public, &outside, &creation_pcr,
                                    &srk, nullptr, nullptr, nullptr, nullptr);
    if (rc != TSS2_RC_SUCCESS) return tpm::TssError("creating the storage primary key", rc);
    return srk;
  }

  static Result<Bytes> MarshalTpm2bPublic(const TPM2B_PUBLIC& in) {
    Bytes out(sizeof(TPM2B_PUBLIC));
    size_t offset = 0;
    if (Tss2_MU_TPM2B_PUBLIC_Marshal(&in, out.data(), out.size(), &offset) != TSS2_RC_SUCCESS) {
      return Internal("marshalling a TPM2B_PUBLIC");
    }
    out.resize(offset);
    return out;
  }

  static Result<Bytes> MarshalTpm2bPrivate(const TPM2B_PRIVATE& in) {
    Bytes out(sizeof(TPM2B_PRIVATE));
    size_t offset = 0;
    if (Tss2_MU_TPM2B_PRIVATE_Marshal(&in, out.data(), out.size(), &offset) != TSS2_RC_SUCCESS) {
      return Internal("marshalling a TPM2B_PRIVATE");
    }
    out.resize(offset);
    return out;
  }

  static std::string DescribePcrList(const std::vector<uint32_t>& pcrs) {
    std::string out;
    for (uint32_t p : pcrs) out += (out.empty() ? "" : ",") + std::to_string(p);
    return out;
  }

  // Whether an NV index or persistent object exists, asked without provoking an error (ESYS
  // logs every failed command to stderr, which would alarm whoever reads the journal).
  bool HandleExists(uint32_t handle) {
    TPMS_CAPABILITY_DATA* cap = nullptr;
    if (Esys_GetCapability(ctx_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_HANDLES, handle,
                           1, nullptr, &cap) != TSS2_RC_SUCCESS) {
      return false;
    }
    bool exists = cap->data.handles.count > 0 && cap->data.handles.handle[0] == handle;
    Esys_Free(cap);
    return exists;
  }

  // Reads a whole NV index in chunks the TPM accepts. NOT_FOUND when it does not exist.
  Result<Bytes> ReadNv(uint32_t index) {
    if (!HandleExists(index)) return NotFound("no NV index");
    ESYS_TR nv = ESYS_TR_NONE;
    TSS2_RC rc = Esys_TR_FromTPMPublic(ctx_, index, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv);
    if (rc != TSS2_RC_SUCCESS) {
      if (IsMissingHandle(rc)) return NotFound("no NV index");
      return tpm::TssError("looking up an NV index", rc);
    }
    TPM2B_NV_PUBLIC* nv_public = nullptr;
    rc =
        Esys_NV_ReadPublic(ctx_, nv, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &nv_public, nullptr);
    if (rc != TSS2_RC_SUCCESS) {
      Esys_TR_Close(ctx_, &nv);
      return tpm::TssError("reading an NV index's public area", rc);
    }
    const uint16_t size = nv_public->nvPublic.dataSize;
    const TPMA_NV attributes = nv_public->nvPublic.attributes;
    Esys_Free(nv_public);
    // EK certificate indices allow reads with the index's own (empty) auth; some only with
    // the owner's.
    const ESYS_TR auth = (attributes & TPMA_NV_AUTHREAD) ? nv : ESYS_TR_RH_OWNER;
    const uint16_t chunk = MaxNvBuffer();
    Bytes out;
    while (out.size() < size) {
      const uint16_t n = static_cast<uint16_t>(std::min<size_t>(chunk, size - out.size()));
      TPM2B_MAX_NV_BUFFER* data = nullptr;
      rc = Esys_NV_Read(ctx_, auth, nv, ESYS_TR_PASSWORD, ESYS_TR_NONE, ESYS_TR_NONE, n,
                        static_cast<uint16_t>(out.size()), &data);
      if (rc != TSS2_RC_SUCCESS) {
        Esys_TR_Close(ctx_, &nv);
        return tpm::TssError("reading an NV index", rc);
      }
      out.insert(out.end(), data->buffer, data->buffer + data->size);
      Esys_Free(data);
    }
    Esys_TR_Close(ctx_, &nv);
    return out;
  }

  uint16_t MaxNvBuffer() {
    TPMS_CAPABILITY_DATA* cap = nullptr;
    uint16_t out = 512;  // what every TPM accepts
    if (Esys_GetCapability(ctx_, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, TPM2_CAP_TPM_PROPERTIES,
                           TPM2_PT_NV_BUFFER_MAX, 1, nullptr, &cap) == TSS2_RC_SUCCESS) {
      const auto& props = cap->data.tpmProperties;
      if (props.count > 0 && props.tpmProperty[0].property == TPM2_PT_NV_BUFFER_MAX &&
          props.tpmProperty[0].value > 0) {
        out = static_cast<uint16_t>(std::min<uint32_t>(props.tpmProperty[0].value, 1024));
      }
      Esys_Free(cap);
    }
    return out;
  }

  // The certificate (EK or AK) at `index`, empty when the index does not exist or holds no
  // readable certificate (logged: the node may still be trusted another way).
  Bytes ReadCertificate(uint32_t index) {
    auto nv = ReadNv(index);
    if (!nv.ok()) {
      if (nv.status().code() != Code::kNotFound) {
        spdlog::warn("certificate NV index 0x{:08x}: {}", index, nv.status().ToString());
      }
      return {};
    }
    auto der = tpm::TrimDerCertificate(*nv);
    if (!der.ok()) {
      spdlog::warn("certificate NV index 0x{:08x}: {}", index, der.status().ToString());
      return {};
    }
    return std::move(*der);
  }

  // An AK template the platform provisioned (ECC first, then RSA) and its certificate, when
  // the template is one of an attestation key. A template berth cannot use is logged and
  // ignored: the agent then makes its own AK.
  std::optional<std::pair<TPMT_PUBLIC, Bytes>> ProvisionedAk() {
    struct Slot {
      uint32_t template_index, cert_index;
    };
    for (const Slot& slot : {Slot{0x01c10003, 0x01c10002}, Slot{0x01c10001, 0x01c10000}}) {
      auto raw = ReadNv(slot.template_index);
      if (!raw.ok()) {
        if (raw.status().code() != Code::kNotFound) {
          spdlog::warn("AK template NV index 0x{:08x}: {}", slot.template_index,
                       raw.status().ToString());
        }
        continue;
      }
      auto tmpl = tpm::ParsePublic(*raw);
      Status usable = tmpl.ok() ? tpm::CheckAttestationKeyAttributes(*tmpl) : tmpl.status();
      if (!usable.ok()) {
        spdlog::warn("AK template NV index 0x{:08x} is not usable: {}", slot.template_index,
                     usable.ToString());
        continue;
      }
      return std::make_pair(*tmpl, ReadCertificate(slot.cert_index));
    }
    return std::nullopt;
  }

  // The EK: the persistent one at the TCG's handle when it was made from the template,
  // otherwise re-derived with CreatePrimary (kept loaded until this object goes away).
  Status LoadEndorsementKey() {
    if (ek_ != ESYS_TR_NONE) return OkStatus();
    Bytes cert = ReadCertificate(tpm::kEkCertNvIndexRsa2048);
    TPMT_PUBLIC tmpl = tpm::EkTemplateRsa2048();
    uint32_t persistent = 0x81010001;
    if (cert.empty()) {
      cert = ReadCertificate(tpm::kEkCertNvIndexEccP256);
      tmpl = tpm::EkTemplateEccP256();
      persistent = 0x81010002;
    }
    TPMT_PUBLIC ek_public;
    if (!UsePersistentEk(persistent, tmpl, ek_public)) {
      TPM2B_SENSITIVE_CREATE sensitive{};
      TPM2B_PUBLIC in_public{};
      in_public.publicArea = tmpl;
      TPM2B_DATA outside{};
      TPML_PCR_SELECTION creation_pcr{};
      TPM2B_PUBLIC* out_public = nullptr;
      TSS2_RC rc = Esys_CreatePrimary(ctx_, ESYS_TR_RH_ENDORSEMENT, ESYS_TR_PASSWORD, ESYS_TR_NONE,
                                      ESYS_TR_NONE, &sensitive, &in_public, &outside, &creation_pcr,
                                      &ek_, &out_public, nullptr, nullptr, nullptr);
      if (rc != TSS2_RC_SUCCESS) return tpm::TssError("creating the endorsement key", rc);
      ek_public = out_public->publicArea;
      Esys_Free(out_public);
    }
    BERTH_ASSIGN_OR_RETURN(endorsement_.ek_public, tpm::MarshalPublic(ek_public));
    endorsement_.ek_certificate = std::move(cert);
    return OkStatus();
  }

  // Frees the slot of an EK this object re-derived (a persistent one takes none). A TPM
  // reached without a resource manager (/dev/tpm0, swtpm's socket) holds three transient
  // objects, and sealing or unsealing beside the AK needs two more; LoadEndorsementKey
  // derives the same EK again when credential activation needs it.
  void UnloadEndorsementKey() {
    if (ek_ == ESYS_TR_NONE || ek_persistent_) return;
    Esys_FlushContext(ctx_, ek_);
    ek_ = ESYS_TR_NONE;
  }

  bool UsePersistentEk(uint32_t handle, const TPMT_PUBLIC& tmpl, TPMT_PUBLIC& out) {
    if (!HandleExists(handle)) return false;
    ESYS_TR tr = ESYS_TR_NONE;
    if (Esys_TR_FromTPMPublic(ctx_, handle, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &tr) !=
        TSS2_RC_SUCCESS) {
      return false;
    }
    TPM2B_PUBLIC* pub = nullptr;
    if (Esys_ReadPublic(ctx_, tr, ESYS_TR_NONE, ESYS_TR_NONE, ESYS_TR_NONE, &pub, nullptr,
                        nullptr) != TSS2_RC_SUCCESS) {
      Esys_TR_Close(ctx_, &tr);
      return false;
    }
    bool match = MatchesTemplate(pub->publicArea, tmpl);
    if (match) out = pub->publicArea;
    Esys_Free(pub);
    if (!match) {
      Esys_TR_Close(ctx_, &tr);
      return false;
    }
    ek_ = tr;
    ek_persistent_ = true;
    return true;
  }

  TSS2_TCTI_CONTEXT* tcti_ = nullptr;
  ESYS_CONTEXT* ctx_ = nullptr;
  ESYS_TR ak_ = ESYS_TR_NONE;
  ESYS_TR ek_ = ESYS_TR_NONE;
  bool ek_persistent_ = false;
  Bytes ak_public_;
  Bytes ak_certificate_;  // DER, from the platform; empty when none
  Endorsement endorsement_;
};

}  // namespace

Result<std::unique_ptr<Tpm>> OpenEsysTpm(const std::string& tcti) {
  auto tpm = std::make_unique<EsysTpm>();
  BERTH_RETURN_IF_ERROR(tpm->Open(tcti));
  return std::unique_ptr<Tpm>(std::move(tpm));
}

}  // namespace berth::agent
