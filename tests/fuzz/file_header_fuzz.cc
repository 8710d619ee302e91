// Fuzzes the file header: FileHeader::DecodeFrom and ActiveSlot on the raw
// input, the same after the harness repairs each slot's checksum (so the
// fuzzer explores slot contents, not SHA-256 collisions), and ReadHeader on
// a backing file holding the input, under both DEK layouts. Invariant: a
// header that decodes re-encodes to the same bytes (damaged slots aside),
// and rewriting the wrapped DEK of a readable header puts the new one in
// force.
#include <cstring>

#include "core/crypto/hash.h"
#include "core/format/chunk_layout.h"
#include "core/format/file_header.h"
#include "core/format/header_io.h"
#include "tests/fuzz/fuzz_util.h"

namespace envelope::format {
namespace {

void CheckRoundTrip(ByteView in, const FileHeader& h) {
  (void)h.ActiveSlot();
  Bytes out;
  h.EncodeTo(&out);
  FUZZ_CHECK(out.size() == h.encoded_size());
  FUZZ_CHECK(in.size() >= out.size());
  FUZZ_CHECK(std::memcmp(out.data(), in.data(), kHeaderPrefixSizeInBytes) == 0);
  if (!h.dek_in_xattr()) {
    for (size_t i = 0; i < kSlotCount; ++i) {
      if (h.slot_states[i] == SlotState::kDamaged) continue;
      FUZZ_CHECK(std::memcmp(out.data() + SlotOffset(i), in.data() + SlotOffset(i),
                             kSlotSizeInBytes) == 0);
    }
  }
  auto again = FileHeader::DecodeFrom(out);
  FUZZ_CHECK(again.ok());
  for (size_t i = 0; i < kSlotCount; ++i) {
    FUZZ_CHECK(again->slot_states[i] != SlotState::kDamaged);
    FUZZ_CHECK(again->slots[i].generation == h.slots[i].generation);
    FUZZ_CHECK(again->slots[i].wrapped_dek == h.slots[i].wrapped_dek);
  }
}

void Decode(ByteView in) {
  auto h = FileHeader::DecodeFrom(in);
  if (h.ok()) CheckRoundTrip(in, *h);
}

// The input with every slot that is not all zeros given its right checksum
// (the same computation as file_header.cc: first 16 bytes of
// SHA-256(domain || slot bytes 0..495)).
Bytes WithRepairedChecksums(ByteView in) {
  Bytes b(in.begin(), in.end());
  for (size_t i = 0; i < kSlotCount; ++i) {
    size_t at = SlotOffset(i);
    if (b.size() < at + kSlotSizeInBytes) break;
    uint8_t* slot = b.data() + at;
    constexpr size_t kBody = kSlotSizeInBytes - kSlotChecksumSizeInBytes;
    crypto::Sha256Hasher hasher;
    hasher.Update(AsBytes(kSlotChecksumDomain));
    hasher.Update(ByteView(slot, kBody));
    crypto::Sha256Digest d = hasher.Finish();
    std::memcpy(slot + kBody, d.data(), kSlotChecksumSizeInBytes);
  }
  return b;
}

void ReadFromFile(ByteView in) {
  fuzz::MemFile file(in);
  for (bool xattr : {false, true}) {
    for (uint32_t chunk : {kDefaultChunkSizeInBytes, kMaxChunkSizeInBytes}) {
      auto layout = ChunkLayout::ForVolume(xattr, chunk);
      FUZZ_CHECK(layout.ok());
      auto h = ReadHeader(file.fd(), *layout);
      if (!h.ok()) continue;
      FUZZ_CHECK(h->chunk_size == chunk && h->dek_in_xattr() == xattr);
      auto blob = ActiveWrappedDek(*h);
      if (!blob.ok()) continue;
      FUZZ_CHECK(ValidateWrappedDekSize(blob->size()).ok());
      if (xattr) continue;
      // A rotation either refuses or leaves the new blob in force.
      const Bytes rotated = {'r', 'o', 't', 'a', 't', 'e', 'd'};
      if (!RewriteWrappedDek(file.fd(), &*h, rotated, Durability::kCallerSyncs).ok()) continue;
      auto reread = ReadHeader(file.fd(), *layout);
      FUZZ_CHECK(reread.ok());
      auto now = ActiveWrappedDek(*reread);
      FUZZ_CHECK(now.ok() && *now == rotated);
      return;  // the file has changed
    }
  }
}

}  // namespace
}  // namespace envelope::format

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using namespace envelope;
  ByteView in(data, size);
  format::Decode(in);
  Bytes repaired = format::WithRepairedChecksums(in);
  format::Decode(repaired);
  format::ReadFromFile(repaired);
  return 0;
}
