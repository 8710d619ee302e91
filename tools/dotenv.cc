#include "tools/dotenv.h"

#include <cstring>
#include <map>
#include <string>
#include <utility>

#include "core/base/ascii.h"

namespace envelope::secrets {

namespace {

// The end of a line's content: a '\n' or the end of the text, with a
// preceding '\r' left out.
bool AtLineEnd(std::string_view t, size_t i) {
  return i >= t.size() || t[i] == '\n' ||
         (t[i] == '\r' && (i + 1 == t.size() || t[i + 1] == '\n'));
}

// A value's extent and decoded length. `end` is just past the value (the
// closing quote, or the last kept character of an unquoted value).
struct ValueScan {
  size_t end = 0;
  size_t length = 0;
  int newlines = 0;  // line breaks inside a quoted value
};

// Scans the value that starts at `pos` and, if `out` is not null, writes
// its decoded bytes there (out must hold the length of a first pass).
StatusOr<ValueScan> ScanValue(std::string_view t, size_t pos,
                              const std::string& where, char* out) {
  ValueScan scan;
  auto put = [&scan, out](char c) {
    if (out != nullptr) out[scan.length] = c;
    ++scan.length;
  };
  if (pos < t.size() && t[pos] == '\'') {
    size_t i = pos + 1;
    for (; i < t.size() && t[i] != '\''; ++i) {
      scan.newlines += t[i] == '\n';
      put(t[i]);
    }
    if (i >= t.size()) {
      return Status::InvalidArgument(where + ": unterminated single quote");
    }
    scan.end = i + 1;
    return scan;
  }
  if (pos < t.size() && t[pos] == '"') {
    size_t i = pos + 1;
    for (; i < t.size() && t[i] != '"'; ++i) {
      if (t[i] == '\\' && i + 1 < t.size()) {
        const char e = t[++i];
        switch (e) {
          case 'n':
            put('\n');
            break;
          case 'r':
            put('\r');
            break;
          case 't':
            put('\t');
            break;
          case '\\':
          case '"':
          case '$':
          case '`':
            put(e);
            break;
          default:
            // Unknown escapes stay as written, as in most dotenv readers.
            put('\\');
            put(e);
            scan.newlines += e == '\n';
        }
        continue;
      }
      scan.newlines += t[i] == '\n';
      put(t[i]);
    }
    if (i >= t.size()) {
      return Status::InvalidArgument(where + ": unterminated double quote");
    }
    scan.end = i + 1;
    return scan;
  }
  // Unquoted: up to the end of the line or a '#' after a blank, trailing
  // blanks trimmed.
  size_t i = pos;
  size_t kept_end = pos;
  while (!AtLineEnd(t, i)) {
    if (t[i] == '#' && i > 0 && ascii::IsBlank(t[i - 1])) break;
    if (!ascii::IsBlank(t[i])) kept_end = i + 1;
    ++i;
  }
  for (size_t j = pos; j < kept_end; ++j) put(t[j]);
  scan.end = kept_end;
  return scan;
}

bool NeedsDoubleQuotes(ByteView value) {
  for (uint8_t b : value) {
    if (b == '\'' || b == '\n' || b == '\r') return true;
  }
  return false;
}

// The escape for `b` inside double quotes, or 0 if it is written as is.
char DoubleQuoteEscape(uint8_t b) {
  switch (b) {
    case '\n':
      return 'n';
    case '\r':
      return 'r';
    case '\t':
      return 't';
    case '\\':
    case '"':
    case '$':
    case '`':
      return static_cast<char>(b);
    default:
      return 0;
  }
}

}  // namespace

StatusOr<std::vector<NamedValue>> ParseDotenv(ByteView bytes,
                                              std::string_view source) {
  const std::string_view t(reinterpret_cast<const char*>(bytes.data()),
                           bytes.size());
  std::vector<NamedValue> out;
  std::map<std::string, int, std::less<>> seen;
  size_t pos = 0;
  int line = 1;
  auto error = [&line, source](std::string why) {
    return Status::InvalidArgument(Where(source, line) + ": " + std::move(why));
  };
  auto skip_blanks = [&t, &pos] {
    while (pos < t.size() && ascii::IsBlank(t[pos])) ++pos;
  };
  auto next_line = [&t, &pos, &line] {
    while (pos < t.size() && t[pos] != '\n') ++pos;
    if (pos < t.size()) ++pos;
    ++line;
  };
  while (pos < t.size()) {
    skip_blanks();
    if (AtLineEnd(t, pos) || t[pos] == '#') {
      next_line();
      continue;
    }
    if (t.substr(pos, 6) == "export" && pos + 6 < t.size() &&
        ascii::IsBlank(t[pos + 6])) {
      pos += 6;
      skip_blanks();
    }
    const size_t name_start = pos;
    while (pos < t.size() && t[pos] != '=' && !ascii::IsBlank(t[pos]) &&
           !AtLineEnd(t, pos)) {
      ++pos;
    }
    const std::string name(t.substr(name_start, pos - name_start));
    if (Status s = CheckName(name); !s.ok()) return error(s.message());
    skip_blanks();
    if (pos >= t.size() || t[pos] != '=') {
      return error("expected NAME=VALUE");
    }
    ++pos;
    skip_blanks();
    const int value_line = line;
    const std::string where = Where(source, line);
    ENVELOPE_ASSIGN_OR_RETURN(ValueScan scan,
                              ScanValue(t, pos, where, nullptr));
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes value,
                              crypto::SecretBytes::Zeroed(scan.length));
    if (scan.length > 0) {
      ENVELOPE_RETURN_IF_ERROR(
          ScanValue(t, pos, where, reinterpret_cast<char*>(value.data()))
              .status());
    }
    if (Status s = CheckValue(name, value.view()); !s.ok()) {
      return error(s.message());
    }
    auto [it, inserted] = seen.emplace(name, value_line);
    if (!inserted) {
      // Refused rather than "last one wins": an import that silently drops
      // a value is worse than one that asks.
      return error(name + " is already assigned on line " +
                   std::to_string(it->second));
    }
    pos = scan.end;
    line += scan.newlines;
    skip_blanks();
    if (!AtLineEnd(t, pos) && t[pos] != '#') {
      return error("unexpected text after the value of " + name +
                   " (quote values that contain spaces and '#')");
    }
    out.push_back({name, std::move(value), value_line});
    next_line();
  }
  return out;
}

