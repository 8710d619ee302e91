#include "tools/secrets_store.h"

#include <utility>

#include "tools/dotenv.h"
#include "tools/secrets_file_io.h"

namespace envelope::secrets {

namespace {

Status DamageStatus(const std::string& path, const std::vector<Damage>& damaged) {
  const Damage& d = damaged.front();
  std::string msg = Where(path, d.line) + ": " + d.reason;
  if (damaged.size() > 1) {
    msg += " (and " + std::to_string(damaged.size() - 1) + " more damaged line" +
           (damaged.size() > 2 ? "s" : "") + "; 'secrets list' shows them)";
  }
  return Status::Corruption(msg);
}

}  // namespace

SecretsStore::SecretsStore(kms::KeyService& keys, StoreOptions options)
    : keys_(keys), options_(std::move(options)) {}

std::optional<size_t> SecretsStore::ValueSizeOf(ByteView blob) const {
  auto label = keys_.VersionOf(blob);
  // The sealed record is the value plus its version byte.
  if (!label || label->plaintext_size < 1) return std::nullopt;
  return label->plaintext_size - 1;
}

size_t SecretsStore::EnvironmentSizeOf(const SecretsFile& file,
                                       const std::set<std::string, std::less<>>& except) const {
  return file.EnvironmentSizeOfEntries(except, [this](ByteView blob) {
    return ValueSizeOf(blob).value_or(ValueSizeBoundOfBlob(blob));
  });
}

// --- Keys. ---

void SecretsStore::WarnIfForeign(const std::string& key, const kms::KeyInfo& info) {
  if (info.foreign_creator.empty() || !warned_.insert(key).second) return;
  if (options_.on_foreign_key) options_.on_foreign_key({key, info.arn, info.foreign_creator});
}

// The key ARN a new file records: an ARN names one key for good, where an
// alias could later be pointed at a key the values were never under.
StatusOr<std::string> SecretsStore::KeyArn(const std::string& key) {
  ENVELOPE_ASSIGN_OR_RETURN(kms::KeyInfo info, keys_.DescribeKey(key));
  if (info.arn.empty()) return Status::Internal("DescribeKey returned no Arn");
  WarnIfForeign(key, info);
  return info.arn;
}

// The checks every command makes on an existing file: it belongs to `app`,
// and if a key was given, the file's key is that key (so that whoever can
// write the file cannot quietly substitute a key of their own).
Status SecretsStore::CheckFile(const SecretsFile& file, const std::string& app) {
  if (file.app() != app) {
    return Status::FailedPrecondition(options_.path + " holds the secrets of '" + file.app() +
                                      "', not '" + app + "'");
  }
  if (options_.key.empty()) {
    // Unpinned: the file's own key is used. Say so if it is someone
    // else's; a caller without kms:DescribeKey just gets no warning.
    auto info = keys_.DescribeKey(file.key());
    if (info.ok()) WarnIfForeign(file.key(), *info);
    return Status::Ok();
  }
  if (options_.key == file.key()) {
    (void)KeyArn(options_.key);  // for the warning only
    return Status::Ok();
  }
  ENVELOPE_ASSIGN_OR_RETURN(std::string given, KeyArn(options_.key));
  if (given == file.key()) return Status::Ok();
  ENVELOPE_ASSIGN_OR_RETURN(std::string recorded, KeyArn(file.key()));
  if (given == recorded) return Status::Ok();
  return Status::FailedPrecondition(options_.path + " is encrypted under " + file.key() +
                                    ", not " + given);
}

// The file to add values to: the existing one (checked), or a new one
// under the given key.
Status SecretsStore::OpenOrCreate(const std::string& app, std::optional<SecretsFile>& file) {
  if (file) return CheckFile(*file, app);
  if (options_.key.empty()) {
    return Status::NotFound(options_.path + " does not exist; give --key KEY to create it");
  }
  ENVELOPE_RETURN_IF_ERROR(CheckAppName(app));
  ENVELOPE_ASSIGN_OR_RETURN(std::string arn, KeyArn(options_.key));
  ENVELOPE_ASSIGN_OR_RETURN(file, SecretsFile::New(app, arn));
  return Status::Ok();
}

Status SecretsStore::RequireExisting(const std::string& app,
                                     const std::optional<SecretsFile>& file) {
  if (!file) return Status::NotFound(options_.path + " does not exist");
  return CheckFile(*file, app);
}

StatusOr<SecretsFile> SecretsStore::LoadChecked(const std::string& app) {
  ENVELOPE_ASSIGN_OR_RETURN(SecretsFile file, LoadSecretsFile(options_.path));
  ENVELOPE_RETURN_IF_ERROR(CheckFile(file, app));
  return file;
}

// --- Values through the key service. ---

StatusOr<Bytes> SecretsStore::EncryptValue(const SecretsFile& file, const std::string& name,
                                           ByteView value) {
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes record, MakeValueRecord(value));
  auto blob = keys_.Encrypt(file.key(), record.view(), ValueContext(file.app(), name));
  if (!blob.ok()) {
    return blob.status().WithContext("cannot encrypt " + name + " under " + file.key());
  }
  return blob;
}

