// envelopectl secrets ...: an application's environment secrets, encrypted
// value by value under a KMS key in a dotenv-like file (docs/SECRETS.md),
// and decrypted only into the environment (or a descriptor) of the program
// that `secrets exec` becomes.
//
// Plaintext handling: values are read from standard input or a no-echo
// prompt (never argv), held in crypto::SecretBytes, sent to the key service
// with KmsClient's typed helpers, and written only to standard output (get,
// export) or into the execve of `exec`. No plaintext is written to a file.
//
// Concurrency: commands that rewrite the file take an exclusive flock on it
// and write a new file beside it that is renamed over the old one, so
// readers (get, list, exec) need no lock and always see a whole file.
#include <fcntl.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/base/base64.h"
#include "core/base/fd_io.h"
#include "core/base/process_hygiene.h"
#include "core/crypto/secret_line.h"
#include "tools/dotenv.h"
#include "tools/envelopectl.h"
#include "tools/secrets_exec.h"
#include "tools/secrets_file.h"

extern char** environ;

namespace envelope::envelopectl {

namespace {

using secrets::NamedValue;
using secrets::SecretsFile;

// A plaintext dotenv given to import: the total limit, plus room for
// comments and quoting. One byte under a power of two, because the buffer
// is one byte larger and the secure heap rounds allocations up to a power
// of two.
constexpr size_t kMaxImportSizeInBytes = 4 * secrets::kMaxTotalSizeInBytes - 1;
// How often an update starts again after another writer created the file
// first or replaced it while we waited for the lock: each concurrent
// writer can cause one restart, so this bounds a livelock, not contention.
constexpr int kMaxUpdateAttempts = 100;

// Options of the `secrets` group, shared by its commands.
struct SecretsOptions {
  std::string file;
  std::string key;
};

// --- Files. ---

Status ErrnoStatus(const std::string& what, const std::string& path) {
  return Status::FromErrno(what + " " + path);
}

// Reads the whole of `fd` (at most kMaxFileSizeInBytes + 1 bytes, so that
// Parse reports an oversized file).
StatusOr<std::string> ReadFd(int fd, const std::string& path) {
  std::string text;
  char buf[16384];
  uint64_t offset = 0;
  while (text.size() <= secrets::kMaxFileSizeInBytes) {
    auto n =
        PreadFull(fd, {reinterpret_cast<uint8_t*>(buf), sizeof(buf)}, offset);
    if (!n.ok()) return n.status().WithContext("cannot read " + path);
    text.append(buf, *n);
    offset += *n;
    if (*n < sizeof(buf)) break;
  }
  return text;
}

// The file for a command that only reads. NotFound if it does not exist.
StatusOr<SecretsFile> LoadForReading(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) {
      return Status::NotFound(path + " does not exist");
    }
    return ErrnoStatus("cannot open", path);
  }
  ENVELOPE_ASSIGN_OR_RETURN(std::string text, ReadFd(fd.get(), path));
  return SecretsFile::Parse(text, path);
}

// An exclusive flock on the file that `path` names now, or nothing when
// the file does not exist.
struct LockedFile {
  UniqueFd fd;  // holds the lock; invalid if the file does not exist
  struct stat st {};
};

// flock locks an inode, and a writer replaces the inode: after locking,
// the path must still name the locked inode, else the lock is on a file
// that was just replaced and we start again.
StatusOr<LockedFile> LockForUpdate(const std::string& path) {
  for (int attempt = 0; attempt < kMaxUpdateAttempts; ++attempt) {
    LockedFile locked;
    locked.fd = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!locked.fd.valid()) {
      if (errno == ENOENT) return locked;
      return ErrnoStatus("cannot open", path);
    }
    while (::flock(locked.fd.get(), LOCK_EX) != 0) {
      if (errno != EINTR) return ErrnoStatus("cannot lock", path);
    }
    struct stat now {};
    if (::fstat(locked.fd.get(), &locked.st) != 0) {
      return ErrnoStatus("cannot stat", path);
    }
    if (::stat(path.c_str(), &now) == 0 && now.st_dev == locked.st.st_dev &&
        now.st_ino == locked.st.st_ino) {
      return locked;
    }
  }
  return Status::Unavailable(path + " keeps being replaced; try again");
}

