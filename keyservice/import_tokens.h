// The wrapping keys GetParametersForImport hands out, until ImportKeyMaterial
// uses them or they expire (24 hours, as AWS's). Held in memory only: a
// restart forgets them, and an import then asks for new parameters
// (InvalidImportTokenException), as an expired token would. At most
// kMaxPerOwner outstanding per principal; a new one beyond that evicts that
// principal's oldest.
//
// Thread safety: all methods are thread-safe.
#ifndef ENVELOPE_KEYSERVICE_IMPORT_TOKENS_H_
#define ENVELOPE_KEYSERVICE_IMPORT_TOKENS_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/asymmetric.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::keyservice {

struct ImportParameters {
  std::string key_id;
  std::string owner;     // Principal::OwnerId() of the caller that asked
  crypto::Hash hash;     // of RSA-OAEP
  bool aes_key_wrap;     // RSA_AES_KEY_WRAP_*: an AES key under RSA-OAEP, then the material under it
  std::shared_ptr<const crypto::SecretBytes> wrapping_key;  // PKCS#8 DER
  int64_t valid_to = 0;  // epoch seconds
  int64_t created = 0;
};

class ImportTokens {
 public:
  static constexpr size_t kMaxPerOwner = 16;
  static constexpr int64_t kValiditySeconds = 24 * 3600;

  // Keeps `p` and returns its token (opaque bytes: "eit1" and 16 random).
  StatusOr<Bytes> Add(ImportParameters p);
  // The parameters of `token`, or null if it is unknown.
  std::shared_ptr<const ImportParameters> Find(ByteView token) const;

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<const ImportParameters>> by_token_;  // guarded by mu_
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_IMPORT_TOKENS_H_
