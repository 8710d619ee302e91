// SecretsStore: what `envelopectl secrets ...` does (docs/SECRETS.md), as a
// library over the key-service seam: one application's secrets file
// (tools/secrets_file.h) on disk (tools/secrets_file_io.h), each value
// encrypted by a kms::KeyService under the file's key with the encryption
// context ValueContext(app, name). The CLI (tools/envelopectl_secrets.cc)
// parses arguments, reads plaintext from the user and prints what these
// functions return; unit tests drive them with kms::FakeKeyService.
//
// Keys. A new file records the key's ARN (KeyService::DescribeKey), never
// an alias that could later be pointed elsewhere. Every unwrap is pinned to
// the file's key. On an existing file, StoreOptions::key is a pin: the
// command refuses unless the file's key is that key. Every key a command
// uses is described, and a key another principal made
// (KeyInfo::foreign_creator) is reported to StoreOptions::on_foreign_key
// once per key; the command still runs (sharing a key can be deliberate).
//
// Versions. Where the service's blobs say which key version sealed them
// (KeyService::VersionOf: envelope-keyd), List shows it and Rotate leaves
// values already under the current version alone. Where they are opaque
// (AWS KMS, or any service spoken to with the standard API only), List
// shows none and Rotate re-encrypts every value: it cannot tell which are
// current (RotateResult::versions_known).
//
// Plaintext stays in crypto::SecretBytes; no plaintext is written to a
// file. Errors are Status values whose messages name the file (and line)
// as StoreOptions::path gives it; key service errors keep their AWS type.
//
// Thread safety: not thread-safe (one command at a time). Separate stores,
// in one process or many, may update the same file concurrently: the
// updates are serialised by the file's lock.
#ifndef ENVELOPE_TOOLS_SECRETS_STORE_H_
#define ENVELOPE_TOOLS_SECRETS_STORE_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"
#include "kms/key_service.h"
#include "tools/secrets_file.h"

namespace envelope::secrets {

// A key that another principal than the caller (and not root) made: its
// creator can decrypt every value under it and can destroy it.
struct ForeignKeyWarning {
  std::string key;      // as the command named it: the pin or the file's key
  std::string arn;      // as the service names it
  std::string creator;  // KeyInfo::foreign_creator, e.g. "user:nobody"
};

struct StoreOptions {
  // The application's secrets file.
  std::string path;
  // The key a new file is made under; on an existing file, the key it must
  // be under (a key id, ARN or alias that resolves to it). "" = none: a
  // command that would create the file fails, and an existing file's own
  // key is used.
  std::string key;
  // Told about each foreign key once, before the command goes on. May be
  // empty.
  std::function<void(const ForeignKeyWarning&)> on_foreign_key;
};

// --- What the commands return. ---

struct SetResult {
  int line = 0;  // the line of the file NAME is on now
  // The key version that sealed the value, if the blob says.
  std::optional<kms::BlobVersion> version;
};

struct ListEntry {
  std::string name;
  int line = 0;
  std::optional<kms::BlobVersion> version;  // nullopt: an opaque blob
  std::optional<size_t> value_size;         // SecretsStore::ValueSizeOf
};

struct Listing {
  std::string app;
  std::string key;  // as the header records it
  std::vector<ListEntry> entries;  // in file order
  std::vector<Damage> damaged;     // in file order
};

struct RotateResult {
  size_t rotated = 0;          // values re-encrypted
  size_t already_current = 0;  // values left as they were
  // The key's current version number, if the service says (envelope-keyd).
  std::optional<uint32_t> version;
  // Whether values already under the current version could be told apart
  // (the service says the current version number and its blobs theirs).
  // False: every value was re-encrypted, whichever version it was under.
  bool versions_known = false;
  // Where the re-encrypted values came from: "version N" or "an unknown
  // version", with how many.
  std::map<std::string, size_t> from;
};

class SecretsStore {
 public:
  // REQUIRES: `keys` outlives the store.
  SecretsStore(kms::KeyService& keys, StoreOptions options);

