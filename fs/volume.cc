#include "fs/volume.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/base/fd_io.h"
#include "core/base/path_trust.h"
#include "core/base/uuid.h"
#include "core/crypto/random.h"
#include "core/format/chunk_cipher.h"
#include "core/format/header_io.h"
#include "fs/backing_tree.h"
#include "kms/endpoint.h"
#include "kms/kms_client.h"

namespace envelope::fs {

namespace {

constexpr std::string_view kXattrDomain = "envelopefs/v1/xattr";
constexpr uint8_t kXattrValueVersion = 1;

std::string NewUuid() {
  std::array<uint8_t, 16> id;
  (void)crypto::RandomBytes(id);
  return FormatRandomUuid(id);
}

}  // namespace

std::string VolumeConfigPath(const std::string& cipherdir) {
  return cipherdir + "/" + std::string(format::kVolumeConfigFileName);
}

// A config is a few hundred bytes; anything much larger is not one.
constexpr size_t kMaxConfigSizeInBytes = 64 * 1024;

// The config's text. Never through a symlink, never a FIFO or device: the
// cipherdir may be writable by others.
StatusOr<std::string> ReadVolumeConfigText(const std::string& cipherdir) {
  const std::string path = VolumeConfigPath(cipherdir);
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT) {
      return Status::NotFound(cipherdir + " has no envelopefs.conf (not an envelopefs volume?)");
    }
    return Status::FromErrno("open " + path);
  }
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("stat " + path);
  if (!S_ISREG(st.st_mode)) return Status::Corruption(path + " is not a regular file");
  std::string text(kMaxConfigSizeInBytes + 1, '\0');
  ENVELOPE_ASSIGN_OR_RETURN(
      size_t n, PreadFull(fd.get(), MutableByteView(reinterpret_cast<uint8_t*>(text.data()), text.size()), 0));
  if (n > kMaxConfigSizeInBytes) return Status::Corruption(path + " is too large to be a volume config");
  text.resize(n);
  return text;
}

Volume::Volume(std::string cipherdir, VolumeConfig config, crypto::SecretBytes volume_key,
               format::ChunkLayout layout, format::NameCodec names, crypto::AesSiv xattr,
               std::shared_ptr<kms::KeyService> kms, std::string volume_key_arn,
               std::vector<std::string> warnings)
    : cipherdir_(std::move(cipherdir)),
      config_(std::move(config)),
      volume_key_(std::move(volume_key)),
      layout_(layout),
      names_(std::move(names)),
      xattr_siv_(std::move(xattr)),
      kms_(std::move(kms)),
      warnings_(std::move(warnings)),
      key_id_for_new_files_(std::move(volume_key_arn)),
      dek_pool_([this](size_t count) { return MakeFileKeys(count); }, kDekPoolCapacity,
                kDekPoolMaxAge) {
  // The config as read by Open: a later change is a rotation's.
  struct stat st;
  if (::stat(VolumeConfigPath(cipherdir_).c_str(), &st) == 0) config_mtime_ = st.st_mtim;
}