std::string DirectoryOf(const std::string& path) {
  const size_t slash = path.rfind('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// Writes `text` to a new file beside `path` (same directory, so that the
// rename stays on one filesystem), fsyncs it and moves it into place: over
// the old file if `old` is given (keeping its mode and, where permitted,
// owner), else only if nothing is at `path` yet (AlreadyExists otherwise).
// New files are mode 0600. The directory is fsync'ed so that the rename
// survives a crash.
Status WriteAtomically(const std::string& path, const std::string& text,
                       const struct stat* old) {
  const std::string dir = DirectoryOf(path);
  const size_t slash = path.rfind('/');
  const std::string base =
      slash == std::string::npos ? path : path.substr(slash + 1);
  std::string tmp = dir + "/." + base + ".tmp-XXXXXX";
  UniqueFd fd(::mkostemp(tmp.data(), O_CLOEXEC));
  if (!fd.valid()) return ErrnoStatus("cannot create a file in", dir);
  bool renamed = false;
  struct Cleanup {
    const std::string& tmp;
    const bool& renamed;
    ~Cleanup() {
      if (!renamed) ::unlink(tmp.c_str());
    }
  } cleanup{tmp, renamed};

  ENVELOPE_RETURN_IF_ERROR(PwriteFull(fd.get(), AsBytes(text), 0)
                               .WithContext("cannot write " + tmp));
  const mode_t mode = old != nullptr ? (old->st_mode & 07777) : 0600;
  if (::fchmod(fd.get(), mode) != 0) return ErrnoStatus("cannot chmod", tmp);
  if (old != nullptr &&
      (old->st_uid != ::geteuid() || old->st_gid != ::getegid())) {
    // Root editing an application's file leaves it the application's.
    // Anyone else cannot give a file away; the rename still replaces it.
    if (::fchown(fd.get(), old->st_uid, old->st_gid) != 0 && errno != EPERM) {
      return ErrnoStatus("cannot chown", tmp);
    }
  }
  if (::fsync(fd.get()) != 0) return ErrnoStatus("cannot fsync", tmp);
  fd = UniqueFd();

  if (old != nullptr) {
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
      return ErrnoStatus("cannot rename a new version over", path);
    }
  } else if (::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(),
                         RENAME_NOREPLACE) != 0) {
    if (errno == EEXIST) return Status::AlreadyExists(path + " appeared");
    if (errno != EINVAL && errno != ENOSYS) {
      return ErrnoStatus("cannot create", path);
    }
    // A filesystem without RENAME_NOREPLACE: link(2) refuses to replace
    // too.
    if (::link(tmp.c_str(), path.c_str()) != 0) {
      if (errno == EEXIST) return Status::AlreadyExists(path + " appeared");
      return ErrnoStatus("cannot create", path);
    }
    ::unlink(tmp.c_str());
  }
  renamed = true;
  UniqueFd dir_fd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir_fd.valid() && ::fsync(dir_fd.get()) != 0 && errno != EINVAL &&
      errno != ENOSYS) {
    return ErrnoStatus("cannot fsync", dir);
  }
  return Status::Ok();
}

// --- Keys. ---

StatusOr<json> DescribeKey(Context& ctx, const std::string& key) {
  ENVELOPE_ASSIGN_OR_RETURN(json r, ctx.Kms("DescribeKey", {{"KeyId", key}}));
  auto it = r.find("KeyMetadata");
  if (it == r.end() || !it->is_object()) {
    return Status::Internal("DescribeKey returned no KeyMetadata");
  }
  return *it;
}

// Warns, once per key and command, when the key service says another
// principal (not the caller, not root) made `key` (DescribeKey's extension
// field Creator): a secrets file can be replaced by whoever can write it,
// and a key ARN can name anybody's key, so either may lead to a key whose
// creator can decrypt every value under it and can destroy it.
void WarnIfForeign(Context& ctx, const std::string& key, const json& metadata) {
  static std::set<std::string> warned;
  auto client = ctx.Client();
  if (!client.ok()) return;
  const std::string creator = kms::ForeignKeyCreator(metadata, (*client)->endpoint());
  if (creator.empty() || !warned.insert(key).second) return;
  std::fprintf(stderr,
               "envelopectl: warning: key %s (%s) was created by %s, not by you or root: they "
               "can decrypt every value under it and destroy it\n",
               Printable(key).c_str(), Printable(Field(metadata, "Arn")).c_str(),
               Printable(creator).c_str());
}

// The key ARN a new file records: an ARN names one key for good, where an
// alias could later be pointed at a key the values were never under.
StatusOr<std::string> KeyArn(Context& ctx, const std::string& key) {
  ENVELOPE_ASSIGN_OR_RETURN(json m, DescribeKey(ctx, key));
  std::string arn = Field(m, "Arn");
  if (arn.empty()) return Status::Internal("DescribeKey returned no Arn");
  WarnIfForeign(ctx, key, m);
  return arn;
}

// The checks every command makes on an existing file: it belongs to `app`,
// and if --key was given, the file's key is that key (so that whoever can
// write the file cannot quietly substitute a key of their own).
Status CheckFile(Context& ctx, const SecretsOptions& opts,
                 const SecretsFile& file, const std::string& app) {
  if (file.app() != app) {
    return Status::FailedPrecondition(opts.file + " holds the secrets of '" +
                                      file.app() + "', not '" + app + "'");
  }
  if (opts.key.empty()) {
    // Unpinned: the file's own key is used. Say so if it is someone
    // else's; a caller without kms:DescribeKey just gets no warning.
    auto m = DescribeKey(ctx, file.key());
    if (m.ok()) WarnIfForeign(ctx, file.key(), *m);
    return Status::Ok();
  }
  if (opts.key == file.key()) {
    (void)KeyArn(ctx, opts.key);  // for the warning only
    return Status::Ok();
  }
  ENVELOPE_ASSIGN_OR_RETURN(std::string given, KeyArn(ctx, opts.key));
  if (given == file.key()) return Status::Ok();
  ENVELOPE_ASSIGN_OR_RETURN(std::string recorded, KeyArn(ctx, file.key()));
  if (given == recorded) return Status::Ok();
  return Status::FailedPrecondition(opts.file + " is encrypted under " +
                                    file.key() + ", not " + given);
}

