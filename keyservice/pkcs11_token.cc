#include "keyservice/pkcs11_token.h"

// p11-kit's pkcs11.h, with the standard (CK_*) names.
#include <p11-kit/p11-kit.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>

#include <cstring>
#include <vector>

#include "core/crypto/random.h"

namespace envelope::keyservice {

namespace {

std::string RvName(CK_RV rv) {
  switch (rv) {
    case CKR_PIN_INCORRECT: return "CKR_PIN_INCORRECT";
    case CKR_PIN_LOCKED: return "CKR_PIN_LOCKED";
    case CKR_PIN_EXPIRED: return "CKR_PIN_EXPIRED";
    case CKR_USER_PIN_NOT_INITIALIZED: return "CKR_USER_PIN_NOT_INITIALIZED";
    case CKR_TOKEN_NOT_PRESENT: return "CKR_TOKEN_NOT_PRESENT";
    case CKR_TOKEN_NOT_RECOGNIZED: return "CKR_TOKEN_NOT_RECOGNIZED";
    case CKR_DEVICE_REMOVED: return "CKR_DEVICE_REMOVED";
    case CKR_DEVICE_ERROR: return "CKR_DEVICE_ERROR";
    case CKR_SESSION_HANDLE_INVALID: return "CKR_SESSION_HANDLE_INVALID";
    case CKR_SESSION_CLOSED: return "CKR_SESSION_CLOSED";
    case CKR_KEY_HANDLE_INVALID: return "CKR_KEY_HANDLE_INVALID";
    case CKR_MECHANISM_INVALID: return "CKR_MECHANISM_INVALID";
    case CKR_MECHANISM_PARAM_INVALID: return "CKR_MECHANISM_PARAM_INVALID";
    case CKR_ENCRYPTED_DATA_INVALID: return "CKR_ENCRYPTED_DATA_INVALID";
    case CKR_ENCRYPTED_DATA_LEN_RANGE: return "CKR_ENCRYPTED_DATA_LEN_RANGE";
    case CKR_USER_NOT_LOGGED_IN: return "CKR_USER_NOT_LOGGED_IN";
    case CKR_TEMPLATE_INCONSISTENT: return "CKR_TEMPLATE_INCONSISTENT";
    case CKR_ATTRIBUTE_VALUE_INVALID: return "CKR_ATTRIBUTE_VALUE_INVALID";
    case CKR_FUNCTION_FAILED: return "CKR_FUNCTION_FAILED";
    case CKR_GENERAL_ERROR: return "CKR_GENERAL_ERROR";
    default: {
      char buf[32];
      std::snprintf(buf, sizeof(buf), "CKR 0x%lx", static_cast<unsigned long>(rv));
      return buf;
    }
  }
}

Status RvStatus(CK_RV rv, const std::string& what) {
  const std::string msg = what + ": " + RvName(rv);
  switch (rv) {
    case CKR_PIN_INCORRECT:
    case CKR_PIN_LOCKED:
    case CKR_PIN_EXPIRED:
    case CKR_USER_NOT_LOGGED_IN:
      return Status::PermissionDenied(msg);
    case CKR_TOKEN_NOT_PRESENT:
    case CKR_DEVICE_REMOVED:
    case CKR_SESSION_CLOSED:
    case CKR_SESSION_HANDLE_INVALID:
      return Status::Unavailable(msg);
    default:
      return Status::Internal(msg);
  }
}

// A fixed-width, blank-padded CK_TOKEN_INFO field as a string.
std::string Trimmed(const unsigned char* field, size_t size) {
  std::string s(reinterpret_cast<const char*>(field), size);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\0')) s.pop_back();
  return s;
}

std::string AttributeText(const CK_ATTRIBUTE* a) {
  if (a == nullptr || a->pValue == nullptr) return "";
  return std::string(static_cast<const char*>(a->pValue), a->ulValueLen);
}

// AES-GCM with a 12-byte nonce at `nonce` and a 16-byte tag. The module
// only reads through the pointers, which PKCS#11 declares non-const.
CK_GCM_PARAMS GcmParams(const uint8_t* nonce, ByteView aad) {
  CK_GCM_PARAMS p{};
  p.pIv = const_cast<CK_BYTE*>(nonce);
  p.ulIvLen = Pkcs11Token::kGcmNonceSizeInBytes;
  p.ulIvBits = Pkcs11Token::kGcmNonceSizeInBytes * 8;
  p.pAAD = const_cast<CK_BYTE*>(aad.data());
  p.ulAADLen = aad.size();
  p.ulTagBits = Pkcs11Token::kGcmTagSizeInBytes * 8;
  return p;
}

constexpr CK_BBOOL kTrue = CK_TRUE;
constexpr CK_BBOOL kFalse = CK_FALSE;

}  // namespace

struct Pkcs11Token::Session {
  P11KitUri* uri = nullptr;
  CK_FUNCTION_LIST* module = nullptr;
  bool initialized = false;
  CK_SESSION_HANDLE handle = CK_INVALID_HANDLE;
  bool logged_in = false;

