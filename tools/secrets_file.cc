#include "tools/secrets_file.h"

#include <cstring>
#include <utility>

#include "core/base/ascii.h"
#include "core/base/base64.h"

namespace envelope::secrets {

namespace {

bool IsAsciiAlpha(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z');
}

std::string_view StripCarriageReturn(std::string_view s) {
  // A file that went through a Windows checkout (git autocrlf) still
  // parses; the '\r' stays in Line::text, so the line is written back as
  // it was.
  if (!s.empty() && s.back() == '\r') s.remove_suffix(1);
  return s;
}

std::vector<std::string_view> SplitBlanks(std::string_view s) {
  std::vector<std::string_view> out;
  size_t i = 0;
  while (i < s.size()) {
    while (i < s.size() && ascii::IsBlank(s[i])) ++i;
    size_t start = i;
    while (i < s.size() && !ascii::IsBlank(s[i])) ++i;
    if (i > start) out.push_back(s.substr(start, i - start));
  }
  return out;
}

std::string Quoted(std::string_view s) {
  std::string out = "'";
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    out += (u < 0x20 || u == 0x7f) ? '?' : c;
  }
  return out + "'";
}

struct Header {
  std::string app;
  std::string key;
};

StatusOr<Header> ParseHeader(std::string_view raw, std::string_view source) {
  const std::string_view line = StripCarriageReturn(raw);
  auto bad = [source](std::string why) {
    return Status::Corruption(Where(source, 1) + ": " + why);
  };
  if (line.substr(0, kHeaderMagic.size()) != kHeaderMagic ||
      (line.size() > kHeaderMagic.size() &&
       !ascii::IsBlank(line[kHeaderMagic.size()]))) {
    return bad("not an envelope secrets file (the first line must be '" +
               std::string(kHeaderMagic) + " " + std::string(kFormatVersion) +
               " app=APP key=KEY')");
  }
  const std::vector<std::string_view> tokens =
      SplitBlanks(line.substr(kHeaderMagic.size()));
  if (tokens.empty()) return bad("the header has no format version");
  if (tokens[0] != kFormatVersion) {
    // Refuse rather than guess: a newer format may bind values differently.
    return bad("unsupported format version " + Quoted(tokens[0]) +
               " (this envelopectl reads " + std::string(kFormatVersion) + ")");
  }
  Header h;
  bool have_app = false, have_key = false;
  for (size_t i = 1; i < tokens.size(); ++i) {
    const std::string_view t = tokens[i];
    const size_t eq = t.find('=');
    const std::string_view field = t.substr(0, eq);
    const std::string_view value =
        eq == std::string_view::npos ? std::string_view() : t.substr(eq + 1);
    if (eq == std::string_view::npos) {
      return bad("header field " + Quoted(t) + " is not NAME=VALUE");
    }
    if (field == "app") {
      if (have_app) return bad("header names app twice");
      if (Status s = CheckAppName(value); !s.ok()) return bad(s.message());
      h.app = std::string(value);
      have_app = true;
    } else if (field == "key") {
      if (have_key) return bad("header names key twice");
      if (Status s = CheckKey(value); !s.ok()) return bad(s.message());
      h.key = std::string(value);
      have_key = true;
    } else {
      // Unknown fields are rejected like unknown feature flags: a reader
      // that ignored one might mishandle the file.
      return bad("unknown header field " + Quoted(field));
    }
  }
  if (!have_app) return bad("the header has no app=");
  if (!have_key) return bad("the header has no key=");
  return h;
}

Line DamagedLine(std::string_view raw, std::string name, std::string reason) {
  Line l;
  l.kind = Line::Kind::kDamaged;
  l.text = std::string(raw);
  l.name = std::move(name);
  l.reason = std::move(reason);
  return l;
}

// Classifies one line after the header.
Line ParseLine(std::string_view raw) {
  const std::string_view s = StripCarriageReturn(raw);
  size_t first = 0;
  while (first < s.size() && ascii::IsBlank(s[first])) ++first;
  if (first == s.size() || s[first] == '#') {
    Line l;
    l.text = std::string(raw);
    return l;
  }
  const size_t eq = s.find('=');
  if (eq == std::string_view::npos) {
    return DamagedLine(raw, "", "not NAME=VALUE");
  }
  const std::string_view name = s.substr(0, eq);
  if (Status st = CheckName(name); !st.ok()) {
    // A refused name is still a name: `rm` can remove the line.
    return DamagedLine(raw, IsValidName(name) ? std::string(name) : "", st.message());
  }
  const std::string_view value = s.substr(eq + 1);
  const std::string n(name);
  if (value.substr(0, kValuePrefix.size()) != kValuePrefix) {
    return DamagedLine(
        raw, n,
        n + ": the value does not start with '" + std::string(kValuePrefix) +
            "' (plaintext goes in with 'secrets import' or 'set')");
  }
  Bytes blob;
  if (!Base64Decode(value.substr(kValuePrefix.size()), &blob)) {
    return DamagedLine(raw, n, n + ": the value is not valid base64");
  }
  if (blob.empty() || blob.size() > kMaxBlobSizeInBytes) {
    return DamagedLine(raw, n,
                       n + ": the ciphertext is " +
                           std::to_string(blob.size()) +
                           " bytes (expected 1 to " +
                           std::to_string(kMaxBlobSizeInBytes) + ")");
  }
  Line l;
  l.kind = Line::Kind::kEntry;
  l.text = std::string(raw);
  l.name = n;
  l.blob = std::move(blob);
  return l;
}

}  // namespace

