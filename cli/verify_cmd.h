// `berthctl verify tpm-quote`: offline verification of a TPM 2.0 quote, the same checks
// berthd makes (common/tpm/quote.h), so an operator can see why a node is refused.
//
// The functions take the parsed options and a Context, write to ctx.out / ctx.err and return
// the exit code (commands.h); AddVerifyCommands only binds flags to them.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "cli/commands.h"
#include "common/tpm/quote.h"

namespace berth::cli {

struct VerifyTpmQuoteOptions {
  std::string ak;         // PEM public key, or a marshalled TPMT_PUBLIC / TPM2B_PUBLIC
  std::string quote;      // marshalled TPMS_ATTEST, exactly the bytes the TPM signed
  std::string signature;  // marshalled TPMT_SIGNATURE
  std::string pcrs;       // PCR values, see ParsePcrValues
  // The expected extraData; both unset: any extraData is accepted. At most one is set.
  std::optional<std::string> nonce_hex;   // --nonce: hex ("" = the quote must have none)
  std::optional<std::string> nonce_text;  // --nonce-text: the bytes of this text
  // The boot, as berthd checks it (verify/tpm_boot.h CheckQuotedBoot), once the quote is
  // valid: the measured-boot event log replayed to the quoted PCRs, and a berthd policy's
  // trusted_aks (checked before the quote, as berthd does) and pcrs / pcr_sets / event rules.
  // What berthd checks from more than a quote (EK/AK certificates and credential activation,
  // berth-agent's PCR 15 events) is printed as "not evaluated: ..." lines. Either, both or
  // neither.
  std::string eventlog;  // raw TCG log (binary_bios_measurements)
  std::string policy;    // berthd policy YAML
};

// Verifies the quote. Exit 0 and "valid" on ctx.out when every check passes; exit 1 and one
// line on ctx.err naming the check that failed ("invalid: ..."): the AK's attributes (when
// given as a TPMT_PUBLIC), the signature, magic and type, extraData, a quoted PCR missing
// from the file, pcrDigest; exit 2 and a message naming the file for unreadable or
// malformed input. With --eventlog / --policy the boot is checked too: "valid" is followed by
// "ak: trusted_aks[<name>]" (a pinned AK), "boot: <the rules that accepted it>" and the
// "not evaluated: ..." lines, and an AK or boot the policy refuses exits 1 naming the key,
// the PCR or the event.
int VerifyTpmQuote(const VerifyTpmQuoteOptions& options, Context& ctx);

// Parses a PCR values file: one PCR a line, `INDEX HEX` or `BANK INDEX HEX` (also
// `BANK:INDEX HEX`), BANK one of sha1 sha256 sha384 sha512, HEX the value (an optional 0x
// prefix). Blank lines and `#` comments are ignored. An unqualified line belongs to the bank
// the quote selects; when `quoted_banks` holds several, every line must name its bank. Lines
// for PCRs the quote does not select are allowed (a file of all 24 PCRs fits any quote of
// that bank). Errors name the line: index beyond 23, a value of the wrong length for its
// bank, a PCR given twice, bad hex.
Result<tpm::PcrValues> ParsePcrValues(std::string_view text,
                                      std::span<const DigestAlg> quoted_banks);

// The expected extraData from --nonce / --nonce-text; nullopt when neither is given.
Result<std::optional<Bytes>> ExpectedNonce(const VerifyTpmQuoteOptions& options);

}  // namespace berth::cli
