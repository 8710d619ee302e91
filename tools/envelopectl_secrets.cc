// envelopectl secrets ...: the command line of an application's
// environment secrets (docs/SECRETS.md). The work is secrets::SecretsStore
// (tools/secrets_store.h) over the key service; this file parses
// arguments, reads secret input, prints results, and becomes the program
// that `secrets exec` starts.
//
// Plaintext handling: values are read from standard input or a no-echo
// prompt (never argv), held in crypto::SecretBytes, and written only to
// standard output (get, export) or into the execve of `exec`. No plaintext
// is written to a file.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "core/base/fd_io.h"
#include "core/base/process_hygiene.h"
#include "core/crypto/secret_line.h"
#include "tools/envelopectl.h"
#include "tools/secrets_exec.h"
#include "tools/secrets_file.h"
#include "tools/secrets_store.h"

extern char** environ;

namespace envelope::envelopectl {

namespace {

using secrets::NamedValue;
using secrets::SecretsStore;

// A plaintext dotenv given to import: the total limit, plus room for
// comments and quoting. One byte under a power of two, because the buffer
// is one byte larger and the secure heap rounds allocations up to a power
// of two.
constexpr size_t kMaxImportSizeInBytes = 4 * secrets::kMaxTotalSizeInBytes - 1;

// Options of the `secrets` group, shared by its commands.
struct SecretsOptions {
  std::string file;
  std::string key;
};

void PrintForeignKeyWarning(const secrets::ForeignKeyWarning& w) {
  std::fprintf(stderr,
               "envelopectl: warning: key %s (%s) was created by %s, not by you or root: they "
               "can decrypt every value under it and destroy it\n",
               Printable(w.key).c_str(), Printable(w.arn).c_str(), Printable(w.creator).c_str());
}

// The store for one command, over the context's key service (connected
// here, after the command's own argument checks).
StatusOr<std::unique_ptr<SecretsStore>> OpenStore(Context& ctx, const SecretsOptions& opts) {
  ENVELOPE_ASSIGN_OR_RETURN(kms::KeyService * keys, ctx.Keys());
  secrets::StoreOptions options;
  options.path = opts.file;
  options.key = opts.key;
  options.on_foreign_key = PrintForeignKeyWarning;
  return std::make_unique<SecretsStore>(*keys, std::move(options));
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

Status ErrnoStatus(const std::string& what, const std::string& path) {
  return Status::FromErrno(what + " " + path);
}

// --- Commands. ---

void AddAppArgument(CLI::App* cmd, std::string* app) {
  cmd->add_option("APP", *app, "the application whose secrets these are")
      ->required();
}
void AddNameArgument(CLI::App* cmd, std::string* name) {
  cmd->add_option("NAME", *name, "the environment variable")->required();
}

json VersionFields(json out, const std::optional<kms::BlobVersion>& version) {
  if (version) {
    out["KeyId"] = version->key_id;
    out["KeyVersion"] = version->version;
  }
  return out;
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
    ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<SecretsStore> store, OpenStore(c, *opts));
    ENVELOPE_ASSIGN_OR_RETURN(secrets::SetResult set,
                              store->Set(args->app, args->name, value.view()));
    if (c.json_output) {
      PrintJson(VersionFields({{"File", opts->file},
                               {"App", args->app},
                               {"Name", args->name},
                               {"Line", set.line}},
                              set.version));
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
    ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<SecretsStore> store, OpenStore(c, *opts));
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes value, store->Get(args->app, args->name));
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
      "list the variables with the key version of each (where the key "
      "service's blobs say it); decrypts nothing");
  AddAppArgument(cmd, app.get());
  OnRun(cmd, ctx, [app, opts](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<SecretsStore> store, OpenStore(c, *opts));
    ENVELOPE_ASSIGN_OR_RETURN(secrets::Listing listing, store->List(*app));
    json entries = json::array();
    std::vector<std::vector<std::string>> rows;
    for (const secrets::ListEntry& e : listing.entries) {
      json entry = VersionFields({{"Name", e.name}, {"Line", e.line}}, e.version);
      if (e.value_size) entry["ValueSize"] = *e.value_size;
      entries.push_back(std::move(entry));
      rows.push_back({e.name, e.version ? e.version->key_id : "-",
                      e.version ? std::to_string(e.version->version) : "-",
                      std::to_string(e.line)});
    }
    json damaged = json::array();
    for (const secrets::Damage& d : listing.damaged) {
      damaged.push_back(
          {{"Line", d.line}, {"Name", d.name}, {"Reason", d.reason}});
    }
    if (c.json_output) {
      PrintJson({{"File", opts->file},
                 {"App", listing.app},
                 {"Key", listing.key},
                 {"Secrets", entries},
                 {"Damaged", damaged}});
    } else {
      PrintFields(
          {{"File", opts->file}, {"App", listing.app}, {"Key", listing.key}});
      PrintTable({"Name", "KeyId", "KeyVersion", "Line"}, rows);
    }
    std::fflush(stdout);
    for (const secrets::Damage& d : listing.damaged) {
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
    ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<SecretsStore> store, OpenStore(c, *opts));
    return store->Remove(args->app, args->name);
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
    ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<SecretsStore> store, OpenStore(c, *opts));
    ENVELOPE_ASSIGN_OR_RETURN(size_t imported, store->Import(args->app, in.view(), source));
    if (c.json_output) {
      PrintJson({{"File", opts->file},
                 {"App", args->app},
                 {"Imported", imported}});
    } else {
      std::printf("imported %zu variable%s into %s\n", imported,
                  imported == 1 ? "" : "s", opts->file.c_str());
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
    ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<SecretsStore> store, OpenStore(c, *opts));
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes text, store->Export(args->app));
    std::fflush(stdout);
    return WriteAll(STDOUT_FILENO, text.view());
  });
}

