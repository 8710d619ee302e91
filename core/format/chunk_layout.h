// Offset arithmetic between plaintext positions and backing-file positions.
// Pure functions, no I/O: tested without a file (like gocryptfs's
// contentenc/offsets.go).
//
// A file of plaintext size P has n = max(1, ceil(P / C)) chunks; every chunk
// but the last holds C plaintext bytes, the last holds the rest (0 bytes only
// for the empty file). On disk each chunk is C + 28 bytes (the last: its
// plaintext + 28), after a header of H bytes.
#ifndef ENVELOPE_CORE_FORMAT_CHUNK_LAYOUT_H_
#define ENVELOPE_CORE_FORMAT_CHUNK_LAYOUT_H_

#include <cstdint>

#include "core/base/status.h"
#include "core/format/format_constants.h"

namespace envelope::format {

class ChunkLayout {
 public:
  // Validates: chunk size a power of two in [4 KiB, 1 MiB], header size one
  // of the two version-1 sizes.
  static StatusOr<ChunkLayout> New(uint32_t header_size, uint32_t chunk_size);
  // The layout of a volume: header size follows from where DEKs live.
  static StatusOr<ChunkLayout> ForVolume(bool dek_in_xattr,
                                         uint32_t chunk_size);

  uint32_t header_size() const { return header_size_; }
  uint32_t chunk_size() const { return chunk_size_; }
  uint64_t backing_chunk_size() const {
    return uint64_t{chunk_size_} + kChunkOverheadInBytes;
  }

  // Number of chunks of a file of plaintext size `size` (at least 1).
  uint64_t ChunkCount(uint64_t size) const;
  uint64_t LastChunkIndex(uint64_t size) const { return ChunkCount(size) - 1; }
  // Plaintext bytes held by chunk `index` of a file of size `size`.
  // REQUIRES: index < ChunkCount(size)
  uint32_t ChunkPlaintextSize(uint64_t index, uint64_t size) const;
  // Offset in the backing file where chunk `index` starts.
  uint64_t ChunkOffset(uint64_t index) const {
    return header_size_ + index * backing_chunk_size();
  }
  // The chunk whose backing bytes hold `backing_offset` (the inverse of
  // ChunkOffset). REQUIRES: backing_offset >= header_size()
  uint64_t ChunkIndexAt(uint64_t backing_offset) const {
    return (backing_offset - header_size_) / backing_chunk_size();
  }
  // Backing size of a file of plaintext size `size`.
  uint64_t BackingSize(uint64_t size) const {
    return header_size_ + size + ChunkCount(size) * kChunkOverheadInBytes;
  }
  // Plaintext size of a backing file of `backing_size` bytes. Fails with
  // Corruption for sizes no valid file has (shorter than header plus one
  // empty chunk, a trailing fragment shorter than a chunk's overhead, or an
  // empty chunk after full ones).
  StatusOr<uint64_t> PlaintextSize(uint64_t backing_size) const;
  // The largest plaintext size representable: chunk indices and backing
  // offsets must fit in 64 bits, and we stay below off_t's range.
  uint64_t MaxPlaintextSize() const;

 private:
  ChunkLayout(uint32_t header_size, uint32_t chunk_size)
      : header_size_(header_size), chunk_size_(chunk_size) {}

  uint32_t header_size_;
  uint32_t chunk_size_;
};

}  // namespace envelope::format

#endif  // ENVELOPE_CORE_FORMAT_CHUNK_LAYOUT_H_
