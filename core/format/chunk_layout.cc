#include "core/format/chunk_layout.h"

#include <string>

namespace envelope::format {

StatusOr<ChunkLayout> ChunkLayout::New(uint32_t header_size,
                                       uint32_t chunk_size) {
  bool power_of_two = chunk_size != 0 && (chunk_size & (chunk_size - 1)) == 0;
  if (!power_of_two || chunk_size < kMinChunkSizeInBytes ||
      chunk_size > kMaxChunkSizeInBytes) {
    return Status::InvalidArgument(
        "chunk size must be a power of two from 4096 to 1048576, got " +
        std::to_string(chunk_size));
  }
  if (header_size != kHeaderSizeDekInHeader &&
      header_size != kHeaderSizeDekInXattr) {
    return Status::InvalidArgument("unsupported header size " +
                                   std::to_string(header_size));
  }
  return ChunkLayout(header_size, chunk_size);
}

StatusOr<ChunkLayout> ChunkLayout::ForVolume(bool dek_in_xattr,
                                             uint32_t chunk_size) {
  return New(dek_in_xattr ? kHeaderSizeDekInXattr : kHeaderSizeDekInHeader,
             chunk_size);
}

uint64_t ChunkLayout::ChunkCount(uint64_t size) const {
  if (size == 0) return 1;
  return (size - 1) / chunk_size_ + 1;
}

uint32_t ChunkLayout::ChunkPlaintextSize(uint64_t index, uint64_t size) const {
  uint64_t start = index * chunk_size_;
  if (start >= size) return 0;
  uint64_t rest = size - start;
  return rest >= chunk_size_ ? chunk_size_ : static_cast<uint32_t>(rest);
}

StatusOr<uint64_t> ChunkLayout::PlaintextSize(uint64_t backing_size) const {
  if (backing_size < header_size_ + kChunkOverheadInBytes) {
    return Status::Corruption("backing file of " +
                              std::to_string(backing_size) +
                              " bytes is shorter than a header and one chunk");
  }
  uint64_t body = backing_size - header_size_;
  uint64_t full = body / backing_chunk_size();
  uint64_t rem = body % backing_chunk_size();
  if (rem == 0) return full * chunk_size_;
  if (rem < kChunkOverheadInBytes ||
      (rem == kChunkOverheadInBytes && full > 0)) {
    return Status::Corruption("backing file of " +
                              std::to_string(backing_size) +
                              " bytes ends in a torn chunk");
  }
  return full * chunk_size_ + (rem - kChunkOverheadInBytes);
}

uint64_t ChunkLayout::MaxPlaintextSize() const {
  // Keep the backing size below 2^63 (off_t): chunks add 28 bytes per C.
  constexpr uint64_t kMaxBacking = (uint64_t{1} << 62);
  uint64_t chunks = kMaxBacking / backing_chunk_size();
  return chunks * chunk_size_;
}

}  // namespace envelope::format
