#include "core/format/file_header.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>

#include <gtest/gtest.h>

#include "core/format/header_io.h"
#include "tests/unit/test_files.h"

namespace envelope::format {
namespace {

FileHeader SampleHeader(bool xattr) {
  FileHeader h;
  h.flags = xattr ? kFlagDekInXattr : 0;
  h.chunk_size = 16384;
  for (size_t i = 0; i < h.file_id.size(); ++i) h.file_id[i] = static_cast<uint8_t>(i);
  for (size_t i = 0; i < h.commitment.size(); ++i) h.commitment[i] = static_cast<uint8_t>(0xa0 + i);
  h.slots[0].generation = 1;
  h.slots[0].wrapped_dek = Bytes(100, 0x42);
  h.slot_states[0] = SlotState::kValid;
  return h;
}

TEST(FileHeaderTest, RoundTripHeaderMode) {
  FileHeader h = SampleHeader(false);
  Bytes enc;
  h.EncodeTo(&enc);
  ASSERT_EQ(enc.size(), kHeaderSizeDekInHeader);
  auto d = FileHeader::DecodeFrom(enc);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->chunk_size, 16384u);
  EXPECT_EQ(d->file_id, h.file_id);
  EXPECT_EQ(d->commitment, h.commitment);
  EXPECT_EQ(d->slot_states[0], SlotState::kValid);
  EXPECT_EQ(d->slot_states[1], SlotState::kEmpty);
  EXPECT_EQ(d->slots[0].wrapped_dek, h.slots[0].wrapped_dek);
  EXPECT_EQ(*d->ActiveSlot(), 0u);
}

TEST(FileHeaderTest, RoundTripXattrMode) {
  FileHeader h = SampleHeader(true);
  Bytes enc;
  h.EncodeTo(&enc);
  ASSERT_EQ(enc.size(), kHeaderSizeDekInXattr);
  auto d = FileHeader::DecodeFrom(enc);
  ASSERT_TRUE(d.ok());
  EXPECT_TRUE(d->dek_in_xattr());
  EXPECT_EQ(d->slot_states[0], SlotState::kEmpty);  // filled by ReadHeader
}

// One test per rejected field.
TEST(FileHeaderTest, RejectsBadMagic) {
  Bytes enc;
  SampleHeader(false).EncodeTo(&enc);
  enc[1] = 'X';
  EXPECT_NE(FileHeader::DecodeFrom(enc).status().message().find("magic"),
            std::string::npos);
}

TEST(FileHeaderTest, RejectsOtherVersion) {
  for (uint8_t v : {0, 3, 255}) {
    Bytes enc;
    SampleHeader(false).EncodeTo(&enc);
    enc[8] = v;
    auto d = FileHeader::DecodeFrom(enc);
    EXPECT_EQ(d.status().code(), StatusCode::kCorruption);
    EXPECT_EQ(d.status().message(),
              "header: wanted format version 1 or 2, found " + std::to_string(v));
  }
}

TEST(FileHeaderTest, VersionRoundTrips) {
  for (uint16_t v : {kFormatVersionDense, kFormatVersionSparse}) {
    FileHeader h = SampleHeader(false);
    h.version = v;
    Bytes enc;
    h.EncodeTo(&enc);
    EXPECT_EQ(DecodeFixed16(enc.data() + 8), v);
    auto d = FileHeader::DecodeFrom(enc);
    ASSERT_TRUE(d.ok());
    EXPECT_EQ(d->version, v);
    EXPECT_EQ(d->sparse(), v == kFormatVersionSparse);
  }
}

TEST(FileHeaderTest, RejectsUnknownFlags) {
  Bytes enc;
  SampleHeader(false).EncodeTo(&enc);
  enc[10] |= 0x02;
  EXPECT_EQ(FileHeader::DecodeFrom(enc).status().message(),
            "header: unknown flags 0x0002");
}

TEST(FileHeaderTest, RejectsBadChunkSize) {
  Bytes enc;
  SampleHeader(false).EncodeTo(&enc);
  EncodeFixed32(enc.data() + 12, 5000);
  EXPECT_EQ(FileHeader::DecodeFrom(enc).status().code(), StatusCode::kCorruption);
}

TEST(FileHeaderTest, RejectsShortInput) {
  Bytes enc;
  SampleHeader(false).EncodeTo(&enc);
  EXPECT_FALSE(FileHeader::DecodeFrom(ByteView(enc.data(), 63)).ok());
  EXPECT_FALSE(FileHeader::DecodeFrom(ByteView(enc.data(), 1087)).ok());
}

TEST(FileHeaderTest, RejectsOversizedWrappedDek) {
  EXPECT_FALSE(ValidateWrappedDekSize(0).ok());
  EXPECT_TRUE(ValidateWrappedDekSize(486).ok());
  EXPECT_FALSE(ValidateWrappedDekSize(487).ok());
}

TEST(FileHeaderTest, DamagedSlotIsReportedAndSkipped) {
  FileHeader h = SampleHeader(false);
  h.slots[1].generation = 2;
  h.slots[1].wrapped_dek = Bytes(90, 0x17);
  Bytes enc;
  h.EncodeTo(&enc);
  auto d = FileHeader::DecodeFrom(enc);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d->ActiveSlot(), 1u);  // higher generation wins
  enc[SlotOffset(1) + 20] ^= 1;
  d = FileHeader::DecodeFrom(enc);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->slot_states[1], SlotState::kDamaged);
  EXPECT_EQ(*d->ActiveSlot(), 0u);
  enc[SlotOffset(0) + 3] ^= 1;
  d = FileHeader::DecodeFrom(enc);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->ActiveSlot().status().code(), StatusCode::kCorruption);
}

