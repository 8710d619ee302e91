// Random-access plaintext view of one backing file: read and write at any
// offset and length, truncate up and down, the fallocate family and
// SEEK_DATA/SEEK_HOLE (docs/FORMAT.md, "Chunks" and "Writes, truncation,
// holes and crashes"). The FUSE layer calls this and holds no crypto of its
// own.
//
// Holes: growth (a write past the end, truncate up, fallocate) leaves every
// interior chunk that holds only zeros unwritten, so the backing file stays
// sparse. Before the first such hole the header becomes version 2
// (WriteSparseHeader), which alone lets an all-zero interior chunk read as
// zeros; in a version-1 file an all-zero chunk fails authentication.
//
// Contract:
// - `fd` is a backing file opened O_RDWR (O_RDONLY suffices for reads); it
//   is not owned and must stay open while this object is used.
// - The backing file already holds a valid header (WriteNewFile) and nobody
//   else writes it while this object is in use.
// Thread safety: Read() may run in several threads at once (each call takes
// a cipher context of its own and per-thread buffers). Every other call
// needs the object to itself, with no Read() running: the FUSE layer holds
// a per-inode lock, shared for reads and exclusive for the rest.
#ifndef ENVELOPE_CORE_FORMAT_CONTENT_FILE_H_
#define ENVELOPE_CORE_FORMAT_CONTENT_FILE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <mutex>
#include <vector>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/format/chunk_cipher.h"
#include "core/format/chunk_layout.h"

namespace envelope::format {

class ContentFile {
 public:
  ContentFile(int fd, ChunkLayout layout, ChunkCipher cipher)
      : fd_(fd), layout_(layout), cipher_(std::move(cipher)), sparse_(cipher_.sparse()) {}

  // Plaintext size, from the backing file's size alone: cheap (one fstat,
  // no key), and what stat shows. Not authenticated: a backing file cut at
  // a plausible length yields a plausible size here (docs/FORMAT.md §5).
  StatusOr<uint64_t> Size() const;

  // Authenticates the final chunk at the backing file's current size, which
  // authenticates the size: a cut file's new final chunk was never sealed
  // as final at that length (or is a torn fragment), so it fails. Corruption
  // if it does not authenticate. Read, Write and Truncate do the same check
  // themselves whenever the backing size is not one already authenticated
  // (or written) by this object, so an open file never returns data for an
  // unauthenticated size; calling this at open time makes an empty file
  // (which no read reaches: the kernel answers it from the size) fail too.
  Status VerifyFinalChunk();
  // For the creator of a new file, right after WriteNewFile wrote it: the
  // empty final chunk this process just sealed stands for size 0 as
  // VerifyFinalChunk would, so the first write does not read it back.
  void TrustNewEmptyFile() { SetVerified(Status::Ok(), 0); }

  // Reads up to out.size() bytes at `offset`; returns how many (short only at
  // end of file). Corruption if any chunk touched fails authentication.
  StatusOr<size_t> Read(uint64_t offset, MutableByteView out);

  // Writes all of `data` at `offset`, extending the file (the gap reads as
  // zeros) if offset is past the end.
  Status Write(uint64_t offset, ByteView data);

  // Sets the plaintext size, cutting or zero-extending.
  Status Truncate(uint64_t size);

  // fallocate(2) mode 0 (keep_size false) and FALLOC_FL_KEEP_SIZE: reserves
  // backing space for the chunks of [offset, offset + length), so that
  // writing them later cannot fail with ENOSPC; without keep_size, then
  // extends the file to offset + length if it is shorter (with holes).
  Status Allocate(uint64_t offset, uint64_t length, bool keep_size);

  // FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE: [offset, offset + length)
  // reads as zeros; whole interior chunks inside it become holes (their
  // backing space is freed), partial chunks and the final chunk are
  // re-sealed with zeros. Never changes the size.
  Status PunchHole(uint64_t offset, uint64_t length);

