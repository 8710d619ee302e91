#include "core/format/content_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <string>

#include "core/base/fd_io.h"
#include "core/base/parallel_runner.h"
#include "core/format/header_io.h"

namespace envelope::format {

namespace {
std::string ChunkContext(uint64_t index) {
  return "chunk " + std::to_string(index);
}

// A sealed chunk starts with a random nonce, so for data this almost always
// stops at the first byte.
bool IsAllZero(ByteView b) {
  return b.empty() || (b[0] == 0 && std::memcmp(b.data(), b.data() + 1, b.size() - 1) == 0);
}

// Chunk index ranges [lo, hi], inclusive.
struct Run {
  uint64_t lo, hi;
};
}  // namespace

StatusOr<uint64_t> ContentFile::Size() const {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::FromErrno("fstat");
  return layout_.PlaintextSize(static_cast<uint64_t>(st.st_size));
}

StatusOr<uint64_t> ContentFile::AuthenticatedSize(ChunkCipher& cipher,
                                                  Bytes& sealed, Bytes& plain) {
  struct stat st;
  if (::fstat(fd_, &st) != 0) return Status::FromErrno("fstat");
  const uint64_t backing = static_cast<uint64_t>(st.st_size);
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size, layout_.PlaintextSize(backing));
  if (verified_backing_size_.load(std::memory_order_acquire) == backing) {
    return size;
  }
  const uint64_t index = layout_.LastChunkIndex(size);
  const uint32_t plain_size = layout_.ChunkPlaintextSize(index, size);
  sealed.resize(plain_size + kChunkOverheadInBytes);
  plain.resize(plain_size);
  ENVELOPE_ASSIGN_OR_RETURN(size_t n,
                            PreadFull(fd_, sealed, layout_.ChunkOffset(index)));
  Status s = n == sealed.size()
                 ? cipher.Open(index, /*last=*/true, sealed, plain)
                 : Status::Corruption("backing file shorter than its size implies");
  if (!s.ok()) {
    return s.WithContext("final " + ChunkContext(index) + " of a " +
                         std::to_string(backing) +
                         "-byte backing file (cut or damaged)");
  }
  verified_backing_size_.store(backing, std::memory_order_release);
  return size;
}

void ContentFile::SetVerified(const Status& s, uint64_t plaintext_size) {
  verified_backing_size_.store(s.ok() ? layout_.BackingSize(plaintext_size) : 0,
                               std::memory_order_release);
}

Status ContentFile::VerifyFinalChunk() {
  return AuthenticatedSize(cipher_, sealed_buf_, plain_buf_).status();
}

bool ContentFile::ReadsAsHole(bool is_final, ByteView sealed) const {
  // Only in a version-2 header (which the DEK's commitment binds), never
  // the final chunk, and only a whole interior chunk of zeros.
  return sparse_ && !is_final && sealed.size() == layout_.backing_chunk_size() &&
         IsAllZero(sealed);
}

Status ContentFile::OpenChunk(ChunkCipher& cipher, uint64_t index, bool is_final,
                              ByteView sealed, MutableByteView out) {
  if (ReadsAsHole(is_final, sealed)) {
    std::memset(out.data(), 0, out.size());
    return Status::Ok();
  }
  Status s = cipher.Open(index, is_final, sealed, out);
  if (s.ok() || is_final) return s.WithContext(ChunkContext(index));
  // An extending write seals the new chunks before it re-seals the old final
  // chunk as interior; a crash between the two leaves an interior chunk
  // sealed as last. Accepting it keeps fsynced data readable and admits
  // nothing new: such a chunk is an earlier version of this very chunk.
  if (cipher.Open(index, /*last=*/true, sealed, out).ok()) return Status::Ok();
  return s.WithContext(ChunkContext(index));
}