bool IsValidName(std::string_view name) {
  if (name.empty() || name.size() > kMaxNameLength) return false;
  if (!IsAsciiAlpha(name[0]) && name[0] != '_') return false;
  for (char c : name) {
    if (!IsAsciiAlpha(c) && !ascii::IsDigit(c) && c != '_') return false;
  }
  return true;
}

bool IsValidAppName(std::string_view app) {
  if (app.empty() || app.size() > kMaxAppNameLength) return false;
  if (!IsAsciiAlpha(app[0]) && !ascii::IsDigit(app[0])) return false;
  for (char c : app) {
    if (!IsAsciiAlpha(c) && !ascii::IsDigit(c) && c != '.' && c != '_' &&
        c != '-') {
      return false;
    }
  }
  return true;
}

bool IsProgramControlName(std::string_view name) {
  // Prefixes: every LD_ variable is the dynamic loader's; MALLOC_ ones tune
  // (and trace to files) glibc's allocator; BASH_FUNC_ defines shell
  // functions (with characters a valid name cannot have, but refused anyway).
  static constexpr std::string_view kPrefixes[] = {"LD_", "MALLOC_", "BASH_FUNC_"};
  static constexpr std::string_view kNames[] = {
      // glibc's unsecure variables (sysdeps/generic/unsecvars.h) beyond LD_*
      // and MALLOC_*: module and locale search paths, resolver files.
      "GCONV_PATH", "GETCONF_DIR", "GLIBC_TUNABLES", "HOSTALIASES", "LOCALDOMAIN",
      "LOCPATH", "NIS_PATH", "NLSPATH", "RESOLV_HOST_CONF", "RES_OPTIONS", "TMPDIR",
      "TZDIR",
      // Where programs are found.
      "PATH",
      // Shells: files sourced at start-up, options, expansion of traces and
      // prompts, word splitting.
      "BASH_ENV", "ENV", "SHELLOPTS", "BASHOPTS", "PS4", "IFS", "PROMPT_COMMAND",
      "BASH_XTRACEFD", "CDPATH", "GLOBIGNORE", "EXECIGNORE",
      // Interpreters: module search paths, start-up code, options that load
      // modules.
      "PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONINSPECT", "PYTHONWARNINGS",
      "PYTHONBREAKPOINT", "PYTHONUSERBASE", "PYTHONPLATLIBDIR", "PYTHONEXECUTABLE",
      "PERL5OPT", "PERL5LIB", "PERLLIB", "PERL5DB", "RUBYOPT", "RUBYLIB", "NODE_OPTIONS",
      "NODE_PATH", "JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS", "JDK_JAVA_OPTIONS", "CLASSPATH",
  };
  for (std::string_view p : kPrefixes) {
    if (name.substr(0, p.size()) == p) return true;
  }
  for (std::string_view n : kNames) {
    if (name == n) return true;
  }
  return false;
}

Status CheckName(std::string_view name) {
  if (IsValidName(name)) {
    if (!IsProgramControlName(name)) return Status::Ok();
    return Status::InvalidArgument(
        "refused variable name " + Quoted(name) +
        ": it changes how a program is loaded or run, not what it is told "
        "(docs/SECRETS.md, \"Refused names\"); give it to the program "
        "outside the secrets");
  }
  if (name.size() > kMaxNameLength) {
    return Status::InvalidArgument("variable name longer than " +
                                   std::to_string(kMaxNameLength) +
                                   " characters");
  }
  return Status::InvalidArgument(
      "invalid variable name " + Quoted(name) +
      " (names are letters, digits and '_', not starting with a digit)");
}

