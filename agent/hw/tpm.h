// The node's TPM, behind a small interface (the real one talks to tpm2-tss ESYS; tests may
// use swtpm through the same implementation, or a fake).
#pragma once

#include <memory>
#include <span>
#include <string>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/bytes.h"
#include "common/secret.h"
#include "common/status.h"
#include "common/tpm/quote.h"

namespace berth::agent {

struct TpmQuote {
  Bytes attest;     // TPMS_ATTEST as signed
  Bytes signature;  // marshalled TPMT_SIGNATURE
};

// A secret sealed by this TPM (TPM2_Create under the owner hierarchy's storage primary key):
// the object's public and private areas as the TPM returned them (marshalled TPM2B_PUBLIC and
// TPM2B_PRIVATE). Not a secret: the private area is encrypted to a key that never leaves this
// TPM, so the blob is useless anywhere else.
struct SealedSecret {
  Bytes public_area;
  Bytes private_area;
};

// A PCR policy that the authorizing key approved (common/tpm/policy.h): which PCRs, the
// PolicyPCR digest of their approved values, and the key's signature over it.
struct AuthorizedPolicy {
  DigestAlg bank = DigestAlg::kSha256;
  std::vector<uint32_t> pcrs;
  Bytes approved_policy;  // TPM2_PolicyPCR digest
  Bytes signature;        // marshalled TPMT_SIGNATURE over approved_policy || policy_ref
};

// The TPM's endorsement key, as berthd's Challenge needs it.
struct Endorsement {
  Bytes ek_public;       // marshalled TPMT_PUBLIC
  Bytes ek_certificate;  // DER, from the EK certificate NV index; empty when there is none
};

class Tpm {
 public:
  virtual ~Tpm() = default;
  // The attestation key's marshalled TPMT_PUBLIC. The AK is a primary key under the
  // endorsement hierarchy from a fixed template, so the same TPM always yields the same AK.
  // When the platform provisioned an AK template in NV (TCG provisioning guidance, as cloud
  // vTPMs do: ECC at 0x01c10003, RSA at 0x01c10001), that template is used, so the AK is the
  // one the platform's AK certificate certifies.
  virtual Result<Bytes> AttestationKeyPublic() = 0;
  // The platform's certificate for that AK (DER, from NV 0x01c10002 / 0x01c10000), leaf
  // first; empty when there is none.
  virtual Result<std::vector<Bytes>> AttestationKeyCertificateChain() = 0;
  // Current values of the selected PCRs.
  virtual Result<tpm::PcrValues> ReadPcrs(const std::vector<v1::PcrSelection>& selection) = 0;
  // A quote by the AK over `selection` with extraData = `extra_data` (at most 64 bytes).
  virtual Result<TpmQuote> Quote(const std::vector<v1::PcrSelection>& selection,
                                 std::span<const uint8_t> extra_data) = 0;

  // The endorsement key from the TCG default template whose certificate the TPM holds (RSA
  // 2048 at NV 0x01c00002, else ECC P-256 at 0x01c0000a), or the ECC P-256 EK without a
  // certificate when it holds neither (berthd may pin its public key).
  virtual Result<Endorsement> EndorsementKey() = 0;
  // TPM2_ActivateCredential with the AK as the object and the EK as the key: the secret
  // berthd protected with MakeCredential, if (and only if) both keys live in this TPM.
  // `credential_blob` is a marshalled TPM2B_ID_OBJECT, `encrypted_secret` a marshalled
  // TPM2B_ENCRYPTED_SECRET. A blob made for other keys fails with the TPM's error.
  virtual Result<SecretBytes> ActivateCredential(std::span<const uint8_t> credential_blob,
                                                 std::span<const uint8_t> encrypted_secret) = 0;
  // TPM2_PCR_Event: extends PCR `pcr` in every active bank with H_bank(event_data)
  // (at most 1024 bytes).
  virtual Status MeasureEvent(uint32_t pcr, std::span<const uint8_t> event_data) = 0;

  // Seals `secret` (at most 128 bytes) so that this TPM releases it only under a policy that
  // `authorizing_key` (a marshalled TPMT_PUBLIC, ECDSA P-256) signed with `policy_ref`
  // (TPM2_PolicyAuthorize). No password; not subject to dictionary-attack lockout.
  virtual Result<SealedSecret> SealAuthorized(const SecretBytes& secret,
                                              std::span<const uint8_t> authorizing_key,
                                              std::span<const uint8_t> policy_ref) = 0;
  // Unseals it: PolicyPCR over `policy.pcrs` as they are now, the key's signature checked by
  // the TPM (TPM2_VerifySignature), PolicyAuthorize, TPM2_Unseal. PERMISSION_DENIED, naming
  // the reason, when the PCRs are not the approved ones, the signature is not the key's, or
  // the blob is another TPM's or was made for another key; INVALID_ARGUMENT for a malformed
  // blob or policy.
  virtual Result<SecretBytes> UnsealAuthorized(const SealedSecret& sealed,
                                               std::span<const uint8_t> authorizing_key,
                                               std::span<const uint8_t> policy_ref,
                                               const AuthorizedPolicy& policy) = 0;
};

// Opens the TPM through the TCTI named by `tcti` ("device:/dev/tpmrm0", "swtpm:path=...")
// and creates the AK. The returned object is not thread-safe.
Result<std::unique_ptr<Tpm>> OpenEsysTpm(const std::string& tcti);

}  // namespace berth::agent
