#include "kms/fake_key_service.h"

#include <array>

#include "core/base/uuid.h"
#include "core/crypto/aes_gcm.h"
#include "core/crypto/random.h"

namespace envelope::kms {

namespace {

constexpr char kArnPrefix[] = "arn:aws:kms:fake:000000000000:key/";
// 'F' 'K' | key id (16) | version (u32 LE) | nonce | ciphertext | tag
constexpr size_t kPrefixSize = 2 + 16 + 4;

void PutFixed32(Bytes* out, uint32_t v) {
  uint8_t b[4];
  EncodeFixed32(b, v);
  out->insert(out->end(), b, b + 4);
}

Bytes ContextAad(const EncryptionContextMap& context, ByteView prefix) {
  Bytes aad(prefix.begin(), prefix.end());
  for (const auto& [k, v] : context) {
    PutFixed32(&aad, static_cast<uint32_t>(k.size()));
    aad.insert(aad.end(), k.begin(), k.end());
    PutFixed32(&aad, static_cast<uint32_t>(v.size()));
    aad.insert(aad.end(), v.begin(), v.end());
  }
  return aad;
}

Bytes UuidBytes(const std::string& id) {
  std::string hex;
  for (char c : id) {
    if (c != '-') hex.push_back(c);
  }
  Bytes bytes;
  if (!HexDecode(hex, &bytes) || bytes.size() != 16) bytes.assign(16, 0);
  return bytes;
}

}  // namespace

FakeKeyService::FakeKeyService(bool labelled) : labelled_(labelled) {}
FakeKeyService::~FakeKeyService() = default;

std::string FakeKeyService::CreateKey(const std::string& alias) {
  std::lock_guard lock(mu_);
  std::array<uint8_t, 16> random;
  (void)crypto::RandomBytes(random);
  auto key = std::make_unique<Key>();
  key->id = FormatRandomUuid(random);
  key->arn = kArnPrefix + key->id;
  key->versions.push_back(*crypto::SecretBytes::Random(32));
  key->version_dates.push_back(++clock_);
  const std::string arn = key->arn;
  if (!alias.empty()) aliases_["alias/" + alias] = key->id;
  keys_[key->id] = std::move(key);
  return arn;
}

void FakeKeyService::SetAlias(const std::string& alias, const std::string& key) {
  std::lock_guard lock(mu_);
  auto k = Find(key);
  if (k.ok()) aliases_["alias/" + alias] = (*k)->id;
}

void FakeKeyService::RotateKey(const std::string& key) {
  std::lock_guard lock(mu_);
  auto k = Find(key);
  if (!k.ok()) return;
  (*k)->versions.push_back(*crypto::SecretBytes::Random(32));
  (*k)->version_dates.push_back(++clock_);
}

void FakeKeyService::SetKeyState(const std::string& key, const std::string& state) {
  std::lock_guard lock(mu_);
  auto k = Find(key);
  if (k.ok()) (*k)->state = state;
}

void FakeKeyService::SetForeignCreator(const std::string& key, const std::string& creator) {
  std::lock_guard lock(mu_);
  auto k = Find(key);
  if (k.ok()) (*k)->foreign_creator = creator;
}

void FakeKeyService::FailAfter(int64_t calls) {
  std::lock_guard lock(mu_);
  calls_left_ = calls;
}

void FakeKeyService::SetVersionsVisible(bool visible) {
  std::lock_guard lock(mu_);
  versions_visible_ = visible;
}

int64_t FakeKeyService::Calls(const std::string& operation) const {
  std::lock_guard lock(mu_);
  auto it = calls_.find(operation);
  return it == calls_.end() ? 0 : it->second;
}

uint32_t FakeKeyService::VersionInBlob(ByteView blob) const {
  return blob.size() >= kPrefixSize ? DecodeFixed32(blob.data() + 18) : 0;
}

Status FakeKeyService::Admit(const char* operation) {
  ++calls_[operation];
  if (calls_left_ == 0) {
    return Status::Unavailable("cannot reach the key service at fake:: Connection refused");
  }
  if (calls_left_ > 0) --calls_left_;
  return Status::Ok();
}

StatusOr<FakeKeyService::Key*> FakeKeyService::Find(const std::string& key) {
  std::string id = key;
  if (key.rfind("alias/", 0) == 0) {
    auto it = aliases_.find(key);
    if (it == aliases_.end()) return Status::NotFound("NotFoundException: Alias " + key + " is not found.");
    id = it->second;
  } else if (key.rfind(kArnPrefix, 0) == 0) {
    id = key.substr(sizeof(kArnPrefix) - 1);
  }
  auto it = keys_.find(id);
  if (it == keys_.end()) return Status::NotFound("NotFoundException: Key '" + key + "' does not exist");
  return it->second.get();
}

StatusOr<FakeKeyService::Key*> FakeKeyService::FindUsable(const std::string& key) {
  ENVELOPE_ASSIGN_OR_RETURN(Key * k, Find(key));
  if (k->state == "Disabled") return Status::FailedPrecondition("DisabledException: " + k->arn + " is disabled.");
  if (k->state != "Enabled") {
    return Status::FailedPrecondition("KMSInvalidStateException: " + k->arn + " is " + k->state);
  }
  return k;
}

StatusOr<Bytes> FakeKeyService::Seal(Key* key, ByteView plaintext,
                                     const EncryptionContextMap& context) {
  Bytes blob = {'F', 'K'};
  const Bytes id = UuidBytes(key->id);
  blob.insert(blob.end(), id.begin(), id.end());
  PutFixed32(&blob, static_cast<uint32_t>(key->versions.size()));
  const Bytes aad = ContextAad(context, blob);
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm gcm, crypto::Aes256Gcm::New(key->versions.back().view()));
  const size_t prefix = blob.size();
  blob.resize(prefix + plaintext.size() + crypto::Aes256Gcm::kOverheadInBytes);
  ENVELOPE_RETURN_IF_ERROR(gcm.Seal(plaintext, aad, MutableByteView(blob.data() + prefix, blob.size() - prefix)));
  return blob;
}

