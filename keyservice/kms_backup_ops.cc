// The custody extensions (root or the daemon's own user): Backup, a
// consistent copy of the store and the root key sealed under a recovery key
// that comes back split among custodians (keyservice/backup.h), and
// RotateRootKey, the store re-sealed under a new root key (docs/KEYSERVICE.md
// "Backup and restore", "Root-key rotation").
#include <fcntl.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include "core/base/base64.h"
#include "core/base/fd_io.h"
#include "keyservice/root_key.h"
#include "keyservice/backup.h"
#include "keyservice/kms_call.h"

namespace envelope::keyservice {

using json = nlohmann::json;

namespace {
// The response carries the file in base64 and must fit the clients' 1 MiB
// response limit (kms/http_transport.h).
constexpr size_t kMaxBackupFileInBytes = 700 * 1024;
}  // namespace

void KmsService::KeepRootKeyForBackups(crypto::SecretBytes root_key) {
  root_key_ = std::make_unique<crypto::SecretBytes>(std::move(root_key));
}

KmsService::Outcome KmsService::Backup(Call& c) {
  if (!IsAdmin(c)) {
    return Error{"AccessDeniedException", "only root may back up the key service"};
  }
  if (!root_key_) return Error{"UnsupportedOperationException", "backups are not available"};
  int64_t threshold = 3, shares = 5;
  KMS_TRY(c.req.Int("Threshold", false, &threshold));
  KMS_TRY(c.req.Int("Shares", false, &shares));
  if (threshold < 2 || shares < threshold || shares > 255) {
    return Error{"ValidationException", "need 2 <= Threshold <= Shares <= 255"};
  }
  // Under the writer lock: the snapshot and the root key belong together
  // (RotateRootKey changes both under it).
  auto writer = store_->LockForWrite();
  auto store = store_->Snapshot();
  if (!store.ok()) return Error{"KMSInternalException", store.status().ToString()};
  auto sealed = SealBackup(*root_key_, AsBytes(*store), static_cast<unsigned>(threshold),
                           static_cast<unsigned>(shares), Now(), store_->AllKeys().size());
  writer.unlock();
  if (!sealed.ok()) return Error{"KMSInternalException", sealed.status().ToString()};
  if (sealed->file.size() > kMaxBackupFileInBytes) {
    return Error{"LimitExceededException",
                 "the backup is " + std::to_string(sealed->file.size()) +
                     " bytes; over this API backups are limited to " +
                     std::to_string(kMaxBackupFileInBytes)};
  }
  c.extra["backup_id"] = sealed->header.backup_id;
  c.extra["threshold"] = threshold;
  c.extra["shares"] = shares;
  return json{{"Backup", Base64Encode(sealed->file)},
              {"BackupId", sealed->header.backup_id},
              {"Keys", sealed->header.keys},
              {"Threshold", threshold},
              {"Shares", sealed->shares}};
}

namespace {

// Testing aid: marks `step` reached in `dir` and waits for the test's go.
void Latch(const std::string& dir, const char* step) {
  if (dir.empty()) return;
  UniqueFd(::open((dir + "/" + step + ".reached").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  while (::access((dir + "/" + step + ".go").c_str(), F_OK) != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

}  // namespace

// The store re-sealed under a new root key, in one transaction, whatever
// the root key's kind (docs/KEYSERVICE.md, "Root-key rotation"): kill -9 at
// any moment leaves a data directory that opens with the old root key or
// the new one.
KmsService::Outcome KmsService::RotateRootKey(Call& c) {
  if (!IsAdmin(c)) {
    return Error{"AccessDeniedException", "only root may rotate the root key"};
  }
  if (!options_.root_key_file.empty()) return RotateRootKeyFile(c);
  if (!options_.root_key_uri.empty()) return RotateRootOnToken(c);
  if (options_.root_key_from_passphrase) return RotateRootPassphrase(c);
  return Error{"UnsupportedOperationException", "this key service has no rotatable root key"};
}

// Key-file root keys: the new key goes to FILE.next (made and fsynced
// first), the store is re-sealed under it in one transaction, and then
// FILE.next replaces FILE. At start envelope-keyd finishes or undoes a
// rotation that was cut short (main.cc, FinishRootKeyRotation).
KmsService::Outcome KmsService::RotateRootKeyFile(Call& c) {
  const std::string& path = options_.root_key_file;
  const std::string next_path = path + ".next";
  auto writer = store_->LockForWrite();
  auto next = crypto::SecretBytes::Random(kRootKeySizeInBytes);
  if (!next.ok()) return NewMaterialError(next.status());
  (void)::unlink(next_path.c_str());  // a leftover of a rotation that never committed
  Status s = WriteNewPrivateFile(next_path, next->view());
  if (s.ok()) s = SyncDirectoryOf(next_path);
  if (!s.ok()) return Error{"KMSInternalException", s.ToString()};
  Latch(options_.rotate_root_latch_dir, "written");
  s = store_->RotateRoot(*next, [] { return Status::Ok(); });
  if (!s.ok()) {
    (void)::unlink(next_path.c_str());
    return Error{"KMSInternalException", s.ToString()};
  }
  Latch(options_.rotate_root_latch_dir, "committed");
  if (::rename(next_path.c_str(), path.c_str()) != 0) {
    // The store already needs the new key, which FILE.next holds: the next
    // start finishes this step.
    return Error{"KMSInternalException", Status::FromErrno("rename " + next_path).ToString()};
  }
  s = SyncDirectoryOf(path);
  if (!s.ok()) return Error{"KMSInternalException", s.ToString()};
  if (root_key_) KeepRootKeyForBackups(std::move(*next));
  c.extra["root_key_file"] = path;
  return json{{"RootKeyFile", path}};
}

namespace {

// A secret request field (NewPassphrase, Pin) moved into the secure heap;
// the parsed request's copy is wiped.
std::optional<std::string> TakeSecretField(nlohmann::json& in, const char* field,
                                           std::optional<crypto::SecretBytes>* out) {
  auto it = in.find(field);
  if (it == in.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    return std::string(field) + " is required to rotate this key service's root key";
  }
  std::string& text = it->get_ref<std::string&>();
  auto copy = crypto::SecretBytes::CopyOf(AsBytes(text));
  crypto::Cleanse(MutableByteView(reinterpret_cast<uint8_t*>(text.data()), text.size()));
  if (!copy.ok()) return copy.status().message();
  *out = std::move(*copy);
  return std::nullopt;
}

}  // namespace

// The passphrase and token kinds: the store re-sealed under `next` with
// `meta` (what the next start derives the root key from) in the same
// transaction, under the writer lock, with the test latch's two steps.
std::optional<KmsService::Error> KmsService::CommitNewRoot(
    crypto::SecretBytes next, const std::vector<std::pair<std::string, std::string>>& meta) {
  auto writer = store_->LockForWrite();
  Latch(options_.rotate_root_latch_dir, "written");
  Status s = store_->RotateRoot(next, [] { return Status::Ok(); }, meta);
  if (!s.ok()) return Error{"KMSInternalException", s.ToString()};
  Latch(options_.rotate_root_latch_dir, "committed");
  if (root_key_) KeepRootKeyForBackups(std::move(next));
  return std::nullopt;
}

// Passphrase root keys: the new root key is scrypt(new passphrase, new
// salt); the salt is committed with the re-sealed store, so the data
// directory opens with the old passphrase until the commit and with the
// new one from then on.
KmsService::Outcome KmsService::RotateRootPassphrase(Call& c) {
  std::optional<crypto::SecretBytes> passphrase;
  if (auto e = TakeSecretField(c.in, "NewPassphrase", &passphrase)) {
    return Error{"ValidationException", *e};
  }
  auto salt = NewPassphraseSalt();
  if (!salt.ok()) return Error{"KMSInternalException", salt.status().ToString(), 500};
  auto next = RootKeyFromPassphrase(*passphrase, *salt);
  if (!next.ok()) return Error{"KMSInternalException", next.status().ToString()};
  KMS_TRY(CommitNewRoot(std::move(*next), {{"scrypt-salt", *salt}}));
  c.extra["root_key"] = "passphrase";
  return json{{"RootKey", "passphrase"}};
}

// Token root keys: a new random root key sealed by the same token key
// (the token logged in again with the PIN the request gives), committed
// as `root-key-on-token` with the re-sealed store.
KmsService::Outcome KmsService::RotateRootOnToken(Call& c) {
  std::optional<crypto::SecretBytes> pin;
  if (auto e = TakeSecretField(c.in, "Pin", &pin)) return Error{"ValidationException", *e};
  auto token = Pkcs11Token::Open(options_.root_key_uri, *pin);
  if (!token.ok()) {
    return Error{token.status().code() == StatusCode::kPermissionDenied ? "AccessDeniedException"
                                                                        : "KMSInternalException",
                 "the root key's token: " + token.status().ToString()};
  }
  std::string sealed;
  auto next = NewRootKeyOnToken(token->get(), &sealed);
  if (!next.ok()) return Error{"KMSInternalException", next.status().ToString()};
  KMS_TRY(CommitNewRoot(std::move(*next), {{"root-key-on-token", sealed}}));
  c.extra["root_key"] = (*token)->description();
  return json{{"RootKey", (*token)->description()}};
}

}  // namespace envelope::keyservice