Status ContentFile::ReadChunk(uint64_t index, uint32_t plain_size,
                              bool is_final, uint8_t* out) {
  size_t sealed_size = plain_size + kChunkOverheadInBytes;
  sealed_buf_.resize(sealed_size);
  ENVELOPE_ASSIGN_OR_RETURN(
      size_t n, PreadFull(fd_, sealed_buf_, layout_.ChunkOffset(index)));
  if (n != sealed_size) {
    return Status::Corruption(ChunkContext(index) + ": backing file too short");
  }
  return OpenChunk(cipher_, index, is_final, sealed_buf_,
                   MutableByteView(out, plain_size));
}

namespace {

// Read()'s staging, one set per thread, so that reads of one file can run
// in parallel (the kernel sends a readahead request while the previous one
// is being served).
thread_local Bytes read_sealed_buf;
thread_local Bytes read_plain_buf;

// Idle cipher contexts kept per file for reads; more concurrent readers
// than this clone a context each time.
constexpr size_t kMaxIdleReaders = 4;

}  // namespace

StatusOr<ChunkCipher> ContentFile::AcquireReader() {
  std::lock_guard lock(readers_mu_);
  if (!idle_readers_.empty()) {
    ChunkCipher reader = std::move(idle_readers_.back());
    idle_readers_.pop_back();
    return reader;
  }
  return cipher_.Clone();
}

void ContentFile::ReleaseReader(ChunkCipher reader) {
  std::lock_guard lock(readers_mu_);
  if (idle_readers_.size() < kMaxIdleReaders) idle_readers_.push_back(std::move(reader));
}

StatusOr<size_t> ContentFile::Read(uint64_t offset, MutableByteView out) {
  ENVELOPE_ASSIGN_OR_RETURN(ChunkCipher reader, AcquireReader());
  Bytes& sealed_buf = read_sealed_buf;
  Bytes& plain_buf = read_plain_buf;
  // Even a read at or past the end: "end of file" is a claim about the size.
  StatusOr<uint64_t> checked = AuthenticatedSize(reader, sealed_buf, plain_buf);
  if (!checked.ok() || out.empty() || offset >= *checked) {
    ReleaseReader(std::move(reader));
    if (!checked.ok()) return checked.status();
    return size_t{0};
  }
  const uint64_t size = *checked;
  const uint64_t len = std::min<uint64_t>(out.size(), size - offset);
  const uint64_t end = offset + len;
  const uint64_t chunk = layout_.chunk_size();
  const uint64_t final_index = layout_.LastChunkIndex(size);
  const uint64_t first = offset / chunk;
  const uint64_t last = (end - 1) / chunk;
  const uint64_t batch_chunks = std::max<uint64_t>(1, kBatchSizeInBytes / chunk);

  Status s;
  for (uint64_t b0 = first; s.ok() && b0 <= last; b0 += batch_chunks) {
    const uint64_t b1 = std::min(last, b0 + batch_chunks - 1);
    const uint64_t from = layout_.ChunkOffset(b0);
    const uint64_t to = layout_.ChunkOffset(b1) +
                        layout_.ChunkPlaintextSize(b1, size) +
                        kChunkOverheadInBytes;
    sealed_buf.resize(to - from);
    StatusOr<size_t> n = PreadFull(fd_, sealed_buf, from);
    if (!n.ok()) {
      s = n.status();
      break;
    }
    if (*n != sealed_buf.size()) {
      s = Status::Corruption("backing file shorter than its size implies");
      break;
    }
    for (uint64_t i = b0; s.ok() && i <= b1; ++i) {
      const uint32_t plain = layout_.ChunkPlaintextSize(i, size);
      ByteView sealed(sealed_buf.data() + (layout_.ChunkOffset(i) - from),
                      plain + kChunkOverheadInBytes);
      const uint64_t chunk_start = i * chunk;
      const uint64_t lo = std::max(offset, chunk_start);
      const uint64_t hi = std::min(end, chunk_start + plain);
      uint8_t* dst = out.data() + (lo - offset);
      if (lo == chunk_start && hi == chunk_start + plain) {
        // Whole chunk wanted: decrypt straight into the caller's buffer.
        s = OpenChunk(reader, i, i == final_index, sealed, MutableByteView(dst, plain));
      } else {
        plain_buf.resize(plain);
        s = OpenChunk(reader, i, i == final_index, sealed, plain_buf);
        if (s.ok()) std::memcpy(dst, plain_buf.data() + (lo - chunk_start), hi - lo);
      }
    }
  }
  ReleaseReader(std::move(reader));
  if (!s.ok()) return s;
  return static_cast<size_t>(len);
}