Status Volume::Init(const std::string& cipherdir, const InitOptions& options,
                    kms::KeyService* kms) {
  std::error_code ec;
  std::filesystem::create_directories(cipherdir, ec);
  if (ec) return Status::IoError("create " + cipherdir + ": " + ec.message(), ec.value());
  if (!std::filesystem::is_empty(cipherdir, ec)) {
    return Status::AlreadyExists(cipherdir + " is not empty");
  }
  ENVELOPE_RETURN_IF_ERROR(format::ChunkLayout::ForVolume(options.dek_in_xattr,
                                                          options.chunk_size).status());
  VolumeConfig config;
  config.volume_id = NewUuid();
  config.key_id = options.key_id;
  config.kms_endpoint = options.kms_endpoint;
  config.dek_in_xattr = options.dek_in_xattr;
  config.chunk_size = options.chunk_size;
  config.created = std::chrono::duration_cast<std::chrono::seconds>(
                       std::chrono::system_clock::now().time_since_epoch())
                       .count();
  ENVELOPE_ASSIGN_OR_RETURN(kms::DataKey vk,
                            kms->GenerateDataKey(options.key_id, config.VolumeKeyContext()));
  config.wrapped_volume_key = vk.ciphertext_blob;
  // The ARN, not the alias or id as given: an alias can later be pointed
  // at another key.
  if (!vk.key_arn.empty()) config.key_id = vk.key_arn;
  ENVELOPE_ASSIGN_OR_RETURN(std::string text, config.Encode(vk.plaintext));

  UniqueFd root(::open(cipherdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return Status::FromErrno("open " + cipherdir);
  // The root directory's id: same mechanism as every other directory.
  format::DirId dir_id;
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomBytes(dir_id));
  ENVELOPE_RETURN_IF_ERROR(backing::CreateSmallFile(root.get(), std::string(format::kDirIdFileName),
                                                    dir_id, 0400, static_cast<uid_t>(-1),
                                                    static_cast<gid_t>(-1), /*sync=*/true));
  // The config appears last, so a volume with a config is complete.
  return backing::ReplaceSmallFile(root.get(), std::string(format::kVolumeConfigFileName), AsBytes(text), 0400,
                                   /*sync=*/true);
}

StatusOr<std::unique_ptr<Volume>> Volume::Open(const std::string& cipherdir,
                                               const OpenOptions& options) {
  kms::ConnectOptions connect;
  connect.endpoint = options.endpoint;
  ENVELOPE_ASSIGN_OR_RETURN(connect.api, kms::ParseKmsApi(options.kms_api));
  connect.ca_file = options.ca_file;
  // A mount must notice a dead key service quickly and say so; opens of
  // files whose DEK is cached keep working meanwhile.
  connect.fail_fast = true;
  ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<kms::KeyService> kms, kms::ConnectKeyService(connect));
  return Open(cipherdir, options, std::move(kms));
}

