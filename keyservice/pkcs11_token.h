// One logged-in session on a PKCS#11 token, found by an RFC 7512 URI
// (docs/KEYSERVICE.md, "Root key on a token"). It holds AES keys that never
// leave the token: the token seals and opens with them (CKM_AES_GCM), and
// only what they open comes back.
//
// The URI names the module (`module-path`), the token (`token`, `manufacturer`,
// `serial`, `model`) and the key (`object`, the key's label, and optionally
// `id`), e.g.
//   pkcs11:token=envelope;object=keyd-root?module-path=/usr/lib/softhsm/libsofthsm2.so
// The PIN is passed in, read from a file descriptor or the terminal by the
// caller: a URI with `pin-value` or `pin-source` is refused, so that a PIN
// never sits on a command line.
//
// Parsing (p11_kit_uri_*) and loading the module (p11_kit_module_*) are
// p11-kit's; this file is the only one that includes the PKCS#11 headers.
//
// Thread safety: thread-safe (one mutex around the session, which PKCS#11
// does not let two threads use at once).
#ifndef ENVELOPE_KEYSERVICE_PKCS11_TOKEN_H_
#define ENVELOPE_KEYSERVICE_PKCS11_TOKEN_H_

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::keyservice {

class Pkcs11Token {
 public:
  // A key object on the token (its CK_OBJECT_HANDLE, valid for this session).
  using KeyHandle = uint64_t;

  inline static constexpr size_t kGcmNonceSizeInBytes = 12;
  inline static constexpr size_t kGcmTagSizeInBytes = 16;

  // Loads the module, finds the one token the URI matches and logs in as
  // the user with `pin`. InvalidArgument for a URI that is not one of
  // these; NotFound if no token (or more than one) matches;
  // PermissionDenied for a refused PIN.
  static StatusOr<std::unique_ptr<Pkcs11Token>> Open(const std::string& uri,
                                                     const crypto::SecretBytes& pin);
  // The same for a URI that names only the module and the token (no
  // `object`): a custom key store's token, whose keys are named by label
  // in the calls below.
  static StatusOr<std::unique_ptr<Pkcs11Token>> OpenToken(const std::string& uri,
                                                          const crypto::SecretBytes& pin);
  ~Pkcs11Token();
  Pkcs11Token(const Pkcs11Token&) = delete;
  Pkcs11Token& operator=(const Pkcs11Token&) = delete;

  // The AES secret key the URI names (`object` label, `id` if given).
  // NotFound if there is none; FailedPrecondition if several match.
  StatusOr<KeyHandle> FindKey();
  // Makes that key: AES-256, generated on the token, stored there
  // (CKA_TOKEN), sensitive and not extractable, usable to encrypt and
  // decrypt only.
  StatusOr<KeyHandle> GenerateKey();
  // The same for the AES key labelled `label` (any `id` in the URI is not
  // used).
  StatusOr<KeyHandle> FindKey(const std::string& label);
  StatusOr<KeyHandle> GenerateKey(const std::string& label);
  // Destroys a key object on the token (C_DestroyObject): what it sealed
  // can never be opened again.
  Status DestroyKey(KeyHandle key);

  // nonce (12, random) | ciphertext | tag (16), sealed by the token.
  StatusOr<Bytes> Seal(KeyHandle key, ByteView plaintext, ByteView aad);
  // The plaintext of Seal's output, straight into the secure heap.
  // Corruption if the token does not authenticate it.
  StatusOr<crypto::SecretBytes> Open(KeyHandle key, ByteView sealed, ByteView aad);

  // "token LABEL, key LABEL" (or "token LABEL" from OpenToken), for log
  // lines and errors.
  const std::string& description() const { return description_; }

 private:
  struct Session;
  explicit Pkcs11Token(std::unique_ptr<Session> session);
  static StatusOr<std::unique_ptr<Pkcs11Token>> OpenSession(const std::string& uri,
                                                            const crypto::SecretBytes& pin,
                                                            bool key_named);
  // FindKey and GenerateKey for an explicit label (null: the URI's key).
  StatusOr<KeyHandle> Find(const std::string* label);
  StatusOr<KeyHandle> Generate(const std::string* label);

  std::mutex mu_;  // guards session_'s use
  std::unique_ptr<Session> session_;
  std::string description_;
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_PKCS11_TOKEN_H_