  ~Session() {
    if (logged_in) (void)module->C_Logout(handle);
    if (handle != CK_INVALID_HANDLE) (void)module->C_CloseSession(handle);
    if (initialized) (void)p11_kit_module_finalize(module);
    if (module != nullptr) p11_kit_module_release(module);
    if (uri != nullptr) p11_kit_uri_free(uri);
  }

  // The key's label and, when the URI gives one, its id, for templates;
  // or only `explicit_label` when there is one.
  void AppendKeyName(std::vector<CK_ATTRIBUTE>* t, const std::string* explicit_label) const {
    if (explicit_label != nullptr) {
      t->push_back({CKA_LABEL, const_cast<char*>(explicit_label->data()), explicit_label->size()});
      return;
    }
    CK_ATTRIBUTE* label = p11_kit_uri_get_attribute(uri, CKA_LABEL);
    t->push_back({CKA_LABEL, label->pValue, label->ulValueLen});
    if (CK_ATTRIBUTE* id = p11_kit_uri_get_attribute(uri, CKA_ID)) {
      t->push_back({CKA_ID, id->pValue, id->ulValueLen});
    }
  }
};

Pkcs11Token::Pkcs11Token(std::unique_ptr<Session> session) : session_(std::move(session)) {}

Pkcs11Token::~Pkcs11Token() = default;

StatusOr<std::unique_ptr<Pkcs11Token>> Pkcs11Token::Open(const std::string& uri_text,
                                                         const crypto::SecretBytes& pin) {
  return OpenSession(uri_text, pin, /*key_named=*/true);
}

StatusOr<std::unique_ptr<Pkcs11Token>> Pkcs11Token::OpenToken(const std::string& uri_text,
                                                              const crypto::SecretBytes& pin) {
  return OpenSession(uri_text, pin, /*key_named=*/false);
}

StatusOr<std::unique_ptr<Pkcs11Token>> Pkcs11Token::OpenSession(const std::string& uri_text,
                                                                const crypto::SecretBytes& pin,
                                                                bool key_named) {
  auto s = std::make_unique<Session>();
  s->uri = p11_kit_uri_new();
  if (s->uri == nullptr) return Status::ResourceExhausted("p11_kit_uri_new");
  const int parsed = p11_kit_uri_parse(uri_text.c_str(), P11_KIT_URI_FOR_ANY, s->uri);
  if (parsed != P11_KIT_URI_OK) {
    return Status::InvalidArgument(std::string("not a PKCS#11 URI (RFC 7512): ") +
                                   p11_kit_uri_message(parsed));
  }
  if (p11_kit_uri_get_pin_value(s->uri) != nullptr ||
      p11_kit_uri_get_pin_source(s->uri) != nullptr) {
    return Status::InvalidArgument(
        "the PKCS#11 URI carries a PIN (pin-value or pin-source): give the PIN on a file "
        "descriptor or at the prompt instead");
  }
  const char* module_path = p11_kit_uri_get_module_path(s->uri);
  if (module_path == nullptr || module_path[0] != '/') {
    return Status::InvalidArgument(
        "the PKCS#11 URI must name its module by absolute path (?module-path=/...)");
  }
  const std::string label = AttributeText(p11_kit_uri_get_attribute(s->uri, CKA_LABEL));
  if (key_named && label.empty()) {
    return Status::InvalidArgument("the PKCS#11 URI must name the key (object=LABEL)");
  }

  s->module = p11_kit_module_load(module_path, 0);
  if (s->module == nullptr) {
    return Status::NotFound(std::string("cannot load the PKCS#11 module ") + module_path + ": " +
                            (p11_kit_message() ? p11_kit_message() : "unknown error"));
  }
  if (CK_RV rv = p11_kit_module_initialize(s->module); rv != CKR_OK) {
    return RvStatus(rv, std::string("initializing the PKCS#11 module ") + module_path);
  }
  s->initialized = true;

  CK_ULONG count = 0;
  if (CK_RV rv = s->module->C_GetSlotList(CK_TRUE, nullptr, &count); rv != CKR_OK) {
    return RvStatus(rv, "listing the PKCS#11 slots");
  }
  std::vector<CK_SLOT_ID> slots(count);
  if (count > 0) {
    if (CK_RV rv = s->module->C_GetSlotList(CK_TRUE, slots.data(), &count); rv != CKR_OK) {
      return RvStatus(rv, "listing the PKCS#11 slots");
    }
    slots.resize(count);
  }
  std::vector<std::pair<CK_SLOT_ID, std::string>> matches;
  for (CK_SLOT_ID slot : slots) {
    CK_TOKEN_INFO info;
    if (s->module->C_GetTokenInfo(slot, &info) != CKR_OK) continue;
    if (p11_kit_uri_match_token_info(s->uri, &info) == 1) {
      matches.emplace_back(slot, Trimmed(info.label, sizeof(info.label)));
    }
  }
  if (matches.size() != 1) {
    return Status::NotFound(matches.empty()
                                ? "no PKCS#11 token matches the URI"
                                : "more than one PKCS#11 token matches the URI: name it "
                                  "further (token=, serial=)");
  }
  if (CK_RV rv = s->module->C_OpenSession(matches[0].first, CKF_SERIAL_SESSION | CKF_RW_SESSION,
                                          nullptr, nullptr, &s->handle);
      rv != CKR_OK) {
    s->handle = CK_INVALID_HANDLE;
    return RvStatus(rv, "opening a session on token " + matches[0].second);
  }
  // The PIN is handed to the module from the secure heap; no copy here.
  CK_RV rv = s->module->C_Login(s->handle, CKU_USER, const_cast<CK_UTF8CHAR*>(pin.data()),
                                pin.size());
  if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
    return RvStatus(rv, "logging in to token " + matches[0].second);
  }
  s->logged_in = rv == CKR_OK;
  std::unique_ptr<Pkcs11Token> token(new Pkcs11Token(std::move(s)));
  token->description_ = "token " + matches[0].second;
  if (key_named) token->description_ += ", key " + label;
  return token;
}