StatusOr<crypto::SecretBytes> SecretsStore::DecryptLine(const SecretsFile& file, const Line& line,
                                                        int line_number) {
  // The key id pins the file's key: a blob under any other key is refused
  // (IncorrectKeyException) even if its context matches.
  auto record = keys_.Decrypt(line.blob, ValueContext(file.app(), line.name), file.key());
  if (!record.ok()) {
    std::string where = Where(options_.path, line_number) + ": cannot decrypt " + line.name;
    if (record.status().code() == StatusCode::kCorruption) {
      where +=
          " (a value moved here from another variable, application or key does not decrypt, "
          "nor does a damaged one)";
    }
    return record.status().WithContext(where);
  }
  auto value = OpenValueRecord(record->view());
  if (!value.ok()) {
    return value.status().WithContext(Where(options_.path, line_number) + ": " + line.name);
  }
  return value;
}

// Refuses a file with a damaged line: a program started with some of its
// variables missing is worse than one not started.
StatusOr<std::vector<NamedValue>> SecretsStore::DecryptAllOf(const SecretsFile& file) {
  const std::vector<Damage> damaged = file.Damaged();
  if (!damaged.empty()) return DamageStatus(options_.path, damaged);
  std::vector<NamedValue> values;
  const std::vector<Line>& lines = file.lines();
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].kind != Line::Kind::kEntry) continue;
    const int number = SecretsFile::LineNumber(i);
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes value, DecryptLine(file, lines[i], number));
    values.push_back({lines[i].name, std::move(value), number});
  }
  ENVELOPE_RETURN_IF_ERROR(CheckEnvironmentSize(EnvironmentSize(values)));
  return values;
}

// --- Commands. ---

StatusOr<SetResult> SecretsStore::Set(const std::string& app, const std::string& name,
                                      ByteView value) {
  ENVELOPE_RETURN_IF_ERROR(CheckAppName(app));
  ENVELOPE_RETURN_IF_ERROR(CheckName(name));
  ENVELOPE_RETURN_IF_ERROR(CheckValue(name, value));
  SetResult result;
  ENVELOPE_RETURN_IF_ERROR(
      UpdateSecretsFile(options_.path, [&](std::optional<SecretsFile>& file, bool*) -> Status {
        ENVELOPE_RETURN_IF_ERROR(OpenOrCreate(app, file));
        ENVELOPE_RETURN_IF_ERROR(CheckEnvironmentSize(EnvironmentSizeOf(*file, {name}) +
                                                      name.size() + value.size() + 2));
        ENVELOPE_ASSIGN_OR_RETURN(Bytes blob, EncryptValue(*file, name, value));
        result.version = keys_.VersionOf(blob);
        file->Set(name, std::move(blob));
        file->Find(name, &result.line);
        return Status::Ok();
      }));
  return result;
}

StatusOr<crypto::SecretBytes> SecretsStore::Get(const std::string& app, const std::string& name) {
  ENVELOPE_ASSIGN_OR_RETURN(SecretsFile file, LoadChecked(app));
  // Other names' damage does not matter here; this name's does.
  if (auto d = file.DamageOf(name)) {
    return Status::Corruption(Where(options_.path, d->line) + ": " + d->reason);
  }
  int line = 0;
  const Line* entry = file.Find(name, &line);
  if (entry == nullptr) return Status::NotFound(name + " is not set in " + options_.path);
  return DecryptLine(file, *entry, line);
}

StatusOr<Listing> SecretsStore::List(const std::string& app) {
  ENVELOPE_ASSIGN_OR_RETURN(SecretsFile file, LoadChecked(app));
  Listing listing;
  listing.app = file.app();
  listing.key = file.key();
  const std::vector<Line>& lines = file.lines();
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].kind != Line::Kind::kEntry) continue;
    // Where the blob says its version, no Decrypt is needed to know it.
    listing.entries.push_back({lines[i].name, SecretsFile::LineNumber(i),
                               keys_.VersionOf(lines[i].blob), ValueSizeOf(lines[i].blob)});
  }
  listing.damaged = file.Damaged();
  return listing;
}

Status SecretsStore::Remove(const std::string& app, const std::string& name) {
  return UpdateSecretsFile(options_.path, [&](std::optional<SecretsFile>& file, bool*) -> Status {
    ENVELOPE_RETURN_IF_ERROR(RequireExisting(app, file));
    if (file->Remove(name) == 0) return Status::NotFound(name + " is not set in " + options_.path);
    return Status::Ok();
  });
}

