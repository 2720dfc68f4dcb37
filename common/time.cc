#include "common/time.h"

#include <openssl/x509.h>

#include <cctype>
#include <cstdio>
#include <ctime>

namespace berth {

std::string FormatUtc(int64_t unix_seconds, const char* strftime_format) {
  std::time_t t = static_cast<std::time_t>(unix_seconds);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  size_t n = std::strftime(buf, sizeof buf, strftime_format, &tm);
  return std::string(buf, n);
}

std::string Rfc3339(int64_t unix_seconds) { return FormatUtc(unix_seconds, "%Y-%m-%dT%H:%M:%SZ"); }

Result<int64_t> ParseRfc3339(std::string_view text) {
  std::string s(text);
  std::tm tm{};
  int consumed = 0;
  if (std::sscanf(s.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                  &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &consumed) != 6 ||
      consumed != 19) {
    return InvalidArgument("\"" + s + "\" is not an RFC 3339 time (2024-05-01T12:00:00Z)");
  }
  std::string_view rest = std::string_view(s).substr(19);
  if (!rest.empty() && rest[0] == '.') {
    size_t i = 1;
    while (i < rest.size() && std::isdigit(static_cast<unsigned char>(rest[i]))) ++i;
    rest.remove_prefix(i);
  }
  int64_t offset = 0;
  if (rest == "Z" || rest == "z") {
    offset = 0;
  } else if (rest.size() == 6 && (rest[0] == '+' || rest[0] == '-') && rest[3] == ':') {
    int hh = 0, mm = 0;
    if (std::sscanf(std::string(rest.substr(1)).c_str(), "%2d:%2d", &hh, &mm) != 2) {
      return InvalidArgument("\"" + s + "\" has a malformed UTC offset");
    }
    offset = (rest[0] == '+' ? 1 : -1) * (hh * 3600 + mm * 60);
  } else {
    return InvalidArgument("\"" + s + "\" needs a time zone (Z or +hh:mm)");
  }
  if (tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_hour > 23 ||
      tm.tm_min > 59 || tm.tm_sec > 60) {
    return InvalidArgument("\"" + s + "\" is not a valid date and time");
  }
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) - offset;
}

Result<int64_t> Asn1TimeUnix(const ASN1_TIME* t) {
  std::tm tm{};
  if (t == nullptr || ASN1_TIME_to_tm(t, &tm) != 1) {
    return InvalidArgument("unreadable certificate time");
  }
  return static_cast<int64_t>(timegm(&tm));
}

}  // namespace berth
