// The key service's custody commands (root or the daemon's own user):
// `backup`, a sealed copy of the store and root key through the Backup
// extension, with the recovery key's shares shown once, and `admin
// rotate-root` (RotateRootKey). docs/KEYSERVICE.md, "Backup and restore"
// and "Root-key rotation".
#include <fcntl.h>
#include <unistd.h>

#include <memory>
#include <string>

#include "core/base/base64.h"
#include "core/base/fd_io.h"
#include "core/crypto/secret_bytes.h"
#include "tools/envelopectl.h"

namespace envelope::envelopectl {

namespace {

struct BackupArgs {
  std::string to;
  int64_t threshold = 3;
  int64_t shares = 5;
};

// The file is made before the request, so that a path that cannot be
// written costs no backup (and no shares shown for nothing).
Status WriteBackup(const BackupArgs& a, Context& c) {
  UniqueFd out(::open(a.to.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!out.valid()) return Status::FromErrno("create " + a.to);
  auto r = c.Extension("Backup", {{"Threshold", a.threshold}, {"Shares", a.shares}});
  if (!r.ok()) {
    (void)::unlink(a.to.c_str());
    return r.status();
  }
  json& response = *r;
  // Wipe the shares however this returns.
  struct Wipe {
    json* r;
    ~Wipe() {
      auto it = r->find("Shares");
      if (it == r->end() || !it->is_array()) return;
      for (json& s : *it) {
        if (!s.is_string()) continue;
        std::string& text = s.get_ref<std::string&>();
        crypto::Cleanse({reinterpret_cast<uint8_t*>(text.data()), text.size()});
      }
    }
  } wipe{&response};
  Bytes file;
  const std::string b64 = Field(response, "Backup");
  if (!Base64Decode(b64, &file) || file.empty()) {
    (void)::unlink(a.to.c_str());
    return Status::Internal("the key service's answer has no backup");
  }
  Status s = PwriteFull(out.get(), file, 0);
  if (s.ok() && ::fsync(out.get()) != 0) s = Status::FromErrno("fsync " + a.to);
  if (!s.ok()) {
    (void)::unlink(a.to.c_str());
    return s;
  }
  auto shares = response.find("Shares");
  if (shares == response.end() || !shares->is_array()) {
    return Status::Internal("the key service's answer has no shares");
  }
  std::printf("backup %s: %s keys, written to %s\n", Printable(Field(response, "BackupId")).c_str(),
              Printable(Field(response, "Keys")).c_str(), a.to.c_str());
  std::printf("The recovery key is split %lld of %zu: give each custodian one share.\n"
              "Any %lld of them open the backup; fewer do not. They are shown only now.\n",
              static_cast<long long>(a.threshold), shares->size(),
              static_cast<long long>(a.threshold));
  int n = 0;
  for (const json& share : *shares) {
    if (share.is_string()) std::printf("share %d: %s\n", ++n, share.get_ref<const std::string&>().c_str());
  }
  std::fflush(stdout);
  return Status::Ok();
}

}  // namespace

void AddCustodyCommands(CLI::App* app, Context* ctx) {
  auto args = std::make_shared<BackupArgs>();
  CLI::App* backup = app->add_subcommand(
      "backup", "write a sealed copy of the key service's keys; print the recovery shares once");
  backup->add_option("--to", args->to, "the backup file to create (must not exist)")->required();
  backup->add_option("--threshold", args->threshold, "shares needed to restore (default 3)")
      ->check(CLI::Range(int64_t{2}, int64_t{255}));
  backup->add_option("--shares", args->shares, "shares to make (default 5)")
      ->check(CLI::Range(int64_t{2}, int64_t{255}));
  OnRun(backup, ctx, [args](Context& c) { return WriteBackup(*args, c); });

  CLI::App* admin = app->add_subcommand("admin", "the key service's own keys");
  admin->require_subcommand(1);
  CLI::App* rotate = admin->add_subcommand(
      "rotate-root", "re-seal every key under a new root key, online (docs/KEYSERVICE.md)");
  struct RotateArgs {
    int passphrase_fd = -1;
    int pin_fd = -1;
    std::string to;
  };
  auto rotate_args = std::make_shared<RotateArgs>();
  rotate->add_option("--to", rotate_args->to,
                     "change the root key's kind: key-file, passphrase (with "
                     "--new-passphrase-fd) or a pkcs11: URI (with --pin-fd); the daemon's next "
                     "start must then say the same");
  rotate->add_option("--new-passphrase-fd", rotate_args->passphrase_fd,
                     "passphrase root key: read the new passphrase from this fd (0: standard "
                     "input, asked for without echo at a terminal)");
  rotate->add_option("--pin-fd", rotate_args->pin_fd,
                     "root key on a token: read the token's PIN from this fd (0: as above)");
  OnRun(rotate, ctx, [rotate_args](Context& c) -> Status {
    json request = json::object();
    if (rotate_args->to.rfind("pkcs11:", 0) == 0) {
      request["RootKeyKind"] = "pkcs11";
      request["RootKeyUri"] = rotate_args->to;
    } else if (!rotate_args->to.empty()) {
      request["RootKeyKind"] = rotate_args->to;
    }
    std::string secret;
    if (rotate_args->passphrase_fd >= 0) {
      ENVELOPE_ASSIGN_OR_RETURN(secret, ReadSecretText(rotate_args->passphrase_fd,
                                                       "new envelope-keyd passphrase: "));
      request["NewPassphrase"] = secret;
    } else if (rotate_args->pin_fd >= 0) {
      ENVELOPE_ASSIGN_OR_RETURN(secret, ReadSecretText(rotate_args->pin_fd, "token PIN: "));
      request["Pin"] = secret;
    }
    crypto::Cleanse({reinterpret_cast<uint8_t*>(secret.data()), secret.size()});
    auto r = c.Extension("RotateRootKey", request);
    for (const char* k : {"NewPassphrase", "Pin"}) {
      if (request.contains(k)) {
        std::string& v = request[k].get_ref<std::string&>();
        crypto::Cleanse({reinterpret_cast<uint8_t*>(v.data()), v.size()});
      }
    }
    if (!r.ok()) return r.status();
    if (!Field(*r, "RootKeyFile").empty()) {
      std::printf("root key rotated: the new one is in %s\n",
                  Printable(Field(*r, "RootKeyFile")).c_str());
    } else {
      std::printf("root key rotated: %s\n", Printable(Field(*r, "RootKey")).c_str());
    }
    if (!rotate_args->to.empty()) {
      std::printf("from now on, %s\n", Printable(Field(*r, "Restart")).c_str());
    }
    return Status::Ok();
  });
}

}  // namespace envelope::envelopectl
