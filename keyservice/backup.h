// The key service's backup file, format version 1, and the recovery-key
// shares that open it (docs/KEYSERVICE.md, "Backup and restore").
//
//   file   := "EKBACKUP" | version (u8, 1) | header length (u32 LE) |
//             header (JSON) | sealed root key (60) | sealed store
//   sealed := nonce (12) | ciphertext | tag (16), AES-256-GCM under the
//             recovery key, AAD = everything before the sealed root key |
//             "root" or "store"
//   header := {"backup_id", "created", "threshold", "shares", "keys",
//              "store_bytes", "unique" (8 random bytes, hex)}
//
// The store is a compacted LMDB copy of the data directory's data.mdb,
// whose key material stays sealed under the root key's KEK inside it; the
// root key is sealed beside it. The recovery key (32 random bytes) exists
// only while a backup is made and while one is opened: it is split k-of-n
// (crypto::ShamirSplit) and each share is shown once, as text:
//
//   envelope-share-1-BACKUPID-KofN-X-HEX-CHECK
//
// BACKUPID names the backup (8 hex digits of the SHA-256 of its header,
// written with an id of zeros; the header's random field makes it differ
// from backup to backup), so
// that a share of another backup is refused by name; CHECK is 8 hex digits
// of the SHA-256 of all before it, so that a mistyped share is refused
// before it is combined.
#ifndef ENVELOPE_KEYSERVICE_BACKUP_H_
#define ENVELOPE_KEYSERVICE_BACKUP_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"
#include "core/crypto/shamir.h"

namespace envelope::keyservice {

struct BackupHeader {
  std::string backup_id;  // 8 hex digits
  int64_t created = 0;    // Unix seconds
  unsigned threshold = 0;
  unsigned shares = 0;
  uint64_t keys = 0;
  uint64_t store_bytes = 0;
};

struct SealedBackup {
  Bytes file;
  BackupHeader header;
  // The shares' text, one per custodian. Secret: any `threshold` of them
  // open the backup. Wiped by the destructor.
  std::vector<std::string> shares;
  ~SealedBackup();
};

// Seals `root_key` and `store` under a fresh recovery key and splits that
// key `threshold`-of-`count`.
StatusOr<SealedBackup> SealBackup(const crypto::SecretBytes& root_key, ByteView store,
                                  unsigned threshold, unsigned count, int64_t created,
                                  uint64_t keys);

// The header of a backup file; Corruption for anything that is not one.
StatusOr<BackupHeader> ReadBackupHeader(ByteView file);

// One share's text, checked: InvalidArgument (naming what is wrong) for a
// mistyped share, one of another backup, or one of another split.
StatusOr<crypto::ShamirShare> ParseShare(std::string_view text, const BackupHeader& header);

struct BackupContents {
  crypto::SecretBytes root_key;
  Bytes store;
};

// Opens the backup with `shares` (already parsed against its header).
// FailedPrecondition with fewer than the threshold; PermissionDenied if the
// shares do not open it (shares of one split, but not enough, or altered).
StatusOr<BackupContents> OpenBackup(ByteView file, const std::vector<crypto::ShamirShare>& shares);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_BACKUP_H_
