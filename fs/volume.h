// One mounted (or inspected) envelopefs volume: its configuration, its
// volume key's subkeys, the key service client and the DEK cache. Turns a
// backing file descriptor into a ContentFile, creating the file's DEK for a
// new file or unwrapping it for an existing one. Holds no FUSE state.
//
// Thread safety: all methods are thread-safe.
#ifndef ENVELOPE_FS_VOLUME_H_
#define ENVELOPE_FS_VOLUME_H_

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>

#include "core/crypto/aes_siv.h"
#include "core/format/chunk_layout.h"
#include "core/format/content_file.h"
#include "core/format/file_header.h"
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
  // The plaintext name of the entry `backing` of the backing directory
  // `dirfd` whose id is `dir_id`: an encrypted name, or a long name through
  // its side file. REQUIRES: Classify(backing) is kEncrypted or kLong.
  StatusOr<std::string> DecodeBackingName(int dirfd, std::string_view backing,
                                          const format::DirId& dir_id) const;
  // Writes a fresh dir id file into the new backing directory `dirfd`.
  Status CreateDirId(int dirfd) const;

  // Symlinks. Creates the backing symlink `backing` in `dirfd` for
  // `target`: the sealed target itself, or, past kMaxInlineTargetInBytes,
  // a reference into the long-target store (docs/FORMAT.md §8.3).
  Status CreateSymlink(std::string_view target, int dirfd, const std::string& backing) const;
  // The plaintext target of the backing symlink `backing` in `dirfd`.
  StatusOr<std::string> ReadSymlink(int dirfd, const std::string& backing) const;
  // Called after the last link of a backing symlink whose raw target was
  // `raw_target` is gone: removes its long-target file, if it has one.
  void DropSymlinkTarget(std::string_view raw_target) const;

  // The plaintext path ("/docs/a.txt") of `backing_path`, a path relative
  // to the cipherdir, decoding each component with its directory's id; for
  // log lines about a file, so it costs a few reads.
  StatusOr<std::string> PlaintextPath(std::string_view backing_path) const;

  // Turns the empty backing file `fd` into an empty envelopefs file with a
  // new DEK from the key service (GenerateDataKey).
  StatusOr<std::unique_ptr<format::ContentFile>> CreateContent(int fd);
  // Opens the existing backing file `fd`: header, DEK (cache or Decrypt),
  // key commitment, and the final chunk (which authenticates the size).
  StatusOr<std::unique_ptr<format::ContentFile>> OpenContent(int fd);
  // The same, for a caller that has already read the file's header.
  StatusOr<std::unique_ptr<format::ContentFile>> OpenContent(int fd,
                                                             const format::FileHeader& header);

  // The master key new files are wrapped under. A rotation with --to-key
  // rewrites the config on disk while the volume may be mounted; this
  // re-reads it (at most once a second, and only if the file changed) and
  // follows the new key once its MAC verifies under the volume key.
  std::string KeyIdForNewFiles();

  // Re-wraps the volume key with ReEncrypt under the current version of
  // `to_key` and rewrites the config (new key id included) atomically:
  // temporary file, fsync, rename, fsync of the cipherdir. The volume key
  // itself, and so every name and xattr, stays the same.
  // REQUIRES: no concurrent call of config() (a rotation calls this before
  // it starts its workers; a mount never calls it).
  Status RewrapVolumeKey(const std::string& to_key);

  // Extended attribute values are sealed with AES-SIV bound to the name.
  StatusOr<std::string> SealXattrValue(std::string_view name, ByteView value) const;
  StatusOr<Bytes> OpenXattrValue(std::string_view name, ByteView sealed) const;

 private:
  Volume(std::string cipherdir, VolumeConfig config, crypto::SecretBytes volume_key,
         format::ChunkLayout layout, format::NameCodec names, crypto::AesSiv xattr,
         std::unique_ptr<kms::KmsClient> kms);

  const std::string cipherdir_;
  // The config as opened; the key id for new files may move on (key_mu_).
  VolumeConfig config_;
  const crypto::SecretBytes volume_key_;  // verifies a config rewritten by a rotation
  const format::ChunkLayout layout_;
  const format::NameCodec names_;
  const crypto::AesSiv xattr_siv_;
  // `count` new file ids and their keys: one GenerateDataKeys request, or
  // GenerateDataKey for each where the key service lacks that extension.
  StatusOr<std::vector<DekPool::Entry>> MakeFileKeys(size_t count);

  // Up to 32 file keys made ahead, none older than 2 s: creates do not wait
  // for the key service, and a disabled or rotated key governs new files
  // within 2 s.
  static constexpr size_t kDekPoolCapacity = 32;
  static constexpr std::chrono::milliseconds kDekPoolMaxAge{2000};

  std::unique_ptr<kms::KmsClient> kms_;
  std::atomic<bool> kms_has_batches_{true};  // until it answers UnknownOperation

  std::mutex key_mu_;  // guards the three below
  std::string key_id_for_new_files_;
  std::chrono::steady_clock::time_point config_checked_{};
  struct timespec config_mtime_ {};

  DekCache dek_cache_{4096, std::chrono::seconds(600)};
  DekPool dek_pool_;  // after kms_: its thread uses the client
};

// The KMS client for an endpoint string ("" = default resolution), with
// credentials from the environment for TCP endpoints.
StatusOr<std::unique_ptr<kms::KmsClient>> ConnectKms(const std::string& endpoint);

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_VOLUME_H_
