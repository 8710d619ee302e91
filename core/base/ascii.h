// Locale-independent ASCII character helpers for protocol text (HTTP header
// names, URL schemes, SigV4 dates). <cctype> depends on the C locale and is
// undefined for negative chars, so wire parsers use these instead.
#ifndef ENVELOPE_CORE_BASE_ASCII_H_
#define ENVELOPE_CORE_BASE_ASCII_H_

#include <algorithm>
#include <string>
#include <string_view>

namespace envelope::ascii {

constexpr bool IsDigit(char c) { return c >= '0' && c <= '9'; }

// A space or a tab: the blanks of dotenv and secrets-file lines.
constexpr bool IsBlank(char c) { return c == ' ' || c == '\t'; }

constexpr char ToLower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
}

inline std::string ToLower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = ToLower(c);
  return out;
}

inline bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(),
                    [](char x, char y) { return ToLower(x) == ToLower(y); });
}

inline bool StartsWithIgnoreCase(std::string_view s, std::string_view prefix) {
  return s.size() >= prefix.size() &&
         EqualsIgnoreCase(s.substr(0, prefix.size()), prefix);
}

inline bool IsAllDigits(std::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) { return IsDigit(c); });
}

}  // namespace envelope::ascii

#endif  // ENVELOPE_CORE_BASE_ASCII_H_
