// Where the key service's root key comes from (docs/KEYSERVICE.md,
// "Root key"). Never from argv, never logged.
#ifndef ENVELOPE_KEYSERVICE_ROOT_KEY_H_
#define ENVELOPE_KEYSERVICE_ROOT_KEY_H_

#include <optional>
#include <string>
#include <string_view>

#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"
#include "keyservice/key_store.h"
#include "keyservice/pkcs11_token.h"

namespace envelope::keyservice {

inline constexpr size_t kRootKeySizeInBytes = 32;

// The kinds of root key a data directory can have. `meta` `root-key-mode`
// records which one it has, by the names below; a daemon started another
// way is refused. RotateRootKey can change it (docs/KEYSERVICE.md,
// "Root-key rotation").
enum class RootKeyKind { kKeyFile, kPassphrase, kToken };
// "key-file", "passphrase", "pkcs11".
const char* RootKeyKindName(RootKeyKind kind);
std::optional<RootKeyKind> ParseRootKeyKind(std::string_view name);

// The `meta` entries of the root key: its kind, a passphrase's scrypt
// salt, a token's sealed root key.
inline constexpr char kRootKeyModeMeta[] = "root-key-mode";
inline constexpr char kScryptSaltMeta[] = "scrypt-salt";
inline constexpr char kSealedRootKeyMeta[] = "root-key-on-token";

// A data directory's root key: its kind and where it lives (the key file,
// or the token's URI; neither for a passphrase).
struct RootKeySource {
  RootKeyKind kind = RootKeyKind::kKeyFile;
  std::string file;
  std::string uri;
};

// Writes `data` to a new file at `path` (mode 0600, O_EXCL, no symlink
// followed) and fsyncs it.
Status WriteNewPrivateFile(const std::string& path, ByteView data);

// fsyncs the directory holding `path`, so that a file made or renamed
// there survives a crash.
Status SyncDirectoryOf(const std::string& path);

// Reads the 32-byte root key file at `path`, or creates it (0600, random)
// if it does not exist. Refuses a file that group or others can access.
StatusOr<crypto::SecretBytes> LoadOrCreateRootKeyFile(const std::string& path,
                                                      bool* created);

// Reads a passphrase (up to the first newline or EOF, at most 1024 bytes)
// from file descriptor `fd`, or from the terminal with echo off if fd < 0.
// `what` names it in errors ("passphrase", "PIN").
StatusOr<crypto::SecretBytes> ReadPassphrase(int fd, const char* prompt,
                                             const char* what = "passphrase");

// A new scrypt salt for a passphrase root key: 32 random bytes in hex, as
// `meta` `scrypt-salt` holds it.
StatusOr<std::string> NewPassphraseSalt();
// scrypt(passphrase, salt) with N=2^15, r=8, p=1 -> 32-byte root key.
StatusOr<crypto::SecretBytes> RootKeyFromPassphrase(const crypto::SecretBytes& passphrase,
                                                    std::string_view salt);

// The root key kept by a PKCS#11 token: 32 random bytes, sealed by the
// token's AES key (the URI's object; AES-GCM on the token, AAD
// "envelope-keyd/v1/root-key-on-token") and stored in the data directory
// as `sealed`. The token opens it at every start; without the token and
// its PIN the data directory opens to nobody.
//
// With `sealed` absent (a new data directory) it makes the root key: it
// uses the token's key, generating it on the token if there is none
// (*generated_token_key), and returns the root key with its sealed form in
// *new_sealed for the caller to store before first use.
StatusOr<crypto::SecretBytes> RootKeyFromToken(Pkcs11Token* token,
                                               const std::optional<std::string>& sealed,
                                               std::string* new_sealed,
                                               bool* generated_token_key);


// Key files at start (a rotation of, or to, a key-file root key writes the
// new key to FILE.next, re-seals the store under it in one transaction,
// then renames FILE.next over FILE):
//
// TakeCommittedKeyFile, before a key-file data directory loads FILE: if
// FILE is missing and FILE.next is there, a change to a key-file root key
// committed and was cut short before the rename, which it finishes.
Status TakeCommittedKeyFile(const std::string& path);
// FinishKeyFileRotation, after the store was unlocked with FILE (`unlocked`
// is how that went): FILE.next beside FILE is a rotation cut short. If FILE
// opened the store, it never committed and FILE.next goes; if only
// FILE.next opens it, the rename is finished and *root becomes that key.
Status FinishKeyFileRotation(const std::string& path, KeyStore* store,
                             crypto::SecretBytes* root, Status unlocked);
// RemoveLeftoverKeyFiles, in a data directory whose root key is not a key
// file: FILE (the key file of before a change of kind whose removal was cut
// short) and FILE.next (the new key file of a change to a key file that
// never committed) open nothing, and are removed. One that does open the
// store is kept, with a warning.
void RemoveLeftoverKeyFiles(const std::string& path, KeyStore* store);

// A new root key sealed by the token's key (the URI's object, which must
// exist), opened once before it is trusted: for a root-key rotation of a
// token data directory. The sealed form goes to *sealed.
StatusOr<crypto::SecretBytes> NewRootKeyOnToken(Pkcs11Token* token, std::string* sealed);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_ROOT_KEY_H_
