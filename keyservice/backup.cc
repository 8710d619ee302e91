#include "keyservice/backup.h"

#include <nlohmann/json.hpp>

#include <cstring>

#include "core/crypto/aes_gcm.h"
#include "core/crypto/hash.h"
#include "core/crypto/random.h"

namespace envelope::keyservice {

namespace {

using json = nlohmann::json;

constexpr std::string_view kMagic = "EKBACKUP";
constexpr uint8_t kVersion = 1;
constexpr size_t kRootKeyBytes = 32;
constexpr size_t kSealedRootBytes = kRootKeyBytes + crypto::Aes256Gcm::kOverheadInBytes;
constexpr size_t kMaxHeaderBytes = 4096;
constexpr std::string_view kSharePrefix = "envelope-share-1-";

std::string Hex8(ByteView data) {
  const crypto::Sha256Digest d = crypto::Sha256(data);
  return HexEncode(ByteView(d.data(), 4));
}

Bytes Aad(ByteView prefix, std::string_view part) { return Concat({prefix, AsBytes(part)}); }

// The prefix (magic, version, header) and where the sealed parts start.
struct Layout {
  BackupHeader header;
  size_t prefix_size = 0;
};

StatusOr<Layout> Parse(ByteView file) {
  const size_t fixed = kMagic.size() + 1 + 4;
  if (file.size() < fixed || std::memcmp(file.data(), kMagic.data(), kMagic.size()) != 0) {
    return Status::Corruption("not an envelope-keyd backup file");
  }
  if (file[kMagic.size()] != kVersion) {
    return Status::Corruption("backup format version " + std::to_string(file[kMagic.size()]) +
                              " is not one this envelope-keyd reads");
  }
  const uint32_t header_size = DecodeFixed32(file.data() + kMagic.size() + 1);
  if (header_size > kMaxHeaderBytes || file.size() < fixed + header_size + kSealedRootBytes +
                                                         crypto::Aes256Gcm::kOverheadInBytes) {
    return Status::Corruption("the backup file is cut short or damaged");
  }
  Layout out;
  out.prefix_size = fixed + header_size;
  const std::string text(reinterpret_cast<const char*>(file.data() + fixed), header_size);
  json h = json::parse(text, nullptr, false);
  if (!h.is_object()) return Status::Corruption("the backup's header is not JSON");
  try {
    out.header.backup_id = h.at("backup_id").get<std::string>();
    out.header.created = h.at("created").get<int64_t>();
    out.header.threshold = h.at("threshold").get<unsigned>();
    out.header.shares = h.at("shares").get<unsigned>();
    out.header.keys = h.at("keys").get<uint64_t>();
    out.header.store_bytes = h.at("store_bytes").get<uint64_t>();
  } catch (const json::exception&) {
    return Status::Corruption("the backup's header lacks a field");
  }
  h["backup_id"] = "00000000";
  if (out.header.backup_id != Hex8(AsBytes(h.dump())) ||
      out.header.threshold < 2 || out.header.threshold > out.header.shares ||
      out.header.shares > 255 ||
      file.size() != out.prefix_size + kSealedRootBytes + out.header.store_bytes +
                         crypto::Aes256Gcm::kOverheadInBytes) {
    return Status::Corruption("the backup's header does not match its contents");
  }
  return out;
}

std::string ShareText(const BackupHeader& h, const crypto::ShamirShare& s) {
  std::string text = std::string(kSharePrefix) + h.backup_id + "-" + std::to_string(h.threshold) +
                     "of" + std::to_string(h.shares) + "-" + std::to_string(s.x) + "-" +
                     HexEncode(s.y.view());
  return text + "-" + Hex8(AsBytes(text));
}

}  // namespace

SealedBackup::~SealedBackup() {
  for (std::string& s : shares) crypto::Cleanse({reinterpret_cast<uint8_t*>(s.data()), s.size()});
}

StatusOr<SealedBackup> SealBackup(const crypto::SecretBytes& root_key, ByteView store,
                                  unsigned threshold, unsigned count, int64_t created,
                                  uint64_t keys) {
  if (root_key.size() != kRootKeyBytes) return Status::InvalidArgument("root key must be 32 bytes");
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes recovery, crypto::SecretBytes::Random(32));
  ENVELOPE_ASSIGN_OR_RETURN(std::vector<crypto::ShamirShare> split,
                            crypto::ShamirSplit(recovery, threshold, count));
  SealedBackup out;
  out.header = BackupHeader{"", created, threshold, count, keys, store.size()};
  // The id is the hash of the header written with an id of zeros; Parse()
  // recomputes it the same way, so an altered header is refused by name.
  // 8 random bytes in the header make every backup's id its own, also two
  // made in the same second of the same store.
  Bytes unique(8);
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomBytes(MutableByteView(unique.data(), unique.size())));
  json h = {{"backup_id", "00000000"}, {"created", created}, {"threshold", threshold},
            {"shares", count}, {"keys", keys}, {"store_bytes", store.size()},
            {"unique", HexEncode(unique)}};
  out.header.backup_id = Hex8(AsBytes(h.dump()));
  h["backup_id"] = out.header.backup_id;
  const std::string header = h.dump();

  Bytes& f = out.file;
  f.resize(kMagic.size() + 1 + 4 + header.size());
  std::memcpy(f.data(), kMagic.data(), kMagic.size());
  f[kMagic.size()] = kVersion;
  EncodeFixed32(f.data() + kMagic.size() + 1, static_cast<uint32_t>(header.size()));
  std::memcpy(f.data() + kMagic.size() + 5, header.data(), header.size());
  const Bytes prefix = f;

  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm aead, crypto::Aes256Gcm::New(recovery.view()));
  const size_t root_at = f.size();
  f.resize(root_at + kSealedRootBytes + store.size() + crypto::Aes256Gcm::kOverheadInBytes);
  ENVELOPE_RETURN_IF_ERROR(aead.Seal(root_key.view(), Aad(prefix, "root"),
                                     MutableByteView(f.data() + root_at, kSealedRootBytes)));
  ENVELOPE_RETURN_IF_ERROR(
      aead.Seal(store, Aad(prefix, "store"),
                MutableByteView(f.data() + root_at + kSealedRootBytes,
                                store.size() + crypto::Aes256Gcm::kOverheadInBytes)));
  for (const crypto::ShamirShare& s : split) out.shares.push_back(ShareText(out.header, s));
  return out;
}

