#include "kms/blob_label.h"

#include "core/base/uuid.h"

namespace envelope::kms {

StatusOr<BlobLabel> ReadBlobLabel(ByteView blob) {
  if (blob.size() < kBlobOverheadInBytes || blob[0] != 'E' || blob[1] != 'K') {
    return Status::InvalidArgument("not an envelope-keyd ciphertext blob");
  }
  if (blob[2] != 1) {
    return Status::InvalidArgument("unsupported ciphertext blob version " +
                                   std::to_string(blob[2]));
  }
  BlobLabel label;
  label.key_id = FormatUuid(blob.subspan(3, 16));
  label.key_version = DecodeFixed32(blob.data() + 19);
  label.plaintext_size = blob.size() - kBlobOverheadInBytes;
  return label;
}

}  // namespace envelope::kms
