#include "keyservice/root_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/base/fd_io.h"
#include "core/crypto/hash.h"
#include "core/crypto/random.h"
#include "core/crypto/scrypt.h"
#include "core/crypto/secret_line.h"

namespace envelope::keyservice {

const char* RootKeyKindName(RootKeyKind kind) {
  switch (kind) {
    case RootKeyKind::kKeyFile: return "key-file";
    case RootKeyKind::kPassphrase: return "passphrase";
    case RootKeyKind::kToken: return "pkcs11";
  }
  return "key-file";
}

std::optional<RootKeyKind> ParseRootKeyKind(std::string_view name) {
  for (RootKeyKind k : {RootKeyKind::kKeyFile, RootKeyKind::kPassphrase, RootKeyKind::kToken}) {
    if (name == RootKeyKindName(k)) return k;
  }
  return std::nullopt;
}

Status WriteNewPrivateFile(const std::string& path, ByteView data) {
  UniqueFd out(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
  if (!out.valid()) return Status::FromErrno("create " + path);
  ENVELOPE_RETURN_IF_ERROR(PwriteFull(out.get(), data, 0));
  if (::fsync(out.get()) != 0) return Status::FromErrno("fsync " + path);
  return Status::Ok();
}

Status SyncDirectoryOf(const std::string& path) {
  const std::string dir = path.substr(0, path.find_last_of('/') + 1);
  UniqueFd fd(::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!fd.valid() || ::fsync(fd.get()) != 0) return Status::FromErrno("fsync " + dir);
  return Status::Ok();
}

StatusOr<crypto::SecretBytes> LoadOrCreateRootKeyFile(const std::string& path, bool* created) {
  *created = false;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid() && errno == ENOENT) {
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes key,
                              crypto::SecretBytes::Random(kRootKeySizeInBytes));
    ENVELOPE_RETURN_IF_ERROR(WriteNewPrivateFile(path, key.view()));
    *created = true;
    return key;
  }
  if (!fd.valid()) return Status::FromErrno("open root key file " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path);
  if ((st.st_mode & 077) != 0) {
    return Status::PermissionDenied("root key file " + path +
                                    " is accessible by group or others; chmod 600 it");
  }
  if (st.st_size != static_cast<off_t>(kRootKeySizeInBytes)) {
    return Status::Corruption("root key file " + path + " must hold exactly 32 bytes");
  }
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes key,
                            crypto::SecretBytes::Zeroed(kRootKeySizeInBytes));
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, PreadFull(fd.get(), key.mutable_view(), 0));
  if (n != kRootKeySizeInBytes) return Status::Corruption("short read of " + path);
  return key;
}

StatusOr<crypto::SecretBytes> ReadPassphrase(int fd, const char* prompt, const char* what) {
  constexpr size_t kMaxPassphraseInBytes = 1023;
  UniqueFd tty;
  if (fd < 0) {
    tty = UniqueFd(::open("/dev/tty", O_RDWR | O_CLOEXEC));
    if (!tty.valid()) return Status::FromErrno(std::string("open /dev/tty for the ") + what);
  }
  const int in = fd < 0 ? tty.get() : fd;
  auto pass = crypto::ReadSecretLine(in, kMaxPassphraseInBytes, tty.get(), fd < 0 ? prompt : "");
  if (!pass.ok()) return pass.status().WithContext(std::string("reading the ") + what);
  if (pass->size() == 0) return Status::InvalidArgument(std::string("empty ") + what);
  return pass;
}

StatusOr<std::string> NewPassphraseSalt() {
  Bytes salt(32);
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomBytes(salt));
  return HexEncode(salt);
}

StatusOr<crypto::SecretBytes> RootKeyFromPassphrase(const crypto::SecretBytes& passphrase,
                                                    std::string_view salt) {
  return crypto::Scrypt(passphrase.view(), AsBytes(salt), crypto::ScryptParams{},
                        kRootKeySizeInBytes);
}

namespace {
constexpr std::string_view kTokenAad = "envelope-keyd/v1/root-key-on-token";
}  // namespace