StatusOr<Pkcs11Token::KeyHandle> Pkcs11Token::FindKey() { return Find(nullptr); }
StatusOr<Pkcs11Token::KeyHandle> Pkcs11Token::FindKey(const std::string& label) {
  return Find(&label);
}
StatusOr<Pkcs11Token::KeyHandle> Pkcs11Token::GenerateKey() { return Generate(nullptr); }
StatusOr<Pkcs11Token::KeyHandle> Pkcs11Token::GenerateKey(const std::string& label) {
  return Generate(&label);
}

Status Pkcs11Token::DestroyKey(KeyHandle key) {
  std::lock_guard lock(mu_);
  Session& s = *session_;
  if (CK_RV rv = s.module->C_DestroyObject(s.handle, key); rv != CKR_OK) {
    return RvStatus(rv, "destroying a key on the " + description_);
  }
  return Status::Ok();
}

StatusOr<Pkcs11Token::KeyHandle> Pkcs11Token::Find(const std::string* label) {
  std::lock_guard lock(mu_);
  Session& s = *session_;
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_AES;
  std::vector<CK_ATTRIBUTE> t = {{CKA_CLASS, &cls, sizeof(cls)}, {CKA_KEY_TYPE, &type, sizeof(type)}};
  if (label == nullptr && p11_kit_uri_get_attribute(s.uri, CKA_LABEL) == nullptr) {
    return Status::InvalidArgument("the PKCS#11 URI names no key");
  }
  s.AppendKeyName(&t, label);
  const std::string what = label ? description_ + ", key " + *label : description_;
  if (CK_RV rv = s.module->C_FindObjectsInit(s.handle, t.data(), t.size()); rv != CKR_OK) {
    return RvStatus(rv, "searching " + what);
  }
  CK_OBJECT_HANDLE found[2];
  CK_ULONG n = 0;
  CK_RV rv = s.module->C_FindObjects(s.handle, found, 2, &n);
  (void)s.module->C_FindObjectsFinal(s.handle);
  if (rv != CKR_OK) return RvStatus(rv, "searching " + what);
  if (n == 0) return Status::NotFound("no AES key on the " + what);
  if (n > 1) {
    return Status::FailedPrecondition("more than one AES key matches the " + what +
                                      ": give its id= in the URI");
  }
  return KeyHandle{found[0]};
}