void AddRotate(CLI::App* group, Context* ctx,
               std::shared_ptr<SecretsOptions> opts) {
  auto app = std::make_shared<std::string>();
  CLI::App* cmd = group->add_subcommand(
      "rotate",
      "re-encrypt every value not yet under the key's current version, or "
      "every value if the key service cannot say (ReEncrypt: no plaintext "
      "leaves the key service)");
  AddAppArgument(cmd, app.get());
  OnRun(cmd, ctx, [app, opts](Context& c) -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<SecretsStore> store, OpenStore(c, *opts));
    ENVELOPE_ASSIGN_OR_RETURN(secrets::RotateResult r, store->Rotate(*app));
    if (c.json_output) {
      json sources = json::object();
      for (const auto& [what, n] : r.from) sources[what] = n;
      PrintJson({{"File", opts->file},
                 {"App", *app},
                 {"KeyVersion", r.version ? json(*r.version) : json(nullptr)},
                 {"VersionsKnown", r.versions_known},
                 {"Rotated", r.rotated},
                 {"AlreadyCurrent", r.already_current},
                 {"From", sources}});
      return Status::Ok();
    }
    const char* plural = r.rotated == 1 ? "" : "s";
    if (!r.versions_known) {
      std::printf(
          "%zu value%s re-encrypted under the key's current version (the key "
          "service does not say which values were already under it, so "
          "every value was re-encrypted)\n",
          r.rotated, plural);
      return Status::Ok();
    }
    std::string detail;
    for (const auto& [what, n] : r.from) {
      detail +=
          (detail.empty() ? "" : ", ") + std::to_string(n) + " from " + what;
    }
    std::printf(
        "%zu value%s re-encrypted under key version %u%s%s; %zu "
        "already current\n",
        r.rotated, plural, *r.version, detail.empty() ? "" : ": ",
        detail.c_str(), r.already_current);
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
    ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<SecretsStore> store, OpenStore(c, *opts));
    ENVELOPE_ASSIGN_OR_RETURN(std::vector<NamedValue> values, store->DecryptAll(args->app));

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
    c.CloseConnections();
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