StatusOr<crypto::SecretBytes> FakeKeyService::Open(ByteView blob,
                                                   const EncryptionContextMap& context,
                                                   const std::string& pinned_key) {
  if (blob.size() < kPrefixSize + crypto::Aes256Gcm::kOverheadInBytes || blob[0] != 'F' ||
      blob[1] != 'K') {
    return Status::Corruption("InvalidCiphertextException: not a ciphertext of this service");
  }
  const std::string id = FormatUuid(blob.subspan(2, 16));
  ENVELOPE_ASSIGN_OR_RETURN(Key * pinned, Find(pinned_key));
  if (pinned->id != id) {
    return Status::Corruption("IncorrectKeyException: the ciphertext was not encrypted under " +
                              pinned_key);
  }
  ENVELOPE_ASSIGN_OR_RETURN(Key * key, FindUsable(id));
  const uint32_t version = DecodeFixed32(blob.data() + 18);
  if (version < 1 || version > key->versions.size()) {
    return Status::Corruption("InvalidCiphertextException: unknown key version");
  }
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm gcm,
                            crypto::Aes256Gcm::New(key->versions[version - 1].view()));
  const Bytes aad = ContextAad(context, blob.subspan(0, kPrefixSize));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes out,
                            crypto::SecretBytes::Zeroed(blob.size() - kPrefixSize -
                                                        crypto::Aes256Gcm::kOverheadInBytes));
  if (!gcm.Open(blob.subspan(kPrefixSize), aad, out.mutable_view()).ok()) {
    return Status::Corruption("InvalidCiphertextException: the ciphertext or its context does not match");
  }
  return out;
}

StatusOr<KeyInfo> FakeKeyService::DescribeKey(const std::string& key) {
  std::lock_guard lock(mu_);
  ENVELOPE_RETURN_IF_ERROR(Admit("DescribeKey"));
  ENVELOPE_ASSIGN_OR_RETURN(Key * k, Find(key));
  return KeyInfo{k->id, k->arn, k->state, k->foreign_creator};
}