TEST(FileHeaderTest, EqualGenerationsAreCorruption) {
  FileHeader h = SampleHeader(false);
  h.slots[1] = h.slots[0];
  Bytes enc;
  h.EncodeTo(&enc);
  auto d = FileHeader::DecodeFrom(enc);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->ActiveSlot().status().code(), StatusCode::kCorruption);
}

// A rewrite goes to the inactive slot. Simulate a crash after every prefix
// of that slot write: the header must always yield the old or the new blob.
TEST(FileHeaderTest, TornSlotWriteLeavesAUsableSlot) {
  FileHeader h = SampleHeader(false);
  Bytes before;
  h.EncodeTo(&before);
  DekSlot next{2, Bytes(120, 0x99)};
  uint8_t slot_bytes[kSlotSizeInBytes];
  EncodeSlot(next, slot_bytes);
  for (size_t n = 0; n <= kSlotSizeInBytes; ++n) {
    Bytes torn = before;
    std::copy(slot_bytes, slot_bytes + n, torn.begin() + SlotOffset(1));
    auto d = FileHeader::DecodeFrom(torn);
    ASSERT_TRUE(d.ok());
    auto active = d->ActiveSlot();
    ASSERT_TRUE(active.ok()) << "prefix " << n;
    const Bytes& blob = d->slots[*active].wrapped_dek;
    if (n == kSlotSizeInBytes) {
      EXPECT_EQ(blob, next.wrapped_dek);
    } else {
      EXPECT_EQ(blob, h.slots[0].wrapped_dek) << "prefix " << n;
    }
  }
}

TEST(HeaderIoTest, RewriteAlternatesSlotsAndKeepsChunks) {
  for (bool xattr : {false, true}) {
    testing::TestVolume vol(xattr);
    auto f = vol.Create("f");
    ASSERT_TRUE(f.ok()) << f.status().ToString();
    Bytes data(10000, 0x61);
    ASSERT_TRUE(f->content->Write(0, data).ok());
    Bytes before = vol.ReadBacking("f");
    FileHeader h = f->header;
    Bytes blob0 = *ActiveWrappedDek(h);
    // The rewrite must store exactly what it is given; a re-wrap of the same
    // DEK is what rotation passes, and this test's wrapper blob is such one.
    for (int round = 0; round < 3; ++round) {
      Bytes blob = blob0;
      ASSERT_TRUE(RewriteWrappedDek(f->fd.get(), &h, blob).ok());
      auto reread = ReadHeader(f->fd.get(), vol.layout());
      ASSERT_TRUE(reread.ok());
      EXPECT_EQ(*ActiveWrappedDek(*reread), blob);
      if (!xattr) {
        EXPECT_EQ(*reread->ActiveSlot(), static_cast<size_t>((round + 1) % 2));
        EXPECT_EQ(reread->slots[*reread->ActiveSlot()].generation,
                  static_cast<uint64_t>(round + 2));
      }
    }
    Bytes after = vol.ReadBacking("f");
    ASSERT_EQ(before.size(), after.size());
    // Only the slot area changed; every chunk byte is identical.
    size_t chunks_at = vol.layout().header_size();
    EXPECT_TRUE(std::equal(before.begin() + chunks_at, before.end(),
                           after.begin() + chunks_at));
    auto back = vol.ReadAll("f");
    ASSERT_TRUE(back.ok()) << back.status().ToString();
    EXPECT_EQ(*back, data);
  }
}

// A slot's checksum is not keyed: anyone who can write the cipherdir can
// store generation 2^64-1. Rotating that file must not wrap the next
// generation to 0 (which encodes as an empty slot, so the new blob would be
// silently lost and the file left under the old key version, to be
// crypto-erased when that version is retired): it fails and writes nothing.
TEST(HeaderIoTest, MaxGenerationIsNotIncremented) {
  testing::TestVolume vol(false);
  auto f = vol.Create("f");
  ASSERT_TRUE(f.ok()) << f.status().ToString();
  FileHeader h = f->header;
  h.slots[0].generation = UINT64_MAX;
  uint8_t slot[kSlotSizeInBytes];
  EncodeSlot(h.slots[0], slot);
  ASSERT_EQ(::pwrite(f->fd.get(), slot, sizeof(slot), SlotOffset(0)),
            static_cast<ssize_t>(sizeof(slot)));
  auto tampered = ReadHeader(f->fd.get(), vol.layout());
  ASSERT_TRUE(tampered.ok());
  ASSERT_EQ(tampered->slots[0].generation, UINT64_MAX);
  h = *tampered;
  const Bytes before = vol.ReadBacking("f");
  Status s = RewriteWrappedDek(f->fd.get(), &h, Bytes(50, 0x77));
  EXPECT_EQ(s.code(), StatusCode::kCorruption) << s.ToString();
  EXPECT_EQ(vol.ReadBacking("f"), before);
  EXPECT_EQ(h.slot_states[1], SlotState::kEmpty);
}

TEST(HeaderIoTest, VolumeMismatchIsCorruption) {
  testing::TestVolume vol(false, 4096);
  ASSERT_TRUE(vol.Create("f").ok());
  UniqueFd fd(::open(vol.Path("f").c_str(), O_RDONLY));
  auto other_chunk = ChunkLayout::ForVolume(false, 8192);
  auto s = ReadHeader(fd.get(), *other_chunk);
  EXPECT_EQ(s.status().message(),
            "header: wanted chunk size 8192 (the volume's), found 4096");
  auto other_mode = ChunkLayout::ForVolume(true, 4096);
  EXPECT_EQ(ReadHeader(fd.get(), *other_mode).status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace envelope::format
