#include "fs/volume.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include <spdlog/spdlog.h>

#include "core/base/fd_io.h"
#include "core/crypto/random.h"
#include "core/format/chunk_cipher.h"
#include "core/format/header_io.h"
#include "kms/blob_label.h"
#include "kms/endpoint.h"

namespace envelope::fs {

namespace {

constexpr std::string_view kXattrDomain = "envelopefs/v1/xattr";
constexpr uint8_t kXattrValueVersion = 1;

std::string NewUuid() {
  uint8_t id[16];
  (void)crypto::RandomBytes(id);
  id[6] = static_cast<uint8_t>((id[6] & 0x0f) | 0x40);
  id[8] = static_cast<uint8_t>((id[8] & 0x3f) | 0x80);
  std::string hex = HexEncode(id);
  return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" +
         hex.substr(16, 4) + "-" + hex.substr(20);
}

std::string ConfigPath(const std::string& cipherdir) {
  return cipherdir + "/" + std::string(format::kVolumeConfigFileName);
}

// Writes the config text to a temporary file and fsyncs it; the caller
// renames it into place.
Status WriteConfigTemp(const std::string& tmp, std::string_view text) {
  ::unlink(tmp.c_str());  // left over by an interrupted earlier attempt
  UniqueFd fd(::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400));
  if (!fd.valid()) return Status::FromErrno("create " + tmp);
  ENVELOPE_RETURN_IF_ERROR(PwriteFull(fd.get(), AsBytes(text), 0));
  if (::fsync(fd.get()) != 0) return Status::FromErrno("fsync " + tmp);
  return Status::Ok();
}

StatusOr<std::string> ReadConfigText(const std::string& cipherdir) {
  std::ifstream in(ConfigPath(cipherdir));
  if (!in) {
    return Status::NotFound(cipherdir + " has no envelopefs.conf (not an envelopefs volume?)");
  }
  std::stringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

StatusOr<std::unique_ptr<kms::KmsClient>> ConnectKms(const std::string& endpoint) {
  ENVELOPE_ASSIGN_OR_RETURN(kms::Endpoint ep, kms::ResolveEndpoint(endpoint));
  kms::KmsClient::Options options;
  options.endpoint = ep;
  if (ep.kind == kms::Endpoint::kTcp) {
    ENVELOPE_ASSIGN_OR_RETURN(options.credentials, kms::CredentialsFromEnvironment());
    options.region = kms::RegionFromEnvironment();
  }
  // A mount must notice a dead key service quickly and say so; opens of
  // files whose DEK is cached keep working meanwhile.
  options.connect_timeout = std::chrono::milliseconds(1000);
  options.request_timeout = std::chrono::milliseconds(5000);
  options.max_retries = 2;
  return kms::KmsClient::New(std::move(options));
}

Volume::Volume(std::string cipherdir, VolumeConfig config, crypto::SecretBytes volume_key,
               format::ChunkLayout layout, format::NameCodec names, crypto::AesSiv xattr,
               std::unique_ptr<kms::KmsClient> kms)
    : cipherdir_(std::move(cipherdir)),
      config_(std::move(config)),
      volume_key_(std::move(volume_key)),
      layout_(layout),
      names_(std::move(names)),
      xattr_siv_(std::move(xattr)),
      kms_(std::move(kms)),
      key_id_for_new_files_(config_.key_id),
      dek_pool_([this](size_t count) { return MakeFileKeys(count); }, kDekPoolCapacity,
                kDekPoolMaxAge) {
  // The config as read by Open: a later change is a rotation's.
  struct stat st;
  if (::stat(ConfigPath(cipherdir_).c_str(), &st) == 0) config_mtime_ = st.st_mtim;
}

Status Volume::Init(const std::string& cipherdir, const InitOptions& options,
                    kms::KmsClient* kms) {
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
  ENVELOPE_ASSIGN_OR_RETURN(std::string text, config.Encode(vk.plaintext));

  UniqueFd root(::open(cipherdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root.valid()) return Status::FromErrno("open " + cipherdir);
  // The root directory's id: same mechanism as every other directory.
  format::DirId dir_id;
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomBytes(dir_id));
  std::string tmp = ConfigPath(cipherdir) + ".tmp";
  ENVELOPE_RETURN_IF_ERROR(WriteConfigTemp(tmp, text));
  UniqueFd idf(::openat(root.get(), std::string(format::kDirIdFileName).c_str(),
                        O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400));
  if (!idf.valid()) return Status::FromErrno("create dir id");
  ENVELOPE_RETURN_IF_ERROR(PwriteFull(idf.get(), dir_id, 0));
  if (::fsync(idf.get()) != 0) return Status::FromErrno("fsync dir id");
  if (::rename(tmp.c_str(), ConfigPath(cipherdir).c_str()) != 0) {
    return Status::FromErrno("rename config");
  }
  ::fsync(root.get());
  return Status::Ok();
}

StatusOr<std::unique_ptr<Volume>> Volume::Open(const std::string& cipherdir,
                                               const std::string& endpoint_override) {
  ENVELOPE_ASSIGN_OR_RETURN(std::string text, ReadConfigText(cipherdir));
  std::string mac;
  ENVELOPE_ASSIGN_OR_RETURN(VolumeConfig config, VolumeConfig::Parse(text, &mac));
  ENVELOPE_ASSIGN_OR_RETURN(format::ChunkLayout layout,
                            format::ChunkLayout::ForVolume(config.dek_in_xattr, config.chunk_size));
  const std::string endpoint = endpoint_override.empty() ? config.kms_endpoint : endpoint_override;
  ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<kms::KmsClient> kms, ConnectKms(endpoint));
  auto vk = kms->Decrypt(config.wrapped_volume_key, config.VolumeKeyContext());
  if (!vk.ok()) return vk.status().WithContext("unwrapping the volume key");
  ENVELOPE_RETURN_IF_ERROR(config.Verify(*vk, mac));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes name_key, DeriveNameKey(*vk));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes xattr_key, DeriveXattrKey(*vk));
  ENVELOPE_ASSIGN_OR_RETURN(format::NameCodec names, format::NameCodec::New(name_key));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::AesSiv xattr, crypto::AesSiv::New(xattr_key.view()));
  return std::unique_ptr<Volume>(new Volume(cipherdir, std::move(config), std::move(*vk), layout,
                                            std::move(names), std::move(xattr), std::move(kms)));
}