Status ContentFile::Write(uint64_t offset, ByteView data) {
  if (data.empty()) return Status::Ok();
  if (offset > layout_.MaxPlaintextSize() ||
      data.size() > layout_.MaxPlaintextSize() - offset) {
    return Status::IoError("write past the largest file size", EFBIG);
  }
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size,
                            AuthenticatedSize(cipher_, sealed_buf_, plain_buf_));
  const uint64_t end = offset + data.size();
  Status s = Store(size, std::min(offset, size), end, std::max(size, end),
                   offset, data);
  SetVerified(s, std::max(size, end));
  return s;
}

Status ContentFile::Truncate(uint64_t new_size) {
  if (new_size > layout_.MaxPlaintextSize()) {
    return Status::IoError("truncate past the largest file size", EFBIG);
  }
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size,
                            AuthenticatedSize(cipher_, sealed_buf_, plain_buf_));
  if (new_size == size) return Status::Ok();
  Status s = new_size > size ? Store(size, size, new_size, new_size, 0, ByteView())
                             : Shrink(size, new_size);
  SetVerified(s, new_size);
  return s;
}

Status ContentFile::Shrink(uint64_t size, uint64_t new_size) {
  tail_valid_ = false;
  // Shrink: the chunk holding the new end becomes final and is re-sealed
  // with its shorter content and the last flag, then the tail is cut.
  const uint64_t index = layout_.LastChunkIndex(new_size);
  const uint32_t old_plain = layout_.ChunkPlaintextSize(index, size);
  const uint32_t new_plain = layout_.ChunkPlaintextSize(index, new_size);
  plain_buf_.resize(old_plain);
  ENVELOPE_RETURN_IF_ERROR(ReadChunk(index, old_plain,
                                     index == layout_.LastChunkIndex(size),
                                     plain_buf_.data()));
  Bytes sealed(new_plain + kChunkOverheadInBytes);
  ENVELOPE_RETURN_IF_ERROR(cipher_.Seal(
      index, true, ByteView(plain_buf_.data(), new_plain), sealed));
  ENVELOPE_RETURN_IF_ERROR(PwriteFull(fd_, sealed, layout_.ChunkOffset(index)));
  if (::ftruncate(fd_, static_cast<off_t>(layout_.BackingSize(new_size))) != 0) {
    return Status::FromErrno("ftruncate");
  }
  return Status::Ok();
}

Status ContentFile::EnsureSparse() {
  if (sparse_) return Status::Ok();
  ENVELOPE_RETURN_IF_ERROR(WriteSparseHeader(fd_, layout_, cipher_));
  sparse_ = true;
  return Status::Ok();
}

