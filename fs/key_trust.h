// Which master keys a volume trusts, and why (docs/FORMAT.md §8.1, "Where
// trust comes from"). The volume config is in the cipherdir, so whoever can
// write the cipherdir can rewrite it: the key it names is trusted only when
// the mount command pins it (-o key=, --key), or when the file and every
// directory above it can be changed by nobody but the caller and root
// (CheckNotReplaceable, core/base/path_trust.h; see Volume::Open).
// Every unwrap (Decrypt, ReEncrypt) then names, as KeyId, the trusted key
// the blob's label says it is under; a blob under any other key is refused
// before the key service is asked.
//
// Thread safety: KeyTrust is thread-safe; the functions are stateless.
#ifndef ENVELOPE_FS_KEY_TRUST_H_
#define ENVELOPE_FS_KEY_TRUST_H_

#include <mutex>
#include <string>
#include <vector>

#include "core/base/coding.h"
#include "core/base/status.h"
#include <optional>

#include "kms/key_service.h"

namespace envelope::fs {

struct TrustedKey {
  std::string arn;     // what every request names
  std::string key_id;  // the UUID, as a blob label names it
};

// `key` (a key id, key ARN, alias name or alias ARN) resolved once, with
// DescribeKey, to the key it names now. If the key service says another
// principal made it (KeyInfo::foreign_creator), a warning is added to
// `*warnings`: a config or a pin may name another user's key by ARN, and a
// key's creator can read everything under it. If the caller may not DescribeKey, a key ARN or key
// id is taken as naming its key (no warning can be given); an alias fails.
StatusOr<TrustedKey> ResolveKey(kms::KeyService* kms, const std::string& key,
                                std::vector<std::string>* warnings);

class KeyTrust {
 public:
  void Add(TrustedKey key);
  bool Contains(const std::string& arn) const;
  // The KeyIds to unwrap a blob with, given what the blob says of itself
  // (KeyService::VersionOf): the ARN of the trusted key its label names,
  // alone; for an opaque blob (AWS KMS), `current` first and then every
  // other trusted key, since only the service can tell which one it is
  // under (a wrong one answers IncorrectKeyException, and the next is
  // tried). Corruption if the label names a key that is not trusted: the
  // blob was made by someone else.
  StatusOr<std::vector<std::string>> Candidates(const std::optional<kms::BlobVersion>& label,
                                                const std::string& current) const;
  // "ARN, ARN" for messages.
  std::string Describe() const;

 private:
  mutable std::mutex mu_;
  std::vector<TrustedKey> keys_;  // guarded by mu_
};

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_KEY_TRUST_H_