StatusOr<std::unique_ptr<Volume>> Volume::Open(const std::string& cipherdir,
                                               const OpenOptions& options,
                                               std::shared_ptr<kms::KeyService> kms) {
  ENVELOPE_ASSIGN_OR_RETURN(std::string text, ReadVolumeConfigText(cipherdir));
  std::string mac;
  ENVELOPE_ASSIGN_OR_RETURN(VolumeConfig config, VolumeConfig::Parse(text, &mac));
  ENVELOPE_ASSIGN_OR_RETURN(format::ChunkLayout layout,
                            format::ChunkLayout::ForVolume(config.dek_in_xattr, config.chunk_size));
  // Nothing the config says is trusted before its MAC checks out under a
  // volume key unwrapped under a trusted key; its endpoint not even then
  // (it is for information: docs/FORMAT.md §8.1).
  std::vector<std::string> warnings;
  if (!config.kms_endpoint.empty()) {
    auto recorded = kms::ParseEndpoint(config.kms_endpoint);
    if (!recorded.ok() || recorded->ToString() != kms->Name()) {
      std::string shown = config.kms_endpoint.substr(0, 256);  // the cipherdir's words: tame them
      for (char& c : shown) {
        if (c < 0x20 || c == 0x7f) c = '?';
      }
      warnings.push_back("the volume records the key service " + shown +
                         "; using " + kms->Name() +
                         " (a recorded endpoint is never used: give --kms or -o kms=)");
    }
  }
  std::vector<std::string> pins = options.keys;
  if (pins.empty()) {
    Status s = CheckNotReplaceable(VolumeConfigPath(cipherdir), ::geteuid(), PathKind::kRegularFile);
    if (!s.ok()) {
      return Status::FailedPrecondition(
          "no key pinned, and the volume config cannot be trusted on its own: " + s.message() +
          ". Give the volume's key with -o key=KEY (mount) or --key KEY, or make the cipherdir "
          "and the directories above it writable only by you or root");
    }
    pins.push_back(config.key_id);
  }
  std::vector<TrustedKey> trusted;
  for (const std::string& key : pins) {
    ENVELOPE_ASSIGN_OR_RETURN(TrustedKey t, ResolveKey(kms.get(), key, &warnings));
    trusted.push_back(std::move(t));
  }
  for (const std::string& key : options.also_trust) {
    ENVELOPE_ASSIGN_OR_RETURN(TrustedKey t, ResolveKey(kms.get(), key, &warnings));
    trusted.push_back(std::move(t));
  }
  KeyTrust trust;
  for (const TrustedKey& t : trusted) trust.Add(t);
  const std::string first_pin = trusted.front().arn;
  // The volume key, under a trusted key only: a config rewritten to a key
  // someone else controls, with a MAC made under their own volume key, is
  // refused here, before its MAC could be checked with their key.
  auto candidates = trust.Candidates(kms->VersionOf(config.wrapped_volume_key), first_pin);
  if (!candidates.ok()) {
    return candidates.status().WithContext(
        "the volume key is not under a trusted key (after `rotate --to-key`, pin the new key)");
  }
  std::string vk_arn;
  StatusOr<crypto::SecretBytes> vk = Status::Internal("no candidate key");
  for (const std::string& arn : *candidates) {
    vk = kms->Decrypt(config.wrapped_volume_key, config.VolumeKeyContext(), arn);
    vk_arn = arn;
    if (vk.ok() || kms::KmsErrorType(vk.status()) != "IncorrectKeyException") break;
  }
  if (!vk.ok()) return vk.status().WithContext("unwrapping the volume key under " + vk_arn);
  ENVELOPE_RETURN_IF_ERROR(config.Verify(*vk, mac));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes name_key, DeriveNameKey(*vk));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes xattr_key, DeriveXattrKey(*vk));
  ENVELOPE_ASSIGN_OR_RETURN(format::NameCodec names, format::NameCodec::New(name_key));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::AesSiv xattr, crypto::AesSiv::New(xattr_key.view()));
  std::unique_ptr<Volume> volume(new Volume(cipherdir, std::move(config), std::move(*vk), layout,
                                            std::move(names), std::move(xattr), std::move(kms),
                                            vk_arn, std::move(warnings)));
  for (TrustedKey& t : trusted) volume->trust_.Add(std::move(t));
  return volume;
}

StatusOr<std::vector<std::string>> Volume::KeyIdsToUnwrap(ByteView blob) const {
  std::string current;
  {
    std::lock_guard lock(key_mu_);
    current = key_id_for_new_files_;
  }
  return trust_.Candidates(kms_->VersionOf(blob), current);
}

StatusOr<crypto::SecretBytes> Volume::Unwrap(ByteView blob,
                                             const kms::EncryptionContextMap& context) {
  ENVELOPE_ASSIGN_OR_RETURN(std::vector<std::string> keys, KeyIdsToUnwrap(blob));
  StatusOr<crypto::SecretBytes> out = Status::Internal("no candidate key");
  for (const std::string& key : keys) {
    out = kms_->Decrypt(blob, context, key);
    if (out.ok() || kms::KmsErrorType(out.status()) != "IncorrectKeyException") break;
  }
  return out;
}

StatusOr<Bytes> Volume::Rewrap(ByteView blob, const kms::EncryptionContextMap& context,
                               const std::string& to_key_arn) {
  ENVELOPE_ASSIGN_OR_RETURN(std::vector<std::string> keys, KeyIdsToUnwrap(blob));
  StatusOr<Bytes> out = Status::Internal("no candidate key");
  for (const std::string& key : keys) {
    out = kms_->ReEncrypt(blob, key, context, to_key_arn, context);
    if (out.ok() || kms::KmsErrorType(out.status()) != "IncorrectKeyException") break;
  }
  return out;
}