Status CheckAppName(std::string_view app) {
  if (IsValidAppName(app)) return Status::Ok();
  return Status::InvalidArgument(
      "invalid application name " + Quoted(app) + " (1 to " +
      std::to_string(kMaxAppNameLength) +
      " letters, digits, '.', '_' and '-', starting with a letter or digit)");
}

Status CheckKey(std::string_view key) {
  if (key.empty() || key.size() > 2048) {
    return Status::InvalidArgument("a key id must have 1 to 2048 characters");
  }
  for (char c : key) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) {
      return Status::InvalidArgument("invalid key id " + Quoted(key));
    }
  }
  return Status::Ok();
}

std::map<std::string, std::string> ValueContext(std::string_view app,
                                                std::string_view name) {
  return {{kContextFormatKey, kContextFormatValue},
          {kContextAppKey, std::string(app)},
          {kContextNameKey, std::string(name)}};
}

StatusOr<crypto::SecretBytes> MakeValueRecord(ByteView value) {
  if (value.size() > kMaxValueSizeInBytes) {
    return Status::InvalidArgument(
        "value larger than " + std::to_string(kMaxValueSizeInBytes) + " bytes");
  }
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes record,
                            crypto::SecretBytes::Zeroed(value.size() + 1));
  record.data()[0] = kValueRecordVersion;
  if (!value.empty())
    std::memcpy(record.data() + 1, value.data(), value.size());
  return record;
}

StatusOr<crypto::SecretBytes> OpenValueRecord(ByteView record) {
  if (record.empty()) return Status::Corruption("empty value record");
  if (record[0] != kValueRecordVersion) {
    return Status::Corruption("unknown value record version " +
                              std::to_string(record[0]));
  }
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes value,
                            crypto::SecretBytes::Zeroed(record.size() - 1));
  if (!value.empty()) {
    std::memcpy(value.data(), record.data() + 1, value.size());
  }
  return value;
}

size_t EnvironmentSize(const std::vector<NamedValue>& values) {
  size_t total = 0;
  for (const NamedValue& v : values)
    total += v.name.size() + v.value.size() + 2;
  return total;
}

Status CheckValue(std::string_view name, ByteView value) {
  if (value.size() > kMaxValueSizeInBytes) {
    return Status::InvalidArgument(
        std::string(name) + ": the value is " + std::to_string(value.size()) +
        " bytes; the limit is " + std::to_string(kMaxValueSizeInBytes) +
        " (KMS encrypts at most 4096 bytes)");
  }
  for (uint8_t b : value) {
    if (b == 0) {
      return Status::InvalidArgument(
          std::string(name) +
          ": the value contains a NUL byte, which no environment variable "
          "can hold");
    }
  }
  return Status::Ok();
}

Status CheckEnvironmentSize(size_t size) {
  if (size <= kMaxTotalSizeInBytes) return Status::Ok();
  return Status::InvalidArgument(
      "the variables would take " + std::to_string(size) +
      " bytes of environment (NAME=value plus 2 bytes each); the limit is " +
      std::to_string(kMaxTotalSizeInBytes));
}

StatusOr<SecretsFile> SecretsFile::New(std::string_view app,
                                       std::string_view key) {
  ENVELOPE_RETURN_IF_ERROR(CheckAppName(app));
  ENVELOPE_RETURN_IF_ERROR(CheckKey(key));
  SecretsFile f;
  f.app_ = std::string(app);
  f.key_ = std::string(key);
  f.header_text_ = std::string(kHeaderMagic) + " " +
                   std::string(kFormatVersion) + " app=" + f.app_ +
                   " key=" + f.key_;
  return f;
}

