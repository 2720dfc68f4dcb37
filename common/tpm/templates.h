// berth's key templates: what berth-agent asks the TPM to make, and what a software key in a
// benchmark must look like to pass berthd's checks. One definition, so the two cannot drift.
#pragma once

#include <tss2/tss2_tpm2_types.h>

namespace berth::tpm {

// The attestation key: a restricted ECDSA P-256 / SHA-256 signing key that never leaves its TPM
// (fixedTPM, fixedParent, sensitiveDataOrigin), usable without a password, not subject to
// dictionary-attack lockout. A primary key from this fixed template is re-derived identically on
// every boot. The unique field (the public point) is left empty for the TPM to fill.
TPMT_PUBLIC AkTemplate();

}  // namespace berth::tpm