StatusOr<size_t> SecretsStore::Import(const std::string& app, ByteView text,
                                      const std::string& source) {
  ENVELOPE_RETURN_IF_ERROR(CheckAppName(app));
  ENVELOPE_ASSIGN_OR_RETURN(std::vector<NamedValue> values, ParseDotenv(text, source));
  std::set<std::string, std::less<>> names;
  for (const NamedValue& v : values) names.insert(v.name);
  ENVELOPE_RETURN_IF_ERROR(
      UpdateSecretsFile(options_.path, [&](std::optional<SecretsFile>& file, bool*) -> Status {
        ENVELOPE_RETURN_IF_ERROR(OpenOrCreate(app, file));
        ENVELOPE_RETURN_IF_ERROR(CheckEnvironmentSize(EnvironmentSizeOf(*file, names) +
                                                      EnvironmentSize(values)));
        // All encrypted before any is set: a failure leaves the file as it
        // was.
        std::vector<Bytes> blobs;
        for (const NamedValue& v : values) {
          ENVELOPE_ASSIGN_OR_RETURN(Bytes blob, EncryptValue(*file, v.name, v.value.view()));
          blobs.push_back(std::move(blob));
        }
        for (size_t i = 0; i < values.size(); ++i) file->Set(values[i].name, std::move(blobs[i]));
        return Status::Ok();
      }));
  return values.size();
}

StatusOr<std::vector<NamedValue>> SecretsStore::DecryptAll(const std::string& app) {
  ENVELOPE_ASSIGN_OR_RETURN(SecretsFile file, LoadChecked(app));
  return DecryptAllOf(file);
}

StatusOr<crypto::SecretBytes> SecretsStore::Export(const std::string& app) {
  ENVELOPE_ASSIGN_OR_RETURN(SecretsFile file, LoadChecked(app));
  ENVELOPE_ASSIGN_OR_RETURN(std::vector<NamedValue> values, DecryptAllOf(file));
  return FormatDotenv(values,
                      "plaintext secrets of " + file.app() + ": keep out of version control");
}

StatusOr<RotateResult> SecretsStore::Rotate(const std::string& app) {
  RotateResult result;
  ENVELOPE_RETURN_IF_ERROR(UpdateSecretsFile(
      options_.path, [&](std::optional<SecretsFile>& file, bool* changed) -> Status {
        result = RotateResult();
        ENVELOPE_RETURN_IF_ERROR(RequireExisting(app, file));
        const std::vector<Damage> damaged = file->Damaged();
        if (!damaged.empty()) return DamageStatus(options_.path, damaged);
        ENVELOPE_ASSIGN_OR_RETURN(kms::KeyInfo key, keys_.DescribeKey(file->key()));
        ENVELOPE_ASSIGN_OR_RETURN(kms::CurrentVersion current,
                                  keys_.DescribeCurrentVersion(file->key()));
        result.version = current.number;
        // Only a version number can be compared with what a blob says; a
        // date (the standard API's answer) cannot.
        result.versions_known = current.number.has_value();
        std::vector<std::pair<std::string, Bytes>> updates;
        const std::vector<Line>& lines = file->lines();
        for (size_t i = 0; i < lines.size(); ++i) {
          const Line& l = lines[i];
          if (l.kind != Line::Kind::kEntry) continue;
          const std::optional<kms::BlobVersion> under = keys_.VersionOf(l.blob);
          // Values already under the current version keep their line: a
          // rotation that rewrote them would only make a noisy diff.
          if (under && current.number && under->key_id == key.key_id &&
              under->version == *current.number) {
            ++result.already_current;
            continue;
          }
          const kms::EncryptionContextMap context = ValueContext(file->app(), l.name);
          auto blob = keys_.ReEncrypt(l.blob, file->key(), context, file->key(), context);
          if (!blob.ok()) {
            return blob.status().WithContext(Where(options_.path, SecretsFile::LineNumber(i)) +
                                             ": cannot re-encrypt " + l.name);
          }
          if (blob->empty()) return Status::Internal("ReEncrypt returned no CiphertextBlob");
          ++result.from[under ? "version " + std::to_string(under->version)
                              : "an unknown version"];
          ++result.rotated;
          updates.emplace_back(l.name, std::move(*blob));
        }
        // Every value re-encrypted before the first is set: a failure above
        // leaves the file as it was.
        for (auto& [name, blob] : updates) file->Set(name, std::move(blob));
        *changed = !updates.empty();
        return Status::Ok();
      }));
  return result;
}

}  // namespace envelope::secrets
