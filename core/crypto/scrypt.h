// scrypt (RFC 7914) for turning a passphrase into a key.
#ifndef ENVELOPE_CORE_CRYPTO_SCRYPT_H_
#define ENVELOPE_CORE_CRYPTO_SCRYPT_H_

#include <cstdint>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::crypto {

struct ScryptParams {
  uint64_t n = uint64_t{1} << 15;  // 32 MiB of memory with r = 8
  uint64_t r = 8;
  uint64_t p = 1;
};

StatusOr<SecretBytes> Scrypt(ByteView passphrase, ByteView salt, const ScryptParams& params,
                             size_t length);

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_SCRYPT_H_
