// The volume configuration file `envelopefs.conf` at the top of a cipherdir
// (docs/FORMAT.md, "Volume configuration"), format version 1:
//
//   {"format": "envelopefs", "version": 1, "volume_id": UUID,
//    "key_id": KEY, "kms_endpoint": "unix:/..." or "",
//    "dek_location": "header" | "xattr", "chunk_size": 4096,
//    "wrapped_volume_key": BASE64, "created": EPOCH, "mac": HEX}
//
// The volume key (32 random bytes, wrapped by the key service under
// `key_id` with the context {"envelopefs": "volume", "volume": ID}) keys
// the file-name encryption and the config MAC. The MAC is HMAC-SHA256 under
// HKDF(volume key, "envelopefs/v1/config-mac") of the canonical JSON (sorted
// keys, no whitespace) of every field but "mac", so changing any setting,
// the key id or the endpoint is detected when the volume is mounted.
#ifndef ENVELOPE_FS_VOLUME_CONFIG_H_
#define ENVELOPE_FS_VOLUME_CONFIG_H_

#include <cstdint>
#include <map>
#include <string>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::fs {

inline constexpr int kVolumeConfigVersion = 1;

struct VolumeConfig {
  std::string volume_id;
  std::string key_id;
  std::string kms_endpoint;  // empty: the default endpoint resolution
  bool dek_in_xattr = false;
  uint32_t chunk_size = 4096;
  Bytes wrapped_volume_key;
  int64_t created = 0;

  // The encryption context the volume key is wrapped with.
  std::map<std::string, std::string> VolumeKeyContext() const;
  // The encryption context of one file's DEK.
  std::map<std::string, std::string> FileContext(const std::string& file_id_hex) const;

  // Serialises with a MAC under `volume_key`.
  StatusOr<std::string> Encode(const crypto::SecretBytes& volume_key) const;
  // Parses without checking the MAC (the volume key must be unwrapped
  // first, with the key id and endpoint the file names). Rejects unknown
  // versions and unknown fields.
  static StatusOr<VolumeConfig> Parse(std::string_view text, std::string* mac_hex);
  // Checks the MAC; Corruption if the file was changed.
  Status Verify(const crypto::SecretBytes& volume_key, const std::string& mac_hex) const;

 private:
  std::string Canonical() const;
};

// The subkeys of the volume key, each from its own HKDF info string.
StatusOr<crypto::SecretBytes> DeriveNameKey(const crypto::SecretBytes& volume_key);
StatusOr<crypto::SecretBytes> DeriveXattrKey(const crypto::SecretBytes& volume_key);

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_VOLUME_CONFIG_H_
