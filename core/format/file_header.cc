#include "core/format/file_header.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "core/crypto/hash.h"

namespace envelope::format {

namespace {

constexpr size_t kSlotGenerationOffset = 0;
constexpr size_t kSlotLengthOffset = 8;
constexpr size_t kSlotBlobOffset = 10;
constexpr size_t kSlotChecksumOffset =
    kSlotSizeInBytes - kSlotChecksumSizeInBytes;
static_assert(kSlotBlobOffset + kSlotBlobCapacityInBytes ==
              kSlotChecksumOffset);

// First 16 bytes of SHA-256(domain || slot bytes 0..495). Detects torn
// writes; authenticity comes from the key service's AEAD over the blob.
void SlotChecksum(const uint8_t* slot, uint8_t* out) {
  crypto::Sha256Hasher hasher;
  hasher.Update(AsBytes(kSlotChecksumDomain));
  hasher.Update(ByteView(slot, kSlotChecksumOffset));
  crypto::Sha256Digest digest = hasher.Finish();
  std::memcpy(out, digest.data(), kSlotChecksumSizeInBytes);
}

std::string Hex16(uint32_t v) {
  char buf[16];
  std::snprintf(buf, sizeof(buf), "0x%04x", v);
  return buf;
}

}  // namespace

Status ValidateWrappedDekSize(size_t size) {
  if (size == 0 || size > kSlotBlobCapacityInBytes) {
    return Status::InvalidArgument(
        "wrapped DEK of " + std::to_string(size) +
        " bytes does not fit a header slot (1 to 486 bytes)");
  }
  return Status::Ok();
}

void EncodeSlot(const DekSlot& slot, uint8_t* out) {
  std::memset(out, 0, kSlotSizeInBytes);
  if (slot.generation == 0) return;  // an empty slot is all zeros
  EncodeFixed64(out + kSlotGenerationOffset, slot.generation);
  EncodeFixed16(out + kSlotLengthOffset,
                static_cast<uint16_t>(slot.wrapped_dek.size()));
  std::memcpy(out + kSlotBlobOffset, slot.wrapped_dek.data(),
              slot.wrapped_dek.size());
  SlotChecksum(out, out + kSlotChecksumOffset);
}

SlotState DecodeSlot(const uint8_t* in, DekSlot* slot) {
  *slot = DekSlot();
  if (std::all_of(in, in + kSlotSizeInBytes, [](uint8_t b) { return b == 0; })) {
    return SlotState::kEmpty;
  }
  uint8_t want[kSlotChecksumSizeInBytes];
  SlotChecksum(in, want);
  // The checksum is not a secret-dependent value; plain compare is fine.
  if (std::memcmp(want, in + kSlotChecksumOffset, sizeof(want)) != 0) {
    return SlotState::kDamaged;
  }
  uint64_t generation = DecodeFixed64(in + kSlotGenerationOffset);
  uint16_t length = DecodeFixed16(in + kSlotLengthOffset);
  if (generation == 0 || !ValidateWrappedDekSize(length).ok()) {
    return SlotState::kDamaged;  // checksummed, but no writer makes this
  }
  // Bytes past the blob must be zero: the writer pads with zeros, and the
  // checksum covers them, so anything else is a writer bug.
  const uint8_t* pad = in + kSlotBlobOffset + length;
  const uint8_t* pad_end = in + kSlotChecksumOffset;
  if (!std::all_of(pad, pad_end, [](uint8_t b) { return b == 0; })) {
    return SlotState::kDamaged;
  }
  slot->generation = generation;
  slot->wrapped_dek.assign(in + kSlotBlobOffset, in + kSlotBlobOffset + length);
  return SlotState::kValid;
}

void FileHeader::EncodePrefixTo(uint8_t* p) const {
  std::memcpy(p, kMagic, sizeof(kMagic));
  EncodeFixed16(p + 8, version);
  EncodeFixed16(p + 10, flags);
  EncodeFixed32(p + 12, chunk_size);
  std::memcpy(p + 16, file_id.data(), file_id.size());
  std::memcpy(p + 32, commitment.data(), commitment.size());
}

void FileHeader::EncodeTo(Bytes* out) const {
  size_t start = out->size();
  out->resize(start + encoded_size(), 0);
  uint8_t* p = out->data() + start;
  EncodePrefixTo(p);
  if (!dek_in_xattr()) {
    for (size_t i = 0; i < kSlotCount; ++i) {
      EncodeSlot(slots[i], p + SlotOffset(i));
    }
  }
}

StatusOr<FileHeader> FileHeader::DecodeFrom(ByteView in) {
  if (in.size() < kHeaderPrefixSizeInBytes) {
    return Status::Corruption("header: wanted at least 64 bytes, found " +
                              std::to_string(in.size()));
  }
  const uint8_t* p = in.data();
  if (std::memcmp(p, kMagic, sizeof(kMagic)) != 0) {
    return Status::Corruption("header: bad magic (not an envelopefs file)");
  }
  FileHeader h;
  h.version = DecodeFixed16(p + 8);
  if (h.version != kFormatVersionDense && h.version != kFormatVersionSparse) {
    return Status::Corruption("header: wanted format version 1 or 2, found " +
                              std::to_string(h.version));
  }
  h.flags = DecodeFixed16(p + 10);
  if ((h.flags & ~kKnownFlags) != 0) {
    return Status::Corruption("header: unknown flags " + Hex16(h.flags));
  }
  h.chunk_size = DecodeFixed32(p + 12);
  bool power_of_two = h.chunk_size != 0 && (h.chunk_size & (h.chunk_size - 1)) == 0;
  if (!power_of_two || h.chunk_size < kMinChunkSizeInBytes ||
      h.chunk_size > kMaxChunkSizeInBytes) {
    return Status::Corruption("header: invalid chunk size " +
                              std::to_string(h.chunk_size));
  }
  std::memcpy(h.file_id.data(), p + 16, h.file_id.size());
  std::memcpy(h.commitment.data(), p + 32, h.commitment.size());
  if (!h.dek_in_xattr()) {
    if (in.size() < kHeaderSizeDekInHeader) {
      return Status::Corruption("header: wanted 1088 bytes, found " +
                                std::to_string(in.size()));
    }
    for (size_t i = 0; i < kSlotCount; ++i) {
      h.slot_states[i] = DecodeSlot(p + SlotOffset(i), &h.slots[i]);
    }
  }
  return h;
}

StatusOr<size_t> FileHeader::ActiveSlot() const {
  int best = -1;
  for (size_t i = 0; i < kSlotCount; ++i) {
    if (slot_states[i] != SlotState::kValid) continue;
    if (best >= 0 && slots[i].generation == slots[best].generation) {
      return Status::Corruption("header: two slots with generation " +
                                std::to_string(slots[i].generation));
    }
    if (best < 0 || slots[i].generation > slots[best].generation) {
      best = static_cast<int>(i);
    }
  }
  if (best < 0) {
    return Status::Corruption("header: no intact wrapped-DEK slot");
  }
  return static_cast<size_t>(best);
}

}  // namespace envelope::format