Status DamageStatus(const std::string& path,
                    const std::vector<secrets::Damage>& damaged) {
  const secrets::Damage& d = damaged.front();
  std::string msg = secrets::Where(path, d.line) + ": " + d.reason;
  if (damaged.size() > 1) {
    msg += " (and " + std::to_string(damaged.size() - 1) +
           " more damaged line" + (damaged.size() > 2 ? "s" : "") +
           "; 'secrets list' shows them)";
  }
  return Status::Corruption(msg);
}

// --- Values through the key service. ---

StatusOr<Bytes> EncryptValue(Context& ctx, const SecretsFile& file,
                             const std::string& name, ByteView value) {
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes record,
                            secrets::MakeValueRecord(value));
  ENVELOPE_ASSIGN_OR_RETURN(kms::KmsClient * client, ctx.Client());
  auto blob = client->Encrypt(file.key(), record.view(),
                              secrets::ValueContext(file.app(), name));
  if (!blob.ok()) {
    return blob.status().WithContext("cannot encrypt " + name + " under " +
                                     file.key());
  }
  return blob;
}

StatusOr<crypto::SecretBytes> DecryptLine(Context& ctx, const std::string& path,
                                          const SecretsFile& file,
                                          const secrets::Line& line,
                                          int line_number) {
  ENVELOPE_ASSIGN_OR_RETURN(kms::KmsClient * client, ctx.Client());
  // KeyId pins the file's key: a blob under any other key is refused
  // (IncorrectKeyException) even if its context matches.
  auto record = client->Decrypt(
      line.blob, secrets::ValueContext(file.app(), line.name), file.key());
  if (!record.ok()) {
    std::string where =
        secrets::Where(path, line_number) + ": cannot decrypt " + line.name;
    if (record.status().code() == StatusCode::kCorruption) {
      where +=
          " (a value moved here from another variable, application or "
          "key does not decrypt, nor does a damaged one)";
    }
    return record.status().WithContext(where);
  }
  auto value = secrets::OpenValueRecord(record->view());
  if (!value.ok()) {
    return value.status().WithContext(secrets::Where(path, line_number) + ": " +
                                      line.name);
  }
  return value;
}

// Every value of the file, in file order. Refuses a file with a damaged
// line: a program started with some of its variables missing is worse
// than one not started.
StatusOr<std::vector<NamedValue>> DecryptAll(Context& ctx,
                                             const std::string& path,
                                             const SecretsFile& file) {
  const std::vector<secrets::Damage> damaged = file.Damaged();
  if (!damaged.empty()) return DamageStatus(path, damaged);
  std::vector<NamedValue> values;
  const std::vector<secrets::Line>& lines = file.lines();
  for (size_t i = 0; i < lines.size(); ++i) {
    if (lines[i].kind != secrets::Line::Kind::kEntry) continue;
    const int number = SecretsFile::LineNumber(i);
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes value,
                              DecryptLine(ctx, path, file, lines[i], number));
    values.push_back({lines[i].name, std::move(value), number});
  }
  ENVELOPE_RETURN_IF_ERROR(
      secrets::CheckEnvironmentSize(secrets::EnvironmentSize(values)));
  return values;
}

// --- Updates. ---

// Runs `change` on the file under its lock and writes the result back
// atomically. `file` is nullopt when the file does not exist; `change` may
// create it (e.g. with NewFile) or fail. Returning without changing
// anything is allowed: `*changed` false skips the write.
using Change =
    std::function<Status(std::optional<SecretsFile>& file, bool* changed)>;

Status Update(const SecretsOptions& opts, const Change& change) {
  // A symlinked file is updated where it points: renaming over the link
  // would replace it with a regular file.
  std::string path = opts.file;
  struct stat link_st {};
  if (::lstat(path.c_str(), &link_st) == 0 && S_ISLNK(link_st.st_mode)) {
    std::unique_ptr<char, decltype(&std::free)> real(
        ::realpath(path.c_str(), nullptr), &std::free);
    if (!real) return ErrnoStatus("cannot resolve", path);
    path = real.get();
  }
  for (int attempt = 0; attempt < kMaxUpdateAttempts; ++attempt) {
    ENVELOPE_ASSIGN_OR_RETURN(LockedFile locked, LockForUpdate(path));
    std::optional<SecretsFile> file;
    if (locked.fd.valid()) {
      ENVELOPE_ASSIGN_OR_RETURN(std::string text,
                                ReadFd(locked.fd.get(), opts.file));
      // A file whose header is damaged is not rewritten: we could not say
      // what it holds, so we could not keep it.
      ENVELOPE_ASSIGN_OR_RETURN(file, SecretsFile::Parse(text, opts.file));
    }
    bool changed = true;
    ENVELOPE_RETURN_IF_ERROR(change(file, &changed));
    if (!changed) return Status::Ok();
    if (!file) return Status::Internal("BUG: an update removed the file");
    Status s = WriteAtomically(path, file->Serialize(),
                               locked.fd.valid() ? &locked.st : nullptr);
    // Another command created the file between our look and our write:
    // start again on its version.
    if (s.code() == StatusCode::kAlreadyExists) continue;
    return s;
  }
  return Status::Unavailable(opts.file + " keeps changing; try again");
}

