// Whole-buffer pread/pwrite that retry on EINTR and short transfers.
// Errors come back as IoError carrying the errno (ENOSPC stays ENOSPC).
#ifndef ENVELOPE_CORE_BASE_FD_IO_H_
#define ENVELOPE_CORE_BASE_FD_IO_H_

#include <cstdint>

#include "core/base/coding.h"
#include "core/base/status.h"

namespace envelope {

// Reads until `out` is full or EOF; returns the number of bytes read.
StatusOr<size_t> PreadFull(int fd, MutableByteView out, uint64_t offset);
// Writes all of `data` or fails.
Status PwriteFull(int fd, ByteView data, uint64_t offset);

// An owned file descriptor, closed on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  ~UniqueFd();
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept;
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int fd = fd_;
    fd_ = -1;
    return fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace envelope

#endif  // ENVELOPE_CORE_BASE_FD_IO_H_
