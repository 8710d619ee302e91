#include "tests/unit/volume_fixture.h"

#include <fcntl.h>
#include <unistd.h>

#include "core/base/fd_io.h"
#include "core/format/header_io.h"
#include "fs/backing_tree.h"

namespace envelope::testing {

VolumeFixture::VolumeFixture(bool labelled, bool dek_in_xattr)
    : kms_(std::make_shared<kms::FakeKeyService>(labelled)) {
  key_ = kms_->CreateKey("volume");
  fs::InitOptions init;
  init.key_id = key_;
  init.dek_in_xattr = dek_in_xattr;
  Status s = fs::Volume::Init(dir_.path() + "/cipher", init, kms_.get());
  if (!s.ok()) std::abort();
}

StatusOr<std::unique_ptr<fs::Volume>> VolumeFixture::Open(std::vector<std::string> keys,
                                                          std::vector<std::string> also_trust) {
  fs::OpenOptions options;
  options.keys = keys.empty() ? std::vector<std::string>{key_} : std::move(keys);
  options.also_trust = std::move(also_trust);
  return fs::Volume::Open(dir_.path() + "/cipher", options, kms_);
}

StatusOr<std::string> VolumeFixture::BackingName(fs::Volume& volume, const std::string& name) {
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd top, fs::backing::OpenRoot(volume.cipherdir()));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, fs::backing::OpenDir(top.get(), ""));
  ENVELOPE_ASSIGN_OR_RETURN(format::DirId id, volume.ReadDirId(root.get()));
  ENVELOPE_ASSIGN_OR_RETURN(format::EncodedName en, volume.names().EncodeName(name, id));
  return en.backing_name;
}

Status VolumeFixture::WriteFile(fs::Volume& volume, const std::string& name,
                                const std::string& content) {
  ENVELOPE_ASSIGN_OR_RETURN(std::string backing, BackingName(volume, name));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd top, fs::backing::OpenRoot(volume.cipherdir()));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, fs::backing::OpenDir(top.get(), ""));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, fs::backing::CreateRegular(root.get(), backing, 0600,
                                                                    /*exclusive=*/true));
  ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<format::ContentFile> file, volume.CreateContent(fd.get()));
  return file->Write(0, AsBytes(content));
}

StatusOr<std::string> VolumeFixture::ReadFile(fs::Volume& volume, const std::string& name) {
  ENVELOPE_ASSIGN_OR_RETURN(std::string backing, BackingName(volume, name));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd top, fs::backing::OpenRoot(volume.cipherdir()));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, fs::backing::OpenDir(top.get(), ""));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, fs::backing::OpenRegular(root.get(), backing, O_RDONLY));
  ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<format::ContentFile> file, volume.OpenContent(fd.get()));
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size, file->Size());
  std::string out(size, '\0');
  ENVELOPE_ASSIGN_OR_RETURN(
      size_t n, file->Read(0, MutableByteView(reinterpret_cast<uint8_t*>(out.data()), out.size())));
  out.resize(n);
  return out;
}

StatusOr<Bytes> VolumeFixture::WrappedDek(fs::Volume& volume, const std::string& name) {
  ENVELOPE_ASSIGN_OR_RETURN(std::string backing, BackingName(volume, name));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd top, fs::backing::OpenRoot(volume.cipherdir()));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, fs::backing::OpenDir(top.get(), ""));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, fs::backing::OpenRegular(root.get(), backing, O_RDONLY));
  ENVELOPE_ASSIGN_OR_RETURN(format::FileHeader header, format::ReadHeader(fd.get(), volume.layout()));
  return format::ActiveWrappedDek(header);
}

Status VolumeFixture::ReplaceWrappedDek(fs::Volume& volume, const std::string& name,
                                        ByteView blob) {
  ENVELOPE_ASSIGN_OR_RETURN(std::string backing, BackingName(volume, name));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd top, fs::backing::OpenRoot(volume.cipherdir()));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, fs::backing::OpenDir(top.get(), ""));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, fs::backing::OpenRegular(root.get(), backing, O_RDWR));
  ENVELOPE_ASSIGN_OR_RETURN(format::FileHeader header, format::ReadHeader(fd.get(), volume.layout()));
  return format::RewriteWrappedDek(fd.get(), &header, blob);
}

Status VolumeFixture::DamageHeader(fs::Volume& volume, const std::string& name) {
  ENVELOPE_ASSIGN_OR_RETURN(std::string backing, BackingName(volume, name));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd top, fs::backing::OpenRoot(volume.cipherdir()));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, fs::backing::OpenDir(top.get(), ""));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, fs::backing::OpenRegular(root.get(), backing, O_RDWR));
  const Bytes junk(16, 0xa5);
  return PwriteFull(fd.get(), junk, 0);
}

}  // namespace envelope::testing