// The file to add values to: the existing one (checked), or a new one
// under --key.
Status OpenOrCreate(Context& ctx, const SecretsOptions& opts,
                    const std::string& app, std::optional<SecretsFile>& file) {
  if (file) return CheckFile(ctx, opts, *file, app);
  if (opts.key.empty()) {
    return Status::NotFound(opts.file +
                            " does not exist; give --key KEY to create it");
  }
  ENVELOPE_RETURN_IF_ERROR(secrets::CheckAppName(app));
  ENVELOPE_ASSIGN_OR_RETURN(std::string arn, KeyArn(ctx, opts.key));
  ENVELOPE_ASSIGN_OR_RETURN(file, SecretsFile::New(app, arn));
  return Status::Ok();
}

Status RequireExisting(Context& ctx, const SecretsOptions& opts,
                       const std::string& app,
                       const std::optional<SecretsFile>& file) {
  if (!file) return Status::NotFound(opts.file + " does not exist");
  return CheckFile(ctx, opts, *file, app);
}

// --- Plaintext in and out. ---

Status WriteAll(int fd, ByteView data) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::write(fd, data.data() + done, data.size() - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("cannot write to standard output");
    }
    done += static_cast<size_t>(n);
  }
  return Status::Ok();
}

// Reads one line from the terminal with echo off. The line (without its
// newline) may be at most kMaxValueSizeInBytes.
StatusOr<crypto::SecretBytes> PromptValue(const std::string& name) {
  auto value = crypto::ReadSecretLine(STDIN_FILENO, secrets::kMaxValueSizeInBytes, STDERR_FILENO,
                                      "Value of " + name + " (input is not shown): ");
  if (!value.ok() && value.status().code() == StatusCode::kInvalidArgument) {
    return Status::InvalidArgument(
        name + ": the value is longer than " +
        std::to_string(secrets::kMaxValueSizeInBytes) + " bytes");
  }
  if (!value.ok()) return value.status().WithContext("reading the terminal");
  return value;
}

// Reads all of standard input (a pipe or a file) into the secure heap:
// at most `limit` bytes, else InvalidArgument naming `what`.
struct SecretInput {
  crypto::SecretBytes buffer;
  size_t size = 0;
  ByteView view() const { return buffer.view().first(size); }
};

StatusOr<SecretInput> ReadSecretInput(int fd, size_t limit,
                                      const std::string& what) {
  SecretInput in;
  // One byte more than allowed tells "exactly the limit" from "more".
  ENVELOPE_ASSIGN_OR_RETURN(in.buffer, crypto::SecretBytes::Zeroed(limit + 1));
  while (in.size < in.buffer.size()) {
    ssize_t n =
        ::read(fd, in.buffer.data() + in.size, in.buffer.size() - in.size);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("cannot read " + what);
    if (n == 0) break;
    in.size += static_cast<size_t>(n);
  }
  if (in.size > limit) {
    return Status::InvalidArgument(what + " holds more than " +
                                   std::to_string(limit) + " bytes");
  }
  return in;
}

// The value for `set`: from the terminal without echo, or all of standard
// input with one trailing newline removed (unless raw).
StatusOr<crypto::SecretBytes> ReadValue(const std::string& name, bool raw) {
  if (::isatty(STDIN_FILENO)) return PromptValue(name);
  // Room for the value and one newline; anything more is too long.
  auto read = ReadSecretInput(STDIN_FILENO, secrets::kMaxValueSizeInBytes + 1,
                              "standard input");
  if (!read.ok()) {
    if (read.status().code() != StatusCode::kInvalidArgument) {
      return read.status();
    }
    return Status::InvalidArgument(
        name + ": the value is more than " +
        std::to_string(secrets::kMaxValueSizeInBytes + 1) +
        " bytes; the limit is " +
        std::to_string(secrets::kMaxValueSizeInBytes) +
        " (KMS encrypts at most 4096 bytes)");
  }
  SecretInput in = std::move(read).value();
  size_t n = in.size;
  if (!raw && n > 0 && in.buffer.data()[n - 1] == '\n') --n;
  if (n > secrets::kMaxValueSizeInBytes) {
    return secrets::CheckValue(name, in.view().first(n));
  }
  return crypto::SecretBytes::CopyOf(in.view().first(n));
}

// --- Commands. ---

void AddAppArgument(CLI::App* cmd, std::string* app) {
  cmd->add_option("APP", *app, "the application whose secrets these are")
      ->required();
}
void AddNameArgument(CLI::App* cmd, std::string* name) {
  cmd->add_option("NAME", *name, "the environment variable")->required();
}

