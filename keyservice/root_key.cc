#include "keyservice/root_key.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "core/base/fd_io.h"
#include "core/crypto/scrypt.h"
#include "core/crypto/secret_line.h"

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
  constexpr size_t kMaxPassphraseInBytes = 1023;
  UniqueFd tty;
  if (fd < 0) {
    tty = UniqueFd(::open("/dev/tty", O_RDWR | O_CLOEXEC));
    if (!tty.valid()) return Status::FromErrno("open /dev/tty for the passphrase");
  }
  const int in = fd < 0 ? tty.get() : fd;
  auto pass = crypto::ReadSecretLine(in, kMaxPassphraseInBytes, tty.get(), fd < 0 ? prompt : "");
  if (!pass.ok()) return pass.status().WithContext("reading the passphrase");
  if (pass->size() == 0) return Status::InvalidArgument("empty passphrase");
  return pass;
}

StatusOr<crypto::SecretBytes> RootKeyFromPassphrase(const crypto::SecretBytes& passphrase,
                                                    std::string_view salt) {
  return crypto::Scrypt(passphrase.view(), AsBytes(salt), crypto::ScryptParams{},
                        kRootKeySizeInBytes);
}

}  // namespace envelope::keyservice
