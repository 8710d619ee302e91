// The RotateRootKey extension (root or the daemon's own user): the whole
// store re-sealed under a new root key in one transaction, online, of the
// same kind as now or of another one: a key file, a passphrase, or a key
// sealed by a PKCS#11 token (docs/KEYSERVICE.md, "Root-key rotation").
// kill -9 at any moment leaves a data directory that opens with the old
// root key or the new one.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <thread>

#include <spdlog/spdlog.h>

#include "core/base/fd_io.h"
#include "keyservice/kms_call.h"
#include "keyservice/root_key.h"

namespace envelope::keyservice {

using json = nlohmann::json;

namespace {

// Testing aid: marks `step` reached in `dir` and waits for the test's go.
void Latch(const std::string& dir, const char* step) {
  if (dir.empty()) return;
  UniqueFd(::open((dir + "/" + step + ".reached").c_str(), O_CREAT | O_WRONLY | O_CLOEXEC, 0600));
  while (::access((dir + "/" + step + ".go").c_str(), F_OK) != 0) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// A secret request field (NewPassphrase, Pin) moved into the secure heap;
// the parsed request's copy is wiped.
std::optional<std::string> TakeSecretField(nlohmann::json& in, const char* field,
                                           std::optional<crypto::SecretBytes>* out) {
  auto it = in.find(field);
  if (it == in.end() || !it->is_string() || it->get_ref<const std::string&>().empty()) {
    return std::string(field) + " is required for this root key";
  }
  std::string& text = it->get_ref<std::string&>();
  auto copy = crypto::SecretBytes::CopyOf(AsBytes(text));
  crypto::Cleanse(MutableByteView(reinterpret_cast<uint8_t*>(text.data()), text.size()));
  if (!copy.ok()) return copy.status().message();
  *out = std::move(*copy);
  return std::nullopt;
}

// How to start the daemon after the root key became `to`.
std::string RestartHint(const RootKeySource& to, const std::string& default_file) {
  switch (to.kind) {
    case RootKeyKind::kKeyFile:
      return to.file == default_file
                 ? "start envelope-keyd without --root-key, --root-key-file or --passphrase-*"
                 : "start envelope-keyd with --root-key-file " + to.file;
    case RootKeyKind::kPassphrase:
      return "start envelope-keyd with --passphrase-fd N or --passphrase-prompt";
    case RootKeyKind::kToken:
      return "start envelope-keyd with --root-key '" + to.uri + "' and --pin-fd N or --pin-prompt";
  }
  return "";
}

// What each kind keeps in `meta` beside the check value, so that a change
// of kind deletes the old kind's entries in the commit that makes the new.
std::vector<std::string> MetaOfOtherKinds(RootKeyKind kind) {
  std::vector<std::string> out;
  if (kind != RootKeyKind::kPassphrase) out.push_back(kScryptSaltMeta);
  if (kind != RootKeyKind::kToken) out.push_back(kSealedRootKeyMeta);
  return out;
}

}  // namespace

KmsService::Outcome KmsService::RotateRootKey(Call& c) {
  if (!IsAdmin(c)) {
    return Error{"AccessDeniedException", "only root may rotate the root key"};
  }
  auto writer = store_->LockForWrite();
  if (!root_source_) {
    return Error{"UnsupportedOperationException", "this key service has no rotatable root key"};
  }
  // The new root key: of the current kind and place unless the request
  // names another (RootKeyKind, and RootKeyUri for a token).
  RootKeySource to = *root_source_;
  if (auto it = c.in.find("RootKeyKind"); it != c.in.end()) {
    auto kind = it->is_string() ? ParseRootKeyKind(it->get_ref<const std::string&>())
                                : std::nullopt;
    if (!kind) {
      return Error{"ValidationException", "RootKeyKind must be key-file, passphrase or pkcs11"};
    }
    if (*kind != to.kind) to = RootKeySource{*kind, "", ""};
  }
  if (auto it = c.in.find("RootKeyUri"); it != c.in.end()) {
    if (to.kind != RootKeyKind::kToken) {
      return Error{"ValidationException", "RootKeyUri is for a root key on a token (pkcs11)"};
    }
    if (!it->is_string() || it->get_ref<const std::string&>().rfind("pkcs11:", 0) != 0) {
      return Error{"ValidationException", "RootKeyUri must be a pkcs11: URI (RFC 7512)"};
    }
    to.uri = it->get<std::string>();
  }
  Outcome out;
  switch (to.kind) {
    case RootKeyKind::kKeyFile:
      if (to.file.empty()) to.file = options_.default_root_key_file;
      if (to.file.empty()) {
        return Error{"UnsupportedOperationException", "this key service has no key file place"};
      }
      out = RotateToKeyFile(c, to);
      break;
    case RootKeyKind::kPassphrase:
      out = RotateToPassphrase(c, to);
      break;
    case RootKeyKind::kToken:
      if (to.uri.empty()) {
        return Error{"ValidationException", "RootKeyUri is required to move the root key to a token"};
      }
      out = RotateToToken(c, to);
      break;
  }
  if (auto* ok = std::get_if<json>(&out)) {
    (*ok)["RootKeyKind"] = RootKeyKindName(to.kind);
    (*ok)["Restart"] = RestartHint(to, options_.default_root_key_file);
    c.extra["root_key_kind"] = RootKeyKindName(to.kind);
  }
  return out;
}

std::optional<KmsService::Error> KmsService::CommitNewRoot(
    crypto::SecretBytes next, const RootKeySource& to,
    std::vector<std::pair<std::string, std::string>> meta) {
  meta.emplace_back(kRootKeyModeMeta, RootKeyKindName(to.kind));
  Latch(options_.rotate_root_latch_dir, "written");
  Status s = store_->RotateRoot(next, [] { return Status::Ok(); }, meta,
                                MetaOfOtherKinds(to.kind));
  if (!s.ok()) return Error{"KMSInternalException", s.ToString()};
  Latch(options_.rotate_root_latch_dir, "committed");
  if (root_key_) KeepRootKeyForBackups(std::move(next));
  const RootKeySource from = *root_source_;
  root_source_ = to;
  RemoveOldKeyFile(from, to);
  return std::nullopt;
}

void KmsService::RemoveOldKeyFile(const RootKeySource& from, const RootKeySource& to) const {
  if (from.kind != RootKeyKind::kKeyFile) return;
  if (to.kind == RootKeyKind::kKeyFile && to.file == from.file) return;
  // If this fails (or the daemon dies first), the next start removes it
  // (RemoveLeftoverKeyFiles): it no longer opens the store.
  if (::unlink(from.file.c_str()) != 0 || !SyncDirectoryOf(from.file).ok()) {
    spdlog::warn("the old root key file {} could not be removed: {}", from.file,
                 std::strerror(errno));
  }
}

// A key file: the new key goes to FILE.next (made and fsynced first), the
// store is re-sealed under it in one transaction, and then FILE.next
// replaces FILE. At start envelope-keyd finishes or undoes a rotation that
// was cut short (root_key.h, FinishKeyFileRotation).
KmsService::Outcome KmsService::RotateToKeyFile(Call& c, const RootKeySource& to) {
  const std::string& path = to.file;
  const std::string next_path = path + ".next";
  auto next = crypto::SecretBytes::Random(kRootKeySizeInBytes);
  if (!next.ok()) return NewMaterialError(next.status());
  if (root_source_->kind != RootKeyKind::kKeyFile) {
    // A change of kind: whatever key file is there was left by an earlier
    // change and opens nothing (one that did would be kept, and the
    // rename below would fail on nothing: it replaces FILE).
    RemoveLeftoverKeyFiles(path, store_);
  }
  (void)::unlink(next_path.c_str());  // a leftover of a rotation that never committed
  Status s = WriteNewPrivateFile(next_path, next->view());
  if (s.ok()) s = SyncDirectoryOf(next_path);
  if (!s.ok()) return Error{"KMSInternalException", s.ToString()};
  if (auto e = CommitNewRoot(std::move(*next), to, {})) {
    (void)::unlink(next_path.c_str());
    return *e;
  }
  if (::rename(next_path.c_str(), path.c_str()) != 0) {
    // The store already needs the new key, which FILE.next holds: the next
    // start finishes this step.
    return Error{"KMSInternalException", Status::FromErrno("rename " + next_path).ToString()};
  }
  s = SyncDirectoryOf(path);
  if (!s.ok()) return Error{"KMSInternalException", s.ToString()};
  c.extra["root_key_file"] = path;
  return json{{"RootKeyFile", path}, {"RootKey", "key file " + path}};
}

// A passphrase: the new root key is scrypt(new passphrase, new salt); the
// salt is committed with the re-sealed store, so the data directory opens
// with the old root key until the commit and with the new passphrase from
// then on.
KmsService::Outcome KmsService::RotateToPassphrase(Call& c, const RootKeySource& to) {
  std::optional<crypto::SecretBytes> passphrase;
  if (auto e = TakeSecretField(c.in, "NewPassphrase", &passphrase)) {
    return Error{"ValidationException", *e};
  }
  auto salt = NewPassphraseSalt();
  if (!salt.ok()) return Error{"KMSInternalException", salt.status().ToString(), 500};
  auto next = RootKeyFromPassphrase(*passphrase, *salt);
  if (!next.ok()) return Error{"KMSInternalException", next.status().ToString()};
  KMS_TRY(CommitNewRoot(std::move(*next), to, {{kScryptSaltMeta, *salt}}));
  c.extra["root_key"] = "passphrase";
  return json{{"RootKey", "passphrase"}};
}

// A token: a new random root key sealed by the token's key (the token
// logged in with the PIN the request gives; its key generated there if the
// URI's object does not exist yet), committed as `root-key-on-token` with
// the re-sealed store.
KmsService::Outcome KmsService::RotateToToken(Call& c, const RootKeySource& to) {
  std::optional<crypto::SecretBytes> pin;
  if (auto e = TakeSecretField(c.in, "Pin", &pin)) return Error{"ValidationException", *e};
  auto token = Pkcs11Token::Open(to.uri, *pin);
  if (!token.ok()) {
    return Error{token.status().code() == StatusCode::kPermissionDenied ? "AccessDeniedException"
                                                                        : "KMSInternalException",
                 "the root key's token: " + token.status().ToString()};
  }
  std::string sealed;
  bool generated = false;
  auto next = RootKeyFromToken(token->get(), std::nullopt, &sealed, &generated);
  if (!next.ok()) return Error{"KMSInternalException", next.status().ToString()};
  if (generated) spdlog::info("generated a new AES-256 key on the {}", (*token)->description());
  KMS_TRY(CommitNewRoot(std::move(*next), to, {{kSealedRootKeyMeta, sealed}}));
  c.extra["root_key"] = (*token)->description();
  return json{{"RootKey", (*token)->description()}};
}

}  // namespace envelope::keyservice