  // FALLOC_FL_ZERO_RANGE (with or without KEEP_SIZE): like PunchHole, but
  // whole chunks keep (or get) their backing space; without keep_size, the
  // file is extended to offset + length if it is shorter.
  Status ZeroRange(uint64_t offset, uint64_t length, bool keep_size);

  // lseek(2) SEEK_DATA and SEEK_HOLE, at chunk granularity: the first offset
  // >= `offset` in data (or in a hole; the end of the file counts as one).
  // IoError with ENXIO when `offset` is at or past the end.
  StatusOr<uint64_t> SeekData(uint64_t offset) { return Seek(offset, false); }
  StatusOr<uint64_t> SeekHole(uint64_t offset) { return Seek(offset, true); }

  // Whether the header is version 2 (the file may hold holes).
  bool sparse() const { return sparse_; }

  // Reads and authenticates every chunk (fsck --deep). Returns the index of
  // the first bad chunk in the error message.
  Status VerifyAll();

  // Plaintext bytes processed per batch: bounds the buffers a huge write,
  // read or zero-extension allocates.
  static constexpr uint64_t kBatchSizeInBytes = 1 << 20;
  // Whole chunks sealed by one thread at the least: below this, handing
  // part of a write to another core costs more than it saves (a 4 KiB chunk
  // seals in 1-2 us, waking a helper takes some 10 us).
  static constexpr uint64_t kMinChunksPerPart = 32;

 private:
  // Decrypts chunk `index` holding `plain_size` bytes into `out` (exactly
  // plain_size bytes). `is_final` says whether it is the file's last chunk.
  Status ReadChunk(uint64_t index, uint32_t plain_size, bool is_final,
                   uint8_t* out);
  // Opens a sealed chunk. An interior chunk also opens when sealed as last:
  // that is what an interrupted extending write leaves (docs/FORMAT.md).
  // In a sparse file an all-zero interior chunk is a hole and reads as
  // zeros.
  Status OpenChunk(ChunkCipher& cipher, uint64_t index, bool is_final,
                   ByteView sealed, MutableByteView out);
  // The one rule for holes: in a sparse file, an interior chunk whose whole
  // backing bytes `sealed` are zero (never the final chunk, which
  // authenticates the size).
  bool ReadsAsHole(bool is_final, ByteView sealed) const;
  // Whether chunk `index` of a file of `size` plaintext bytes is a hole:
  // reads its backing bytes into `scratch` and applies ReadsAsHole.
  StatusOr<bool> IsHole(uint64_t index, uint64_t size, Bytes& scratch);
  // The first chunk >= `index` that lseek(`whence`) on the backing file
  // places data (SEEK_DATA) or a hole (SEEK_HOLE) in.
  StatusOr<uint64_t> NextBackingChunk(uint64_t index, int whence) const;
  // SeekData (want_hole false) and SeekHole (true).
  StatusOr<uint64_t> Seek(uint64_t offset, bool want_hole);
  // offset + length for a fallocate call: EFBIG past the largest size,
  // EINVAL for zero bytes.
  StatusOr<uint64_t> FallocateEnd(uint64_t offset, uint64_t length) const;
  // Makes the header version 2, if it is not yet (before the first hole).
  Status EnsureSparse();
  // Before bytes are written in place over backing range [from, to) (all of
  // it inside the backing file): in a sparse file, reserves every backing
  // hole in it (fallocate KEEP_SIZE), so that the write cannot fail half-way
  // for lack of space and leave a hole chunk torn, neither zeros nor a
  // sealed chunk. ENOSPC here changes nothing. Without fallocate support in
  // the backing filesystem it reserves nothing.
  Status ReserveHoles(uint64_t from, uint64_t to);
  // Zeros plaintext [lo, hi) of a file of `size` bytes, hi <= size: whole
  // interior chunks by `backing_mode` (a fallocate mode on their backing
  // range: a punched or zeroed range reads as zeros, i.e. as holes), the
  // rest by re-sealing zeros.
  Status ZeroInside(uint64_t lo, uint64_t hi, uint64_t size, int backing_mode);
  // Makes plaintext [start, end) equal to `data` where it lies inside
  // [data_offset, data_offset + data.size()) and zeros elsewhere, then sets
  // the size to new_size. Chunks past the old end that only zeros would fill
  // (neither data nor the new final chunk) are left as holes.
  // REQUIRES: start <= old_size, start < end, old_size <= new_size,
  // and end == new_size whenever new_size > old_size.
  Status Store(uint64_t old_size, uint64_t start, uint64_t end,
               uint64_t new_size, uint64_t data_offset, ByteView data);
  // Size() for the current backing size, after authenticating the final
  // chunk unless this backing size was authenticated (or written) before.
  // `cipher`, `sealed` and `plain` are the caller's: Read() runs in parallel.
  StatusOr<uint64_t> AuthenticatedSize(ChunkCipher& cipher, Bytes& sealed,
                                       Bytes& plain);
  // Records the backing size this object left the file at (0 after a
  // failure: the next call checks again).
  void SetVerified(const Status& s, uint64_t plaintext_size);