Status ContentFile::Store(uint64_t old_size, uint64_t start, uint64_t end,
                          uint64_t new_size, uint64_t data_offset,
                          ByteView data) {
  const uint64_t chunk = layout_.chunk_size();
  const uint64_t old_final = layout_.LastChunkIndex(old_size);
  const uint64_t new_final = layout_.LastChunkIndex(new_size);
  const uint64_t first = start / chunk;
  const uint64_t last = (end - 1) / chunk;
  const uint64_t data_end = data_offset + data.size();
  const uint64_t batch_chunks = std::max<uint64_t>(1, kBatchSizeInBytes / chunk);
  // The old final chunk's plaintext is at hand if the last Store() left the
  // file at this size. Cleared now, so that a failure below leaves no tail.
  const bool tail_hit = tail_valid_ && tail_size_ == old_size;
  tail_valid_ = false;
  next_tail_.clear();
  bool tail_kept = false;  // next_tail_ holds the new final chunk's plaintext

  // The chunks to write: those holding old bytes, those the data touches,
  // and the new final chunk (it authenticates the size). Every other chunk
  // of [first, last] lies past the old end and would hold only zeros: it
  // stays a hole, unwritten.
  // At most three runs, added in ascending order (no allocation per write).
  std::array<Run, 3> runs;
  size_t run_count = 0;
  auto add = [&](uint64_t lo, uint64_t hi) {
    lo = std::max(lo, first);
    hi = std::min(hi, last);
    if (lo > hi) return;
    if (run_count > 0 && lo <= runs[run_count - 1].hi + 1) {
      runs[run_count - 1].hi = std::max(runs[run_count - 1].hi, hi);
    } else {
      runs[run_count++] = Run{lo, hi};
    }
  };
  add(first, old_final);
  if (!data.empty()) add(data_offset / chunk, (data_end - 1) / chunk);
  add(new_final, new_final);
  uint64_t written = 0;
  for (size_t r = 0; r < run_count; ++r) written += runs[r].hi - runs[r].lo + 1;
  if (written < last - first + 1) ENVELOPE_RETURN_IF_ERROR(EnsureSparse());

  // Growth that rewrites a partial final chunk in place must not fail
  // half-way for lack of space: that would tear the chunk holding data
  // written before. So the runs and their batches go from the highest
  // offset down, and each batch puts its bytes past the old end first: all
  // growth is written before any old byte is overwritten. If growth fails,
  // nothing old was touched, and cutting the file back below restores it.
  // Overwriting bytes that already have space does not fail with ENOSPC;
  // bytes written in place into a hole of a sparse file get their space
  // reserved first (ReserveHoles), so they do not either.
  //
  // Not fallocate: reserving only the growth allocates those blocks now and
  // the rest of the file at writeback, in two places. Half of all small files
  // of an untarred source tree ended up in 2-10 extents that way, and with
  // `discard` every extent costs a discard at unlink (docs/BENCHMARKS.md).
  const uint64_t old_backing = layout_.BackingSize(old_size);
  bool touched_old = false;

  for (auto run = runs.rbegin() + (runs.size() - run_count); run != runs.rend(); ++run) {
    // Batches [b0, b1] of at most batch_chunks chunks, the highest first.
    for (uint64_t next = run->hi + 1; next > run->lo;) {
      const uint64_t b1 = next - 1;
      const uint64_t b0 = b1 - run->lo + 1 > batch_chunks ? b1 - batch_chunks + 1 : run->lo;
      next = b0;
      const uint64_t from = layout_.ChunkOffset(b0);
      const uint64_t to = layout_.ChunkOffset(b1) +
                          layout_.ChunkPlaintextSize(b1, new_size) +
                          kChunkOverheadInBytes;
      write_buf_.resize(to - from);
      auto out_of = [&](uint64_t i) {
        return MutableByteView(write_buf_.data() + (layout_.ChunkOffset(i) - from),
                               layout_.ChunkPlaintextSize(i, new_size) + kChunkOverheadInBytes);
      };
      // The chunks that the data covers whole, [w0, w1] (an interval: the
      // chunks inside the intersection of two ranges), are sealed straight
      // from it, in parallel when there are many. The others, at most one
      // at each end of the data plus chunks of zeros or old bytes around it,
      // are built in plain_buf_ first.
      const uint64_t whole_lo = std::max(start, data_offset);
      const uint64_t whole_hi = std::min(end, data_end);
      auto whole = [&](uint64_t i) {
        return i * chunk >= whole_lo &&
               i * chunk + layout_.ChunkPlaintextSize(i, new_size) <= whole_hi;
      };
      uint64_t w0 = b0;
      while (w0 <= b1 && !whole(w0)) ++w0;
      uint64_t w1 = w0;
      while (w1 < b1 && whole(w1 + 1)) ++w1;
      for (uint64_t i = b0; i <= b1; ++i) {
        if (i == w0 && w0 <= b1) {
          i = w1;
          continue;
        }
        const uint32_t plain = layout_.ChunkPlaintextSize(i, new_size);
        const uint64_t chunk_start = i * chunk;
        const uint64_t lo = std::max(start, chunk_start);
        const uint64_t hi = std::min(end, chunk_start + plain);
        plain_buf_.resize(plain);
        if (lo > chunk_start || hi < chunk_start + plain) {
          // Partial chunk: start from its current content (read-modify-write).
          uint32_t old_plain =
              i <= old_final ? layout_.ChunkPlaintextSize(i, old_size) : 0;
          if (old_plain > 0) {
            ENVELOPE_RETURN_IF_ERROR(
                ReadOldChunk(i, old_plain, i == old_final, tail_hit, plain_buf_.data()));
          }
          std::memset(plain_buf_.data() + old_plain, 0, plain - old_plain);
        }
        // [lo, hi) takes data where data covers it, zeros elsewhere.
        if (lo < hi) std::memset(plain_buf_.data() + (lo - chunk_start), 0, hi - lo);
        const uint64_t copy_lo = std::max(lo, data_offset);
        const uint64_t copy_hi = std::min(hi, data_end);
        if (copy_lo < copy_hi) {
          std::memcpy(plain_buf_.data() + (copy_lo - chunk_start),
                      data.data() + (copy_lo - data_offset), copy_hi - copy_lo);
        }
        ENVELOPE_RETURN_IF_ERROR(
            cipher_.Seal(i, i == new_final, ByteView(plain_buf_.data(), plain), out_of(i)));
        if (i == new_final) {
          next_tail_.assign(plain_buf_.begin(), plain_buf_.begin() + plain);
          tail_kept = true;
        }
      }
      if (w0 <= b1) {
        const uint8_t* whole_plain = data.data() + (w0 * chunk - data_offset);
        ENVELOPE_RETURN_IF_ERROR(SealWhole(w0, w1, new_final, new_size, whole_plain, out_of));
        if (w1 == new_final) {
          const uint8_t* p = whole_plain + (new_final - w0) * chunk;
          next_tail_.assign(p, p + layout_.ChunkPlaintextSize(new_final, new_size));
          tail_kept = true;
        }
      }
      const uint64_t split = std::clamp(old_backing, from, to);
      // In-place bytes that land in a hole of a sparse file need space too:
      // reserved before anything of this batch is written.
      Status s = ReserveHoles(from, split);
      if (s.ok()) {
        s = PwriteFull(fd_, ByteView(write_buf_.data() + (split - from), to - split), split);
      }
      if (s.ok() && split > from) {
        touched_old = true;
        s = PwriteFull(fd_, ByteView(write_buf_.data(), split - from), from);
      }
      if (!s.ok()) {
        // Before any old byte was overwritten, undo the growth so the old
        // final chunk is final again. After that, the file keeps its new
        // size: every chunk of it authenticates, and what was written in
        // place is at worst a torn chunk that fails authentication.
        if (new_size > old_size && !touched_old) {
          (void)::ftruncate(fd_, static_cast<off_t>(old_backing));
        }
        return s;
      }
    }
  }
  if (old_final < first && old_final != new_final) {
    ENVELOPE_RETURN_IF_ERROR(ResealAsInterior(old_size, tail_hit));
  }
  // A Store that grows the file or writes its end seals the new final
  // chunk (it authenticates the size) and kept its plaintext above; one
  // that changes bytes further in (ZeroInside's partial chunks) does not,
  // and leaves no tail.
  if (tail_kept) {
    tail_plain_.swap(next_tail_);
    tail_size_ = new_size;
    tail_valid_ = true;
  }
  return Status::Ok();
}