std::string Volume::KeyIdForNewFiles() {
  std::lock_guard lock(key_mu_);
  const auto now = std::chrono::steady_clock::now();
  if (now - config_checked_ < std::chrono::seconds(1)) return key_id_for_new_files_;
  config_checked_ = now;
  struct stat st;
  if (::stat(ConfigPath(cipherdir_).c_str(), &st) != 0) return key_id_for_new_files_;
  const bool changed = st.st_mtim.tv_sec != config_mtime_.tv_sec ||
                       st.st_mtim.tv_nsec != config_mtime_.tv_nsec;
  config_mtime_ = st.st_mtim;
  if (!changed) return key_id_for_new_files_;
  // A rotation rewrote the config: follow its key, but only if the file is
  // authentic and still this volume's.
  auto text = ReadConfigText(cipherdir_);
  std::string mac;
  auto fresh = text.ok() ? VolumeConfig::Parse(*text, &mac) : StatusOr<VolumeConfig>(text.status());
  if (fresh.ok() && fresh->volume_id == config_.volume_id &&
      fresh->Verify(volume_key_, mac).ok()) {
    key_id_for_new_files_ = fresh->key_id;
  }
  return key_id_for_new_files_;
}

Status Volume::RewrapVolumeKey(const std::string& to_key) {
  const auto context = config_.VolumeKeyContext();
  ENVELOPE_ASSIGN_OR_RETURN(Bytes rewrapped,
                            kms_->ReEncrypt(config_.wrapped_volume_key, context, to_key, context));
  VolumeConfig next = config_;
  next.key_id = to_key;
  next.wrapped_volume_key = std::move(rewrapped);
  ENVELOPE_ASSIGN_OR_RETURN(std::string text, next.Encode(volume_key_));
  const std::string path = ConfigPath(cipherdir_);
  const std::string tmp = path + ".tmp";
  ENVELOPE_RETURN_IF_ERROR(WriteConfigTemp(tmp, text));
  if (::rename(tmp.c_str(), path.c_str()) != 0) return Status::FromErrno("rename config");
  UniqueFd dir(::open(cipherdir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dir.valid()) ::fsync(dir.get());
  std::lock_guard lock(key_mu_);
  config_ = std::move(next);
  key_id_for_new_files_ = config_.key_id;
  return Status::Ok();
}

StatusOr<format::DirId> Volume::ReadDirId(int dirfd) const {
  UniqueFd fd(::openat(dirfd, std::string(format::kDirIdFileName).c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open directory id");
  format::DirId id;
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, PreadFull(fd.get(), id, 0));
  if (n != id.size()) return Status::Corruption("directory id file is truncated");
  return id;
}

Status Volume::CreateDirId(int dirfd) const {
  format::DirId id;
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomBytes(id));
  UniqueFd fd(::openat(dirfd, std::string(format::kDirIdFileName).c_str(),
                       O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400));
  if (!fd.valid()) return Status::FromErrno("create directory id");
  return PwriteFull(fd.get(), id, 0);
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

}  // namespace

Status Volume::CreateSymlink(std::string_view target, int dirfd, const std::string& backing) const {
  // Targets are sealed without a directory binding, so a symlink keeps its
  // target across renames and hard links.
  ENVELOPE_ASSIGN_OR_RETURN(std::string sealed, names_.EncodeSymlinkTarget(target, format::DirId{}));
  if (sealed.size() <= format::kMaxInlineTargetInBytes) {
    if (::symlinkat(sealed.c_str(), dirfd, backing.c_str()) != 0) {
      return Status::FromErrno("symlink");
    }
    return Status::Ok();
  }
  uint8_t raw_id[16];
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomBytes(raw_id));
  const std::string id = HexEncode(raw_id);
  const std::string store = cipherdir_ + "/" + std::string(format::kLongTargetDirName);
  if (::mkdir(store.c_str(), 0700) != 0 && errno != EEXIST) {
    return Status::FromErrno("create " + store);
  }
  const std::string file = store + "/" + id;
  {
    UniqueFd fd(::open(file.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400));
    if (!fd.valid()) return Status::FromErrno("create long symlink target");
    Status s = PwriteFull(fd.get(), AsBytes(sealed), 0);
    if (!s.ok()) {
      ::unlink(file.c_str());
      return s;
    }
  }
  const std::string reference = std::string(format::kLongTargetPrefix) + id;
  if (::symlinkat(reference.c_str(), dirfd, backing.c_str()) != 0) {
    Status s = Status::FromErrno("symlink");
    ::unlink(file.c_str());
    return s;
  }
  return Status::Ok();
}