void AddSet(CLI::App* group, Context* ctx,
            std::shared_ptr<SecretsOptions> opts) {
  struct Args {
    std::string app, name;
    bool raw = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = group->add_subcommand(
      "set",
      "set NAME from standard input (one trailing newline dropped) or a "
      "prompt that does not echo; never from the command line");
  AddAppArgument(cmd, &args->app);
  AddNameArgument(cmd, &args->name);
  cmd->add_flag("--raw", args->raw,
                "keep a trailing newline of standard input");
  OnRun(cmd, ctx, [args, opts](Context& c) -> Status {
    ENVELOPE_RETURN_IF_ERROR(secrets::CheckAppName(args->app));
    ENVELOPE_RETURN_IF_ERROR(secrets::CheckName(args->name));
    // Read before locking: a prompt may take a while.
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes value,
                              ReadValue(args->name, args->raw));
    ENVELOPE_RETURN_IF_ERROR(secrets::CheckValue(args->name, value.view()));
    int line = 0;
    std::optional<secrets::BlobInfo> info;
    ENVELOPE_RETURN_IF_ERROR(
        Update(*opts, [&](std::optional<SecretsFile>& file, bool*) -> Status {
          ENVELOPE_RETURN_IF_ERROR(OpenOrCreate(c, *opts, args->app, file));
          ENVELOPE_RETURN_IF_ERROR(secrets::CheckEnvironmentSize(
              file->EnvironmentSizeOfEntries({args->name}) + args->name.size() +
              value.size() + 2));
          ENVELOPE_ASSIGN_OR_RETURN(
              Bytes blob, EncryptValue(c, *file, args->name, value.view()));
          info = secrets::ParseBlobHeader(blob);
          file->Set(args->name, std::move(blob));
          file->Find(args->name, &line);
          return Status::Ok();
        }));
    if (c.json_output) {
      json out = {{"File", opts->file},
                  {"App", args->app},
                  {"Name", args->name},
                  {"Line", line}};
      if (info) {
        out["KeyId"] = info->key_id;
        out["KeyVersion"] = info->key_version;
      }
      PrintJson(out);
    }
    return Status::Ok();
  });
}

void AddGet(CLI::App* group, Context* ctx,
            std::shared_ptr<SecretsOptions> opts) {
  struct Args {
    std::string app, name;
    bool raw = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = group->add_subcommand(
      "get", "print the value of NAME, followed by a newline");
  AddAppArgument(cmd, &args->app);
  AddNameArgument(cmd, &args->name);
  cmd->add_flag("--raw", args->raw, "print the value exactly, no newline");
  OnRun(cmd, ctx, [args, opts](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(SecretsFile file, LoadForReading(opts->file));
    ENVELOPE_RETURN_IF_ERROR(CheckFile(c, *opts, file, args->app));
    // Other names' damage does not matter here; this name's does.
    if (auto d = file.DamageOf(args->name)) {
      return Status::Corruption(secrets::Where(opts->file, d->line) + ": " +
                                d->reason);
    }
    int line = 0;
    const secrets::Line* entry = file.Find(args->name, &line);
    if (entry == nullptr) {
      return Status::NotFound(args->name + " is not set in " + opts->file);
    }
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes value,
                              DecryptLine(c, opts->file, file, *entry, line));
    std::fflush(stdout);
    ENVELOPE_RETURN_IF_ERROR(WriteAll(STDOUT_FILENO, value.view()));
    if (!args->raw) {
      ENVELOPE_RETURN_IF_ERROR(WriteAll(STDOUT_FILENO, AsBytes("\n")));
    }
    return Status::Ok();
  });
}

void AddList(CLI::App* group, Context* ctx,
             std::shared_ptr<SecretsOptions> opts) {
  auto app = std::make_shared<std::string>();
  CLI::App* cmd = group->add_subcommand(
      "list",
      "list the variables with the key version of each; decrypts nothing");
  AddAppArgument(cmd, app.get());
  OnRun(cmd, ctx, [app, opts](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(SecretsFile file, LoadForReading(opts->file));
    ENVELOPE_RETURN_IF_ERROR(CheckFile(c, *opts, file, *app));
    json entries = json::array();
    std::vector<std::vector<std::string>> rows;
    const std::vector<secrets::Line>& lines = file.lines();
    for (size_t i = 0; i < lines.size(); ++i) {
      if (lines[i].kind != secrets::Line::Kind::kEntry) continue;
      const int number = SecretsFile::LineNumber(i);
      // The version is in the blob's clear header: no Decrypt needed.
      auto info = secrets::ParseBlobHeader(lines[i].blob);
      json e = {{"Name", lines[i].name}, {"Line", number}};
      if (info) {
        e["KeyId"] = info->key_id;
        e["KeyVersion"] = info->key_version;
        e["ValueSize"] = info->value_size;
      }
      entries.push_back(e);
      rows.push_back({lines[i].name, info ? info->key_id : "-",
                      info ? std::to_string(info->key_version) : "-",
                      std::to_string(number)});
    }
    json damaged = json::array();
    for (const secrets::Damage& d : file.Damaged()) {
      damaged.push_back(
          {{"Line", d.line}, {"Name", d.name}, {"Reason", d.reason}});
    }
    if (c.json_output) {
      PrintJson({{"File", opts->file},
                 {"App", file.app()},
                 {"Key", file.key()},
                 {"Secrets", entries},
                 {"Damaged", damaged}});
    } else {
      PrintFields(
          {{"File", opts->file}, {"App", file.app()}, {"Key", file.key()}});
      PrintTable({"Name", "KeyId", "KeyVersion", "Line"}, rows);
    }
    std::fflush(stdout);
    for (const secrets::Damage& d : file.Damaged()) {
      std::fprintf(stderr, "envelopectl: warning: %s: %s\n",
                   Printable(secrets::Where(opts->file, d.line)).c_str(),
                   Printable(d.reason).c_str());
    }
    return Status::Ok();
  });
}

