// The audit log: one line per decision, the one place that writes it (docs/lifecycle.md,
// "Audit log"): berthd's, and a node's operator endpoint's (berth-agent) and berthctl's
// operator commands' (docs/cluster-lifecycle.md).
//
//   audit call=IssueJoinTicket decision=granted node=w1 peer=ipv4:10.0.0.7:51200 ...
//   audit call=RevokeNode decision=failed operator="admin" node=w1 code=NOT_FOUND reason="..."
//
// A line is `audit`, then `key=value` fields in the order they were added, logfmt style:
// `call` and `decision` first, a refusal's `code` and `reason` (always quoted) last. Values
// that need it are
// double-quoted with `"` and `\` escaped; control characters (a newline in a message somebody
// sent) are written as \n, \r, \t or \xNN, so one decision is always one line and no field can
// forge another; a value longer than kMaxAuditValue bytes is cut there and ends with "...".
//
// What may never appear: disk keys, bootstrap token secrets, private keys, master secrets, and
// raw request or reply bodies (which may carry any of them, or anything a sender chose). Callers
// pass identifiers (node names, key hashes, token IDs) and their own words; a SecretBytes
// (common/secret.h) becomes a string only through an explicit view(), never by accident.
//
// Thread-safe: each line is built on the caller's stack and written by spdlog at once.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace berth {

inline constexpr size_t kMaxAuditValue = 512;

// The value as a logfmt field value: bare when it is a non-empty run of safe characters
// (letters, digits and -_.:/@+=,) and `quote` is false, double-quoted and escaped otherwise.
std::string AuditValue(std::string_view value, bool quote = false);

class AuditLine {
 public:
  // `call`: the RPC or event (IssueJoinTicket, SnsMessage, ...).
  explicit AuditLine(std::string_view call);

  // Appends key=value (the value as AuditValue writes it; "-" for an empty one).
  AuditLine& Add(std::string_view key, std::string_view value);
  // Appends key="value", quoted whatever it holds (free text: a rule, an operator's subject).
  AuditLine& Quoted(std::string_view key, std::string_view value);
  // Appends fields the caller formatted with AuditValue (details built up by a subsystem).
  AuditLine& Fields(std::string_view formatted);

  // The finished line: decision=`decision` after call=, and for a failed `status` its code and
  // reason at the end.
  std::string Format(std::string_view decision, const Status& status) const;

  // Writes it: info for an ok status (warn when `loud`, for golden tickets), warn otherwise.
  // `ok_word` and `failed_word` are the decision's names (granted/refused, done/failed, ...).
  void Log(const Status& status, std::string_view ok_word = "granted",
           std::string_view failed_word = "refused", bool loud = false) const;

 private:
  std::string call_;
  std::string fields_;
};

}  // namespace berth
