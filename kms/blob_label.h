// The clear label of an envelope-keyd ciphertext blob: which key and which
// key version sealed it (docs/KEYSERVICE.md, "Ciphertext blob"). Like the
// "vault:v2:" prefix of a Vault transit ciphertext, the label is public by
// design, so a client can tell which blobs a rotation still has to re-wrap
// without asking the service. Everything after the label stays opaque.
#ifndef ENVELOPE_KMS_BLOB_LABEL_H_
#define ENVELOPE_KMS_BLOB_LABEL_H_

#include <cstdint>
#include <string>

#include "core/base/coding.h"
#include "core/base/status.h"

namespace envelope::kms {

// 'E' 'K' | version 0x01 | key id (16) | key version (u32 LE), then a
// 12-byte nonce, the ciphertext and a 16-byte tag.
inline constexpr size_t kBlobLabelSizeInBytes = 2 + 1 + 16 + 4;
inline constexpr size_t kBlobOverheadInBytes = kBlobLabelSizeInBytes + 12 + 16;

struct BlobLabel {
  std::string key_id;  // the key's UUID, lower case
  uint32_t key_version = 0;
  size_t plaintext_size = 0;  // the blob's size less kBlobOverheadInBytes
};

// InvalidArgument for bytes that are not a version-1 envelope-keyd blob.
StatusOr<BlobLabel> ReadBlobLabel(ByteView blob);

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_BLOB_LABEL_H_
