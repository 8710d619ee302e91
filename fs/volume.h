// One mounted (or inspected) envelopefs volume: its configuration, its
// volume key's subkeys, the key service client and the DEK cache. Turns a
// backing file descriptor into a ContentFile, creating the file's DEK for a
// new file or unwrapping it for an existing one. Holds no FUSE state.
//
// Thread safety: all methods are thread-safe.
#ifndef ENVELOPE_FS_VOLUME_H_
#define ENVELOPE_FS_VOLUME_H_

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "core/base/fd_io.h"
#include "core/crypto/aes_siv.h"
#include "core/format/chunk_layout.h"
#include "core/format/content_file.h"
#include "core/format/file_header.h"
#include "core/format/name_codec.h"
#include "fs/dek_cache.h"
#include "fs/dek_pool.h"
#include "fs/key_trust.h"
#include "fs/volume_config.h"
#include "kms/connect.h"
#include "kms/key_service.h"

namespace envelope::fs {

struct InitOptions {
  std::string key_id;        // any form; the config records the key's ARN
  std::string kms_endpoint;  // used, and recorded in the config (for information only)
  std::string kms_api;       // --kms-api: auto, envelope or standard (kms/connect.h)
  std::string ca_file;       // --ca-file: for an https endpoint
  bool dek_in_xattr = false;
  uint32_t chunk_size = format::kDefaultChunkSizeInBytes;
};

// Where Volume::Open's trust comes from: never from envelopefs.conf itself,
// which whoever can write the cipherdir can rewrite (docs/FORMAT.md §8.1).
struct OpenOptions {
  // The key service (--kms, -o kms=); "" = $ENVELOPE_KMS_ENDPOINT, else the
  // default socket. The endpoint the config records is never used.
  std::string endpoint;
  std::string kms_api;  // --kms-api, -o kms_api=: auto, envelope or standard
  std::string ca_file;  // --ca-file, -o ca_file=: for an https endpoint
  // The pinned master keys (--key, -o key=): ids, ARNs or aliases, each
  // resolved to its ARN once. The volume key must be wrapped under one of
  // them, and so must every file key. Empty: the config's own key is
  // trusted, but only if nobody but the caller and root can change the
  // config file or a directory above it (CheckNotReplaceable,
  // core/base/path_trust.h).
  std::vector<std::string> keys;
  // Trusted as well, without replacing the pin: the key `rotate --to-key`
  // moves the volume to (the user named it).
  std::vector<std::string> also_trust;
};

// The path of `cipherdir`'s envelopefs.conf.
std::string VolumeConfigPath(const std::string& cipherdir);
// Its text, never through a symlink, FIFO or device, at most 64 KiB. Not
// verified: VolumeConfig::Parse, then Verify under the volume key.
StatusOr<std::string> ReadVolumeConfigText(const std::string& cipherdir);

class Volume {
 public:
  // Creates a volume in `cipherdir` (created if missing; must be empty).
  static Status Init(const std::string& cipherdir, const InitOptions& options,
                     kms::KeyService* kms);

  // Reads the config, settles which keys are trusted (OpenOptions), unwraps
  // the volume key under a trusted key (Decrypt with that KeyId) and checks
  // the config's MAC with it before anything else is derived or unwrapped.
  // `cipherdir` must be absolute.
  // Connects to the key service OpenOptions names (ConnectKeyService).
  static StatusOr<std::unique_ptr<Volume>> Open(const std::string& cipherdir,
                                                const OpenOptions& options);
  // The same over a given key service (the fake, in unit tests);
  // options.endpoint, kms_api and ca_file are then unused.
  static StatusOr<std::unique_ptr<Volume>> Open(const std::string& cipherdir,
                                                const OpenOptions& options,
                                                std::shared_ptr<kms::KeyService> kms);

  // Things the caller should tell the user (a trusted key made by another
  // principal; a recorded endpoint that differs from the one used).
  const std::vector<std::string>& warnings() const { return warnings_; }
  // The KeyIds to try, in order, to unwrap `blob` (a file's wrapped DEK or
  // the volume key): the trusted key its label names (KeyTrust::Candidates).
  // Corruption for a blob under a key not trusted.
  StatusOr<std::vector<std::string>> KeyIdsToUnwrap(ByteView blob) const;
  // Decrypt pinned to each of those keys in turn (an opaque blob under
  // another trusted key answers IncorrectKeyException: the next is tried).
  StatusOr<crypto::SecretBytes> Unwrap(ByteView blob, const kms::EncryptionContextMap& context);
  // ReEncrypt, with its SourceKeyId chosen the same way.
  StatusOr<Bytes> Rewrap(ByteView blob, const kms::EncryptionContextMap& context,
                         const std::string& to_key_arn);

  const std::string& cipherdir() const { return cipherdir_; }
  const VolumeConfig& config() const { return config_; }
  const format::ChunkLayout& layout() const { return layout_; }
  const format::NameCodec& names() const { return names_; }
  kms::KeyService* kms() const { return kms_.get(); }

  // Every system call below goes through fs/backing_tree.h: nothing a user
  // planted in the cipherdir (a symlink, a FIFO) is followed or waited on.