std::string Volume::KeyIdForNewFiles() {
  std::lock_guard lock(key_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - config_checked_ < std::chrono::seconds(1)) return key_id_for_new_files_;
  config_checked_ = now;
  struct stat st;
  if (::stat(VolumeConfigPath(cipherdir_).c_str(), &st) != 0) return key_id_for_new_files_;
  const bool changed = st.st_mtim.tv_sec != config_mtime_.tv_sec ||
                       st.st_mtim.tv_nsec != config_mtime_.tv_nsec;
  config_mtime_ = st.st_mtim;
  if (!changed) return key_id_for_new_files_;
  // A rotation rewrote the config: follow its key, but only if the file is
  // authentic and still this volume's.
  auto text = ReadVolumeConfigText(cipherdir_);
  std::string mac;
  auto fresh = text.ok() ? VolumeConfig::Parse(*text, &mac) : StatusOr<VolumeConfig>(text.status());
  if (fresh.ok() && fresh->volume_id == config_.volume_id &&
      fresh->Verify(volume_key_, mac).ok()) {
    // Only a holder of the volume key can have written this config, so the
    // key it names is trusted from now on (files made under it must open).
    std::vector<std::string> warnings;
    auto key = ResolveKey(kms_.get(), fresh->key_id, &warnings);
    if (!key.ok()) {
      spdlog::warn("the volume config now names key {}, which cannot be resolved ({}); new files "
                   "stay under {}", fresh->key_id, key.status().ToString(), key_id_for_new_files_);
      config_mtime_ = {};  // try again at the next check
      return key_id_for_new_files_;
    }
    for (const std::string& w : warnings) spdlog::warn("{}", w);
    key_id_for_new_files_ = key->arn;
    trust_.Add(std::move(*key));
  }
  return key_id_for_new_files_;
}

Status Volume::RewrapVolumeKey(const std::string& to_key_arn) {
  if (!trust_.Contains(to_key_arn)) {
    return Status::FailedPrecondition("BUG: re-wrapping the volume key under " + to_key_arn +
                                      ", which is not a trusted key");
  }
  const auto context = config_.VolumeKeyContext();
  ENVELOPE_ASSIGN_OR_RETURN(Bytes rewrapped, Rewrap(config_.wrapped_volume_key, context, to_key_arn));
  VolumeConfig next = config_;
  next.key_id = to_key_arn;
  next.wrapped_volume_key = std::move(rewrapped);
  ENVELOPE_ASSIGN_OR_RETURN(std::string text, next.Encode(volume_key_));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd top, backing::OpenRoot(cipherdir_));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, backing::OpenDir(top.get(), ""));
  ENVELOPE_RETURN_IF_ERROR(backing::ReplaceSmallFile(root.get(),
                                                     std::string(format::kVolumeConfigFileName),
                                                     AsBytes(text), 0400, /*sync=*/true));
  std::lock_guard lock(key_mu_);
  config_ = std::move(next);
  key_id_for_new_files_ = config_.key_id;
  return Status::Ok();
}

StatusOr<format::DirId> Volume::ReadDirId(int dirfd) const {
  auto bytes = backing::ReadSmallFile(dirfd, std::string(format::kDirIdFileName),
                                      format::kDirIdSizeInBytes);
  if (!bytes.ok()) return bytes.status().WithContext("reading the directory id");
  format::DirId id;
  if (bytes->size() != id.size()) return Status::Corruption("directory id file is truncated");
  std::copy(bytes->begin(), bytes->end(), id.begin());
  return id;
}

Status Volume::CreateDirId(int dirfd) const {
  format::DirId id;
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomBytes(id));
  return backing::CreateSmallFile(dirfd, std::string(format::kDirIdFileName), id, 0400);
}

namespace {

// The id of a long-target reference ("envelopefs.target.<32 hex>"), or ""
// if `raw` is an inline sealed target.
std::string LongTargetId(std::string_view raw) {
  if (raw.rfind(format::kLongTargetPrefix, 0) != 0) return "";
  std::string id(raw.substr(format::kLongTargetPrefix.size()));
  if (id.size() != 32 || id.find_first_not_of("0123456789abcdef") != std::string::npos) return "";
  return id;
}

// An encoded target is base64url of at most 4095 + 16 bytes.
constexpr size_t kMaxLongTargetFileInBytes = 2 * format::kMaxSymlinkTargetInBytes;

}  // namespace

