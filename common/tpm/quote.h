// TPM 2.0 structures and quote verification, shared by berthd and berthctl.
//
// Structures are parsed with tpm2-tss's marshalling library (libtss2-mu), never by hand.
// Error classes: malformed input is kInvalidArgument; a check that fails on well-formed input
// (bad signature, wrong extraData, PCR digest mismatch) is kPermissionDenied. berthctl maps
// them to exit codes 2 and 1.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/status.h"

namespace berth::tpm {

// TSS2_RC -> Status, in one place (decoded with Tss2_RC_Decode).
Status TssError(std::string_view what, uint32_t rc);

Result<DigestAlg> DigestFromTpmAlg(uint16_t alg);
uint16_t TpmAlgFromDigest(DigestAlg alg);

// Bank -> PCR index -> value.
using PcrValues = std::map<DigestAlg, std::map<uint32_t, Bytes>>;

// A PCR reference such as "sha256:7", for messages and policies.
std::string PcrName(DigestAlg bank, uint32_t index);

// Parses a marshalled TPMT_PUBLIC (or a TPM2B_PUBLIC, recognised by its size prefix).
// Trailing bytes are an error.
Result<TPMT_PUBLIC> ParsePublic(std::span<const uint8_t> data);
Result<Bytes> MarshalPublic(const TPMT_PUBLIC& pub);
// The TPM object Name: nameAlg || H_nameAlg(TPMT_PUBLIC).
Result<Bytes> PublicName(const TPMT_PUBLIC& pub);
// The RSA or ECC public key of a TPMT_PUBLIC as an OpenSSL key.
Result<EvpPkeyPtr> PublicToEvp(const TPMT_PUBLIC& pub);
// An attestation key must be a restricted signing key that never left its TPM:
// fixedTPM, fixedParent, sensitiveDataOrigin, restricted, sign, and not decrypt. Otherwise a
// key holder could sign a forged TPMS_ATTEST.
Status CheckAttestationKeyAttributes(const TPMT_PUBLIC& pub);

Result<TPMS_ATTEST> ParseAttest(std::span<const uint8_t> data);
Result<TPMT_SIGNATURE> ParseSignature(std::span<const uint8_t> data);
Result<Bytes> MarshalSignature(const TPMT_SIGNATURE& sig);

// Verifies `signature` over the raw `attest` bytes with `key`. The signature scheme must fit
// the key (RSASSA or RSAPSS for RSA, ECDSA for EC) and use SHA-1/256/384/512.
Status VerifySignature(EVP_PKEY* key, std::span<const uint8_t> attest, const TPMT_SIGNATURE& sig);

struct QuotedPcr {
  DigestAlg bank;
  uint32_t index;
  bool operator==(const QuotedPcr&) const = default;
};

struct VerifiedQuote {
  std::vector<QuotedPcr> selection;  // in selection order
  Bytes extra_data;
  DigestAlg signature_hash;
  PcrValues pcrs;                    // only the quoted PCRs, checked against pcrDigest
};

// Full verification of a quote, in this order: the signature over the raw bytes; magic
// TPM_GENERATED_VALUE and type TPM_ST_ATTEST_QUOTE; extraData equals
// `expected_extra_data` (when given); every selected PCR has a value in `pcrs`, and
// pcrDigest equals H_sig(selected values in selection order).
Result<VerifiedQuote> VerifyQuote(EVP_PKEY* ak, std::span<const uint8_t> attest,
                                  std::span<const uint8_t> signature, const PcrValues& pcrs,
                                  std::optional<std::span<const uint8_t>> expected_extra_data);

}  // namespace berth::tpm
