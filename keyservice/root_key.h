// Where the key service's root key comes from (docs/KEYSERVICE.md,
// "Root key"). Never from argv, never logged.
#ifndef ENVELOPE_KEYSERVICE_ROOT_KEY_H_
#define ENVELOPE_KEYSERVICE_ROOT_KEY_H_

#include <string>

#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::keyservice {

inline constexpr size_t kRootKeySizeInBytes = 32;

// Reads the 32-byte root key file at `path`, or creates it (0600, random)
// if it does not exist. Refuses a file that group or others can access.
StatusOr<crypto::SecretBytes> LoadOrCreateRootKeyFile(const std::string& path,
                                                      bool* created);

// Reads a passphrase (up to the first newline or EOF, at most 1024 bytes)
// from file descriptor `fd`, or from the terminal with echo off if fd < 0.
StatusOr<crypto::SecretBytes> ReadPassphrase(int fd, const char* prompt);

// scrypt(passphrase, salt) with N=2^15, r=8, p=1 -> 32-byte root key.
StatusOr<crypto::SecretBytes> RootKeyFromPassphrase(const crypto::SecretBytes& passphrase,
                                                    std::string_view salt);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_ROOT_KEY_H_
