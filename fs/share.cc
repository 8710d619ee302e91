#include "fs/share.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "core/base/fd_io.h"
#include "core/format/chunk_cipher.h"
#include "core/format/header_io.h"
#include "fs/backing_tree.h"
#include "fs/volume_walk.h"

namespace envelope::fs {

namespace {

// The nearest directory at or above `dir` holding an envelopefs.conf.
StatusOr<std::string> FindVolumeRoot(std::filesystem::path dir) {
  while (true) {
    struct stat st;
    if (::lstat(VolumeConfigPath(dir.string()).c_str(), &st) == 0 && S_ISREG(st.st_mode)) {
      return dir.string();
    }
    if (!dir.has_relative_path()) break;  // "/"
    dir = dir.parent_path();
  }
  return Status::NotFound("no envelopefs.conf in any directory above the file: is it a file "
                          "of an envelopefs cipherdir?");
}

Status WriteAll(int fd, ByteView data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return Status::FromErrno("write");
    data = data.subspan(static_cast<size_t>(n));
  }
  return Status::Ok();
}

}  // namespace

StatusOr<SharedFile> FindSharedFile(Volume& volume, const std::string& plaintext_path) {
  const std::string want = plaintext_path.empty() || plaintext_path[0] != '/'
                               ? "/" + plaintext_path
                               : plaintext_path;
  ENVELOPE_ASSIGN_OR_RETURN(VolumeListing listing, ListVolume(volume, ListOptions{}));
  for (const VolumeEntry& e : listing.entries) {
    if (e.type != DT_REG || e.name.empty() || listing.DisplayPath(e) != want) continue;
    SharedFile shared;
    shared.plaintext_path = want;
    shared.backing_path = listing.BackingPath(e);
    ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, backing::OpenRoot(volume.cipherdir()));
    ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd,
                              backing::OpenFileBeneath(root.get(), shared.backing_path, O_RDONLY));
    ENVELOPE_ASSIGN_OR_RETURN(format::FileHeader header,
                              format::ReadHeader(fd.get(), volume.layout()));
    // The caller can open it: the key named below is the one that unwraps.
    ENVELOPE_RETURN_IF_ERROR(volume.OpenContent(fd.get(), header).status());
    ENVELOPE_ASSIGN_OR_RETURN(Bytes wrapped, format::ActiveWrappedDek(header));
    ENVELOPE_ASSIGN_OR_RETURN(std::vector<std::string> keys, volume.KeyIdsToUnwrap(wrapped));
    if (keys.empty()) return Status::Corruption(want + ": its file key names no trusted key");
    shared.key_arn = keys.front();
    shared.context = volume.config().FileContext(HexEncode(header.file_id));
    return shared;
  }
  return Status::NotFound("no regular file " + want + " in the volume");
}

Status CatFile(const std::string& backing_file, const std::string& key, kms::KeyService* kms,
               int out_fd) {
  const std::filesystem::path path = std::filesystem::absolute(backing_file);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path.string());
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat " + path.string());
  if (!S_ISREG(st.st_mode)) return Status::InvalidArgument(path.string() + " is not a regular file");
  ENVELOPE_ASSIGN_OR_RETURN(std::string root, FindVolumeRoot(path.parent_path()));
  ENVELOPE_ASSIGN_OR_RETURN(std::string text, ReadVolumeConfigText(root));
  std::string mac;
  ENVELOPE_ASSIGN_OR_RETURN(VolumeConfig config, VolumeConfig::Parse(text, &mac));
  ENVELOPE_ASSIGN_OR_RETURN(format::ChunkLayout layout,
                            format::ChunkLayout::ForVolume(config.dek_in_xattr, config.chunk_size));
  ENVELOPE_ASSIGN_OR_RETURN(format::FileHeader header, format::ReadHeader(fd.get(), layout));
  ENVELOPE_ASSIGN_OR_RETURN(Bytes wrapped, format::ActiveWrappedDek(header));
  auto dek = kms->Decrypt(wrapped, config.FileContext(HexEncode(header.file_id)), key);
  if (!dek.ok()) return dek.status().WithContext("unwrapping the file key of " + path.string());
  ENVELOPE_ASSIGN_OR_RETURN(format::ChunkCipher cipher, format::ChunkCipher::New(*dek, header));
  format::ContentFile content(fd.get(), layout, std::move(cipher));
  ENVELOPE_RETURN_IF_ERROR(content.VerifyFinalChunk());
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size, content.Size());
  Bytes buffer(1 << 20);
  for (uint64_t offset = 0; offset < size;) {
    ENVELOPE_ASSIGN_OR_RETURN(size_t n, content.Read(offset, buffer));
    if (n == 0) return Status::Corruption(path.string() + " ended before its authenticated size");
    ENVELOPE_RETURN_IF_ERROR(WriteAll(out_fd, ByteView(buffer.data(), n)));
    offset += n;
  }
  return Status::Ok();
}

}  // namespace envelope::fs
