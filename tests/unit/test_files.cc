#include "tests/unit/test_files.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>

namespace envelope::testing {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base ? base : "/tmp") + "/envelope-test-XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

FakeWrapper::FakeWrapper() {
  auto key = crypto::SecretBytes::Random(32);
  if (!key.ok()) std::abort();
  auto aead = crypto::Aes256Gcm::New(key->view());
  if (!aead.ok()) std::abort();
  aead_ = std::make_unique<crypto::Aes256Gcm>(std::move(*aead));
}

StatusOr<Bytes> FakeWrapper::Wrap(const crypto::SecretBytes& dek,
                                  const format::FileId& id) {
  Bytes out(dek.size() + crypto::Aes256Gcm::kOverheadInBytes);
  ENVELOPE_RETURN_IF_ERROR(aead_->Seal(dek.view(), id, out));
  return out;
}

StatusOr<crypto::SecretBytes> FakeWrapper::Unwrap(ByteView blob,
                                                  const format::FileId& id) {
  if (blob.size() != format::kDekSizeInBytes + crypto::Aes256Gcm::kOverheadInBytes) {
    return Status::Corruption("wrapped DEK has the wrong size");
  }
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes dek,
                            crypto::SecretBytes::Zeroed(format::kDekSizeInBytes));
  ENVELOPE_RETURN_IF_ERROR(aead_->Open(blob, id, dek.mutable_view()));
  return dek;
}

TestVolume::TestVolume(bool dek_in_xattr, uint32_t chunk_size)
    : layout_(*format::ChunkLayout::ForVolume(dek_in_xattr, chunk_size)) {}

StatusOr<OpenFile> TestVolume::Create(const std::string& name) {
  OpenFile f;
  f.fd = UniqueFd(::open(Path(name).c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!f.fd.valid()) return Status::FromErrno("open");
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes dek,
                            crypto::SecretBytes::Random(format::kDekSizeInBytes));
  ENVELOPE_ASSIGN_OR_RETURN(format::FileId id, format::NewFileId());
  ENVELOPE_ASSIGN_OR_RETURN(Bytes wrapped, wrapper_.Wrap(dek, id));
  ENVELOPE_ASSIGN_OR_RETURN(format::Commitment c, format::ComputeCommitment(dek, id));
  ENVELOPE_ASSIGN_OR_RETURN(f.header, format::NewFileHeader(layout_, id, c, wrapped));
  ENVELOPE_ASSIGN_OR_RETURN(format::ChunkCipher cipher,
                            format::ChunkCipher::New(dek, f.header));
  ENVELOPE_RETURN_IF_ERROR(format::WriteNewFile(f.fd.get(), f.header, &cipher));
  f.content = std::make_unique<format::ContentFile>(f.fd.get(), layout_,
                                                    std::move(cipher));
  return f;
}

StatusOr<OpenFile> TestVolume::Open(const std::string& name) {
  OpenFile f;
  f.fd = UniqueFd(::open(Path(name).c_str(), O_RDWR | O_CLOEXEC));
  if (!f.fd.valid()) return Status::FromErrno("open");
  ENVELOPE_ASSIGN_OR_RETURN(f.header, format::ReadHeader(f.fd.get(), layout_));
  ENVELOPE_ASSIGN_OR_RETURN(Bytes wrapped, format::ActiveWrappedDek(f.header));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes dek,
                            wrapper_.Unwrap(wrapped, f.header.file_id));
  ENVELOPE_ASSIGN_OR_RETURN(format::ChunkCipher cipher,
                            format::ChunkCipher::New(dek, f.header));
  f.content = std::make_unique<format::ContentFile>(f.fd.get(), layout_,
                                                    std::move(cipher));
  return f;
}

StatusOr<Bytes> TestVolume::ReadAll(const std::string& name) {
  ENVELOPE_ASSIGN_OR_RETURN(OpenFile f, Open(name));
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size, f.content->Size());
  Bytes out(size);
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, f.content->Read(0, out));
  if (n != size) return Status::Internal("short read");
  return out;
}

Bytes TestVolume::ReadBacking(const std::string& name) const {
  std::ifstream in(Path(name), std::ios::binary);
  return Bytes(std::istreambuf_iterator<char>(in), {});
}

void TestVolume::WriteBacking(const std::string& name, const Bytes& bytes) const {
  // Rewrite in place (keeps the inode and so the xattr of xattr mode).
  int fd = ::open(Path(name).c_str(), O_WRONLY | O_TRUNC | O_CLOEXEC);
  if (fd < 0 || !PwriteFull(fd, bytes, 0).ok()) std::abort();
  ::close(fd);
}

}  // namespace envelope::testing