  SecretsStore(const SecretsStore&) = delete;
  SecretsStore& operator=(const SecretsStore&) = delete;

  const StoreOptions& options() const { return options_; }

  // The exact size of the value in `blob` without a Decrypt, where the key
  // service's blobs say what they seal (KeyService::VersionOf); nullopt for
  // opaque blobs.
  std::optional<size_t> ValueSizeOf(ByteView blob) const;

  // Makes NAME hold `value`, creating the file (mode 0600) under
  // StoreOptions::key if there is none. Refuses an invalid or refused name
  // (CheckName), a value CheckValue refuses, and a total over
  // kMaxTotalSizeInBytes (the file is then unchanged).
  StatusOr<SetResult> Set(const std::string& app, const std::string& name, ByteView value);

  // The value of NAME. NotFound if it is not set; Corruption naming the
  // line if its line is damaged (other names' damage does not matter).
  StatusOr<crypto::SecretBytes> Get(const std::string& app, const std::string& name);

  // The names, lines and (where blobs say) key versions; decrypts nothing.
  StatusOr<Listing> List(const std::string& app);

  // Removes NAME's line (and damaged lines that name it). NotFound if none.
  Status Remove(const std::string& app, const std::string& name);

  // Encrypts every variable of the plaintext dotenv `text` (ParseDotenv;
  // `source` names it in messages) into the file, creating it if needed;
  // names already present are replaced. All values are encrypted before
  // the file is written: a bad line or a refused call changes nothing.
  // Returns how many variables were imported.
  StatusOr<size_t> Import(const std::string& app, ByteView text, const std::string& source);

  // Every value, in file order (for `exec`). Refuses a file with a damaged
  // line (naming the first), and a total over kMaxTotalSizeInBytes.
  StatusOr<std::vector<NamedValue>> DecryptAll(const std::string& app);

  // DecryptAll as a plaintext dotenv that Import reads back (FormatDotenv).
  StatusOr<crypto::SecretBytes> Export(const std::string& app);

  // ReEncrypts values to the key's current version (the plaintext never
  // leaves the key service) and rewrites the file atomically, only if a
  // value changed. With versions known, values already current keep their
  // line; otherwise every value is re-encrypted. Every ReEncrypt is done
  // before the file is written: a failure (a damaged line, an unavailable
  // service) leaves the file as it was.
  StatusOr<RotateResult> Rotate(const std::string& app);

 private:
  // REQUIRES for all below: `file` belongs to the command's file.
  void WarnIfForeign(const std::string& key, const kms::KeyInfo& info);
  StatusOr<std::string> KeyArn(const std::string& key);
  Status CheckFile(const SecretsFile& file, const std::string& app);
  Status OpenOrCreate(const std::string& app, std::optional<SecretsFile>& file);
  Status RequireExisting(const std::string& app, const std::optional<SecretsFile>& file);
  StatusOr<SecretsFile> LoadChecked(const std::string& app);
  StatusOr<Bytes> EncryptValue(const SecretsFile& file, const std::string& name, ByteView value);
  StatusOr<crypto::SecretBytes> DecryptLine(const SecretsFile& file, const Line& line,
                                            int line_number);
  StatusOr<std::vector<NamedValue>> DecryptAllOf(const SecretsFile& file);
  // The environment size of the file's entries but `except`: exact where
  // ValueSizeOf knows, else bounded by the blob's size.
  size_t EnvironmentSizeOf(const SecretsFile& file,
                           const std::set<std::string, std::less<>>& except) const;

  kms::KeyService& keys_;
  const StoreOptions options_;
  std::set<std::string> warned_;  // keys on_foreign_key was told about
};

}  // namespace envelope::secrets

#endif  // ENVELOPE_TOOLS_SECRETS_STORE_H_
