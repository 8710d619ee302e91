// One mounted (or inspected) envelopefs volume: its configuration, its
// volume key's subkeys, the key service client and the DEK cache. Turns a
// backing file descriptor into a ContentFile, creating the file's DEK for a
// new file or unwrapping it for an existing one. Holds no FUSE state.
//
// Thread safety: all methods are thread-safe.
#ifndef ENVELOPE_FS_VOLUME_H_
#define ENVELOPE_FS_VOLUME_H_

#include <memory>
#include <string>

#include "core/crypto/aes_siv.h"
#include "core/format/chunk_layout.h"
#include "core/format/content_file.h"
#include "core/format/name_codec.h"
#include "fs/dek_cache.h"
#include "fs/dek_pool.h"
#include "fs/volume_config.h"
#include "kms/kms_client.h"

namespace envelope::fs {

struct InitOptions {
  std::string key_id;
  std::string kms_endpoint;  // recorded in the config; empty = default resolution
  bool dek_in_xattr = false;
  uint32_t chunk_size = format::kDefaultChunkSizeInBytes;
};

class Volume {
 public:
  // Creates a volume in `cipherdir` (created if missing; must be empty).
  static Status Init(const std::string& cipherdir, const InitOptions& options,
                     kms::KmsClient* kms);

  // Reads and authenticates the config. `endpoint_override` (from --kms)
  // takes precedence over the endpoint recorded in the config.
  static StatusOr<std::unique_ptr<Volume>> Open(const std::string& cipherdir,
                                                const std::string& endpoint_override);

  const std::string& cipherdir() const { return cipherdir_; }
  const VolumeConfig& config() const { return config_; }
  const format::ChunkLayout& layout() const { return layout_; }
  const format::NameCodec& names() const { return names_; }
  kms::KmsClient* kms() const { return kms_.get(); }

  // The id of the backing directory `dirfd` (its .envelopefs.dirid file).
  StatusOr<format::DirId> ReadDirId(int dirfd) const;
  // Writes a fresh dir id file into the new backing directory `dirfd`.
  Status CreateDirId(int dirfd) const;

  // Turns the empty backing file `fd` into an empty envelopefs file with a
  // new DEK from the key service (GenerateDataKey).
  StatusOr<std::unique_ptr<format::ContentFile>> CreateContent(int fd);
  // Opens the existing backing file `fd`: header, DEK (cache or Decrypt),
  // key commitment.
  StatusOr<std::unique_ptr<format::ContentFile>> OpenContent(int fd);

  // Extended attribute values are sealed with AES-SIV bound to the name.
  StatusOr<std::string> SealXattrValue(std::string_view name, ByteView value) const;
  StatusOr<Bytes> OpenXattrValue(std::string_view name, ByteView sealed) const;

 private:
  Volume(std::string cipherdir, VolumeConfig config, format::ChunkLayout layout,
         format::NameCodec names, crypto::AesSiv xattr, std::unique_ptr<kms::KmsClient> kms);

  const std::string cipherdir_;
  const VolumeConfig config_;
  const format::ChunkLayout layout_;
  const format::NameCodec names_;
  const crypto::AesSiv xattr_siv_;
  StatusOr<DekPool::Entry> MakeFileKey();

  // Up to 32 file keys made ahead, none older than 2 s: creates do not wait
  // for the key service, and a disabled or rotated key governs new files
  // within 2 s.
  static constexpr size_t kDekPoolCapacity = 32;
  static constexpr std::chrono::milliseconds kDekPoolMaxAge{2000};

  std::unique_ptr<kms::KmsClient> kms_;
  DekCache dek_cache_{4096, std::chrono::seconds(600)};
  DekPool dek_pool_;  // after kms_: its thread uses the client
};

// The KMS client for an endpoint string ("" = default resolution), with
// credentials from the environment for TCP endpoints.
StatusOr<std::unique_ptr<kms::KmsClient>> ConnectKms(const std::string& endpoint);

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_VOLUME_H_