StatusOr<BackupHeader> ReadBackupHeader(ByteView file) {
  ENVELOPE_ASSIGN_OR_RETURN(Layout l, Parse(file));
  return l.header;
}

StatusOr<crypto::ShamirShare> ParseShare(std::string_view text, const BackupHeader& h) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r' || text.back() == ' ')) {
    text.remove_suffix(1);
  }
  while (!text.empty() && text.front() == ' ') text.remove_prefix(1);
  if (text.substr(0, kSharePrefix.size()) != kSharePrefix || text.size() < kSharePrefix.size() + 9) {
    return Status::InvalidArgument("not a share of an envelope-keyd backup");
  }
  const std::string_view body = text.substr(0, text.size() - 9);
  if (text[text.size() - 9] != '-' || Hex8(AsBytes(body)) != text.substr(text.size() - 8)) {
    return Status::InvalidArgument("the share's check digits do not match: mistyped?");
  }
  // BACKUPID-KofN-X-HEX
  std::string_view rest = body.substr(kSharePrefix.size());
  auto next = [&rest]() {
    const size_t dash = rest.find('-');
    std::string_view part = rest.substr(0, dash);
    rest = dash == std::string_view::npos ? std::string_view() : rest.substr(dash + 1);
    return part;
  };
  const std::string_view id = next(), split = next(), x = next(), hex = next();
  if (id != h.backup_id) {
    return Status::InvalidArgument("the share belongs to backup " + std::string(id) +
                                   ", not to this one (" + h.backup_id + ")");
  }
  if (split != std::to_string(h.threshold) + "of" + std::to_string(h.shares)) {
    return Status::InvalidArgument("the share is of another split than this backup's");
  }
  unsigned xv = 0;
  for (char c : x) {
    if (c < '0' || c > '9' || xv > 255) return Status::InvalidArgument("bad share number");
    xv = xv * 10 + static_cast<unsigned>(c - '0');
  }
  if (x.empty() || xv == 0 || xv > h.shares) return Status::InvalidArgument("bad share number");
  Bytes y;
  if (!HexDecode(hex, &y) || y.size() != 32) return Status::InvalidArgument("bad share value");
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes secret, crypto::SecretBytes::CopyOf(y));
  crypto::Cleanse(MutableByteView(y.data(), y.size()));
  return crypto::ShamirShare{static_cast<uint8_t>(xv), std::move(secret)};
}

StatusOr<BackupContents> OpenBackup(ByteView file, const std::vector<crypto::ShamirShare>& shares) {
  ENVELOPE_ASSIGN_OR_RETURN(Layout l, Parse(file));
  if (shares.size() < l.header.threshold) {
    return Status::FailedPrecondition("this backup needs " + std::to_string(l.header.threshold) +
                                      " shares; " + std::to_string(shares.size()) + " given");
  }
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes recovery, crypto::ShamirCombine(shares));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm aead, crypto::Aes256Gcm::New(recovery.view()));
  const ByteView prefix(file.data(), l.prefix_size);
  BackupContents out;
  ENVELOPE_ASSIGN_OR_RETURN(out.root_key, crypto::SecretBytes::Zeroed(kRootKeyBytes));
  if (!aead.Open(ByteView(file.data() + l.prefix_size, kSealedRootBytes), Aad(prefix, "root"),
                 out.root_key.mutable_view())
           .ok()) {
    return Status::PermissionDenied("the shares do not open this backup");
  }
  out.store.resize(l.header.store_bytes);
  if (!aead.Open(ByteView(file.data() + l.prefix_size + kSealedRootBytes,
                          l.header.store_bytes + crypto::Aes256Gcm::kOverheadInBytes),
                 Aad(prefix, "store"), MutableByteView(out.store.data(), out.store.size()))
           .ok()) {
    return Status::Corruption("the backup's store is damaged");
  }
  return out;
}

}  // namespace envelope::keyservice