  // Truncate() down from `size` to `new_size` < size.
  Status Shrink(uint64_t size, uint64_t new_size);
  // Seals chunks [w0, w1], which `plain` (chunk w0's first byte onward)
  // covers whole, into out_of(i), splitting them among idle cores when
  // there are at least 2 * kMinChunksPerPart. The output is the same either
  // way: each chunk is sealed on its own, with a nonce of its own.
  Status SealWhole(uint64_t w0, uint64_t w1, uint64_t new_final, uint64_t new_size,
                   const uint8_t* plain,
                   const std::function<MutableByteView(uint64_t)>& out_of);
  // Re-seals the chunk that was final in a file of `old_size` bytes as an
  // interior chunk, after the file grew past it. `tail_hit`: tail_plain_
  // holds that chunk's plaintext.
  Status ResealAsInterior(uint64_t old_size, bool tail_hit);
  // ReadChunk for Store(): the old final chunk comes from tail_plain_ when
  // `tail_hit` (and its size matches).
  Status ReadOldChunk(uint64_t index, uint32_t plain_size, bool is_final, bool tail_hit,
                      uint8_t* out);

  // A cipher context for one Read(): an idle one, or a clone of cipher_.
  StatusOr<ChunkCipher> AcquireReader();
  void ReleaseReader(ChunkCipher reader);

  const int fd_;
  const ChunkLayout layout_;
  ChunkCipher cipher_;  // writers' (and clones' source)
  std::mutex readers_mu_;
  std::vector<ChunkCipher> idle_readers_;  // guarded by readers_mu_
  // A backing size whose final chunk authenticated as final, or that this
  // object wrote; 0 for none (no valid file has 0 bytes).
  std::atomic<uint64_t> verified_backing_size_{0};
  // The header is version 2. Changed only by writers (exclusive access), so
  // Read() sees a stable value.
  bool sparse_;
  Bytes sealed_buf_;  // reused across calls: ciphertext staging
  Bytes plain_buf_;   // reused across calls: one chunk's plaintext
  Bytes write_buf_;   // reused across calls: sealed chunks of one batch
  // Cipher contexts for SealWhole's parts beyond the first, cloned on the
  // first large write. Writers only (exclusive access).
  std::vector<ChunkCipher> seal_ciphers_;
  // The final chunk's plaintext as the last Store() left it, so that the
  // next append does not read back and decrypt what was just written: tar,
  // cp and most writers append in pieces that end inside a chunk. Used only
  // while the file still has tail_size_ bytes (a backing file changed by
  // anyone else, against the contract above, misses on its size; with
  // -o sharedstorage a changed file gets a new ContentFile). Store() sets it
  // on success and clears it first; Shrink() clears it. Writers only.
  bool tail_valid_ = false;
  uint64_t tail_size_ = 0;
  Bytes tail_plain_;
  Bytes next_tail_;  // Store()'s new tail, until it has succeeded
};

}  // namespace envelope::format

#endif  // ENVELOPE_CORE_FORMAT_CONTENT_FILE_H_
