// Encrypted file names (docs/FORMAT.md, "Names"). A plaintext name is
// sealed with AES-SIV under the volume's name key, with the id of its
// directory as associated data, and encoded as unpadded base64url. SIV is
// deterministic, so a lookup encrypts the name and opens the backing entry
// directly; the directory id makes the same name encrypt differently in
// different directories.
//
// Names whose encoding would pass the 255-byte limit of the backing
// filesystem are stored under a fixed-length hash name
// "envelopefs.long.<base64url(SHA-256(encoded))>" with the full encoded
// name in a side file "<hash name>.name" (as gocryptfs does).
//
// Thread safety: immutable after New; share freely.
#ifndef ENVELOPE_CORE_FORMAT_NAME_CODEC_H_
#define ENVELOPE_CORE_FORMAT_NAME_CODEC_H_

#include <array>
#include <string>
#include <string_view>

#include "core/base/status.h"
#include "core/crypto/aes_siv.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::format {

inline constexpr size_t kDirIdSizeInBytes = 16;
using DirId = std::array<uint8_t, kDirIdSizeInBytes>;

// Backing names the filesystem reserves. None of them is valid base64url
// ('.' is not in that alphabet), so no encrypted name can collide with them.
inline constexpr std::string_view kDirIdFileName = ".envelopefs.dirid";
inline constexpr std::string_view kLongNamePrefix = "envelopefs.long.";
inline constexpr std::string_view kLongNameSuffix = ".name";
inline constexpr std::string_view kVolumeConfigFileName = "envelopefs.conf";
// The rotation journal (docs/ROTATION.md, "Opaque blobs"), in the cipherdir's
// top directory only.
inline constexpr std::string_view kRotationJournalFileName = ".envelopefs.rotation";

// Plaintext names up to this many bytes keep a short (direct) backing name:
// base64url of 175 + 16 bytes is 255 characters.
inline constexpr size_t kMaxShortNameInBytes = 175;
inline constexpr size_t kMaxNameInBytes = 255;  // NAME_MAX
// Longest symlink target: PATH_MAX - 1, as Linux allows.
inline constexpr size_t kMaxSymlinkTargetInBytes = 4095;
// Encoded targets up to this length are the backing symlink's own target
// (a plaintext target of up to 3055 bytes). A longer one is kept in a file
// of the volume's long-target store, and the backing symlink points to it
// by a random id: kLongTargetPrefix + 32 hex digits (docs/FORMAT.md §8.3).
inline constexpr size_t kMaxInlineTargetInBytes = 4095;
inline constexpr std::string_view kLongTargetDirName = ".envelopefs.targets";
inline constexpr std::string_view kLongTargetPrefix = "envelopefs.target.";

struct EncodedName {
  std::string backing_name;  // what to create or open in the backing dir
  // Non-empty for long names: the content of the side file.
  std::string long_name_content;
};

enum class BackingNameKind {
  kEncrypted,  // decode with DecodeName
  kLong,       // read the side file, then DecodeName its content
  kLongSideFile,
  kInternal,   // the dir id file, the volume config: never shown
};

class NameCodec {
 public:
  // `name_key`: 32 bytes derived from the volume key.
  static StatusOr<NameCodec> New(const crypto::SecretBytes& name_key);

  // InvalidArgument (EINVAL) for "", ".", "..", names with '/' or NUL;
  // IoError ENAMETOOLONG past 255 bytes.
  StatusOr<EncodedName> EncodeName(std::string_view name, const DirId& dir) const;
  // Opens an encoded (short) name or the content of a long-name side file.
  StatusOr<std::string> DecodeName(std::string_view encoded, const DirId& dir) const;

  static BackingNameKind Classify(std::string_view backing_name);

  // Extended attribute names (the full "user.…" name) are sealed like file
  // names with the zero directory id, but any bytes but NUL are valid
  // ('/' included, as on ext4); the result is the backing name's suffix
  // after "user.". IoError ERANGE when the backing name would pass
  // XATTR_NAME_MAX (255), i.e. for names over 175 bytes.
  StatusOr<std::string> EncodeXattrName(std::string_view name) const;
  StatusOr<std::string> DecodeXattrName(std::string_view encoded) const;

  // Symlink targets are sealed the same way, with the directory id as
  // associated data as well. ENAMETOOLONG past kMaxSymlinkTargetInBytes.
  StatusOr<std::string> EncodeSymlinkTarget(std::string_view target, const DirId& dir) const;
  StatusOr<std::string> DecodeSymlinkTarget(std::string_view encoded, const DirId& dir) const;

 private:
  explicit NameCodec(crypto::AesSiv siv) : siv_(std::move(siv)) {}
  StatusOr<std::string> Seal(std::string_view plain, std::string_view domain,
                             const DirId& dir) const;
  StatusOr<std::string> Open(std::string_view encoded, std::string_view domain,
                             const DirId& dir) const;
  crypto::AesSiv siv_;
};

// Unpadded base64url (RFC 4648 §5).
std::string Base64UrlEncode(ByteView data);
bool Base64UrlDecode(std::string_view text, Bytes* out);

}  // namespace envelope::format

#endif  // ENVELOPE_CORE_FORMAT_NAME_CODEC_H_
