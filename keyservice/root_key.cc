#include "keyservice/root_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "core/base/fd_io.h"
#include "core/crypto/scrypt.h"

namespace envelope::keyservice {

StatusOr<crypto::SecretBytes> LoadOrCreateRootKeyFile(const std::string& path, bool* created) {
  *created = false;
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW));
  if (!fd.valid() && errno == ENOENT) {
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes key,
                              crypto::SecretBytes::Random(kRootKeySizeInBytes));
    UniqueFd out(::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600));
    if (!out.valid()) return Status::FromErrno("create root key file " + path);
    ENVELOPE_RETURN_IF_ERROR(PwriteFull(out.get(), key.view(), 0));
    if (::fsync(out.get()) != 0) return Status::FromErrno("fsync " + path);
    *created = true;
    return key;
  }
  if (!fd.valid()) return Status::FromErrno("open root key file " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path);
  if ((st.st_mode & 077) != 0) {
    return Status::PermissionDenied("root key file " + path +
                                    " is accessible by group or others; chmod 600 it");
  }
  if (st.st_size != static_cast<off_t>(kRootKeySizeInBytes)) {
    return Status::Corruption("root key file " + path + " must hold exactly 32 bytes");
  }
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes key,
                            crypto::SecretBytes::Zeroed(kRootKeySizeInBytes));
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, PreadFull(fd.get(), key.mutable_view(), 0));
  if (n != kRootKeySizeInBytes) return Status::Corruption("short read of " + path);
  return key;
}

StatusOr<crypto::SecretBytes> ReadPassphrase(int fd, const char* prompt) {
  constexpr size_t kMax = 1024;
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes buf, crypto::SecretBytes::Zeroed(kMax));
  int in = fd;
  UniqueFd tty;
  struct termios saved;
  bool restore = false;
  if (fd < 0) {
    tty = UniqueFd(::open("/dev/tty", O_RDWR | O_CLOEXEC));
    if (!tty.valid()) return Status::FromErrno("open /dev/tty for the passphrase");
    in = tty.get();
    if (::write(in, prompt, std::char_traits<char>::length(prompt)) < 0) {
      return Status::FromErrno("write prompt");
    }
    if (::tcgetattr(in, &saved) == 0) {
      struct termios quiet = saved;
      quiet.c_lflag &= ~static_cast<tcflag_t>(ECHO);
      restore = ::tcsetattr(in, TCSAFLUSH, &quiet) == 0;
    }
  }
  size_t len = 0;
  Status status;
  while (len < kMax) {
    ssize_t n = ::read(in, buf.data() + len, 1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      status = Status::FromErrno("read passphrase");
      break;
    }
    if (n == 0 || buf.data()[len] == '\n') break;
    ++len;
  }
  if (restore) {
    ::tcsetattr(in, TCSAFLUSH, &saved);
    (void)!::write(in, "\n", 1);
  }
  ENVELOPE_RETURN_IF_ERROR(status);
  if (len == 0) return Status::InvalidArgument("empty passphrase");
  if (len == kMax) return Status::InvalidArgument("passphrase longer than 1023 bytes");
  return crypto::SecretBytes::CopyOf(ByteView(buf.data(), len));
}

StatusOr<crypto::SecretBytes> RootKeyFromPassphrase(const crypto::SecretBytes& passphrase,
                                                    std::string_view salt) {
  return crypto::Scrypt(passphrase.view(), AsBytes(salt), crypto::ScryptParams{},
                        kRootKeySizeInBytes);
}

}  // namespace envelope::keyservice
