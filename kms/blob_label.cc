#include "kms/blob_label.h"

namespace envelope::kms {

StatusOr<BlobLabel> ReadBlobLabel(ByteView blob) {
  if (blob.size() < kBlobOverheadInBytes || blob[0] != 'E' || blob[1] != 'K') {
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
