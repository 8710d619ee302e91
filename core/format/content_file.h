// Random-access plaintext view of one backing file: read and write at any
// offset and length, truncate up and down (docs/FORMAT.md, "Chunks" and
// "Writes"). The FUSE layer calls this and holds no crypto of its own.
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
      : fd_(fd), layout_(layout), cipher_(std::move(cipher)) {}

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

  // Reads up to out.size() bytes at `offset`; returns how many (short only at
  // end of file). Corruption if any chunk touched fails authentication.
  StatusOr<size_t> Read(uint64_t offset, MutableByteView out);

  // Writes all of `data` at `offset`, extending the file (the gap reads as
  // zeros) if offset is past the end.
  Status Write(uint64_t offset, ByteView data);

  // Sets the plaintext size, cutting or zero-extending.
  Status Truncate(uint64_t size);

  // Reads and authenticates every chunk (fsck --deep). Returns the index of
  // the first bad chunk in the error message.
  Status VerifyAll();

  // Plaintext bytes processed per batch: bounds the buffers a huge write,
  // read or zero-extension allocates.
  static constexpr uint64_t kBatchSizeInBytes = 1 << 20;

 private:
  // Decrypts chunk `index` holding `plain_size` bytes into `out` (exactly
  // plain_size bytes). `is_final` says whether it is the file's last chunk.
  Status ReadChunk(uint64_t index, uint32_t plain_size, bool is_final,
                   uint8_t* out);
  // Opens a sealed chunk. An interior chunk also opens when sealed as last:
  // that is what an interrupted extending write leaves (docs/FORMAT.md).
  Status OpenChunk(ChunkCipher& cipher, uint64_t index, bool is_final,
                   ByteView sealed, MutableByteView out);
  // Makes plaintext [start, end) equal to `data` where it lies inside
  // [data_offset, data_offset + data.size()) and zeros elsewhere, then sets
  // the size to new_size.
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
  // Re-seals the chunk that was final in a file of `old_size` bytes as an
  // interior chunk, after the file grew past it.
  Status ResealAsInterior(uint64_t old_size);

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
  Bytes sealed_buf_;  // reused across calls: ciphertext staging
  Bytes plain_buf_;   // reused across calls: one chunk's plaintext
  Bytes write_buf_;   // reused across calls: sealed chunks of one batch
};

}  // namespace envelope::format

#endif  // ENVELOPE_CORE_FORMAT_CONTENT_FILE_H_
