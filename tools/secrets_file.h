// SecretsFile: an application's encrypted dotenv file, format v1
// (docs/SECRETS.md). Parsing and serialising only; no key service and no
// disk. tools/secrets_file_io.h reads and rewrites it on disk;
// tools/secrets_store.h makes the key service calls.
//
//   # envelope-secrets v1 app=billing key=arn:aws:kms:local:000000000000:key/…
//   # database
//   DB_PASSWORD=enc:v1:RUsB…
//
// Line 1 is the header. Every other line is kept as a Line: an entry
// (NAME=enc:v1:<base64 KMS ciphertext blob>), verbatim text (a comment or a
// blank line), or a damaged line. Serialize() writes every line it did not
// change byte for byte, so changing one value changes one line of a git
// diff, and a damaged line survives every rewrite untouched.
//
// Each blob is a KMS Encrypt of the value record (kValueRecordVersion
// followed by the value's bytes) under the encryption context of
// ValueContext(app, name): a blob moved to another variable or another
// application's file fails to decrypt.
//
// Thread safety: a value type; no synchronisation.
#ifndef ENVELOPE_TOOLS_SECRETS_FILE_H_
#define ENVELOPE_TOOLS_SECRETS_FILE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::secrets {

// --- Format constants (docs/SECRETS.md). ---

inline constexpr std::string_view kHeaderMagic = "# envelope-secrets";
inline constexpr std::string_view kFormatVersion = "v1";
// Every entry's value starts with this; the "v1" is the value encoding
// (base64 KMS blob of a v1 value record), versioned apart from the file.
inline constexpr std::string_view kValuePrefix = "enc:v1:";
// The first plaintext byte KMS encrypts. It lets an empty value be stored
// (KMS Encrypt refuses empty plaintext) and leaves room for another record
// layout later.
inline constexpr uint8_t kValueRecordVersion = 0x01;

// Encryption context of a value: these three pairs, nothing else.
inline constexpr char kContextFormatKey[] = "envelope:secrets";
inline constexpr char kContextFormatValue[] = "v1";
inline constexpr char kContextAppKey[] = "app";
inline constexpr char kContextNameKey[] = "name";

// KMS Encrypt takes at most 4096 bytes of plaintext (AWS and envelope-keyd
// alike); the record version byte takes one.
inline constexpr size_t kMaxKmsPlaintextInBytes = 4096;
inline constexpr size_t kMaxValueSizeInBytes = kMaxKmsPlaintextInBytes - 1;
// Sum over all variables of len(NAME) + len(value) + 2 (the '=' and the
// NUL of the environment string). Lambda allows 4 KiB; ours is more
// generous but still far below Linux's limits for one execve (ARG_MAX, a
// quarter of the stack limit: 2 MiB by default).
inline constexpr size_t kMaxTotalSizeInBytes = 64 * 1024;
// A secrets file larger than this is not a secrets file: base64 blobs of
// kMaxTotalSizeInBytes of values plus generous comments fit well inside.
inline constexpr size_t kMaxFileSizeInBytes = 1 << 20;
inline constexpr size_t kMaxNameLength = 255;
inline constexpr size_t kMaxAppNameLength = 64;
// KMS Decrypt refuses larger blobs (docs/KEYSERVICE.md).
inline constexpr size_t kMaxBlobSizeInBytes = 6144;

// --- Names. ---

// [A-Za-z_][A-Za-z0-9_]*, at most kMaxNameLength: what a POSIX shell
// accepts as a variable name, so every variable can reach every program.
bool IsValidName(std::string_view name);
// [A-Za-z0-9][A-Za-z0-9._-]*, at most kMaxAppNameLength: safe in the
// header line, in a file name and in an audit record.
bool IsValidAppName(std::string_view app);
// Names that change how a program is loaded or started rather than what it
// is told: the dynamic loader's and glibc's (LD_*, GLIBC_TUNABLES, MALLOC_*
// and glibc's other "unsecure" variables, which it drops for setuid
// programs), shell start-up hooks (BASH_ENV, ENV, BASH_FUNC_*, SHELLOPTS,
// PS4, IFS, ...), interpreter hooks (PYTHONPATH, PERL5OPT, NODE_OPTIONS,
// JAVA_TOOL_OPTIONS, ...) and PATH. A secret never needs one, and one
// planted in a secrets file would run code in the program that receives
// every secret. The list and the reasons: docs/SECRETS.md, "Refused names".
bool IsProgramControlName(std::string_view name);
// InvalidArgument naming what is wrong, or OK: IsValidName and not
// IsProgramControlName.
Status CheckName(std::string_view name);
Status CheckAppName(std::string_view app);

// The encryption context that binds a value to (app, name).
std::map<std::string, std::string> ValueContext(std::string_view app,
                                                std::string_view name);

// --- Blobs. ---

// The size of the value a blob holds, or an upper bound of it, without a
// Decrypt.
using ValueSizeOfBlobFn = std::function<size_t(ByteView blob)>;
// The bound for any service's blob: its size (a KMS ciphertext is never
// shorter than the record it seals). The layout of a blob is the key
// service's business, so this file does not read it; SecretsStore knows
// exact sizes where the service's blobs tell.
inline size_t ValueSizeBoundOfBlob(ByteView blob) { return blob.size(); }

