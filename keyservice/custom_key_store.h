// Custom key stores (docs/KEYSERVICE.md, "Custom key stores"): KMS keys whose
// material is generated on a PKCS#11 token and never leaves it, with AWS's
// CloudHSM key store API on top (kms_custom_key_store_ops.cc).
//
// The administrator attaches tokens to envelope-keyd by "cluster id"
// (`--hsm-cluster cluster-ID=pkcs11:URI`): an API caller names a cluster,
// never a module path, so no request can make the key service load code.
// A custom key store is one such cluster plus the token user's PIN (AWS's
// KeyStorePassword), kept sealed in the store, so that the service can
// reconnect by itself after a restart.
//
// Every version of a key in a custom key store is one AES-256 key object
// on the token, labelled TokenKeyLabel(key id, version): sensitive, not
// extractable, encrypt and decrypt only (Pkcs11Token::GenerateKey). The
// token seals and opens the key service's ordinary ciphertext blobs with
// it (CKM_AES_GCM, the same layout and AAD as a software key).
//
// Thread safety: thread-safe. `mu_` guards records_ and connections_; a
// connection is shared (shared_ptr) so that a request that took it before
// a Disconnect finishes on the old session, and the token serialises its
// own calls (Pkcs11Token). Lock order: KeyStore's writer lock, then mu_,
// then a connection's handles_mu.
#ifndef ENVELOPE_KEYSERVICE_CUSTOM_KEY_STORE_H_
#define ENVELOPE_KEYSERVICE_CUSTOM_KEY_STORE_H_

#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"
#include "keyservice/pkcs11_token.h"

namespace envelope::keyservice {

struct CustomKeyStoreRecord {
  std::string id;            // "cks-" and 17 hex digits, as AWS's
  std::string name;          // unique among the stores
  std::string cluster_id;    // one of the --hsm-cluster ids
  std::string trust_anchor;  // TrustAnchorCertificate as given (shown, not used)
  int64_t creation_date = 0;
  // Connected by ConnectCustomKeyStore and not disconnected since: the
  // service connects it again when it starts.
  bool connect_wanted = false;
};

// The meta entry that holds every record (a JSON array), and the kept
// secret (KeyStore::GetSecret) that holds a store's PIN.
inline constexpr char kCustomKeyStoresMeta[] = "custom-key-stores";
std::string PinSecretName(const std::string& store_id);
std::string CustomKeyStoresToJson(const std::vector<CustomKeyStoreRecord>& records);
StatusOr<std::vector<CustomKeyStoreRecord>> CustomKeyStoresFromJson(std::string_view text);
std::string NewCustomKeyStoreId();

// The label of the token key that holds version `version` of `key_id`.
std::string TokenKeyLabel(const std::string& key_id, uint32_t version);

class CustomKeyStores {
 public:
  // AWS's ConnectionState and ConnectionErrorCode.
  struct State {
    std::string connection;  // CONNECTED, DISCONNECTED or FAILED
    std::string error_code;  // with FAILED: INVALID_CREDENTIALS, CLUSTER_NOT_FOUND, ...
    std::string error;       // with FAILED: what the token said, for logs and replies
  };

  // `clusters`: cluster id -> PKCS#11 URI of its token (module and token,
  // no object).
  explicit CustomKeyStores(std::map<std::string, std::string> clusters);

  bool HasCluster(const std::string& cluster_id) const { return clusters_.count(cluster_id) > 0; }
  // A cluster id as --hsm-cluster takes it: 19 to 24 characters (AWS's
  // limits), lower-case letters, digits and '-', starting "cluster-".
  static bool ValidClusterId(const std::string& cluster_id);

  // The records, as last committed (SetRecords after each change).
  std::vector<CustomKeyStoreRecord> Records() const;
  std::optional<CustomKeyStoreRecord> Find(const std::string& store_id) const;
  void SetRecords(std::vector<CustomKeyStoreRecord> records);

  State StateOf(const std::string& store_id) const;
  bool Connected(const std::string& store_id) const;
  // Opens and logs in a session on the store's token: CONNECTED, or FAILED
  // with an error code (and a log line naming the store and the cause).
  State Connect(const CustomKeyStoreRecord& record, const crypto::SecretBytes& pin);
  // Closes the session (if any): DISCONNECTED. Keys of the store are
  // unusable until the next Connect.
  void Disconnect(const std::string& store_id);

  // On the store's token, with the key labelled TokenKeyLabel(key_id,
  // version). FailedPrecondition if the store is not connected.
  //
  // MakeKey generates it; a key that already carries the label (a version
  // whose commit was lost, or one made after the backup this store was
  // restored from) is kept and used, never replaced.
  Status MakeKey(const std::string& store_id, const std::string& key_id, uint32_t version);
  StatusOr<Bytes> Seal(const std::string& store_id, const std::string& key_id, uint32_t version,
                       ByteView plaintext, ByteView aad);
  StatusOr<crypto::SecretBytes> Open(const std::string& store_id, const std::string& key_id,
                                     uint32_t version, ByteView sealed, ByteView aad);
  // Destroys it (retired version, deleted key). NotFound if there is none.
  Status DestroyKey(const std::string& store_id, const std::string& key_id, uint32_t version);

 private:
  struct Connection {
    std::shared_ptr<Pkcs11Token> token;
    std::mutex handles_mu;  // guards handles
    std::map<std::string, Pkcs11Token::KeyHandle> handles;  // by label
  };
  StatusOr<std::shared_ptr<Connection>> ConnectionOf(const std::string& store_id) const;
  static StatusOr<Pkcs11Token::KeyHandle> Handle(Connection& c, const std::string& label);

  const std::map<std::string, std::string> clusters_;
  mutable std::mutex mu_;
  std::vector<CustomKeyStoreRecord> records_;                   // by id
  std::map<std::string, std::shared_ptr<Connection>> connections_;  // connected stores
  std::map<std::string, State> failed_;                         // stores whose Connect failed
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_CUSTOM_KEY_STORE_H_