StatusOr<crypto::SecretBytes> FormatDotenv(
    const std::vector<NamedValue>& values, std::string_view comment) {
  // Two passes: the size, then the bytes, so that the text is made once,
  // in the secure heap.
  size_t size = comment.empty() ? 0 : comment.size() + 3;  // "# " ... "\n"
  for (const NamedValue& v : values) {
    size += v.name.size() + 4;  // = '' \n
    for (uint8_t b : v.value.view()) {
      size += NeedsDoubleQuotes(v.value.view()) && DoubleQuoteEscape(b) ? 2 : 1;
    }
  }
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes text,
                            crypto::SecretBytes::Zeroed(size));
  size_t n = 0;
  auto put = [&text, &n](char c) {
    text.data()[n++] = static_cast<uint8_t>(c);
  };
  auto put_all = [&put](std::string_view s) {
    for (char c : s) put(c);
  };
  if (!comment.empty()) {
    put_all("# ");
    put_all(comment);
    put('\n');
  }
  for (const NamedValue& v : values) {
    const bool dq = NeedsDoubleQuotes(v.value.view());
    put_all(v.name);
    put('=');
    put(dq ? '"' : '\'');
    for (uint8_t b : v.value.view()) {
      const char e = dq ? DoubleQuoteEscape(b) : 0;
      if (e != 0) {
        put('\\');
        put(e);
      } else {
        put(static_cast<char>(b));
      }
    }
    put(dq ? '"' : '\'');
    put('\n');
  }
  if (n != size) return Status::Internal("BUG: dotenv size mismatch");
  return text;
}

}  // namespace envelope::secrets
