#include "cli/verify_cmd.h"

#include <algorithm>
#include <memory>
#include <sstream>
#include <vector>

#include "cli/input.h"
#include "common/bytes.h"
#include "common/crypto.h"
#include "verify/policy.h"
#include "verify/tpm_boot.h"

namespace berth::cli {
namespace {

// TPM structures are a few hundred bytes; a file far larger is not one of them.
constexpr size_t kMaxTpmStructureSize = 64 << 10;
// berthd's limit on an event log in a join request (verify/evidence.cc).
constexpr size_t kMaxEventLogSize = 1 << 20;

std::vector<std::string_view> Fields(std::string_view line) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

Result<uint32_t> ParsePcrIndex(std::string_view s) {
  if (s.empty() || s.size() > 2 ||
      !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return InvalidArgument("\"" + std::string(s) + "\" is not a PCR index (0-23)");
  }
  uint32_t index = static_cast<uint32_t>(std::stoul(std::string(s)));
  if (index > 23) return InvalidArgument("PCR index " + std::string(s) + " is out of range (0-23)");
  return index;
}

std::string BankList(std::span<const DigestAlg> banks) {
  std::string out;
  for (size_t i = 0; i < banks.size(); ++i) {
    if (i > 0) out += i + 1 == banks.size() ? " and " : ", ";
    out += DigestName(banks[i]);
  }
  return out;
}

Status ParsePcrLine(std::string_view line, std::span<const DigestAlg> quoted_banks,
                    tpm::PcrValues& out) {
  std::vector<std::string_view> f = Fields(line);
  std::optional<DigestAlg> bank;
  std::string_view index_text, hex;
  auto bank_named = [](std::string_view name) -> Result<DigestAlg> {
    auto alg = DigestFromName(name);
    if (!alg.ok()) {
      return InvalidArgument("unknown bank \"" + std::string(name) +
                             "\" (sha1, sha256, sha384 or sha512)");
    }
    return alg;
  };
  auto is_number = [](std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (f.size() == 2 && f[0].find(':') != std::string_view::npos) {  // sha256:7 HEX
    size_t colon = f[0].find(':');
    BERTH_ASSIGN_OR_RETURN(bank, bank_named(f[0].substr(0, colon)));
    index_text = f[0].substr(colon + 1);
    hex = f[1];
  } else if (f.size() == 2) {  // 7 HEX
    index_text = f[0];
    hex = f[1];
  } else if (f.size() == 3 && !is_number(f[0])) {  // sha256 7 HEX
    BERTH_ASSIGN_OR_RETURN(bank, bank_named(f[0]));
    index_text = f[1];
    hex = f[2];
  } else {
    return InvalidArgument("expected \"INDEX HEX\" or \"BANK INDEX HEX\"");
  }
  BERTH_ASSIGN_OR_RETURN(uint32_t index, ParsePcrIndex(index_text));
  if (!bank.has_value()) {
    if (quoted_banks.size() != 1) {
      return InvalidArgument(
          "PCR " + std::string(index_text) + " has no bank, and the quote selects PCRs in " +
          (quoted_banks.empty() ? std::string("no bank") : BankList(quoted_banks)) +
          ": write \"BANK INDEX HEX\" lines (e.g. \"sha256 " + std::string(index_text) + " ...\")");
    }
    bank = quoted_banks.front();
  }
  if (hex.starts_with("0x") || hex.starts_with("0X")) hex.remove_prefix(2);
  auto value = HexDecode(hex);
  if (!value.ok()) return value.status().WithContext("PCR " + tpm::PcrName(*bank, index));
  if (value->size() != DigestSize(*bank)) {
    return InvalidArgument("PCR " + tpm::PcrName(*bank, index) + " value has " +
                           std::to_string(value->size()) + " bytes, not " +
                           std::to_string(DigestSize(*bank)));
  }
  if (!out[*bank].emplace(index, std::move(*value)).second) {
    return InvalidArgument("PCR " + tpm::PcrName(*bank, index) + " is given twice");
  }
  return OkStatus();
}

// The banks in which the quote selects at least one PCR, in selection order. Empty when the
// attestation is not a quote: VerifyQuote then fails on the signature or the type before it
// looks at PCR values.
Result<std::vector<DigestAlg>> QuotedBanks(const TPMS_ATTEST& attest) {
  std::vector<DigestAlg> banks;
  if (attest.type != TPM2_ST_ATTEST_QUOTE) return banks;
  const TPML_PCR_SELECTION& sel = attest.attested.quote.pcrSelect;
  for (uint32_t i = 0; i < sel.count && i < TPM2_NUM_PCR_BANKS; ++i) {
    const TPMS_PCR_SELECTION& s = sel.pcrSelections[i];
    bool any = false;
    for (uint32_t b = 0; b < s.sizeofSelect && b < sizeof s.pcrSelect; ++b) any |= s.pcrSelect[b];
    if (!any) continue;
    BERTH_ASSIGN_OR_RETURN(DigestAlg bank, tpm::DigestFromTpmAlg(s.hash));
    if (std::find(banks.begin(), banks.end(), bank) == banks.end()) banks.push_back(bank);
  }
  return banks;
}

struct LoadedAk {
  EvpPkeyPtr key;
  // The AK's attributes, checked (a TPMT_PUBLIC carries them and berthd refuses an AK that
  // is not a restricted signing key bound to its TPM); OK for a PEM key, which has none.
  Status attributes;
};

// Malformed AK files are bad input; attributes are a check, reported after every input has
// been read.
Result<LoadedAk> LoadAk(const std::string& path, const std::string& data) {
  const std::string context = "--ak " + path;
  std::string trimmed = TrimWhitespace(data);
  if (trimmed.starts_with("-----BEGIN CERTIFICATE-----")) {
    return InvalidArgument(context + ": is a certificate; give its public key (openssl x509 -in " +
                           path + " -pubkey -noout)");
  }
  if (trimmed.starts_with("-----BEGIN")) {
    auto key = PublicKeyFromPem(data);
    if (!key.ok()) return BadInput(context + ": not a PEM public key", key.status());
    return LoadedAk{std::move(*key), OkStatus()};
  }
  auto pub = tpm::ParsePublic(AsBytes(data));
  if (!pub.ok()) {
    return BadInput(context + ": neither a PEM public key nor a TPMT_PUBLIC", pub.status());
  }
  auto key = tpm::PublicToEvp(*pub);
  if (!key.ok()) return BadInput(context, key.status());
  return LoadedAk{std::move(*key), tpm::CheckAttestationKeyAttributes(*pub)};
}

Status FailedCheck(const Status& status) {
  return PermissionDenied("invalid: " + status.message());
}

Status Verify(const VerifyTpmQuoteOptions& o, Context& ctx) {
  BERTH_ASSIGN_OR_RETURN(std::optional<Bytes> nonce, ExpectedNonce(o));
  BERTH_ASSIGN_OR_RETURN(std::string ak_data, ReadInputFile("--ak", o.ak, kMaxTpmStructureSize));
  BERTH_ASSIGN_OR_RETURN(std::string quote,
                         ReadInputFile("--quote", o.quote, kMaxTpmStructureSize));
  BERTH_ASSIGN_OR_RETURN(std::string signature,
                         ReadInputFile("--signature", o.signature, kMaxTpmStructureSize));
  BERTH_ASSIGN_OR_RETURN(std::string pcr_text, ReadInputFile("--pcrs", o.pcrs));
  std::optional<std::string> event_log;
  if (!o.eventlog.empty()) {
    BERTH_ASSIGN_OR_RETURN(event_log, ReadInputFile("--eventlog", o.eventlog, kMaxEventLogSize));
  }
  std::optional<verify::Policy> policy;
  if (!o.policy.empty()) {
    auto loaded = verify::LoadPolicy(o.policy, /*require_ak_trust=*/false);
    // LoadPolicy's errors name the file already.
    if (!loaded.ok()) return BadInput("--policy", loaded.status());
    policy = std::move(*loaded);
  }

  // Every file is parsed before any check runs, so malformed input is named as such (exit 2)
  // rather than surfacing as a failed check. The checks themselves run in VerifyQuote, on the
  // raw bytes, signature first, exactly as berthd runs them.
  BERTH_ASSIGN_OR_RETURN(LoadedAk ak, LoadAk(o.ak, ak_data));
  auto sig = tpm::ParseSignature(AsBytes(signature));
  if (!sig.ok()) return BadInput("--signature " + o.signature, sig.status());
  auto attest = tpm::ParseAttest(AsBytes(quote));
  if (!attest.ok()) {
    // Say whether these are the bytes the TPM signed: a damaged or tampered file (a flipped
    // type byte makes a TPMS_ATTEST unparseable) is then told from a tool's bad output.
    Status signed_by_ak = tpm::VerifySignature(ak.key.get(), AsBytes(quote), *sig);
    std::string message = "--quote " + o.quote + ": " + attest.status().message();
    if (signed_by_ak.code() == Code::kPermissionDenied) {
      message += " (and the signature does not verify: these are not the bytes the TPM signed)";
    }
    return InvalidArgument(std::move(message));
  }
  auto banks = QuotedBanks(*attest);
  if (!banks.ok()) return BadInput("--quote " + o.quote, banks.status());
  tpm::PcrValues pcrs;
  if (!banks->empty()) {
    auto parsed = ParsePcrValues(pcr_text, *banks);
    if (!parsed.ok()) return BadInput("--pcrs " + o.pcrs, parsed.status());
    pcrs = std::move(*parsed);
  }

  if (!ak.attributes.ok()) return FailedCheck(ak.attributes);
  // berthd's next check: whether the policy trusts the AK. What needs more than a quote (the
  // node's certificates, credential activation, berth-agent's events) is said, not skipped.
  std::string ak_rule;
  std::vector<std::string> not_evaluated;
  if (policy.has_value()) {
    if (!policy->has_tpm) {
      return FailedCheck(PermissionDenied("TPM evidence is not accepted by this berthd's policy"));
    }
    BERTH_ASSIGN_OR_RETURN(Bytes spki, PublicKeyToSpkiDer(ak.key.get()));
    const Bytes ak_hash = Sha256(spki);
    if (const verify::TrustedAk* pinned = policy->FindAk(ak_hash); pinned != nullptr) {
      ak_rule = "trusted_aks[" + pinned->name + "]";
    } else if (policy->tpm_trust.TrustsKeysByCertificateOrEk()) {
      not_evaluated.push_back(
          "trust in the attestation key through EK or AK certificates (tpm.ek_ca_*, "
          "tpm.trusted_eks, tpm.ak_ca_*): berthd checks the certificates and the credential "
          "activation the node sends, which this command is not given");
    } else if (!policy->trusted_aks.empty()) {
      return FailedCheck(PermissionDenied("attestation key sha256:" + HexEncode(ak_hash) +
                                          " is not in the policy's trusted_aks"));
    } else {
      not_evaluated.push_back(
          "trust in the attestation key: the policy names none (berthd does not load such a "
          "policy)");
    }
    not_evaluated.push_back(
        "berth-agent's sealed boot (PCR 15: this boot has not released its keys yet, "
        "tpm.enrolment_configs): berthd replays the agent's events sent with the evidence, "
        "which this command is not given");
  }
  std::optional<std::span<const uint8_t>> expected;
  if (nonce.has_value()) expected = std::span<const uint8_t>(*nonce);
  auto verified =
      tpm::VerifyQuote(ak.key.get(), AsBytes(quote), AsBytes(signature), pcrs, expected);
  if (!verified.ok()) {
    if (verified.status().code() == Code::kPermissionDenied) return FailedCheck(verified.status());
    return BadInput("--quote " + o.quote, verified.status());
  }
  if (!event_log.has_value() && !policy.has_value()) {
    *ctx.out << "valid\n";
    return OkStatus();
  }
  std::optional<std::span<const uint8_t>> log;
  if (event_log.has_value()) log = AsBytes(*event_log);
  auto boot = verify::CheckQuotedBoot(*verified, log, policy.has_value() ? &*policy : nullptr);
  if (!boot.ok()) {
    if (boot.status().code() == Code::kPermissionDenied) return FailedCheck(boot.status());
    return BadInput("--eventlog " + o.eventlog, boot.status());
  }
  *ctx.out << "valid\n";
  if (!ak_rule.empty()) *ctx.out << "ak: " << ak_rule << "\n";
  *ctx.out << "boot: " << *boot << "\n";
  for (const std::string& n : not_evaluated) *ctx.out << "not evaluated: " << n << "\n";
  return OkStatus();
}

}  // namespace

Result<std::optional<Bytes>> ExpectedNonce(const VerifyTpmQuoteOptions& o) {
  if (o.nonce_hex.has_value() && o.nonce_text.has_value()) {
    return InvalidArgument("--nonce and --nonce-text are exclusive");
  }
  if (o.nonce_text.has_value()) return std::optional<Bytes>(ToBytes(*o.nonce_text));
  if (!o.nonce_hex.has_value()) return std::optional<Bytes>();
  std::string_view hex = *o.nonce_hex;
  if (hex.starts_with("0x") || hex.starts_with("0X")) hex.remove_prefix(2);
  auto bytes = HexDecode(hex);
  if (!bytes.ok()) {
    return InvalidArgument("--nonce \"" + *o.nonce_hex + "\" is not hex (" +
                           bytes.status().message() +
                           "); give the extraData in hex, or a text nonce with --nonce-text");
  }
  return std::optional<Bytes>(std::move(*bytes));
}

Result<tpm::PcrValues> ParsePcrValues(std::string_view text,
                                      std::span<const DigestAlg> quoted_banks) {
  tpm::PcrValues out;
  size_t line_no = 0;
  std::istringstream in{std::string(text)};
  for (std::string line; std::getline(in, line);) {
    ++line_no;
    if (size_t hash = line.find('#'); hash != std::string::npos) line.resize(hash);
    std::string trimmed = TrimWhitespace(line);
    if (trimmed.empty()) continue;
    Status st = ParsePcrLine(trimmed, quoted_banks, out);
    if (!st.ok()) return st.WithContext("line " + std::to_string(line_no));
  }
  return out;
}

int VerifyTpmQuote(const VerifyTpmQuoteOptions& options, Context& ctx) {
  return ExitFor(ctx, Verify(options, ctx));
}

void AddVerifyCommands(CLI::App& app, Context& ctx) {
  CLI::App* group = Group(app, "verify", "Verify attestation evidence offline");

  struct Flags {
    VerifyTpmQuoteOptions options;
    std::string nonce_hex, nonce_text;
  };
  auto flags = std::make_shared<Flags>();
  CLI::App* cmd = group->add_subcommand(
      "tpm-quote", "Verify a TPM 2.0 quote as berthd does and name the check that fails");
  cmd->add_option("--ak", flags->options.ak,
                  "attestation key: PEM public key, or a marshalled TPMT_PUBLIC or TPM2B_PUBLIC")
      ->type_name("FILE")
      ->required();
  cmd->add_option("--quote", flags->options.quote, "marshalled TPMS_ATTEST (the signed bytes)")
      ->type_name("FILE")
      ->required();
  cmd->add_option("--signature", flags->options.signature, "marshalled TPMT_SIGNATURE")
      ->type_name("FILE")
      ->required();
  cmd->add_option("--pcrs", flags->options.pcrs,
                  "PCR values: lines of \"INDEX HEX\" for the quoted bank")
      ->type_name("FILE")
      ->required();
  CLI::Option* nonce_hex =
      cmd->add_option("--nonce", flags->nonce_hex,
                      "expected extraData in hex; \"\" = must be empty (default: any)")
          ->type_name("HEX");
  CLI::Option* nonce_text =
      cmd->add_option("--nonce-text", flags->nonce_text, "expected extraData as text bytes")
          ->type_name("TEXT");
  nonce_hex->excludes(nonce_text);
  cmd->add_option("--eventlog", flags->options.eventlog,
                  "also replay this measured-boot event log to the quoted PCRs")
      ->type_name("FILE");
  cmd->add_option("--policy", flags->options.policy,
                  "also check against this berthd policy (trusted_aks, pcrs, pcr_sets, event "
                  "rules)")
      ->type_name("FILE");
  cmd->footer(
      "PCRS file: one PCR a line, \"INDEX HEX\" for the bank the quote selects, e.g.\n"
      "  2 3d458cfe55cc03ea1f443f1562beec8df51c75e14a9fcf9a7234a13f198e7969\n"
      "When the quote selects several banks, name the bank on every line: \"sha1 0 HEX\"\n"
      "(or \"sha1:0 HEX\"). Lines for PCRs the quote does not select are ignored; blank\n"
      "lines and # comments are allowed.\n"
      "\n"
      "Nonce: extraData is raw bytes. --nonce takes them in hex: a GCE quote made with nonce\n"
      "9009 carries the two bytes 0x90 0x09, so --nonce 9009; a berthd binding is 64 hex\n"
      "digits. Tools that use a text nonce (keylime) put its ASCII bytes in extraData: give\n"
      "it with --nonce-text Ai5M5SjYjnkyv4P7itH1 (the same as --nonce 4169354d...). --nonce \"\"\n"
      "requires an empty extraData; without either flag any extraData is accepted.\n"
      "\n"
      "Checks, in berthd's order: the AK's attributes (TPMT_PUBLIC only: a restricted,\n"
      "fixedTPM signing key), the signature over the raw TPMS_ATTEST, magic and type,\n"
      "extraData, a value for every quoted PCR, pcrDigest; then, with --eventlog and/or\n"
      "--policy, the boot: the log replayed to the quoted PCRs, the policy's pinned PCRs,\n"
      "PCR sets and event rules (\"valid\" is then followed by \"boot: <rules>\").\n"
      "With --policy, also the policy's trusted_aks (\"ak: trusted_aks[<name>]\"); what\n"
      "berthd checks from more than a quote (EK/AK certificates and credential activation,\n"
      "berth-agent's PCR 15 events) is listed on \"not evaluated: ...\" lines.\n"
      "Exit 0 prints \"valid\"; 1 prints \"invalid: <the failed check>\" on stderr; 2 means\n"
      "unreadable or malformed input (the message names the file).");
  cmd->callback([flags, nonce_hex, nonce_text, &ctx] {
    VerifyTpmQuoteOptions options = flags->options;
    if (nonce_hex->count() > 0) options.nonce_hex = flags->nonce_hex;
    if (nonce_text->count() > 0) options.nonce_text = flags->nonce_text;
    ctx.exit_code = VerifyTpmQuote(options, ctx);
  });
}

}  // namespace berth::cli
