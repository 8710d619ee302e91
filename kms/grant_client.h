// The grant operations a client needs to share one file (envelopefs share
// and unshare, docs/SHARING.md): CreateGrant, the grants of a key for one
// encryption context (ListGrants, every page), RevokeGrant. AWS KMS and
// envelope-keyd alike, over a KmsClient.
#ifndef ENVELOPE_KMS_GRANT_CLIENT_H_
#define ENVELOPE_KMS_GRANT_CLIENT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "core/base/status.h"
#include "kms/key_service.h"
#include "kms/kms_client.h"

namespace envelope::kms {

struct GrantSpec {
  std::string key;                  // key id or ARN
  std::string grantee;              // GranteePrincipal
  std::vector<std::string> operations;
  EncryptionContextMap context_equals;  // Constraints.EncryptionContextEquals
  std::string name;                 // Name: the same request twice is one grant
  // envelope-keyd's extension Expiry (epoch seconds); 0: none. AWS KMS
  // grants cannot expire: there it is refused before anything is sent.
  int64_t expiry = 0;
};

struct GrantInfo {
  std::string grant_id;
  std::string grantee;
  int64_t expiry = 0;  // 0: none (or not said)
};

// The new (or, by Name, existing) grant's id.
StatusOr<std::string> CreateGrant(KmsClient& client, const GrantSpec& spec, bool keyd);
// The grants of `key` constrained to exactly `context` (keys compared
// without case, as the service compares them), for `grantee` if not empty.
StatusOr<std::vector<GrantInfo>> GrantsFor(KmsClient& client, const std::string& key,
                                           const EncryptionContextMap& context,
                                           const std::string& grantee);
Status RevokeGrant(KmsClient& client, const std::string& key, const std::string& grant_id);

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_GRANT_CLIENT_H_