StatusOr<UniqueFd> Volume::OpenTargetStore(bool create) const {
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, backing::OpenRoot(cipherdir_));
  return backing::OpenPrivateDir(root.get(), std::string(format::kLongTargetDirName), create);
}

Status Volume::CreateSymlink(std::string_view target, int dirfd, const std::string& backing,
                             uid_t owner, gid_t group) const {
  // Targets are sealed without a directory binding, so a symlink keeps its
  // target across renames and hard links.
  ENVELOPE_ASSIGN_OR_RETURN(std::string sealed, names_.EncodeSymlinkTarget(target, format::DirId{}));
  if (sealed.size() <= format::kMaxInlineTargetInBytes) {
    return backing::MakeSymlink(sealed, dirfd, backing);
  }
  uint8_t raw_id[16];
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomBytes(raw_id));
  const std::string id = HexEncode(raw_id);
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd store, OpenTargetStore(/*create=*/true));
  // The file is the symlink owner's: DropSymlinkTarget removes it only for
  // a symlink of the same owner.
  ENVELOPE_RETURN_IF_ERROR(backing::CreateSmallFile(store.get(), id, AsBytes(sealed), 0400, owner,
                                                    group));
  const std::string reference = std::string(format::kLongTargetPrefix) + id;
  Status s = backing::MakeSymlink(reference, dirfd, backing);
  if (!s.ok()) (void)backing::Unlink(store.get(), id);
  return s;
}

StatusOr<std::string> Volume::ReadSymlink(int dirfd, const std::string& backing) const {
  ENVELOPE_ASSIGN_OR_RETURN(std::string raw,
                            backing::ReadLink(dirfd, backing, format::kMaxInlineTargetInBytes));
  const std::string id = LongTargetId(raw);
  if (!id.empty()) {
    ENVELOPE_ASSIGN_OR_RETURN(UniqueFd store, OpenTargetStore(/*create=*/false));
    auto bytes = backing::ReadSmallFile(store.get(), id, kMaxLongTargetFileInBytes);
    if (!bytes.ok()) return bytes.status().WithContext("long symlink target " + id);
    raw.assign(bytes->begin(), bytes->end());
  }
  return names_.DecodeSymlinkTarget(raw, format::DirId{});
}

void Volume::DropSymlinkTarget(std::string_view raw_target, uid_t link_owner) const {
  const std::string id = LongTargetId(raw_target);
  if (id.empty()) return;
  auto store = OpenTargetStore(/*create=*/false);
  if (!store.ok()) return;
  // Only the symlink's own target goes: a symlink planted in a backing
  // directory can name any id, but not make another user's file its owner's.
  struct stat st;
  if (!backing::Stat(store->get(), id, &st).ok() || !S_ISREG(st.st_mode) ||
      st.st_uid != link_owner) {
    return;
  }
  (void)backing::Unlink(store->get(), id);
}

Status Volume::ChownSymlinkTarget(std::string_view raw_target, uid_t old_owner, uid_t owner,
                                  gid_t group) const {
  const std::string id = LongTargetId(raw_target);
  if (id.empty()) return Status::Ok();
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd store, OpenTargetStore(/*create=*/false));
  struct stat st;
  ENVELOPE_RETURN_IF_ERROR(backing::Stat(store.get(), id, &st));
  if (!S_ISREG(st.st_mode) || st.st_uid != old_owner) return Status::Ok();  // not this link's
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd file, backing::OpenObject(store.get(), id, st.st_dev, st.st_ino));
  return backing::Chown(file.get(), owner, group);
}

