// SHA-256, HMAC-SHA256, HKDF-SHA256 (RFC 5869) and constant-time comparison.
#ifndef ENVELOPE_CORE_CRYPTO_HASH_H_
#define ENVELOPE_CORE_CRYPTO_HASH_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::crypto {

inline constexpr size_t kSha256SizeInBytes = 32;
using Sha256Digest = std::array<uint8_t, kSha256SizeInBytes>;

Sha256Digest Sha256(ByteView data);

// SHA-256 over several pieces without concatenating them.
// Thread safety: not synchronised; one per thread.
class Sha256Hasher {
 public:
  Sha256Hasher();
  ~Sha256Hasher();
  Sha256Hasher(const Sha256Hasher&) = delete;
  Sha256Hasher& operator=(const Sha256Hasher&) = delete;

  void Update(ByteView data);
  // Resets the hasher after producing the digest.
  Sha256Digest Finish();

 private:
  struct Impl;
  Impl* impl_;
};

// HMAC-SHA256 of `data` under `key`. The result is not secret in our uses
// (signatures, checksums); keys that feed further derivation use HKDF.
Sha256Digest HmacSha256(ByteView key, ByteView data);

// HKDF-SHA256 extract-and-expand. `info` names the key's purpose: every use
// of a key in this project has its own info string (see docs/FORMAT.md).
// REQUIRES: 0 < length <= 255 * 32
StatusOr<SecretBytes> HkdfSha256(ByteView ikm, ByteView salt,
                                 std::string_view info, size_t length);

// The two steps of HkdfSha256, for a caller that derives several keys from
// one input: Extract once (the 32-byte PRK), then Expand for each `info`.
// HkdfSha256(ikm, salt, info, n) == Expand(Extract(ikm, salt), info, n).
StatusOr<SecretBytes> HkdfSha256Extract(ByteView ikm, ByteView salt);
// REQUIRES: prk.size() >= 32; 0 < length <= 255 * 32
StatusOr<SecretBytes> HkdfSha256Expand(ByteView prk, std::string_view info, size_t length);

// True iff a and b have the same length and contents; the time taken does not
// depend on where they differ.
bool ConstantTimeEquals(ByteView a, ByteView b);

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_HASH_H_