StatusOr<Pkcs11Token::KeyHandle> Pkcs11Token::Generate(const std::string* label) {
  std::lock_guard lock(mu_);
  Session& s = *session_;
  if (label == nullptr && p11_kit_uri_get_attribute(s.uri, CKA_LABEL) == nullptr) {
    return Status::InvalidArgument("the PKCS#11 URI names no key");
  }
  CK_OBJECT_CLASS cls = CKO_SECRET_KEY;
  CK_KEY_TYPE type = CKK_AES;
  CK_ULONG length = 32;
  CK_BBOOL yes = kTrue, no = kFalse;
  std::vector<CK_ATTRIBUTE> t = {
      {CKA_CLASS, &cls, sizeof(cls)},        {CKA_KEY_TYPE, &type, sizeof(type)},
      {CKA_VALUE_LEN, &length, sizeof(length)}, {CKA_TOKEN, &yes, sizeof(yes)},
      {CKA_PRIVATE, &yes, sizeof(yes)},      {CKA_SENSITIVE, &yes, sizeof(yes)},
      {CKA_EXTRACTABLE, &no, sizeof(no)},    {CKA_ENCRYPT, &yes, sizeof(yes)},
      {CKA_DECRYPT, &yes, sizeof(yes)},      {CKA_WRAP, &no, sizeof(no)},
      {CKA_UNWRAP, &no, sizeof(no)},         {CKA_SIGN, &no, sizeof(no)},
      {CKA_VERIFY, &no, sizeof(no)},         {CKA_DERIVE, &no, sizeof(no)}};
  s.AppendKeyName(&t, label);
  CK_MECHANISM mech = {CKM_AES_KEY_GEN, nullptr, 0};
  CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
  if (CK_RV rv = s.module->C_GenerateKey(s.handle, &mech, t.data(), t.size(), &key);
      rv != CKR_OK) {
    return RvStatus(rv, "generating an AES key on the " + description_);
  }
  return KeyHandle{key};
}

StatusOr<Bytes> Pkcs11Token::Seal(KeyHandle key, ByteView plaintext, ByteView aad) {
  Bytes out(kGcmNonceSizeInBytes + plaintext.size() + kGcmTagSizeInBytes);
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomBytes(MutableByteView(out.data(), kGcmNonceSizeInBytes)));
  CK_GCM_PARAMS params = GcmParams(out.data(), aad);
  CK_MECHANISM mech = {CKM_AES_GCM, &params, sizeof(params)};
  std::lock_guard lock(mu_);
  Session& s = *session_;
  if (CK_RV rv = s.module->C_EncryptInit(s.handle, &mech, key); rv != CKR_OK) {
    return RvStatus(rv, "sealing with the " + description_);
  }
  CK_ULONG n = out.size() - kGcmNonceSizeInBytes;
  if (CK_RV rv = s.module->C_Encrypt(s.handle, const_cast<CK_BYTE*>(plaintext.data()),
                                     plaintext.size(), out.data() + kGcmNonceSizeInBytes, &n);
      rv != CKR_OK) {
    return RvStatus(rv, "sealing with the " + description_);
  }
  if (n != plaintext.size() + kGcmTagSizeInBytes) {
    return Status::Internal("the " + description_ + " sealed to an unexpected length");
  }
  return out;
}

StatusOr<crypto::SecretBytes> Pkcs11Token::Open(KeyHandle key, ByteView sealed, ByteView aad) {
  if (sealed.size() < kGcmNonceSizeInBytes + kGcmTagSizeInBytes) {
    return Status::Corruption("sealed value too short");
  }
  const size_t size = sealed.size() - kGcmNonceSizeInBytes - kGcmTagSizeInBytes;
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes out, crypto::SecretBytes::Zeroed(size));
  // Room for the whole input: a module may want it before it has checked
  // the tag. Only `size` bytes are kept. Made before the operation starts,
  // so that no early return leaves a decryption active in the session.
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes buf,
                            crypto::SecretBytes::Zeroed(sealed.size() - kGcmNonceSizeInBytes));
  CK_GCM_PARAMS params = GcmParams(sealed.data(), aad);
  CK_MECHANISM mech = {CKM_AES_GCM, &params, sizeof(params)};
  std::lock_guard lock(mu_);
  Session& s = *session_;
  if (CK_RV rv = s.module->C_DecryptInit(s.handle, &mech, key); rv != CKR_OK) {
    return RvStatus(rv, "opening with the " + description_);
  }
  CK_ULONG n = buf.size();
  CK_RV rv = s.module->C_Decrypt(s.handle, const_cast<CK_BYTE*>(sealed.data()) + kGcmNonceSizeInBytes,
                                 sealed.size() - kGcmNonceSizeInBytes, buf.data(), &n);
  // A tag that does not verify: CKR_ENCRYPTED_DATA_INVALID by the standard;
  // SoftHSM2 (2.6) answers CKR_GENERAL_ERROR, others CKR_FUNCTION_FAILED.
  if (rv == CKR_ENCRYPTED_DATA_INVALID || rv == CKR_ENCRYPTED_DATA_LEN_RANGE ||
      rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED) {
    return Status::Corruption("the " + description_ + " does not open this value (" +
                              RvName(rv) + ": another key, or damaged data)");
  }
  if (rv == CKR_OK && n != size) {
    return Status::Corruption("the " + description_ + " opened this value to a wrong length");
  }
  if (rv != CKR_OK) return RvStatus(rv, "opening with the " + description_);
  std::memcpy(out.data(), buf.data(), size);
  return out;
}

}  // namespace envelope::keyservice
