#include "core/format/name_codec.h"

#include <cerrno>

#include "core/base/base64.h"
#include "core/crypto/hash.h"

namespace envelope::format {

namespace {
// Associated data: a domain string, then the directory id, so that a sealed
// name can never be read back as a symlink target or vice versa.
constexpr std::string_view kNameDomain = "envelopefs/v1/name";
constexpr std::string_view kTargetDomain = "envelopefs/v1/symlink";
}  // namespace

std::string Base64UrlEncode(ByteView data) {
  std::string s = Base64Encode(data);
  while (!s.empty() && s.back() == '=') s.pop_back();
  for (char& c : s) {
    if (c == '+') c = '-';
    if (c == '/') c = '_';
  }
  return s;
}

bool Base64UrlDecode(std::string_view text, Bytes* out) {
  std::string s;
  s.reserve(text.size() + 3);
  for (char c : text) {
    if (c == '+' || c == '/' || c == '=') return false;  // not base64url
    s.push_back(c == '-' ? '+' : c == '_' ? '/' : c);
  }
  if (s.size() % 4 == 1) return false;
  while (s.size() % 4 != 0) s.push_back('=');
  return Base64Decode(s, out);
}

StatusOr<NameCodec> NameCodec::New(const crypto::SecretBytes& name_key) {
  ENVELOPE_ASSIGN_OR_RETURN(crypto::AesSiv siv, crypto::AesSiv::New(name_key.view()));
  return NameCodec(std::move(siv));
}

StatusOr<std::string> NameCodec::Seal(std::string_view plain, std::string_view domain,
                                      const DirId& dir) const {
  Bytes ad = Concat({AsBytes(domain), dir});
  ENVELOPE_ASSIGN_OR_RETURN(Bytes sealed, siv_.Seal(AsBytes(plain), ad));
  return Base64UrlEncode(sealed);
}

StatusOr<std::string> NameCodec::Open(std::string_view encoded, std::string_view domain,
                                      const DirId& dir) const {
  Bytes sealed;
  if (!Base64UrlDecode(encoded, &sealed)) {
    return Status::Corruption("backing name is not base64url");
  }
  Bytes ad = Concat({AsBytes(domain), dir});
  ENVELOPE_ASSIGN_OR_RETURN(Bytes plain, siv_.Open(sealed, ad));
  return std::string(plain.begin(), plain.end());
}

StatusOr<EncodedName> NameCodec::EncodeName(std::string_view name, const DirId& dir) const {
  if (name.empty() || name == "." || name == ".." ||
      name.find('/') != std::string_view::npos || name.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("invalid file name");
  }
  if (name.size() > kMaxNameInBytes) {
    return Status::IoError("file name longer than 255 bytes", ENAMETOOLONG);
  }
  ENVELOPE_ASSIGN_OR_RETURN(std::string encoded, Seal(name, kNameDomain, dir));
  EncodedName out;
  if (name.size() <= kMaxShortNameInBytes) {
    out.backing_name = std::move(encoded);
    return out;
  }
  crypto::Sha256Digest hash = crypto::Sha256(AsBytes(encoded));
  out.backing_name = std::string(kLongNamePrefix) + Base64UrlEncode(hash);
  out.long_name_content = std::move(encoded);
  return out;
}

StatusOr<std::string> NameCodec::DecodeName(std::string_view encoded, const DirId& dir) const {
  ENVELOPE_ASSIGN_OR_RETURN(std::string name, Open(encoded, kNameDomain, dir));
  if (name.empty() || name.size() > kMaxNameInBytes || name.find('/') != std::string::npos ||
      name.find('\0') != std::string::npos || name == "." || name == "..") {
    return Status::Corruption("decrypted name is not a valid file name");
  }
  return name;
}

StatusOr<std::string> NameCodec::EncodeXattrName(std::string_view name) const {
  if (name.empty() || name.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument("invalid extended attribute name");
  }
  // "user." + the encoding must fit XATTR_NAME_MAX; the same bound as a
  // short file name leaves room for the prefix.
  if (name.size() > kMaxShortNameInBytes) {
    return Status::IoError("extended attribute name too long", ERANGE);
  }
  return Seal(name, kNameDomain, DirId{});
}

StatusOr<std::string> NameCodec::DecodeXattrName(std::string_view encoded) const {
  ENVELOPE_ASSIGN_OR_RETURN(std::string name, Open(encoded, kNameDomain, DirId{}));
  if (name.empty() || name.find('\0') != std::string::npos) {
    return Status::Corruption("decrypted extended attribute name is not valid");
  }
  return name;
}

BackingNameKind NameCodec::Classify(std::string_view name) {
  if (name == kDirIdFileName || name == kVolumeConfigFileName) return BackingNameKind::kInternal;
  if (name.rfind(kLongNamePrefix, 0) == 0) {
    return name.size() > kLongNameSuffix.size() &&
                   name.substr(name.size() - kLongNameSuffix.size()) == kLongNameSuffix
               ? BackingNameKind::kLongSideFile
               : BackingNameKind::kLong;
  }
  if (name.find('.') != std::string_view::npos) return BackingNameKind::kInternal;
  return BackingNameKind::kEncrypted;
}

StatusOr<std::string> NameCodec::EncodeSymlinkTarget(std::string_view target,
                                                     const DirId& dir) const {
  if (target.empty()) return Status::IoError("empty symlink target", ENOENT);
  if (target.size() > kMaxSymlinkTargetInBytes) {
    return Status::IoError("symlink target longer than 4095 bytes", ENAMETOOLONG);
  }
  return Seal(target, kTargetDomain, dir);
}

StatusOr<std::string> NameCodec::DecodeSymlinkTarget(std::string_view encoded,
                                                     const DirId& dir) const {
  return Open(encoded, kTargetDomain, dir);
}

}  // namespace envelope::format