StatusOr<std::string> Volume::PlaintextPath(std::string_view backing_path) const {
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, backing::OpenRoot(cipherdir_));
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd dir, backing::OpenDir(root.get(), ""));
  std::string out;
  size_t start = 0;
  while (start < backing_path.size()) {
    size_t end = backing_path.find('/', start);
    if (end == std::string_view::npos) end = backing_path.size();
    const std::string component(backing_path.substr(start, end - start));
    start = end + 1;
    if (component.empty() || component == ".") continue;
    ENVELOPE_ASSIGN_OR_RETURN(format::DirId id, ReadDirId(dir.get()));
    ENVELOPE_ASSIGN_OR_RETURN(std::string name, DecodeBackingName(dir.get(), component, id));
    out += "/" + name;
    if (start < backing_path.size()) {
      ENVELOPE_ASSIGN_OR_RETURN(dir, backing::OpenDir(dir.get(), component));
    }
  }
  return out.empty() ? std::string("/") : out;
}

StatusOr<std::string> Volume::DecodeBackingName(int dirfd, std::string_view backing,
                                                const format::DirId& dir_id) const {
  switch (format::NameCodec::Classify(backing)) {
    case format::BackingNameKind::kEncrypted:
      return names_.DecodeName(backing, dir_id);
    case format::BackingNameKind::kLong: {
      const std::string side = std::string(backing) + std::string(format::kLongNameSuffix);
      auto bytes = backing::ReadSmallFile(dirfd, side, kMaxLongNameFileInBytes);
      if (!bytes.ok()) return bytes.status().WithContext("long-name file " + side);
      if (bytes->empty()) return Status::Corruption("long-name file " + side + " is empty");
      return names_.DecodeName(
          std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()), dir_id);
    }
    default:
      return Status::InvalidArgument("not the backing name of an entry: " + std::string(backing));
  }
}

Status Volume::WriteLongNameFile(int dirfd, const format::EncodedName& en) const {
  if (en.long_name_content.empty()) return Status::Ok();
  // Replaced, not opened: the name is predictable, so something may have
  // been planted there.
  return backing::ReplaceSmallFile(dirfd, en.backing_name + std::string(format::kLongNameSuffix),
                                   AsBytes(en.long_name_content), 0400);
}

void Volume::RemoveLongNameFile(int dirfd, const format::EncodedName& en) const {
  if (en.long_name_content.empty()) return;
  (void)backing::Unlink(dirfd, en.backing_name + std::string(format::kLongNameSuffix));
}

StatusOr<std::vector<DekPool::Entry>> Volume::MakeFileKeys(size_t count) {
  const std::string key_id = KeyIdForNewFiles();
  std::vector<format::FileId> ids;
  std::vector<kms::EncryptionContextMap> contexts;
  for (size_t i = 0; i < count; ++i) {
    ENVELOPE_ASSIGN_OR_RETURN(format::FileId id, format::NewFileId());
    contexts.push_back(config_.FileContext(HexEncode(id)));
    ids.push_back(id);
  }
  auto made = kms_->GenerateDataKeys(key_id, contexts);
  if (!made.ok()) return made.status().WithContext(count > 1 ? "creating file keys" : "creating a file key");
  std::vector<kms::DataKey>& keys = *made;
  const auto now = std::chrono::steady_clock::now();
  std::vector<DekPool::Entry> entries;
  for (size_t i = 0; i < keys.size(); ++i) {
    entries.push_back(DekPool::Entry{ids[i], std::move(keys[i]), now});
  }
  return entries;
}

