// AES-SIV (RFC 5297), deterministic authenticated encryption, for file and
// directory names: the same name in the same directory must always encrypt
// to the same backing name, so that lookups need no directory scan.
//
// Output layout: SIV tag (16) || ciphertext (same length as plaintext).
// Thread safety: one object may be shared between threads. Every call works
// in its own OpenSSL context, copied (under a mutex) from a context keyed
// once at New(): keying an SIV context fetches CMAC and two ciphers and
// derives the CMAC subkeys, which cost more than sealing a name.
#ifndef ENVELOPE_CORE_CRYPTO_AES_SIV_H_
#define ENVELOPE_CORE_CRYPTO_AES_SIV_H_

#include <memory>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

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
  struct Keyed;  // the keyed contexts to copy from (aes_siv.cc)
  explicit AesSiv(std::shared_ptr<Keyed> keyed) : keyed_(std::move(keyed)) {}
  std::shared_ptr<Keyed> keyed_;
};

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_AES_SIV_H_
