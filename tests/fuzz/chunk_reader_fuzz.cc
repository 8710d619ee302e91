// Fuzzes the chunk reader: a backing file made of a valid header (fixed
// test DEK and file id, 4 KiB chunks) followed by the input as the chunk
// region, opened through ContentFile: size derivation, reads at several
// offsets, VerifyAll. Each input runs under a version-1 header and under a
// version-2 (sparse) one, where all-zero interior chunks are holes.
// Invariants: when every chunk authenticates, a write and a truncation
// succeed and read back as written; SEEK_DATA never skips non-zero bytes
// and SEEK_HOLE never lands on them; a punched range reads as zeros.
#include <algorithm>

#include "core/format/chunk_cipher.h"
#include "core/format/chunk_layout.h"
#include "core/format/content_file.h"
#include "core/format/header_io.h"
#include "tests/fuzz/fuzz_util.h"

namespace envelope::format {
namespace {

struct Fixture {
  ChunkLayout layout;
  crypto::SecretBytes dek;
  FileHeader header;
  Bytes header_bytes;
};

const Fixture* MakeFixture(uint16_t version) {
  auto layout = ChunkLayout::ForVolume(false, kDefaultChunkSizeInBytes);
  FUZZ_CHECK(layout.ok());
  crypto::SecretBytes dek = fuzz::Secret(fuzz::kDek);
  auto commitment = ComputeCommitment(dek, fuzz::kFileId, version);
  FUZZ_CHECK(commitment.ok());
  auto header = NewFileHeader(*layout, fuzz::kFileId, *commitment,
                              AsBytes("wrapped-dek"));
  FUZZ_CHECK(header.ok());
  header->version = version;
  Bytes bytes;
  header->EncodeTo(&bytes);
  return new Fixture{*layout, std::move(dek), std::move(*header), std::move(bytes)};
}

const Fixture& GetFixture(uint16_t version) {
  static const Fixture* dense = MakeFixture(kFormatVersionDense);
  static const Fixture* sparse = MakeFixture(kFormatVersionSparse);
  return version == kFormatVersionSparse ? *sparse : *dense;
}

void Run(ByteView chunks, uint16_t version) {
  const Fixture& f = GetFixture(version);
  fuzz::MemFile file(Concat({f.header_bytes, chunks}));
  auto cipher = ChunkCipher::New(f.dek, f.header);
  FUZZ_CHECK(cipher.ok());
  ContentFile content(file.fd(), f.layout, std::move(*cipher));

  auto size = content.Size();
  if (!size.ok()) return;
  FUZZ_CHECK(f.layout.BackingSize(*size) == f.header_bytes.size() + chunks.size());
  Bytes plain(*size + 1);
  auto n = content.Read(0, plain);
  const bool verified = content.VerifyAll().ok();
  if (n.ok()) FUZZ_CHECK(*n == *size);
  FUZZ_CHECK(verified == n.ok());
  Bytes part(100);
  for (uint64_t at : {uint64_t{0}, *size / 2, *size > 0 ? *size - 1 : 0, *size, *size + 7}) {
    auto m = content.Read(at, part);
    if (verified) {
      FUZZ_CHECK(m.ok());
      uint64_t want = at < *size ? std::min<uint64_t>(part.size(), *size - at) : 0;
      FUZZ_CHECK(*m == want);
      FUZZ_CHECK(std::equal(part.begin(), part.begin() + *m, plain.begin() + at));
    }
  }
  if (!verified) return;

  if (*size > 0) {
    for (uint64_t from : {uint64_t{0}, *size / 2, *size - 1}) {
      auto d = content.SeekData(from);
      auto h = content.SeekHole(from);
      FUZZ_CHECK(d.ok() && h.ok());
      FUZZ_CHECK(*d >= from && *d < *size && *h >= from && *h <= *size);
      FUZZ_CHECK(std::all_of(plain.begin() + from, plain.begin() + *d, [](uint8_t b) { return b == 0; }));
      if (*h < *size) FUZZ_CHECK(plain[*h] == 0);
    }
  }

  // A file that reads back whole must also take writes.
  const uint8_t patch[] = {'f', 'u', 'z', 'z'};
  uint64_t at = *size / 3;
  FUZZ_CHECK(content.Write(at, patch).ok());
  uint64_t grown = std::max<uint64_t>(*size, at + sizeof(patch));
  FUZZ_CHECK(content.Truncate(grown + 5).ok());
  auto new_size = content.Size();
  FUZZ_CHECK(new_size.ok() && *new_size == grown + 5);
  Bytes after(grown + 5);
  auto r = content.Read(0, after);
  FUZZ_CHECK(r.ok() && *r == after.size());
  FUZZ_CHECK(std::equal(patch, patch + sizeof(patch), after.begin() + at));
  FUZZ_CHECK(std::equal(plain.begin(), plain.begin() + at, after.begin()));
  FUZZ_CHECK(after[grown] == 0 && after[grown + 4] == 0);
  FUZZ_CHECK(content.VerifyAll().ok());

  // And lose a range to a punched hole, which then reads as zeros.
  const uint64_t hole_at = grown / 4, hole_len = grown / 2 + 1;
  FUZZ_CHECK(content.PunchHole(hole_at, hole_len).ok());
  auto punched = content.Read(0, after);
  FUZZ_CHECK(punched.ok() && *punched == after.size());
  FUZZ_CHECK(std::all_of(after.begin() + hole_at,
                         after.begin() + std::min<uint64_t>(after.size(), hole_at + hole_len),
                         [](uint8_t b) { return b == 0; }));
  FUZZ_CHECK(content.VerifyAll().ok());
}

}  // namespace
}  // namespace envelope::format

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  envelope::format::Run(envelope::ByteView(data, size), envelope::format::kFormatVersionDense);
  envelope::format::Run(envelope::ByteView(data, size), envelope::format::kFormatVersionSparse);
  return 0;
}
