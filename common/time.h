// Time as berth writes and reads it: RFC 3339 in UTC ("2026-02-04T00:00:00Z") in audit lines,
// refusals, bootstrap tokens, policies and operator output; certificate times from OpenSSL.
// The one owner of time formatting and parsing (STYLE.md): a file that needs one of these
// includes this header rather than calling strftime or timegm itself.
#pragma once

#include <openssl/asn1.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"

namespace berth {

// "2026-02-04T00:00:00Z".
std::string Rfc3339(int64_t unix_seconds);

// `unix_seconds` in UTC by a strftime format (e.g. AWS's "%Y%m%dT%H%M%SZ").
std::string FormatUtc(int64_t unix_seconds, const char* strftime_format);

// An RFC 3339 time: "2024-05-01T12:00:00Z", with optional fractional seconds and a "Z" or
// "+hh:mm" zone. INVALID_ARGUMENT naming the text otherwise.
Result<int64_t> ParseRfc3339(std::string_view text);

// A certificate's time (notBefore, notAfter) in unix seconds.
Result<int64_t> Asn1TimeUnix(const ASN1_TIME* t);

}  // namespace berth