Status ContentFile::ReadOldChunk(uint64_t index, uint32_t plain_size, bool is_final,
                                 bool tail_hit, uint8_t* out) {
  if (is_final && tail_hit && tail_plain_.size() == plain_size) {
    std::memcpy(out, tail_plain_.data(), plain_size);
    return Status::Ok();
  }
  return ReadChunk(index, plain_size, is_final, out);
}

Status ContentFile::SealWhole(uint64_t w0, uint64_t w1, uint64_t new_final,
                              uint64_t new_size, const uint8_t* plain,
                              const std::function<MutableByteView(uint64_t)>& out_of) {
  const uint64_t chunk = layout_.chunk_size();
  auto seal = [&](ChunkCipher& cipher, uint64_t lo, uint64_t hi) -> Status {
    for (uint64_t i = lo; i <= hi; ++i) {
      ENVELOPE_RETURN_IF_ERROR(cipher.Seal(
          i, i == new_final,
          ByteView(plain + (i - w0) * chunk, layout_.ChunkPlaintextSize(i, new_size)),
          out_of(i)));
    }
    return Status::Ok();
  };
  const uint64_t count = w1 - w0 + 1;
  ParallelRunner& runner = ParallelRunner::Shared();
  const size_t parts = static_cast<size_t>(
      std::min<uint64_t>(runner.helpers() + 1, count / kMinChunksPerPart));
  if (parts < 2) return seal(cipher_, w0, w1);
  // One cipher context per part beyond the first (cipher_'s).
  while (seal_ciphers_.size() < parts - 1) {
    ENVELOPE_ASSIGN_OR_RETURN(ChunkCipher c, cipher_.Clone());
    seal_ciphers_.push_back(std::move(c));
  }
  std::vector<Status> results(parts);
  runner.Run(parts, [&](size_t p) {
    results[p] = seal(p == 0 ? cipher_ : seal_ciphers_[p - 1],
                      w0 + count * p / parts, w0 + count * (p + 1) / parts - 1);
  });
  for (Status& s : results) ENVELOPE_RETURN_IF_ERROR(s);
  return Status::Ok();
}

