// The access-keys file of the TCP endpoint: one key per line,
//   ACCESS_KEY_ID SECRET PRINCIPAL_NAME
// with '#' comments and blank lines allowed. The file holds secrets, so it
// must not be readable by group or others (mode 0600 is enforced).
#ifndef ENVELOPE_KEYSERVICE_ACCESS_KEYS_H_
#define ENVELOPE_KEYSERVICE_ACCESS_KEYS_H_

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::keyservice {

// Calls `each` with the whitespace-separated fields of every line of the
// secrets file `path` ('#' comments and blank lines skipped), the fields
// pointing into a secure buffer that lives for the call. PermissionDenied
// if group or others can access the file; `what` names it in errors.
Status ForEachSecretLine(
    const std::string& path, const std::string& what,
    const std::function<Status(size_t line_no, const std::vector<ByteView>& fields)>& each);

class AccessKeys {
 public:
  struct Entry {
    crypto::SecretBytes secret;
    std::string principal_name;
  };
  static StatusOr<std::unique_ptr<AccessKeys>> Load(const std::string& path);

  // nullptr if unknown. Thread-safe (immutable after Load).
  const Entry* Find(std::string_view access_key_id) const;
  size_t size() const { return keys_.size(); }

 private:
  std::map<std::string, Entry, std::less<>> keys_;
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_ACCESS_KEYS_H_