StatusOr<crypto::SecretBytes> RootKeyFromToken(Pkcs11Token* token,
                                               const std::optional<std::string>& sealed,
                                               std::string* new_sealed,
                                               bool* generated_token_key) {
  *generated_token_key = false;
  if (sealed) {
    ENVELOPE_ASSIGN_OR_RETURN(Pkcs11Token::KeyHandle key, token->FindKey());
    auto root = token->Open(key, AsBytes(*sealed), AsBytes(kTokenAad));
    if (!root.ok()) {
      return root.status().WithContext("the root key sealed in this data directory (is it the " +
                                       token->description() + " it was made with?)");
    }
    if (root->size() != kRootKeySizeInBytes) {
      return Status::Corruption("the sealed root key has the wrong size");
    }
    return root;
  }
  auto key = token->FindKey();
  if (!key.ok() && key.status().code() == StatusCode::kNotFound) {
    key = token->GenerateKey();
    *generated_token_key = key.ok();
  }
  if (!key.ok()) return key.status();
  return NewRootKeyOnToken(token, new_sealed);
}

StatusOr<crypto::SecretBytes> NewRootKeyOnToken(Pkcs11Token* token, std::string* sealed) {
  ENVELOPE_ASSIGN_OR_RETURN(Pkcs11Token::KeyHandle key, token->FindKey());
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes root,
                            crypto::SecretBytes::Random(kRootKeySizeInBytes));
  ENVELOPE_ASSIGN_OR_RETURN(Bytes out, token->Seal(key, root.view(), AsBytes(kTokenAad)));
  // Opened once before it is trusted: a token that seals what it cannot
  // open would leave a data directory nobody can open.
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes back, token->Open(key, out, AsBytes(kTokenAad)));
  if (!crypto::ConstantTimeEquals(back.view(), root.view())) {
    return Status::Internal("the " + token->description() + " did not open what it sealed");
  }
  sealed->assign(out.begin(), out.end());
  return root;
}

Status TakeCommittedKeyFile(const std::string& path) {
  const std::string next = path + ".next";
  if (::access(path.c_str(), F_OK) == 0 || errno != ENOENT) return Status::Ok();
  if (::access(next.c_str(), F_OK) != 0) return Status::Ok();
  if (::rename(next.c_str(), path.c_str()) != 0) return Status::FromErrno("rename " + next);
  ENVELOPE_RETURN_IF_ERROR(SyncDirectoryOf(path));
  spdlog::warn("finished a change to a key-file root key that was cut short: {}", path);
  return Status::Ok();
}

Status FinishKeyFileRotation(const std::string& path, KeyStore* store,
                             crypto::SecretBytes* root, Status unlocked) {
  const std::string next = path + ".next";
  if (::access(next.c_str(), F_OK) != 0) return unlocked;
  if (unlocked.ok()) {
    ::unlink(next.c_str());
    spdlog::warn("removed {}: a root-key rotation that never committed", next);
    return unlocked;
  }
  if (unlocked.code() != StatusCode::kFailedPrecondition) return unlocked;
  bool created = false;
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes key, LoadOrCreateRootKeyFile(next, &created));
  if (Status s = store->Unlock(key); !s.ok()) return unlocked;
  if (::rename(next.c_str(), path.c_str()) != 0) return Status::FromErrno("rename " + next);
  ENVELOPE_RETURN_IF_ERROR(SyncDirectoryOf(path));
  spdlog::warn("finished a root-key rotation that was cut short: {} is the new root key", path);
  *root = std::move(key);
  return Status::Ok();
}

void RemoveLeftoverKeyFiles(const std::string& path, KeyStore* store) {
  for (const std::string& file : {path, path + ".next"}) {
    if (::access(file.c_str(), F_OK) != 0) continue;
    bool created = false;
    auto key = LoadOrCreateRootKeyFile(file, &created);
    auto opens = key.ok() ? store->OpensWith(*key) : StatusOr<bool>(key.status());
    if (!opens.ok() || *opens) {
      spdlog::warn("kept {}: {}", file,
                   opens.ok() ? "it opens this store, though the store's root key is not a key file"
                              : opens.status().ToString());
      continue;
    }
    if (::unlink(file.c_str()) != 0) {
      spdlog::warn("could not remove {}: {}", file, std::strerror(errno));
      continue;
    }
    (void)SyncDirectoryOf(file);
    spdlog::warn("removed {}: a key file left by a change of root-key kind; it opens nothing", file);
  }
}

}  // namespace envelope::keyservice