// The value record KMS encrypts: kValueRecordVersion || value.
// REQUIRES: value.size() <= kMaxValueSizeInBytes (checked).
StatusOr<crypto::SecretBytes> MakeValueRecord(ByteView value);
// The value inside a decrypted record; Corruption for an unknown record
// version.
StatusOr<crypto::SecretBytes> OpenValueRecord(ByteView record);

// --- Values in memory. ---

// A variable with its plaintext value. `line` is where it came from (a
// secrets file or a plaintext dotenv), 0 if nowhere.
struct NamedValue {
  std::string name;
  crypto::SecretBytes value;
  int line = 0;
};

// The environment size (len(NAME) + len(value) + 2 summed) of `values`.
size_t EnvironmentSize(const std::vector<NamedValue>& values);
// InvalidArgument, naming the variable, for a value over
// kMaxValueSizeInBytes or one that contains a NUL (an environment string
// ends at its first NUL).
Status CheckValue(std::string_view name, ByteView value);
// InvalidArgument for an environment size over kMaxTotalSizeInBytes.
Status CheckEnvironmentSize(size_t size);

// --- The file. ---

struct Line {
  enum class Kind {
    kVerbatim,  // a comment or a blank line
    kEntry,     // NAME=enc:v1:BLOB
    kDamaged,   // anything else; kept verbatim, reported with `reason`
  };
  Kind kind = Kind::kVerbatim;
  // The line as read, without its '\n'. Empty for an entry made by Set()
  // until serialised.
  std::string text;
  // kEntry: the variable. kDamaged: the variable if the line begins with
  // a valid NAME=, else "".
  std::string name;
  Bytes blob;          // kEntry only
  std::string reason;  // kDamaged only
};

// A damaged line, with its 1-based line number in the file.
struct Damage {
  int line;
  std::string name;
  std::string reason;
};

class SecretsFile {
 public:
  // A new file with no variables.
  // REQUIRES: CheckAppName(app) and CheckKey(key) are OK (returned
  // otherwise).
  static StatusOr<SecretsFile> New(std::string_view app, std::string_view key);

  // Parses a whole file. Fails (Corruption, "SOURCE:N: reason") only when
  // the file as a whole cannot be used: no or a bad header on line 1, an
  // unsupported format version, or a file over kMaxFileSizeInBytes. A bad
  // line anywhere else becomes a kDamaged line. `source` names the file in
  // messages; "" gives "line N: reason".
  static StatusOr<SecretsFile> Parse(std::string_view text,
                                     std::string_view source = "");

  // The file text: the header, then every line followed by '\n' (a
  // missing final newline is added).
  std::string Serialize() const;

  const std::string& app() const { return app_; }
  // The KMS key (as recorded: normally the key ARN) values are encrypted
  // under.
  const std::string& key() const { return key_; }

  // The lines after the header; line i here is line i + 2 of the file.
  const std::vector<Line>& lines() const { return lines_; }
  static int LineNumber(size_t index) { return static_cast<int>(index) + 2; }

  // The first entry for `name`, or nullptr. *line_number gets its line.
  const Line* Find(std::string_view name, int* line_number = nullptr) const;
  // Every damaged line, in file order.
  std::vector<Damage> Damaged() const;
  // The first damaged line that names `name`, if any.
  std::optional<Damage> DamageOf(std::string_view name) const;
  // Number of entries.
  size_t EntryCount() const;

  // Makes `name` hold `blob`: the first line for `name` (an entry or a
  // damaged line that names it) is replaced in place, later lines for the
  // same name are removed, and a name not present is appended. Other lines
  // are untouched. REQUIRES: CheckName(name).ok() (a refused name would be
  // written, and read back as a damaged line).
  void Set(std::string_view name, Bytes blob);
  // Removes every line for `name` (entries and damaged lines that name it).
  // Returns how many were removed.
  int Remove(std::string_view name);

  // The environment size of the entries, each value counted at
  // value_size(blob), leaving out the names in `except` (those about to be
  // replaced). Damaged lines are not counted.
  size_t EnvironmentSizeOfEntries(const std::set<std::string, std::less<>>& except = {},
                                  const ValueSizeOfBlobFn& value_size = ValueSizeBoundOfBlob) const;

 private:
  SecretsFile() = default;

  std::string app_;
  std::string key_;
  // The header line as read, rewritten only by New().
  std::string header_text_;
  std::vector<Line> lines_;
};

// Where a message points: "SOURCE:LINE", or "line LINE" without a source.
std::string Where(std::string_view source, int line);

// InvalidArgument unless `key` can be recorded in the header: non-empty,
// at most 2048 bytes, printable ASCII without spaces.
Status CheckKey(std::string_view key);

// The entry line for (name, blob): NAME=enc:v1:<base64 blob>.
std::string EntryLine(std::string_view name, ByteView blob);

}  // namespace envelope::secrets

#endif  // ENVELOPE_TOOLS_SECRETS_FILE_H_
