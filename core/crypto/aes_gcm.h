// AES-256-GCM with a random 96-bit nonce chosen inside Seal().
//
// Like Tink's Aead, callers never pass a nonce, so they cannot reuse one.
// Sealed layout: nonce (12) || ciphertext (same length as plaintext) ||
// tag (16). Random nonces are required because envelopefs rewrites chunks in
// place (deriving nonces from a position would repeat them); the NIST
// SP 800-38D bound of 2^32 random-nonce messages per key therefore applies
// per DEK, see docs/FORMAT.md.
//
// Thread safety: an Aes256Gcm holds one OpenSSL context with the expanded
// key and is not synchronised; use one object per thread or guard it.
#ifndef ENVELOPE_CORE_CRYPTO_AES_GCM_H_
#define ENVELOPE_CORE_CRYPTO_AES_GCM_H_

#include <cstddef>
#include <memory>

#include "core/base/coding.h"
#include "core/base/status.h"

struct evp_cipher_ctx_st;  // OpenSSL's EVP_CIPHER_CTX, kept out of headers

namespace envelope::crypto {

class Aes256Gcm {
 public:
  static constexpr size_t kKeySizeInBytes = 32;
  static constexpr size_t kNonceSizeInBytes = 12;
  static constexpr size_t kTagSizeInBytes = 16;
  static constexpr size_t kOverheadInBytes = kNonceSizeInBytes + kTagSizeInBytes;

  // Expands `key` into a new context. The key bytes are not retained.
  // Fails with InvalidArgument unless key.size() == kKeySizeInBytes.
  static StatusOr<Aes256Gcm> New(ByteView key);

  // Another context with the same expanded key (the key bytes are not
  // needed), for another thread: one context is not safe to share.
  StatusOr<Aes256Gcm> Clone() const;

  Aes256Gcm(Aes256Gcm&&) noexcept;
  Aes256Gcm& operator=(Aes256Gcm&&) noexcept;
  ~Aes256Gcm();  // wipes the expanded key

  // Writes nonce || ciphertext || tag to `out`.
  // REQUIRES: out.size() == plaintext.size() + kOverheadInBytes; `out` does
  // not overlap `plaintext` except exactly at out[kNonceSizeInBytes].
  Status Seal(ByteView plaintext, ByteView aad, MutableByteView out);

  // Authenticates and decrypts `sealed` into `out`. On failure returns
  // Corruption and wipes `out`, so unauthenticated plaintext never escapes.
  // REQUIRES: out.size() + kOverheadInBytes == sealed.size()
  Status Open(ByteView sealed, ByteView aad, MutableByteView out);

  // Seal with a caller-chosen nonce. Only for known-answer tests: reusing a
  // nonce under one key destroys GCM's security.
  Status SealWithNonceForTesting(ByteView nonce, ByteView plaintext,
                                 ByteView aad, MutableByteView out);

 private:
  explicit Aes256Gcm(evp_cipher_ctx_st* ctx) : ctx_(ctx) {}
  Status SealWithNonce(ByteView nonce, ByteView plaintext, ByteView aad,
                       MutableByteView out);

  evp_cipher_ctx_st* ctx_ = nullptr;  // owned
};

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_AES_GCM_H_