StatusOr<std::string> Volume::ReadSymlink(int dirfd, const std::string& backing) const {
  char buf[format::kMaxInlineTargetInBytes + 1];
  ssize_t n = ::readlinkat(dirfd, backing.c_str(), buf, sizeof(buf));
  if (n < 0) return Status::FromErrno("readlink");
  std::string raw(buf, static_cast<size_t>(n));
  const std::string id = LongTargetId(raw);
  if (!id.empty()) {
    const std::string file = cipherdir_ + "/" + std::string(format::kLongTargetDirName) + "/" + id;
    UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) return Status::FromErrno("open long symlink target " + id);
    raw.resize(2 * format::kMaxSymlinkTargetInBytes);  // base64url of target + 16 bytes fits
    ENVELOPE_ASSIGN_OR_RETURN(
        size_t len,
        PreadFull(fd.get(), MutableByteView(reinterpret_cast<uint8_t*>(raw.data()), raw.size()), 0));
    raw.resize(len);
  }
  return names_.DecodeSymlinkTarget(raw, format::DirId{});
}

void Volume::DropSymlinkTarget(std::string_view raw_target) const {
  const std::string id = LongTargetId(raw_target);
  if (id.empty()) return;
  ::unlink((cipherdir_ + "/" + std::string(format::kLongTargetDirName) + "/" + id).c_str());
}

