// Where the key service's root key comes from (docs/KEYSERVICE.md,
// "Root key"). Never from argv, never logged.
#ifndef ENVELOPE_KEYSERVICE_ROOT_KEY_H_
#define ENVELOPE_KEYSERVICE_ROOT_KEY_H_

#include <optional>
#include <string>

#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"
#include "keyservice/pkcs11_token.h"

namespace envelope::keyservice {

inline constexpr size_t kRootKeySizeInBytes = 32;

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


// A new root key sealed by the token's key (the URI's object, which must
// exist), opened once before it is trusted: for a root-key rotation of a
// token data directory. The sealed form goes to *sealed.
StatusOr<crypto::SecretBytes> NewRootKeyOnToken(Pkcs11Token* token, std::string* sealed);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_ROOT_KEY_H_