StatusOr<SecretsFile> SecretsFile::Parse(std::string_view text,
                                         std::string_view source) {
  if (text.size() > kMaxFileSizeInBytes) {
    return Status::Corruption(
        (source.empty() ? std::string("the file") : std::string(source)) +
        " is larger than " + std::to_string(kMaxFileSizeInBytes) +
        " bytes: not a secrets file");
  }
  std::vector<std::string_view> raw_lines;
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string_view::npos) end = text.size();
    raw_lines.push_back(text.substr(start, end - start));
    start = end + 1;
  }
  if (raw_lines.empty()) {
    return Status::Corruption(Where(source, 1) + ": the file is empty");
  }

  ENVELOPE_ASSIGN_OR_RETURN(Header header, ParseHeader(raw_lines[0], source));
  SecretsFile f;
  f.app_ = std::move(header.app);
  f.key_ = std::move(header.key);
  f.header_text_ = std::string(raw_lines[0]);
  // Where each name was first seen, for duplicates.
  std::map<std::string, int, std::less<>> first_line;
  for (size_t i = 1; i < raw_lines.size(); ++i) {
    Line l = ParseLine(raw_lines[i]);
    const int number = static_cast<int>(i) + 1;
    if (!l.name.empty()) {
      auto [it, inserted] = first_line.emplace(l.name, number);
      if (!inserted && l.kind == Line::Kind::kEntry) {
        // Two values for one name: which one a program got would depend on
        // the reader. Neither is trusted until one is removed or set.
        l = DamagedLine(raw_lines[i], l.name,
                        l.name + " is already defined on line " +
                            std::to_string(it->second));
      }
    }
    f.lines_.push_back(std::move(l));
  }
  return f;
}

std::string SecretsFile::Serialize() const {
  std::string out = header_text_;
  out += '\n';
  for (const Line& l : lines_) {
    out += l.text;
    out += '\n';
  }
  return out;
}

const Line* SecretsFile::Find(std::string_view name, int* line_number) const {
  for (size_t i = 0; i < lines_.size(); ++i) {
    if (lines_[i].kind == Line::Kind::kEntry && lines_[i].name == name) {
      if (line_number != nullptr) *line_number = LineNumber(i);
      return &lines_[i];
    }
  }
  return nullptr;
}

std::vector<Damage> SecretsFile::Damaged() const {
  std::vector<Damage> out;
  for (size_t i = 0; i < lines_.size(); ++i) {
    if (lines_[i].kind == Line::Kind::kDamaged) {
      out.push_back({LineNumber(i), lines_[i].name, lines_[i].reason});
    }
  }
  return out;
}

std::optional<Damage> SecretsFile::DamageOf(std::string_view name) const {
  for (Damage& d : Damaged()) {
    if (d.name == name) return std::move(d);
  }
  return std::nullopt;
}

size_t SecretsFile::EntryCount() const {
  size_t n = 0;
  for (const Line& l : lines_) n += l.kind == Line::Kind::kEntry;
  return n;
}

void SecretsFile::Set(std::string_view name, Bytes blob) {
  Line entry;
  entry.kind = Line::Kind::kEntry;
  entry.name = std::string(name);
  entry.text = EntryLine(name, blob);
  entry.blob = std::move(blob);
  bool placed = false;
  std::vector<Line> kept;
  kept.reserve(lines_.size() + 1);
  for (Line& l : lines_) {
    const bool mine = l.kind != Line::Kind::kVerbatim && l.name == name;
    if (!mine) {
      kept.push_back(std::move(l));
    } else if (!placed) {
      kept.push_back(std::move(entry));
      placed = true;
    }
  }
  if (!placed) kept.push_back(std::move(entry));
  lines_ = std::move(kept);
}

int SecretsFile::Remove(std::string_view name) {
  int removed = 0;
  std::vector<Line> kept;
  for (Line& l : lines_) {
    if (l.kind != Line::Kind::kVerbatim && l.name == name) {
      ++removed;
    } else {
      kept.push_back(std::move(l));
    }
  }
  lines_ = std::move(kept);
  return removed;
}

size_t SecretsFile::EnvironmentSizeOfEntries(const std::set<std::string, std::less<>>& except,
                                             const ValueSizeOfBlobFn& value_size) const {
  size_t total = 0;
  for (const Line& l : lines_) {
    if (l.kind != Line::Kind::kEntry) continue;
    if (except.contains(l.name)) continue;
    total += l.name.size() + value_size(l.blob) + 2;
  }
  return total;
}

std::string Where(std::string_view source, int line) {
  if (source.empty()) return "line " + std::to_string(line);
  return std::string(source) + ":" + std::to_string(line);
}

std::string EntryLine(std::string_view name, ByteView blob) {
  std::string line(name);
  line += '=';
  line += kValuePrefix;
  line += Base64Encode(blob);
  return line;
}

}  // namespace envelope::secrets
