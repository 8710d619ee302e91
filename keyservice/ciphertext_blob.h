// The key service's ciphertext blob, format version 1 (docs/KEYSERVICE.md,
// "Ciphertext blob"). Clients treat it as opaque bytes; only the key service
// builds and parses it.
//
//   blob := 'E' 'K' | version (1) | key id (16, raw UUID) | key version
//           (u32 LE) | nonce (12) | ciphertext | tag (16)
//   AAD  := "envelope-keyd/v1/blob" | blob[0..23) | EncodeContext(context)
//
// The first 23 bytes name the key and version, so Decrypt needs no KeyId
// and finds the material directly; authenticating them (and the context)
// means a blob cannot be re-labelled with another key, version or context.
#ifndef ENVELOPE_KEYSERVICE_CIPHERTEXT_BLOB_H_
#define ENVELOPE_KEYSERVICE_CIPHERTEXT_BLOB_H_

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/aes_gcm.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::keyservice {

using EncryptionContext = std::map<std::string, std::string>;
using KeyIdBytes = std::array<uint8_t, 16>;

inline constexpr uint8_t kBlobMagic[2] = {'E', 'K'};
inline constexpr uint8_t kBlobVersion = 1;
inline constexpr size_t kBlobHeaderSizeInBytes = 2 + 1 + 16 + 4;
inline constexpr size_t kBlobOverheadInBytes = kBlobHeaderSizeInBytes + 12 + 16;
static_assert(kBlobOverheadInBytes == 51);

// Unambiguous, canonical encoding of an encryption context: pairs sorted by
// key (std::map order, bytewise), then
//   count (u32 LE) | { len(key) u32 LE | key | len(value) u32 LE | value }*
// Length prefixes make {"a":"bc"} and {"ab":"c"} encode differently, which
// a plain concatenation "k1v1k2v2" would not.
Bytes EncodeContext(const EncryptionContext& context);

// "1b4e28ba-2fa1-11d2-883f-0016d3cca427" <-> 16 bytes. Lower-case only on
// output; parsing accepts either case.
bool ParseKeyId(std::string_view text, KeyIdBytes* out);
std::string FormatKeyId(const KeyIdBytes& id);

struct BlobHeader {
  KeyIdBytes key_id{};
  uint32_t key_version = 0;
};

// Seals `plaintext` under `material` (a 32-byte key version).
StatusOr<Bytes> SealBlob(const crypto::SecretBytes& material,
                         const BlobHeader& header,
                         const EncryptionContext& context,
                         ByteView plaintext);

// The same for many plaintexts under one key version: the key is expanded
// once (a batch of data keys would otherwise build a cipher context per
// key). Each blob still gets its own random nonce.
//
// Thread safety: none; one sealer per request.
class BlobSealer {
 public:
  static StatusOr<BlobSealer> New(const crypto::SecretBytes& material, const BlobHeader& header);
  StatusOr<Bytes> Seal(const EncryptionContext& context, ByteView plaintext);

 private:
  BlobSealer(crypto::Aes256Gcm aead, const BlobHeader& header)
      : aead_(std::move(aead)), header_(header) {}
  crypto::Aes256Gcm aead_;
  BlobHeader header_;
};

// The same blob layout and AAD with the AEAD done elsewhere: on a PKCS#11
// token (custom key stores). `seal` gets the plaintext and the AAD and
// returns nonce (12) | ciphertext | tag (16); `open` gets that and the AAD
// and returns the plaintext, Corruption if it does not authenticate.
using ExternalSeal = std::function<StatusOr<Bytes>(ByteView plaintext, ByteView aad)>;
using ExternalOpen =
    std::function<StatusOr<crypto::SecretBytes>(ByteView sealed, ByteView aad)>;
StatusOr<Bytes> SealBlobWith(const BlobHeader& header, const EncryptionContext& context,
                             ByteView plaintext, const ExternalSeal& seal);
StatusOr<crypto::SecretBytes> OpenBlobWith(ByteView blob, const EncryptionContext& context,
                                           const ExternalOpen& open);

// Reads the key id and version without decrypting. InvalidArgument for
// anything that is not a version-1 blob (the caller maps it to
// InvalidCiphertextException).
StatusOr<BlobHeader> PeekBlob(ByteView blob);

// Authenticates and decrypts. Corruption if the blob, the material or the
// context do not match.
StatusOr<crypto::SecretBytes> OpenBlob(const crypto::SecretBytes& material,
                                       ByteView blob,
                                       const EncryptionContext& context);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_CIPHERTEXT_BLOB_H_