Status ContentFile::ResealAsInterior(uint64_t old_size, bool tail_hit) {
  const uint64_t index = layout_.LastChunkIndex(old_size);
  const uint32_t plain = layout_.ChunkPlaintextSize(index, old_size);
  plain_buf_.resize(plain);
  ENVELOPE_RETURN_IF_ERROR(ReadOldChunk(index, plain, true, tail_hit, plain_buf_.data()));
  Bytes sealed(plain + kChunkOverheadInBytes);
  ENVELOPE_RETURN_IF_ERROR(cipher_.Seal(index, false, plain_buf_, sealed));
  return PwriteFull(fd_, sealed, layout_.ChunkOffset(index));
}

Status ContentFile::VerifyAll() {
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size, Size());
  const uint64_t count = layout_.ChunkCount(size);
  for (uint64_t i = 0; i < count; ++i) {
    if (sparse_ && i + 1 < count) {
      // Skip what the backing filesystem holds no data for: those chunks
      // read as zeros, holes of a sparse file (a 100 GiB truncate is one
      // sealed chunk, not 26 million reads).
      ENVELOPE_ASSIGN_OR_RETURN(uint64_t at, NextBackingChunk(i, SEEK_DATA));
      i = std::min(at, count - 1);
    }
    const uint32_t plain = layout_.ChunkPlaintextSize(i, size);
    plain_buf_.resize(plain);
    ENVELOPE_RETURN_IF_ERROR(ReadChunk(i, plain, i + 1 == count, plain_buf_.data()));
  }
  return Status::Ok();
}

}  // namespace envelope::format
