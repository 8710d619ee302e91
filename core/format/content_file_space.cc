// ContentFile's space management: the fallocate family and SEEK_DATA /
// SEEK_HOLE (docs/FORMAT.md §6, "Holes"). Reads, writes and truncation are
// in content_file.cc.
#include <fcntl.h>
#include <linux/falloc.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

#include "core/base/fd_io.h"
#include "core/format/content_file.h"

namespace envelope::format {

namespace {

Status Fallocate(int fd, int mode, uint64_t offset, uint64_t length) {
  if (length == 0) return Status::Ok();
  if (::fallocate(fd, mode, static_cast<off_t>(offset), static_cast<off_t>(length)) != 0) {
    return Status::FromErrno("fallocate of the backing file");
  }
  return Status::Ok();
}

Status NoSuchOffset() { return Status::IoError("offset at or past the end of the file", ENXIO); }

}  // namespace

StatusOr<uint64_t> ContentFile::FallocateEnd(uint64_t offset, uint64_t length) const {
  if (offset > layout_.MaxPlaintextSize() || length > layout_.MaxPlaintextSize() - offset) {
    return Status::IoError("range past the largest file size", EFBIG);
  }
  if (length == 0) return Status::IoError("fallocate of zero bytes", EINVAL);
  return offset + length;
}

StatusOr<bool> ContentFile::IsHole(uint64_t index, uint64_t size, Bytes& scratch) {
  if (!sparse_ || index >= layout_.LastChunkIndex(size)) return false;
  scratch.resize(layout_.backing_chunk_size());
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, PreadFull(fd_, scratch, layout_.ChunkOffset(index)));
  if (n != scratch.size()) return Status::Corruption("backing file shorter than its size implies");
  return ReadsAsHole(/*is_final=*/false, scratch);
}

StatusOr<uint64_t> ContentFile::NextBackingChunk(uint64_t index, int whence) const {
  const uint64_t from = layout_.ChunkOffset(index);
  off_t at = ::lseek(fd_, static_cast<off_t>(from), whence);
  if (at < 0) {
    return Status::FromErrno(whence == SEEK_DATA ? "lseek SEEK_DATA in the backing file"
                                                 : "lseek SEEK_HOLE in the backing file");
  }
  return std::max(index, layout_.ChunkIndexAt(std::max(from, static_cast<uint64_t>(at))));
}

Status ContentFile::ReserveHoles(uint64_t from, uint64_t to) {
  if (!sparse_ || from >= to) return Status::Ok();  // a version-1 file has no holes
  const off_t hole = ::lseek(fd_, static_cast<off_t>(from), SEEK_HOLE);
  if (hole < 0) return Status::FromErrno("lseek SEEK_HOLE in the backing file");
  if (static_cast<uint64_t>(hole) >= to) return Status::Ok();  // all allocated
  Status s = Fallocate(fd_, FALLOC_FL_KEEP_SIZE, static_cast<uint64_t>(hole),
                       to - static_cast<uint64_t>(hole));
  if (!s.ok() && s.sys_errno() == EOPNOTSUPP) return Status::Ok();
  return s;
}

Status ContentFile::Allocate(uint64_t offset, uint64_t length, bool keep_size) {
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t end, FallocateEnd(offset, length));
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size,
                            AuthenticatedSize(cipher_, sealed_buf_, plain_buf_));
  const uint64_t chunk = layout_.chunk_size();
  // The backing range of every chunk [offset, end) touches, as a whole
  // chunk: reserved space that a later write overwrites in place. Space
  // past the backing end stays reserved there (KEEP_SIZE) until the file
  // grows into it; unwritten space reads as zeros, i.e. as holes.
  const uint64_t from = layout_.ChunkOffset(offset / chunk);
  const uint64_t to = layout_.ChunkOffset((end - 1) / chunk + 1);
  ENVELOPE_RETURN_IF_ERROR(Fallocate(fd_, FALLOC_FL_KEEP_SIZE, from, to - from));
  if (keep_size || end <= size) return Status::Ok();
  // The reserved interior chunks read as zeros: holes of a sparse file.
  Status s = Store(size, size, end, end, 0, ByteView());
  SetVerified(s, end);
  return s;
}

