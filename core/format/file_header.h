// The envelopefs file header, format versions 1 and 2 (docs/FORMAT.md,
// "Header"; version 2 marks a file that may have holes, §6).
//
// A value type with EncodeTo/DecodeFrom in the leveldb style. Decoding checks
// everything that can be checked without the DEK: magic, version, flags,
// chunk size and the checksum of each wrapped-DEK slot. The key commitment is
// checked later, once the key service has unwrapped the DEK (ChunkCipher).
#ifndef ENVELOPE_CORE_FORMAT_FILE_HEADER_H_
#define ENVELOPE_CORE_FORMAT_FILE_HEADER_H_

#include <array>
#include <cstdint>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/format/format_constants.h"

namespace envelope::format {

using FileId = std::array<uint8_t, kFileIdSizeInBytes>;
using Commitment = std::array<uint8_t, kCommitmentSizeInBytes>;

// One wrapped-DEK slot. generation == 0 means the slot is unused.
struct DekSlot {
  uint64_t generation = 0;
  Bytes wrapped_dek;  // opaque ciphertext blob from the key service
};

enum class SlotState {
  kEmpty,    // all 512 bytes zero: never written
  kValid,    // checksum holds
  kDamaged,  // neither: a torn write or tampering; never used
};

struct FileHeader {
  uint16_t version = kFormatVersionDense;
  uint16_t flags = 0;
  uint32_t chunk_size = kDefaultChunkSizeInBytes;
  FileId file_id{};
  Commitment commitment{};
  // Header mode: both slots as stored. Xattr mode: slot 0 holds the xattr's
  // blob (generation 1) once header_io has read it; slot 1 is unused.
  std::array<DekSlot, kSlotCount> slots;
  std::array<SlotState, kSlotCount> slot_states{SlotState::kEmpty,
                                                SlotState::kEmpty};

  bool dek_in_xattr() const { return (flags & kFlagDekInXattr) != 0; }
  // Version 2: interior chunks that read as all zeros are holes.
  bool sparse() const { return version == kFormatVersionSparse; }
  // Encoded size: 1088 bytes with the DEK in the header, 64 with the xattr.
  uint32_t encoded_size() const {
    return dek_in_xattr() ? kHeaderSizeDekInXattr : kHeaderSizeDekInHeader;
  }

  // Writes the 64-byte prefix (magic to commitment) to `out`.
  void EncodePrefixTo(uint8_t* out) const;

  // Appends the encoded header to *out.
  // REQUIRES: every non-empty slot's blob is 1..486 bytes (checked by
  // ValidateWrappedDekSize before it is stored).
  void EncodeTo(Bytes* out) const;

  // Decodes a header from the start of `in`. Fails with Corruption, naming
  // the wanted and found values, on anything a version-1 or version-2
  // writer never produces. Damaged slots are reported in slot_states, not as an error,
  // because a torn slot write is the expected trace of an interrupted
  // rotation; ActiveSlot() decides whether the file is still usable.
  static StatusOr<FileHeader> DecodeFrom(ByteView in);

  // The slot that holds the current wrapped DEK: the valid slot with the
  // highest generation. Corruption if no slot is valid.
  StatusOr<size_t> ActiveSlot() const;
};

// Fails unless 1 <= size <= 486 (the slot capacity; xattr mode uses the same
// bound so that a volume can switch modes without surprises).
Status ValidateWrappedDekSize(size_t size);

// Encodes one slot into exactly kSlotSizeInBytes bytes at `out`.
void EncodeSlot(const DekSlot& slot, uint8_t* out);
// Decodes one slot from exactly kSlotSizeInBytes bytes.
SlotState DecodeSlot(const uint8_t* in, DekSlot* slot);
// Offset of slot `index` inside the header.
inline constexpr size_t SlotOffset(size_t index) {
  return kHeaderPrefixSizeInBytes + index * kSlotSizeInBytes;
}

}  // namespace envelope::format

#endif  // ENVELOPE_CORE_FORMAT_FILE_HEADER_H_