void AddRm(CLI::App* group, Context* ctx,
           std::shared_ptr<SecretsOptions> opts) {
  struct Args {
    std::string app, name;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = group->add_subcommand(
      "rm", "remove NAME (its line, or a damaged line that names it)");
  AddAppArgument(cmd, &args->app);
  AddNameArgument(cmd, &args->name);
  OnRun(cmd, ctx, [args, opts](Context& c) -> Status {
    return Update(
        *opts, [&](std::optional<SecretsFile>& file, bool*) -> Status {
          ENVELOPE_RETURN_IF_ERROR(RequireExisting(c, *opts, args->app, file));
          if (file->Remove(args->name) == 0) {
            return Status::NotFound(args->name + " is not set in " +
                                    opts->file);
          }
          return Status::Ok();
        });
  });
}

void AddImport(CLI::App* group, Context* ctx,
               std::shared_ptr<SecretsOptions> opts) {
  struct Args {
    std::string app, input;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = group->add_subcommand(
      "import",
      "encrypt every variable of a plaintext dotenv FILE (- for standard "
      "input) into the secrets file; existing names are replaced");
  AddAppArgument(cmd, &args->app);
  cmd->add_option("FILE", args->input, "plaintext dotenv, - for stdin")
      ->required();
  OnRun(cmd, ctx, [args, opts](Context& c) -> Status {
    ENVELOPE_RETURN_IF_ERROR(secrets::CheckAppName(args->app));
    UniqueFd owned;
    int fd = STDIN_FILENO;
    const std::string source =
        args->input == "-" ? "standard input" : args->input;
    if (args->input != "-") {
      owned = UniqueFd(::open(args->input.c_str(), O_RDONLY | O_CLOEXEC));
      if (!owned.valid()) return ErrnoStatus("cannot open", args->input);
      fd = owned.get();
    }
    ENVELOPE_ASSIGN_OR_RETURN(
        SecretInput in, ReadSecretInput(fd, kMaxImportSizeInBytes, source));
    ENVELOPE_ASSIGN_OR_RETURN(std::vector<NamedValue> values,
                              secrets::ParseDotenv(in.view(), source));
    // The plaintext text is no longer needed; the values are.
    in = SecretInput();
    std::set<std::string, std::less<>> names;
    for (const NamedValue& v : values) names.insert(v.name);
    ENVELOPE_RETURN_IF_ERROR(
        Update(*opts, [&](std::optional<SecretsFile>& file, bool*) -> Status {
          ENVELOPE_RETURN_IF_ERROR(OpenOrCreate(c, *opts, args->app, file));
          ENVELOPE_RETURN_IF_ERROR(secrets::CheckEnvironmentSize(
              file->EnvironmentSizeOfEntries(names) +
              secrets::EnvironmentSize(values)));
          // All encrypted before any is set: a failure leaves the file as
          // it was.
          std::vector<Bytes> blobs;
          for (const NamedValue& v : values) {
            ENVELOPE_ASSIGN_OR_RETURN(
                Bytes blob, EncryptValue(c, *file, v.name, v.value.view()));
            blobs.push_back(std::move(blob));
          }
          for (size_t i = 0; i < values.size(); ++i) {
            file->Set(values[i].name, std::move(blobs[i]));
          }
          return Status::Ok();
        }));
    if (c.json_output) {
      PrintJson({{"File", opts->file},
                 {"App", args->app},
                 {"Imported", values.size()}});
    } else {
      std::printf("imported %zu variable%s into %s\n", values.size(),
                  values.size() == 1 ? "" : "s", opts->file.c_str());
    }
    return Status::Ok();
  });
}

void AddExport(CLI::App* group, Context* ctx,
               std::shared_ptr<SecretsOptions> opts) {
  struct Args {
    std::string app;
    bool plaintext = false;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = group->add_subcommand(
      "export",
      "print every value as a plaintext dotenv that import reads back "
      "(needs --plaintext)");
  AddAppArgument(cmd, &args->app);
  cmd->add_flag("--plaintext", args->plaintext,
                "yes, write the decrypted values to standard output");
  OnRun(cmd, ctx, [args, opts](Context& c) -> Status {
    if (!args->plaintext) {
      return Status::FailedPrecondition(
          "export writes every secret of " + args->app +
          " in plaintext to standard output; add --plaintext to do that");
    }
    ENVELOPE_ASSIGN_OR_RETURN(SecretsFile file, LoadForReading(opts->file));
    ENVELOPE_RETURN_IF_ERROR(CheckFile(c, *opts, file, args->app));
    ENVELOPE_ASSIGN_OR_RETURN(std::vector<NamedValue> values,
                              DecryptAll(c, opts->file, file));
    ENVELOPE_ASSIGN_OR_RETURN(
        crypto::SecretBytes text,
        secrets::FormatDotenv(values, "plaintext secrets of " + file.app() +
                                          ": keep out of version control"));
    std::fflush(stdout);
    return WriteAll(STDOUT_FILENO, text.view());
  });
}

void AddRotate(CLI::App* group, Context* ctx,
               std::shared_ptr<SecretsOptions> opts) {
  auto app = std::make_shared<std::string>();
  CLI::App* cmd = group->add_subcommand(
      "rotate",
      "re-encrypt every value under the key's current version (ReEncrypt: "
      "no plaintext leaves the key service)");
  AddAppArgument(cmd, app.get());
  OnRun(cmd, ctx, [app, opts](Context& c) -> Status {
    size_t moved = 0, current = 0;
    uint32_t version = 0;
    std::map<std::string, size_t> from;  // "KEY_ID v1" -> count
    ENVELOPE_RETURN_IF_ERROR(Update(
        *opts, [&](std::optional<SecretsFile>& file, bool* changed) -> Status {
          moved = current = 0;
          from.clear();
          ENVELOPE_RETURN_IF_ERROR(RequireExisting(c, *opts, *app, file));
          const std::vector<secrets::Damage> damaged = file->Damaged();
          if (!damaged.empty()) return DamageStatus(opts->file, damaged);
          ENVELOPE_ASSIGN_OR_RETURN(json m, DescribeKey(c, file->key()));
          const std::string key_id = Field(m, "KeyId");
          version = m.value("CurrentKeyVersion", 0u);
          std::vector<std::pair<std::string, Bytes>> updates;
          const std::vector<secrets::Line>& lines = file->lines();
          for (size_t i = 0; i < lines.size(); ++i) {
            const secrets::Line& l = lines[i];
            if (l.kind != secrets::Line::Kind::kEntry) continue;
            auto info = secrets::ParseBlobHeader(l.blob);
            // Values already under the current version keep their line: a
            // rotation that rewrote them would only make a noisy diff.
            if (info && info->key_id == key_id &&
                info->key_version == version) {
              ++current;
              continue;
            }
            const json context = secrets::ValueContext(file->app(), l.name);
            auto r =
                c.Kms("ReEncrypt", {{"CiphertextBlob", Base64Encode(l.blob)},
                                    {"SourceKeyId", file->key()},
                                    {"SourceEncryptionContext", context},
                                    {"DestinationKeyId", file->key()},
                                    {"DestinationEncryptionContext", context}});
            if (!r.ok()) {
              return r.status().WithContext(
                  secrets::Where(opts->file, SecretsFile::LineNumber(i)) +
                  ": cannot re-encrypt " + l.name);
            }
            Bytes blob;
            if (!Base64Decode(Field(*r, "CiphertextBlob"), &blob) ||
                blob.empty()) {
              return Status::Internal("ReEncrypt returned no CiphertextBlob");
            }
            ++from[info ? "version " + std::to_string(info->key_version)
                        : "an unknown version"];
            ++moved;
            updates.emplace_back(l.name, std::move(blob));
          }
          for (auto& [name, blob] : updates) file->Set(name, std::move(blob));
          *changed = !updates.empty();
          return Status::Ok();
        }));
    if (c.json_output) {
      json sources = json::object();
      for (const auto& [what, n] : from) sources[what] = n;
      PrintJson({{"File", opts->file},
                 {"App", *app},
                 {"KeyVersion", version},
                 {"Rotated", moved},
                 {"AlreadyCurrent", current},
                 {"From", sources}});
      return Status::Ok();
    }
    std::string detail;
    for (const auto& [what, n] : from) {
      detail +=
          (detail.empty() ? "" : ", ") + std::to_string(n) + " from " + what;
    }
    std::printf(
        "%zu value%s re-encrypted under key version %u%s%s; %zu "
        "already current\n",
        moved, moved == 1 ? "" : "s", version, detail.empty() ? "" : ": ",
        detail.c_str(), current);
    return Status::Ok();
  });
}

void AddExec(CLI::App* group, Context* ctx,
             std::shared_ptr<SecretsOptions> opts) {
  struct Args {
    std::string app;
    bool pristine = false;
    int secrets_fd = -1;
    std::vector<std::string> command;
  };
  auto args = std::make_shared<Args>();
  CLI::App* cmd = group->add_subcommand(
      "exec",
      "decrypt every value and become CMD (execve, no shell, no parent left "
      "behind) with them in its environment");
  AddAppArgument(cmd, &args->app);
  cmd->add_flag("--pristine", args->pristine,
                "start from an empty environment: CMD gets the secrets only "
                "(no PATH either; CMD is still looked up in ours)");
  CLI::Option* fd_option =
      cmd->add_option("--secrets-fd", args->secrets_fd,
                      "hand the secrets over on descriptor N (NAME=value\\0 "
                      "records, ENVELOPE_SECRETS_FD=N) instead of the "
                      "environment")
          ->check(CLI::Range(0, 1 << 20));
  cmd->add_option("CMD", args->command,
                  "the program and its arguments, after --")
      ->required();
  OnRun(cmd, ctx, [args, opts, fd_option](Context& c) -> Status {
    const bool fd_mode = fd_option->count() > 0;
    if (fd_mode && (args->secrets_fd == STDOUT_FILENO ||
                    args->secrets_fd == STDERR_FILENO)) {
      return Status::InvalidArgument(
          "--secrets-fd must be 0 (standard input) or 3 and above");
    }
    ENVELOPE_ASSIGN_OR_RETURN(SecretsFile file, LoadForReading(opts->file));
    ENVELOPE_RETURN_IF_ERROR(CheckFile(c, *opts, file, args->app));
    ENVELOPE_ASSIGN_OR_RETURN(std::vector<NamedValue> values,
                              DecryptAll(c, opts->file, file));

    secrets::ExecEnvironment::Options env_options;
    env_options.inherited = environ;
    env_options.pristine = args->pristine;
    UniqueFd memfd;
    if (fd_mode) {
      // A sealed memfd: in memory only, never on a filesystem, and neither
      // CMD nor anything it passes the descriptor to can change it.
      memfd = UniqueFd(
          ::memfd_create("envelope-secrets", MFD_CLOEXEC | MFD_ALLOW_SEALING));
      if (!memfd.valid()) return Status::FromErrno("memfd_create");
      ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes payload,
                                secrets::EncodeNulSeparated(values));
      ENVELOPE_RETURN_IF_ERROR(PwriteFull(memfd.get(), payload.view(), 0));
      if (::fcntl(memfd.get(), F_ADD_SEALS,
                  F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE | F_SEAL_SEAL) !=
          0) {
        return Status::FromErrno("cannot seal the secrets descriptor");
      }
      env_options.extra.push_back(std::string(secrets::kSecretsFdVariable) +
                                  "=" + std::to_string(args->secrets_fd));
    }
    const std::vector<NamedValue> none;
    ENVELOPE_ASSIGN_OR_RETURN(
        secrets::ExecEnvironment env,
        secrets::ExecEnvironment::Build(fd_mode ? none : values,
                                        std::move(env_options)));

    std::vector<char*> argv;
    for (std::string& a : args->command) argv.push_back(a.data());
    argv.push_back(nullptr);

    // CMD inherits no connection to the key service.
    c.CloseClient();
    if (fd_mode) {
      // dup2 clears FD_CLOEXEC on the copy; the original stays close-on-
      // exec. The descriptor's offset is 0: PwriteFull does not move it.
      if (memfd.get() == args->secrets_fd) {
        if (::fcntl(memfd.get(), F_SETFD, 0) != 0) {
          return Status::FromErrno("fcntl");
        }
      } else if (::dup2(memfd.get(), args->secrets_fd) < 0) {
        return Status::FromErrno("cannot move the secrets to descriptor " +
                                 std::to_string(args->secrets_fd));
      }
    }
    // CMD is not ours: it gets the core limit we started with.
    ENVELOPE_RETURN_IF_ERROR(RestoreCoreLimitForExec());
    std::fflush(stdout);
    std::fflush(stderr);
    // execvpe looks CMD up in *our* PATH (glibc reads it from environ), so
    // --pristine still finds programs by name.
    ::execvpe(argv[0], argv.data(), env.envp());
    const int err = errno;
    std::fprintf(stderr, "envelopectl: cannot execute %s: %s\n",
                 Printable(args->command[0]).c_str(), std::strerror(err));
    // As env(1) and the shells: 127 not found, 126 found but not runnable.
    c.exit_code = err == ENOENT ? 127 : 126;
    return Status::Ok();
  });
}

}  // namespace

void AddSecretsCommands(CLI::App* app, Context* ctx) {
  auto opts = std::make_shared<SecretsOptions>();
  CLI::App* group = app->add_subcommand(
      "secrets",
      "an application's environment secrets, encrypted value by value in a "
      "file (docs/SECRETS.md)");
  group->require_subcommand(1);
  group
      ->add_option("--file", opts->file,
                   "the application's secrets file (one file per application)")
      ->envname("ENVELOPE_SECRETS_FILE")
      ->required();
  group->add_option("--key", opts->key,
                    "KMS key for a new file; for an existing one, the key it "
                    "must be under (refused otherwise)");
  AddSet(group, ctx, opts);
  AddGet(group, ctx, opts);
  AddList(group, ctx, opts);
  AddRm(group, ctx, opts);
  AddImport(group, ctx, opts);
  AddExport(group, ctx, opts);
  AddRotate(group, ctx, opts);
  AddExec(group, ctx, opts);
}

}  // namespace envelope::envelopectl
