// An attestation key held in software that produces real TPM 2.0 structures: a marshalled
// TPMT_PUBLIC with the attributes of a TPM-resident AK, and quotes as marshalled TPMS_ATTEST
// signed into a TPMT_SIGNATURE. berthd cannot tell them from a TPM's, so a load generator
// built on it makes berthd do every check it does for a real node.
//
// For benchmarks and load tests only: the key is in memory, so nothing here is evidence of
// anything. Thread-compatible; Quote() is const and may run on many threads at once.
#pragma once

#include <span>
#include <string>
#include <vector>

#include "berth/v1/berth.pb.h"
#include "common/crypto.h"
#include "common/tpm/quote.h"

namespace berth::bench {

class SoftAk {
 public:
  // A fresh ECDSA P-256 key, and the PCR values of the simulated boot (sha256 bank,
  // `pcrs` indices, each SHA-256("berth-bench pcr <i>"), plus PCR 15 sealed as berth-agent
  // seals it before it asks for a ticket).
  static Result<SoftAk> Create(const std::vector<uint32_t>& pcrs);
  // The same, with an existing P-256 private key (so a policy written earlier still fits).
  static Result<SoftAk> FromKey(EvpPkeyPtr key, const std::vector<uint32_t>& pcrs);
  // The same key claiming other object attributes in its TPMT_PUBLIC (for tests of the
  // verifier's attribute checks: an AK without `restricted` could sign anything, one without
  // `fixedTPM` may have been outside a TPM). The SPKI, so the policy's pin, is unchanged.
  static Result<SoftAk> FromKey(EvpPkeyPtr key, const std::vector<uint32_t>& pcrs,
                                TPMA_OBJECT attributes);
  // What a TPM-resident AK has: fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth,
  // restricted, sign, noDA.
  static constexpr TPMA_OBJECT kAkAttributes =
      TPMA_OBJECT_FIXEDTPM | TPMA_OBJECT_FIXEDPARENT | TPMA_OBJECT_SENSITIVEDATAORIGIN |
      TPMA_OBJECT_USERWITHAUTH | TPMA_OBJECT_RESTRICTED | TPMA_OBJECT_SIGN_ENCRYPT |
      TPMA_OBJECT_NODA;
  // The private key as PKCS#8 PEM, to be kept for a later run.
  Result<SecretBytes> KeyPem() const { return PrivateKeyToPem(key_.get()); }

  const Bytes& public_area() const { return public_area_; }  // marshalled TPMT_PUBLIC
  const tpm::PcrValues& pcr_values() const { return pcr_values_; }
  // The berthd policy that trusts this key and this boot (YAML).
  Result<std::string> PolicyYaml() const;
  // TPM evidence bound to `extra_data`, as a TPM would produce it.
  Result<v1::Evidence> Quote(std::span<const uint8_t> extra_data) const;

 private:
  EvpPkeyPtr key_;
  TPMT_PUBLIC public_{};
  Bytes public_area_;
  Bytes name_;
  std::vector<uint32_t> pcr_indices_;
  tpm::PcrValues pcr_values_;
  Bytes pcr_digest_;
  Bytes seal_event_;  // PCR 15: the EnrolmentConfig measured, as berth-agent does
};

}  // namespace berth::bench