  // The id of the backing directory `dirfd` (its .envelopefs.dirid file).
  StatusOr<format::DirId> ReadDirId(int dirfd) const;
  // The plaintext name of the entry `backing` of the backing directory
  // `dirfd` whose id is `dir_id`: an encrypted name, or a long name through
  // its side file. REQUIRES: Classify(backing) is kEncrypted or kLong.
  StatusOr<std::string> DecodeBackingName(int dirfd, std::string_view backing,
                                          const format::DirId& dir_id) const;
  // Writes a fresh dir id file into the new backing directory `dirfd`.
  Status CreateDirId(int dirfd) const;
  // The side file of a long name, written before the entry exists (it may
  // replace the side file of an entry about to be renamed over), and
  // removed after the entry is gone. No-ops for a short name.
  Status WriteLongNameFile(int dirfd, const format::EncodedName& en) const;
  void RemoveLongNameFile(int dirfd, const format::EncodedName& en) const;

  // Symlinks. Creates the backing symlink `backing` in `dirfd` for
  // `target`: the sealed target itself, or, past kMaxInlineTargetInBytes,
  // a reference into the long-target store (docs/FORMAT.md §8.3), whose
  // file is given to `owner`:`group` (-1: left as created).
  Status CreateSymlink(std::string_view target, int dirfd, const std::string& backing,
                       uid_t owner = static_cast<uid_t>(-1),
                       gid_t group = static_cast<gid_t>(-1)) const;
  // The plaintext target of the backing symlink `backing` in `dirfd`.
  StatusOr<std::string> ReadSymlink(int dirfd, const std::string& backing) const;
  // Called after the last link of a backing symlink owned by `link_owner`,
  // whose raw target was `raw_target`, is gone: removes its long-target
  // file, if it has one and that file has the same owner.
  void DropSymlinkTarget(std::string_view raw_target, uid_t link_owner) const;
  // A symlink owned by `old_owner` changed owner: its long-target file, if
  // any, follows.
  Status ChownSymlinkTarget(std::string_view raw_target, uid_t old_owner, uid_t owner,
                            gid_t group) const;

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

  // The master key (ARN) new files are wrapped under. A rotation with --to-key
  // rewrites the config on disk while the volume may be mounted; this
  // re-reads it (at most once a second, and only if the file changed) and
  // follows the new key once its MAC verifies under the volume key; the
  // new key is then trusted too (only a holder of the volume key can have
  // written that config).
  std::string KeyIdForNewFiles();

  // Re-wraps the volume key with ReEncrypt under the current version of
  // `to_key_arn`, which must be trusted (OpenOptions::also_trust), and
  // rewrites the config (new key ARN included) atomically:
  // temporary file, fsync, rename, fsync of the cipherdir. The volume key
  // itself, and so every name and xattr, stays the same.
  // REQUIRES: no concurrent call of config() (a rotation calls this before
  // it starts its workers; a mount never calls it).
  Status RewrapVolumeKey(const std::string& to_key_arn);

  // Extended attribute values are sealed with AES-SIV bound to the name.
  StatusOr<std::string> SealXattrValue(std::string_view name, ByteView value) const;
  StatusOr<Bytes> OpenXattrValue(std::string_view name, ByteView sealed) const;

 private:
  Volume(std::string cipherdir, VolumeConfig config, crypto::SecretBytes volume_key,
         format::ChunkLayout layout, format::NameCodec names, crypto::AesSiv xattr,
         std::shared_ptr<kms::KeyService> kms, std::string volume_key_arn,
         std::vector<std::string> warnings);

  // The store of long symlink targets (.envelopefs.targets), checked to be
  // writable by us alone.
  StatusOr<UniqueFd> OpenTargetStore(bool create) const;
  // A long name's side file holds a backing name of at most ~362 bytes.
  static constexpr size_t kMaxLongNameFileInBytes = 1024;

  const std::string cipherdir_;
  // The config as opened; the key id for new files may move on (key_mu_).
  VolumeConfig config_;
  const crypto::SecretBytes volume_key_;  // verifies a config rewritten by a rotation
  const format::ChunkLayout layout_;
  const format::NameCodec names_;
  const crypto::AesSiv xattr_siv_;
  // `count` new file ids and their keys (KeyService::GenerateDataKeys:
  // batched where the service can).
  StatusOr<std::vector<DekPool::Entry>> MakeFileKeys(size_t count);

  // Up to 128 file keys made ahead (as many as creates use, DekPool), none
  // older than 2 s: creates do not wait for the key service, and a disabled
  // or rotated key governs new files within 2 s.
  static constexpr size_t kDekPoolCapacity = 128;
  static constexpr std::chrono::milliseconds kDekPoolMaxAge{2000};

  const std::shared_ptr<kms::KeyService> kms_;
  KeyTrust trust_;  // the keys a wrapped key may be under
  const std::vector<std::string> warnings_;

  mutable std::mutex key_mu_;  // guards the three below
  std::string key_id_for_new_files_;  // an ARN: the key the volume key is under
  std::chrono::steady_clock::time_point config_checked_{};
  struct timespec config_mtime_ {};

  DekCache dek_cache_{4096, std::chrono::seconds(600)};
  DekPool dek_pool_;  // after kms_: its thread uses the client
};

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_VOLUME_H_
