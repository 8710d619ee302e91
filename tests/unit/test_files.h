// Helpers for format-layer tests: a temporary directory of envelopefs files
// and an in-memory stand-in for the key service's wrap/unwrap (allowed below
// the module boundary; the key service's own tests use the real daemon).
#ifndef ENVELOPE_TESTS_UNIT_TEST_FILES_H_
#define ENVELOPE_TESTS_UNIT_TEST_FILES_H_

#include <memory>
#include <string>

#include "core/base/fd_io.h"
#include "core/crypto/aes_gcm.h"
#include "core/format/content_file.h"
#include "core/format/header_io.h"

namespace envelope::testing {

// A fresh directory under $TMPDIR, removed with its contents on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// Wraps DEKs with AES-256-GCM under a random key, binding the file id as
// AAD the way the real volume binds it as encryption context.
class FakeWrapper {
 public:
  FakeWrapper();
  StatusOr<Bytes> Wrap(const crypto::SecretBytes& dek, const format::FileId& id);
  StatusOr<crypto::SecretBytes> Unwrap(ByteView blob, const format::FileId& id);

 private:
  std::unique_ptr<crypto::Aes256Gcm> aead_;
};

struct OpenFile {
  UniqueFd fd;
  format::FileHeader header;
  std::unique_ptr<format::ContentFile> content;
};

class TestVolume {
 public:
  explicit TestVolume(bool dek_in_xattr = false,
                      uint32_t chunk_size = format::kDefaultChunkSizeInBytes);
  const format::ChunkLayout& layout() const { return layout_; }
  std::string Path(const std::string& name) const { return dir_.File(name); }

  StatusOr<OpenFile> Create(const std::string& name);
  // Reads the header, unwraps, checks the commitment, as a mount would.
  StatusOr<OpenFile> Open(const std::string& name);
  // Opens and reads the whole plaintext.
  StatusOr<Bytes> ReadAll(const std::string& name);

  Bytes ReadBacking(const std::string& name) const;
  void WriteBacking(const std::string& name, const Bytes& bytes) const;

 private:
  TempDir dir_;
  format::ChunkLayout layout_;
  FakeWrapper wrapper_;
};

}  // namespace envelope::testing

#endif  // ENVELOPE_TESTS_UNIT_TEST_FILES_H_