StatusOr<std::string> Volume::PlaintextPath(std::string_view backing_path) const {
  UniqueFd dir(::open(cipherdir_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid()) return Status::FromErrno("open " + cipherdir_);
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
      dir = UniqueFd(::openat(dir.get(), component.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!dir.valid()) return Status::FromErrno("open " + component);
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
      std::string side = std::string(backing) + std::string(format::kLongNameSuffix);
      UniqueFd fd(::openat(dirfd, side.c_str(), O_RDONLY | O_CLOEXEC));
      if (!fd.valid()) return Status::FromErrno("open long-name file " + side);
      char buf[1024];
      ssize_t len = ::pread(fd.get(), buf, sizeof(buf), 0);
      if (len <= 0) return Status::Corruption("long-name file " + side + " is empty");
      return names_.DecodeName(std::string_view(buf, static_cast<size_t>(len)), dir_id);
    }
    default:
      return Status::InvalidArgument("not the backing name of an entry: " + std::string(backing));
  }
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
  std::vector<kms::DataKey> keys;
  if (count > 1 && kms_has_batches_.load(std::memory_order_relaxed)) {
    auto batch = kms_->GenerateDataKeys(key_id, contexts);
    if (batch.ok()) {
      keys = std::move(*batch);
    } else if (kms::KmsErrorType(batch.status()) == "UnknownOperationException") {
      kms_has_batches_ = false;
      spdlog::info("the key service has no GenerateDataKeys: making file keys one at a time");
    } else {
      return batch.status().WithContext("creating file keys");
    }
  }
  if (keys.empty()) {
    // One at a time: a single key, or a key service without the extension.
    for (size_t i = 0; i < count; ++i) {
      auto dk = kms_->GenerateDataKey(key_id, contexts[i]);
      if (!dk.ok()) {
        if (!keys.empty()) break;  // keep the ones made
        return dk.status().WithContext("creating a file key");
      }
      keys.push_back(std::move(*dk));
    }
  }
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
  ENVELOPE_ASSIGN_OR_RETURN(format::Commitment c, format::ComputeCommitment(dk->plaintext, id));
  ENVELOPE_ASSIGN_OR_RETURN(format::FileHeader header,
                            format::NewFileHeader(layout_, id, c, dk->ciphertext_blob));
  ENVELOPE_ASSIGN_OR_RETURN(format::ChunkCipher cipher, format::ChunkCipher::New(dk->plaintext, header));
  ENVELOPE_RETURN_IF_ERROR(format::WriteNewFile(fd, header, &cipher));
  dek_cache_.Insert(std::string(dk->ciphertext_blob.begin(), dk->ciphertext_blob.end()),
                    std::make_shared<const crypto::SecretBytes>(std::move(dk->plaintext)));
  return std::make_unique<format::ContentFile>(fd, layout_, std::move(cipher));
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
    auto unwrapped = kms_->Decrypt(wrapped, config_.FileContext(HexEncode(header.file_id)));
    if (!unwrapped.ok()) {
      // Name the key version: after a retirement, "which version" is the
      // whole story of why this file can no longer be opened.
      auto label = kms::ReadBlobLabel(wrapped);
      return unwrapped.status().WithContext(
          label.ok() ? "unwrapping the file key (key " + label->key_id + " version " +
                           std::to_string(label->key_version) + ")"
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
