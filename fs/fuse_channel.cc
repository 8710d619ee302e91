#include "fs/fuse_channel.h"

#include <linux/fuse.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>

#define FUSE_USE_VERSION 314
#include <fuse_lowlevel.h>

namespace envelope::fs {

namespace {
// Set by Inspect for the request this thread read last.
thread_local bool tls_kill_suidgid = false;

// The fixed part of request `T` after the header, if the request holds it.
template <typename T>
bool ReadArg(const uint8_t* buf, size_t len, T* out) {
  if (len < sizeof(fuse_in_header) + sizeof(T)) return false;
  std::memcpy(out, buf + sizeof(fuse_in_header), sizeof(T));
  return true;
}

// Whether request `T` holds `field` with any bit of `mask` set.
template <typename T>
bool ArgHas(const uint8_t* buf, size_t len, uint32_t T::*field, uint32_t mask) {
  T arg;
  return ReadArg(buf, len, &arg) && (arg.*field & mask) != 0;
}
}  // namespace

std::atomic<FuseChannel*> FuseChannel::attached_{nullptr};

int FuseChannel::Attach(fuse_session* se) {
  fuse_custom_io io;
  std::memset(&io, 0, sizeof(io));
  io.read = &FuseChannel::Read;
  io.writev = &FuseChannel::Writev;
  attached_.store(this, std::memory_order_release);
  return fuse_session_custom_io(se, &io, fuse_session_fd(se));
}

bool FuseChannel::KillSuidSgidRequested() { return tls_kill_suidgid; }

ssize_t FuseChannel::Read(int fd, void* buf, size_t len, void*) {
  const ssize_t n = ::read(fd, buf, len);
  if (n > 0) attached_.load(std::memory_order_acquire)->Inspect(static_cast<uint8_t*>(buf), n);
  return n;
}

void FuseChannel::Inspect(const uint8_t* buf, size_t len) {
  tls_kill_suidgid = false;
  if (len < sizeof(fuse_in_header)) return;
  fuse_in_header in;
  std::memcpy(&in, buf, sizeof(in));
  switch (in.opcode) {
    case FUSE_INIT: {
      fuse_init_in init;
      if (!ReadArg(buf, len, &init)) return;
      kernel_offers_kill_priv_v2_ = (init.flags & FUSE_HANDLE_KILLPRIV_V2) != 0;
      init_unique_ = in.unique;
      init_pending_.store(true, std::memory_order_release);
      return;
    }
    case FUSE_WRITE:
      tls_kill_suidgid =
          ArgHas(buf, len, &fuse_write_in::write_flags, FUSE_WRITE_KILL_SUIDGID);
      return;
    case FUSE_SETATTR:
      tls_kill_suidgid = ArgHas(buf, len, &fuse_setattr_in::valid, FATTR_KILL_SUIDGID);
      return;
    case FUSE_OPEN:
      tls_kill_suidgid = ArgHas(buf, len, &fuse_open_in::open_flags, FUSE_OPEN_KILL_SUIDGID);
      return;
    case FUSE_CREATE:
      tls_kill_suidgid = ArgHas(buf, len, &fuse_create_in::open_flags, FUSE_OPEN_KILL_SUIDGID);
      return;
    default:
      return;
  }
}

ssize_t FuseChannel::Writev(int fd, struct iovec* iov, int count, void*) {
  FuseChannel* self = attached_.load(std::memory_order_acquire);
  if (self->init_pending_.load(std::memory_order_acquire) && count >= 2 && iov[0].iov_len >= sizeof(fuse_out_header) &&
      iov[1].iov_len >= offsetof(fuse_init_out, flags) + sizeof(uint32_t)) {
    fuse_out_header out;
    std::memcpy(&out, iov[0].iov_base, sizeof(out));
    if (out.unique == self->init_unique_) {
      self->init_pending_.store(false, std::memory_order_relaxed);
      if (out.error == 0 && self->kernel_offers_kill_priv_v2_) {
        auto* flags = static_cast<uint8_t*>(iov[1].iov_base) + offsetof(fuse_init_out, flags);
        uint32_t f;
        std::memcpy(&f, flags, sizeof(f));
        f |= FUSE_HANDLE_KILLPRIV_V2;
        std::memcpy(flags, &f, sizeof(f));
        self->kill_priv_v2_.store(true, std::memory_order_release);
      }
    }
  }
  return ::writev(fd, iov, count);
}

}  // namespace envelope::fs