StatusOr<std::unique_ptr<format::ContentFile>> Volume::CreateContent(int fd) {
  ENVELOPE_ASSIGN_OR_RETURN(DekPool::Entry entry, dek_pool_.Take());
  const format::FileId& id = entry.file_id;
  kms::DataKey* dk = &entry.key;
  // One derivation of the file's keys for the header's commitment and the
  // cipher (which then finds that commitment already made).
  ENVELOPE_ASSIGN_OR_RETURN(format::FileKeys keys, format::FileKeys::Derive(dk->plaintext, id));
  ENVELOPE_ASSIGN_OR_RETURN(format::Commitment c, keys.CommitmentFor(format::kFormatVersionDense));
  ENVELOPE_ASSIGN_OR_RETURN(format::FileHeader header,
                            format::NewFileHeader(layout_, id, c, dk->ciphertext_blob));
  ENVELOPE_ASSIGN_OR_RETURN(format::ChunkCipher cipher, format::ChunkCipher::New(keys, header));
  ENVELOPE_RETURN_IF_ERROR(format::WriteNewFile(fd, header, &cipher));
  dek_cache_.Insert(std::string(dk->ciphertext_blob.begin(), dk->ciphertext_blob.end()),
                    std::make_shared<const crypto::SecretBytes>(std::move(dk->plaintext)));
  auto content = std::make_unique<format::ContentFile>(fd, layout_, std::move(cipher));
  content->TrustNewEmptyFile();
  return content;
}

StatusOr<std::unique_ptr<format::ContentFile>> Volume::OpenContent(int fd) {
  ENVELOPE_ASSIGN_OR_RETURN(format::FileHeader header, format::ReadHeader(fd, layout_));
  return OpenContent(fd, header);
}

StatusOr<std::unique_ptr<format::ContentFile>> Volume::OpenContent(
    int fd, const format::FileHeader& header) {
  ENVELOPE_ASSIGN_OR_RETURN(Bytes wrapped, format::ActiveWrappedDek(header));
  std::string cache_key(wrapped.begin(), wrapped.end());
  std::shared_ptr<const crypto::SecretBytes> dek = dek_cache_.Find(cache_key);
  if (!dek) {
    // Pinned: a file key someone swapped for one under a key of their own
    // is refused before the key service is asked.
    auto unwrapped = Unwrap(wrapped, config_.FileContext(HexEncode(header.file_id)));
    if (!unwrapped.ok()) {
      // Name the key version: after a retirement, "which version" is the
      // whole story of why this file can no longer be opened.
      auto label = kms_->VersionOf(wrapped);
      return unwrapped.status().WithContext(
          label ? "unwrapping the file key (key " + label->key_id + " version " +
                      std::to_string(label->version) + ")"
                : std::string("unwrapping the file key"));
    }
    dek = std::make_shared<const crypto::SecretBytes>(std::move(*unwrapped));
    dek_cache_.Insert(cache_key, dek);
  }
  ENVELOPE_ASSIGN_OR_RETURN(format::ChunkCipher cipher, format::ChunkCipher::New(*dek, header));
  auto content = std::make_unique<format::ContentFile>(fd, layout_, std::move(cipher));
  // The size comes from the backing length: authenticate it before anyone
  // sees it (a file cut to its header and 28 bytes would read as empty).
  ENVELOPE_RETURN_IF_ERROR(content->VerifyFinalChunk());
  return content;
}

// Sealed value := SIV(version byte 0x01 || value): the version byte also
// gives an empty value a non-empty plaintext, which SIV needs.
StatusOr<std::string> Volume::SealXattrValue(std::string_view name, ByteView value) const {
  const uint8_t version = kXattrValueVersion;
  ENVELOPE_ASSIGN_OR_RETURN(
      Bytes sealed, xattr_siv_.Seal(Concat({ByteView(&version, 1), value}),
                                    Concat({AsBytes(kXattrDomain), AsBytes(name)})));
  return std::string(sealed.begin(), sealed.end());
}

StatusOr<Bytes> Volume::OpenXattrValue(std::string_view name, ByteView sealed) const {
  ENVELOPE_ASSIGN_OR_RETURN(Bytes plain,
                            xattr_siv_.Open(sealed, Concat({AsBytes(kXattrDomain), AsBytes(name)})));
  if (plain.empty() || plain[0] != kXattrValueVersion) {
    return Status::Corruption("unknown extended attribute value version");
  }
  return Bytes(plain.begin() + 1, plain.end());
}

}  // namespace envelope::fs
