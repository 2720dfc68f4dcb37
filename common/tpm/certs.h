// Certificates that vouch for TPM keys: EK certificates (a TPM manufacturer's CA certifies
// the endorsement key it put in the TPM) and AK certificates (a cloud's CA certifies the
// attestation key of a vTPM).
//
// These certificates are unusual in ways OpenSSL's defaults would hold against them: an empty
// subject with a critical subjectAltName directoryName (TPM manufacturer, model, version),
// TCG-specific extensions (subjectDirectoryAttributes, the GCE instance extension) that may be
// marked critical, key usages and extended key usages (2.23.133.8.1) that fit no TLS
// purpose. What matters for trust is checked, and only that: every signature up to a trusted
// certificate, every certificate valid at the verification time, CA certificates allowed to
// sign certificates, and the leaf's key equal to the TPM key it is presented for.
//
// Pure functions, thread-safe.
#pragma once

#include <tss2/tss2_tpm2_types.h>

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/bytes.h"
#include "common/crypto.h"
#include "common/status.h"

namespace berth::tpm {

struct VerifiedCertChain {
  std::string leaf_subject;    // one-line RFC 2253 form, "" for an empty subject
  std::string anchor_subject;  // the trusted certificate the chain ends at
};

// Verifies `leaf` through `intermediates` (any order; may be empty) to one of `trusted`
// (roots or intermediates: a chain may end at any trusted certificate) at `at_unix`.
// PERMISSION_DENIED names the certificate and the reason (expired, unknown issuer, bad
// signature); INVALID_ARGUMENT when `trusted` is empty.
Result<VerifiedCertChain> VerifyTpmCertChain(X509* leaf, const std::vector<X509*>& intermediates,
                                             const std::vector<X509*>& trusted, int64_t at_unix);

// PERMISSION_DENIED unless the certificate's public key is exactly the TPM key `pub` (RSA
// modulus and exponent, or EC curve and point). `what` names the certificate in the message.
Status CheckCertKeyMatches(X509* cert, const TPMT_PUBLIC& pub, std::string_view what);

// Parses DER certificates (kInvalidArgument naming the index of one that does not parse).
Result<std::vector<X509Ptr>> CertsFromDerList(const std::vector<std::string>& ders);

// A DER certificate read from TPM NV memory may be followed by padding up to the size of the
// NV index: returns the DER of the certificate alone.
Result<Bytes> TrimDerCertificate(std::span<const uint8_t> nv_contents);

// A certificate's subject or issuer for messages, RFC 2253 ("CN=swtpm-localca";
// "(empty subject)").
std::string CertSubject(X509* cert);
std::string CertIssuer(X509* cert);

}  // namespace berth::tpm
