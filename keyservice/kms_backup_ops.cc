// The Backup extension (root or the daemon's own user): a consistent copy
// of the store and the root key sealed under a recovery key that comes back
// split among custodians (keyservice/backup.h; docs/KEYSERVICE.md, "Backup
// and restore").
#include "core/base/base64.h"
#include "keyservice/backup.h"
#include "keyservice/kms_call.h"

namespace envelope::keyservice {

using json = nlohmann::json;

namespace {
// The response carries the file in base64 and must fit the clients' 1 MiB
// response limit (kms/http_transport.h).
constexpr size_t kMaxBackupFileInBytes = 700 * 1024;
}  // namespace

void KmsService::KeepRootKeyForBackups(crypto::SecretBytes root_key) {
  root_key_ = std::make_unique<crypto::SecretBytes>(std::move(root_key));
}

KmsService::Outcome KmsService::Backup(Call& c) {
  if (!IsAdmin(c)) {
    return Error{"AccessDeniedException", "only root may back up the key service"};
  }
  if (!root_key_) return Error{"UnsupportedOperationException", "backups are not available"};
  int64_t threshold = 3, shares = 5;
  KMS_TRY(c.req.Int("Threshold", false, &threshold));
  KMS_TRY(c.req.Int("Shares", false, &shares));
  if (threshold < 2 || shares < threshold || shares > 255) {
    return Error{"ValidationException", "need 2 <= Threshold <= Shares <= 255"};
  }
  // Under the writer lock: the snapshot and the root key belong together
  // (RotateRootKey changes both under it).
  auto writer = store_->LockForWrite();
  auto store = store_->Snapshot();
  if (!store.ok()) return Error{"KMSInternalException", store.status().ToString()};
  auto sealed = SealBackup(*root_key_, AsBytes(*store), static_cast<unsigned>(threshold),
                           static_cast<unsigned>(shares), Now(), store_->AllKeys().size());
  writer.unlock();
  if (!sealed.ok()) return Error{"KMSInternalException", sealed.status().ToString()};
  if (sealed->file.size() > kMaxBackupFileInBytes) {
    return Error{"LimitExceededException",
                 "the backup is " + std::to_string(sealed->file.size()) +
                     " bytes; over this API backups are limited to " +
                     std::to_string(kMaxBackupFileInBytes)};
  }
  c.extra["backup_id"] = sealed->header.backup_id;
  c.extra["threshold"] = threshold;
  c.extra["shares"] = shares;
  return json{{"Backup", Base64Encode(sealed->file)},
              {"BackupId", sealed->header.backup_id},
              {"Keys", sealed->header.keys},
              {"Threshold", threshold},
              {"Shares", sealed->shares}};
}

}  // namespace envelope::keyservice
