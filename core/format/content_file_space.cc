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

// offset + length, or EFBIG past the largest plaintext size.
StatusOr<uint64_t> RangeEnd(const ChunkLayout& layout, uint64_t offset, uint64_t length) {
  if (offset > layout.MaxPlaintextSize() || length > layout.MaxPlaintextSize() - offset) {
    return Status::IoError("range past the largest file size", EFBIG);
  }
  return offset + length;
}

}  // namespace

StatusOr<bool> ContentFile::IsHole(uint64_t index, uint64_t size, Bytes& scratch) {
  if (!sparse_ || index >= layout_.LastChunkIndex(size)) return false;
  scratch.resize(layout_.backing_chunk_size());
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, PreadFull(fd_, scratch, layout_.ChunkOffset(index)));
  if (n != scratch.size()) return Status::Corruption("backing file shorter than its size implies");
  return std::all_of(scratch.begin(), scratch.end(), [](uint8_t b) { return b == 0; });
}

Status ContentFile::Allocate(uint64_t offset, uint64_t length, bool keep_size) {
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t end, RangeEnd(layout_, offset, length));
  if (length == 0) return Status::IoError("fallocate of zero bytes", EINVAL);
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
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t end, RangeEnd(layout_, offset, length));
  if (length == 0) return Status::IoError("fallocate of zero bytes", EINVAL);
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size,
                            AuthenticatedSize(cipher_, sealed_buf_, plain_buf_));
  Status s = ZeroInside(offset, std::min(end, size), size,
                        FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE);
  SetVerified(s, size);
  return s;
}

Status ContentFile::ZeroRange(uint64_t offset, uint64_t length, bool keep_size) {
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t end, RangeEnd(layout_, offset, length));
  if (length == 0) return Status::IoError("fallocate of zero bytes", EINVAL);
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

StatusOr<uint64_t> ContentFile::SeekData(uint64_t offset) {
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size,
                            AuthenticatedSize(cipher_, sealed_buf_, plain_buf_));
  if (offset >= size) return NoSuchOffset();
  if (!sparse_) return offset;
  const uint64_t chunk = layout_.chunk_size();
  const uint64_t final_index = layout_.LastChunkIndex(size);
  for (uint64_t i = offset / chunk; i < final_index;) {
    // The backing filesystem knows where nothing was ever written; every
    // candidate it names is then read, because a hole chunk's first or last
    // block can be allocated for its neighbour's sake.
    off_t d = ::lseek(fd_, static_cast<off_t>(layout_.ChunkOffset(i)), SEEK_DATA);
    if (d < 0) return Status::FromErrno("lseek SEEK_DATA in the backing file");
    const uint64_t backing = static_cast<uint64_t>(d);
    if (backing > layout_.ChunkOffset(i)) {
      i = (backing - layout_.header_size()) / layout_.backing_chunk_size();
      if (i >= final_index) break;
    }
    ENVELOPE_ASSIGN_OR_RETURN(bool hole, IsHole(i, size, sealed_buf_));
    if (!hole) return std::max(offset, i * chunk);
    ++i;
  }
  return std::max(offset, final_index * chunk);
}

StatusOr<uint64_t> ContentFile::SeekHole(uint64_t offset) {
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size,
                            AuthenticatedSize(cipher_, sealed_buf_, plain_buf_));
  if (offset >= size) return NoSuchOffset();
  if (!sparse_) return size;
  const uint64_t chunk = layout_.chunk_size();
  const uint64_t final_index = layout_.LastChunkIndex(size);
  for (uint64_t i = offset / chunk; i < final_index;) {
    off_t h = ::lseek(fd_, static_cast<off_t>(layout_.ChunkOffset(i)), SEEK_HOLE);
    if (h < 0) return Status::FromErrno("lseek SEEK_HOLE in the backing file");
    const uint64_t backing = static_cast<uint64_t>(h);
    if (backing > layout_.ChunkOffset(i)) {
      i = (backing - layout_.header_size()) / layout_.backing_chunk_size();
      if (i >= final_index) break;
    }
    // Reserved (fallocated) space also reads as zeros without being a
    // backing hole, so a chunk the filesystem calls data can still be one
    // of ours; but one it calls a hole is never a sealed chunk.
    ENVELOPE_ASSIGN_OR_RETURN(bool hole, IsHole(i, size, sealed_buf_));
    if (hole) return std::max(offset, i * chunk);
    ++i;
  }
  return size;
}

}  // namespace envelope::format
