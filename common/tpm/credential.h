// Endorsement keys and credential activation (TPM 2.0 Part 1, 24 "Credential Protection").
//
// berthd proves that an attestation key lives in the same TPM as a trusted endorsement key
// without ever talking to the TPM: it runs TPM2_MakeCredential in software, protecting a
// secret for the EK and the AK's Name; only the TPM that holds both keys can run
// TPM2_ActivateCredential and recover the secret. The EK is a restricted decryption key: it
// decrypts nothing else, so the secret leaves the TPM only through ActivateCredential, and
// only if an object with that exact Name is loaded next to the EK.
//
// Pure functions, thread-safe.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <span>

#include "common/bytes.h"
#include "common/status.h"

namespace berth::tpm {

// The TCG default EK templates (TCG EK Credential Profile 2.x, templates L-1 and L-2): what
// TPM2_CreatePrimary under the endorsement hierarchy turns into the EK its certificate was
// issued for. Both use the standard PolicyA (PolicySecret(TPM_RH_ENDORSEMENT)) as authPolicy
// and no userWithAuth, so using the EK needs a policy session.
TPMT_PUBLIC EkTemplateRsa2048();
TPMT_PUBLIC EkTemplateEccP256();

// The NV indices of the EK certificates for those templates.
inline constexpr uint32_t kEkCertNvIndexRsa2048 = 0x01c00002;
inline constexpr uint32_t kEkCertNvIndexEccP256 = 0x01c0000a;

// An endorsement key fit for credential protection: a restricted decryption key that never
// left its TPM (fixedTPM, fixedParent, sensitiveDataOrigin, restricted, decrypt, not sign),
// RSA or ECC, with an AES-CFB symmetric scheme and a SHA-256/384/512 name algorithm.
// PERMISSION_DENIED names the first property that is missing.
Status CheckEndorsementKey(const TPMT_PUBLIC& ek);

struct MadeCredential {
  Bytes credential_blob;   // marshalled TPM2B_ID_OBJECT
  Bytes encrypted_secret;  // marshalled TPM2B_ENCRYPTED_SECRET
};

// TPM2_MakeCredential: protects `credential` (at most the size of the EK's name-algorithm
// digest) for `ek` and the object Name `object_name`. The seed is RSA-OAEP encrypted with
// label "IDENTITY\0" for an RSA EK, or agreed by ECDH with an ephemeral key and KDFe for an
// ECC EK; KDFa derives the AES-CFB key ("STORAGE") and the HMAC key ("INTEGRITY") from it.
Result<MadeCredential> MakeCredential(const TPMT_PUBLIC& ek, std::span<const uint8_t> object_name,
                                      std::span<const uint8_t> credential);

// The largest credential `MakeCredential` accepts for `ek`.
size_t MaxCredentialSize(const TPMT_PUBLIC& ek);

}  // namespace berth::tpm
