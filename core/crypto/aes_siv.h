// AES-SIV (RFC 5297), deterministic authenticated encryption, for file and
// directory names: the same name in the same directory must always encrypt
// to the same backing name, so that lookups need no directory scan.
//
// Output layout: SIV tag (16) || ciphertext (same length as plaintext).
// Thread safety: stateless apart from the key; every call builds its own
// OpenSSL context, so one object may be shared between threads.
#ifndef ENVELOPE_CORE_CRYPTO_AES_SIV_H_
#define ENVELOPE_CORE_CRYPTO_AES_SIV_H_

#include <memory>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

struct evp_cipher_st;  // OpenSSL's EVP_CIPHER, kept out of headers

namespace envelope::crypto {

class AesSiv {
 public:
  // AES-SIV with two AES-128 halves: a 32-byte key ("AES-128-SIV" in
  // OpenSSL's naming; 256 bits of key in all, 128-bit security).
  static constexpr size_t kKeySizeInBytes = 32;
  static constexpr size_t kTagSizeInBytes = 16;

  static StatusOr<AesSiv> New(ByteView key);

  // Encrypts `plaintext` (at least 1 byte: OpenSSL 3.0's SIV rejects an
  // empty one) with one associated-data component.
  StatusOr<Bytes> Seal(ByteView plaintext, ByteView associated_data) const;
  // Corruption if the tag does not verify.
  StatusOr<Bytes> Open(ByteView sealed, ByteView associated_data) const;

 private:
  AesSiv(std::shared_ptr<const SecretBytes> key, std::shared_ptr<evp_cipher_st> cipher)
      : key_(std::move(key)), cipher_(std::move(cipher)) {}
  std::shared_ptr<const SecretBytes> key_;
  // Fetched once: EVP_CIPHER_fetch takes a lock and a lookup, and every
  // file-name operation of a mount comes through here.
  std::shared_ptr<evp_cipher_st> cipher_;
};

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_AES_SIV_H_