StatusOr<CurrentVersion> FakeKeyService::DescribeCurrentVersion(const std::string& key) {
  std::lock_guard lock(mu_);
  ENVELOPE_RETURN_IF_ERROR(Admit("DescribeCurrentVersion"));
  ENVELOPE_ASSIGN_OR_RETURN(Key * k, Find(key));
  CurrentVersion v;
  if (!versions_visible_) return v;
  v.since = k->version_dates.back();
  v.marker = "version:" + std::to_string(k->versions.size());
  if (labelled_) v.number = static_cast<uint32_t>(k->versions.size());
  return v;
}

StatusOr<std::vector<DataKey>> FakeKeyService::GenerateDataKeys(
    const std::string& key, const std::vector<EncryptionContextMap>& contexts) {
  std::lock_guard lock(mu_);
  std::vector<DataKey> keys;
  for (const EncryptionContextMap& context : contexts) {
    Status admitted = Admit("GenerateDataKey");
    auto k = admitted.ok() ? FindUsable(key) : StatusOr<Key*>(admitted);
    if (!k.ok()) {
      if (!keys.empty()) break;
      return k.status();
    }
    DataKey dk;
    ENVELOPE_ASSIGN_OR_RETURN(dk.plaintext, crypto::SecretBytes::Random(32));
    ENVELOPE_ASSIGN_OR_RETURN(dk.ciphertext_blob, Seal(*k, dk.plaintext.view(), context));
    dk.key_arn = (*k)->arn;
    keys.push_back(std::move(dk));
  }
  return keys;
}

StatusOr<crypto::SecretBytes> FakeKeyService::Decrypt(ByteView blob,
                                                      const EncryptionContextMap& context,
                                                      const std::string& key_id) {
  std::lock_guard lock(mu_);
  ENVELOPE_RETURN_IF_ERROR(Admit("Decrypt"));
  if (key_id.empty()) return Status::InvalidArgument("Decrypt without a KeyId");
  return Open(blob, context, key_id);
}

StatusOr<Bytes> FakeKeyService::Encrypt(const std::string& key, ByteView plaintext,
                                        const EncryptionContextMap& context) {
  std::lock_guard lock(mu_);
  ENVELOPE_RETURN_IF_ERROR(Admit("Encrypt"));
  ENVELOPE_ASSIGN_OR_RETURN(Key * k, FindUsable(key));
  return Seal(k, plaintext, context);
}

StatusOr<Bytes> FakeKeyService::ReEncrypt(ByteView blob, const std::string& source_key_id,
                                          const EncryptionContextMap& source_context,
                                          const std::string& destination_key,
                                          const EncryptionContextMap& destination_context) {
  std::lock_guard lock(mu_);
  ENVELOPE_RETURN_IF_ERROR(Admit("ReEncrypt"));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes plain, Open(blob, source_context, source_key_id));
  ENVELOPE_ASSIGN_OR_RETURN(Key * to, FindUsable(destination_key));
  return Seal(to, plain.view(), destination_context);
}

std::vector<StatusOr<Bytes>> FakeKeyService::ReEncryptMany(std::span<const ReEncryptItem> items,
                                                           const std::string& destination_key) {
  {
    std::lock_guard lock(mu_);
    ++calls_["ReEncryptMany"];
  }
  return KeyService::ReEncryptMany(items, destination_key);
}

std::optional<BlobVersion> FakeKeyService::VersionOf(ByteView blob) const {
  if (!labelled_ || blob.size() < kPrefixSize || blob[0] != 'F' || blob[1] != 'K') {
    return std::nullopt;
  }
  if (blob.size() < kPrefixSize + crypto::Aes256Gcm::kOverheadInBytes) return std::nullopt;
  return BlobVersion{FormatUuid(blob.subspan(2, 16)), DecodeFixed32(blob.data() + 18),
                     blob.size() - kPrefixSize - crypto::Aes256Gcm::kOverheadInBytes};
}

}  // namespace envelope::kms