Status ContentFile::ZeroInside(uint64_t lo, uint64_t hi, uint64_t size, int backing_mode) {
  if (lo >= hi) return Status::Ok();
  const uint64_t chunk = layout_.chunk_size();
  const uint64_t final_index = layout_.LastChunkIndex(size);
  // Whole interior chunks inside [lo, hi): [whole_lo, whole_hi).
  const uint64_t whole_lo = (lo + chunk - 1) / chunk;
  const uint64_t whole_hi = std::min(hi / chunk, final_index);
  if (whole_lo >= whole_hi) return Store(size, lo, hi, size, 0, ByteView());
  // The header allows holes before the first one exists.
  ENVELOPE_RETURN_IF_ERROR(EnsureSparse());
  const uint64_t head_end = whole_lo * chunk;
  const uint64_t tail_start = whole_hi * chunk;
  if (lo < head_end) ENVELOPE_RETURN_IF_ERROR(Store(size, lo, head_end, size, 0, ByteView()));
  if (tail_start < hi) ENVELOPE_RETURN_IF_ERROR(Store(size, tail_start, hi, size, 0, ByteView()));
  // A backing range punched or zeroed reads as zeros; partial blocks at its
  // ends are zeroed by the backing filesystem within the range only, so the
  // neighbouring chunks keep their bytes.
  const uint64_t from = layout_.ChunkOffset(whole_lo);
  const uint64_t to = layout_.ChunkOffset(whole_hi);
  Status s = Fallocate(fd_, backing_mode, from, to - from);
  if (s.ok() || s.sys_errno() != EOPNOTSUPP || (backing_mode & FALLOC_FL_PUNCH_HOLE) != 0) {
    return s;
  }
  // ZERO_RANGE unsupported by the backing filesystem: punch, then reserve.
  ENVELOPE_RETURN_IF_ERROR(
      Fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, from, to - from));
  return Fallocate(fd_, FALLOC_FL_KEEP_SIZE, from, to - from);
}

Status ContentFile::PunchHole(uint64_t offset, uint64_t length) {
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t end, FallocateEnd(offset, length));
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size,
                            AuthenticatedSize(cipher_, sealed_buf_, plain_buf_));
  Status s = ZeroInside(offset, std::min(end, size), size,
                        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  SetVerified(s, size);
  return s;
}

Status ContentFile::ZeroRange(uint64_t offset, uint64_t length, bool keep_size) {
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t end, FallocateEnd(offset, length));
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size,
                            AuthenticatedSize(cipher_, sealed_buf_, plain_buf_));
  Status s = ZeroInside(offset, std::min(end, size), size,
                        FALLOC_FL_ZERO_RANGE | FALLOC_FL_KEEP_SIZE);
  SetVerified(s, size);
  if (!s.ok() || end <= size) return s;
  // Past the end: reserved space (and, without keep_size, a longer file),
  // which reads as zeros like the rest of the range.
  return Allocate(std::max(offset, size), end - std::max(offset, size), keep_size);
}

StatusOr<uint64_t> ContentFile::Seek(uint64_t offset, bool want_hole) {
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size,
                            AuthenticatedSize(cipher_, sealed_buf_, plain_buf_));
  if (offset >= size) return NoSuchOffset();
  if (!sparse_) return want_hole ? size : offset;  // a version-1 file is all data
  const uint64_t chunk = layout_.chunk_size();
  const uint64_t final_index = layout_.LastChunkIndex(size);
  for (uint64_t i = offset / chunk; i < final_index; ++i) {
    // The backing filesystem names the next candidate, and each candidate
    // is read: a hole chunk's first or last block can be allocated for its
    // neighbour's sake, and reserved (fallocated) space reads as zeros
    // without being a backing hole. A chunk the filesystem calls a hole is
    // never a sealed one, and one it calls data may still be a hole.
    ENVELOPE_ASSIGN_OR_RETURN(i, NextBackingChunk(i, want_hole ? SEEK_HOLE : SEEK_DATA));
    if (i >= final_index) break;
    ENVELOPE_ASSIGN_OR_RETURN(bool hole, IsHole(i, size, sealed_buf_));
    if (hole == want_hole) return std::max(offset, i * chunk);
  }
  // The final chunk is data; past it, the end of the file counts as a hole.
  return want_hole ? size : std::max(offset, final_index * chunk);
}

}  // namespace envelope::format
