// AES key wrap with padding (RFC 5649, AES-256-WRAP-PAD): the second half
// of AWS's RSA_AES_KEY_WRAP import (docs/KEYSERVICE.md, "Imported key
// material"), where key material is wrapped under an ephemeral AES key that
// RSA-OAEP wraps in turn.
#ifndef ENVELOPE_CORE_CRYPTO_AES_KEY_WRAP_H_
#define ENVELOPE_CORE_CRYPTO_AES_KEY_WRAP_H_

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::crypto {

// `kek` must be 32 bytes.
StatusOr<Bytes> AesKeyWrapPad(const SecretBytes& kek, ByteView plaintext);
// Corruption if `wrapped` does not unwrap (wrong key, damaged).
StatusOr<SecretBytes> AesKeyUnwrapPad(const SecretBytes& kek, ByteView wrapped);

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_AES_KEY_WRAP_H_
