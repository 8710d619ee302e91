#include "keyservice/restore.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "core/base/fd_io.h"
#include "core/crypto/secret_line.h"
#include "keyservice/backup.h"
#include "keyservice/key_store.h"
#include "keyservice/root_key.h"

namespace envelope::keyservice {

namespace {

constexpr size_t kMaxBackupFileInBytes = size_t{64} << 20;
constexpr size_t kMaxShareLineInBytes = 512;

StatusOr<Bytes> ReadBackupFile(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path);
  if (!S_ISREG(st.st_mode) || static_cast<size_t>(st.st_size) > kMaxBackupFileInBytes) {
    return Status::InvalidArgument(path + " is not a backup file");
  }
  Bytes data(static_cast<size_t>(st.st_size));
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, PreadFull(fd.get(), MutableByteView(data.data(), data.size()), 0));
  if (n != data.size()) return Status::IoError("short read of " + path, EIO);
  return data;
}

std::string SharePrompt(size_t have, const BackupHeader& h) {
  return "share " + std::to_string(have + 1) + " of " + std::to_string(h.threshold) + ": ";
}

}  // namespace

StatusOr<crypto::SecretBytes> ReadSharesFromTerminal(const std::string& backup_path,
                                                     size_t* size) {
  ENVELOPE_ASSIGN_OR_RETURN(Bytes file, ReadBackupFile(backup_path));
  ENVELOPE_ASSIGN_OR_RETURN(BackupHeader header, ReadBackupHeader(file));
  UniqueFd tty(::open("/dev/tty", O_RDWR | O_CLOEXEC));
  if (!tty.valid()) return Status::FromErrno("open /dev/tty for the shares");
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes lines,
                            crypto::SecretBytes::Zeroed(header.threshold * (kMaxShareLineInBytes + 1)));
  *size = 0;
  for (size_t i = 0; i < header.threshold; ++i) {
    auto line = crypto::ReadSecretLine(tty.get(), kMaxShareLineInBytes, tty.get(),
                                       SharePrompt(i, header));
    if (!line.ok() || line->size() == 0) break;
    std::memcpy(lines.data() + *size, line->data(), line->size());
    *size += line->size();
    lines.data()[(*size)++] = '\n';
  }
  return lines;
}

StatusOr<std::string> RestoreBackup(const RestoreOptions& o) {
  const std::string store_path = o.data_dir + "/data.mdb";
  if (::access(store_path.c_str(), F_OK) == 0) {
    return Status::FailedPrecondition(o.data_dir +
                                      " already holds a store: restore into an empty data directory");
  }
  ENVELOPE_ASSIGN_OR_RETURN(Bytes file, ReadBackupFile(o.backup_path));
  ENVELOPE_ASSIGN_OR_RETURN(BackupHeader header, ReadBackupHeader(file));

  UniqueFd tty;
  int in = o.shares_fd;
  if (in < 0) {
    tty = UniqueFd(::open("/dev/tty", O_RDWR | O_CLOEXEC));
    if (!tty.valid()) return Status::FromErrno("open /dev/tty for the shares");
    in = tty.get();
  }
  std::vector<crypto::ShamirShare> shares;
  while (shares.size() < header.threshold) {
    auto line = crypto::ReadSecretLine(in, kMaxShareLineInBytes, tty.get(),
                                       SharePrompt(shares.size(), header));
    if (!line.ok() || line->size() == 0) break;  // end of input
    const std::string_view text(reinterpret_cast<const char*>(line->data()), line->size());
    auto share = ParseShare(text, header);
    if (!share.ok()) return share.status().WithContext("share " + std::to_string(shares.size() + 1));
    for (const crypto::ShamirShare& s : shares) {
      if (s.x == share->x) {
        return Status::InvalidArgument("share " + std::to_string(share->x) + " was given twice");
      }
    }
    shares.push_back(std::move(*share));
  }
  ENVELOPE_ASSIGN_OR_RETURN(BackupContents contents, OpenBackup(file, shares));

  ENVELOPE_RETURN_IF_ERROR(WriteNewPrivateFile(o.root_key_path, contents.root_key.view()));
  ENVELOPE_RETURN_IF_ERROR(WriteNewPrivateFile(store_path, contents.store));
  {
    // The restored directory is a key-file one, whatever the original was.
    ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<KeyStore> store, KeyStore::Open(o.data_dir));
    ENVELOPE_RETURN_IF_ERROR(store->PutMeta("root-key-mode", "key-file"));
  }
  return "restored backup " + header.backup_id + " (" + std::to_string(header.keys) +
         " keys, made at " + std::to_string(header.created) + ") from " +
         std::to_string(shares.size()) + " shares; root key written to " + o.root_key_path;
}

}  // namespace envelope::keyservice
