#include "common/audit.h"

#include <spdlog/spdlog.h>

namespace berth {

namespace {

bool Safe(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
         std::string_view("-_.:/@+=,").find(c) != std::string_view::npos;
}

// `value` as a logfmt value; `quote` forces the double quotes.
std::string Escape(std::string_view value, bool quote) {
  const bool cut = value.size() > kMaxAuditValue;
  if (cut) value = value.substr(0, kMaxAuditValue);
  bool bare = !quote && !value.empty() && !cut;
  for (char c : value) bare = bare && Safe(c);
  if (bare) return std::string(value);
  std::string out = "\"";
  for (unsigned char c : value) {
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      default:
        if (c < 0x20 || c == 0x7f) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\x";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.push_back(static_cast<char>(c));
        }
    }
  }
  if (cut) out += "...";
  out += "\"";
  return out;
}

}  // namespace

std::string AuditValue(std::string_view value, bool quote) { return Escape(value, quote); }

AuditLine::AuditLine(std::string_view call) : call_(AuditValue(call)) {}

AuditLine& AuditLine::Add(std::string_view key, std::string_view value) {
  fields_ += " ";
  fields_ += key;
  fields_ += "=";
  fields_ += value.empty() ? "-" : AuditValue(value);
  return *this;
}

AuditLine& AuditLine::Quoted(std::string_view key, std::string_view value) {
  fields_ += " ";
  fields_ += key;
  fields_ += "=";
  fields_ += Escape(value, true);
  return *this;
}

AuditLine& AuditLine::Fields(std::string_view formatted) {
  if (formatted.empty()) return *this;
  fields_ += " ";
  fields_ += formatted;
  return *this;
}

std::string AuditLine::Format(std::string_view decision, const Status& status) const {
  std::string line = "audit call=" + call_ + " decision=" + std::string(decision) + fields_;
  if (!status.ok()) {
    line += " code=" + std::string(CodeName(status.code())) +
            " reason=" + Escape(status.message(), true);
  }
  return line;
}

void AuditLine::Log(const Status& status, std::string_view ok_word, std::string_view failed_word,
                    bool loud) const {
  if (status.ok()) {
    const std::string line = Format(ok_word, status);
    if (loud) {
      spdlog::warn("{}", line);
    } else {
      spdlog::info("{}", line);
    }
  } else {
    spdlog::warn("{}", Format(failed_word, status));
  }
}

}  // namespace berth
