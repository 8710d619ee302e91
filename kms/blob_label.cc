#include "kms/blob_label.h"

namespace envelope::kms {

namespace {
// 'E' 'K' | version 0x01 | key id (16) | key version (u32 LE) | nonce (12)
// | ciphertext | tag (16).
constexpr size_t kLabelSizeInBytes = 2 + 1 + 16 + 4;
constexpr size_t kMinBlobSizeInBytes = kLabelSizeInBytes + 12 + 16;
}  // namespace

StatusOr<BlobLabel> ReadBlobLabel(ByteView blob) {
  if (blob.size() < kMinBlobSizeInBytes || blob[0] != 'E' || blob[1] != 'K') {
    return Status::InvalidArgument("not an envelope-keyd ciphertext blob");
  }
  if (blob[2] != 1) {
    return Status::InvalidArgument("unsupported ciphertext blob version " +
                                   std::to_string(blob[2]));
  }
  const std::string hex = HexEncode(blob.subspan(3, 16));
  BlobLabel label;
  label.key_id = hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
                 hex.substr(16, 4) + "-" + hex.substr(20);
  label.key_version = DecodeFixed32(blob.data() + 19);
  return label;
}

}  // namespace envelope::kms
