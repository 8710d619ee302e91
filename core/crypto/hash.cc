#include "core/crypto/hash.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/params.h>

#include <cstdlib>
#include <cstring>
#include <string>

namespace envelope::crypto {

namespace {
[[noreturn]] void BugAbort() {
  // SHA-256 over memory cannot fail short of OpenSSL being broken; a digest
  // that silently came back wrong would be worse than stopping.
  std::abort();
}
// SHA-256 fetched once for the process. EVP_sha256() is an implicit fetch
// that takes the provider store's lock on every use, which the key service
// paid several times per signed request. Never freed: it lives as long as
// libcrypto.
const EVP_MD* FetchedSha256() {
  static EVP_MD* const md = [] {
    EVP_MD* m = EVP_MD_fetch(nullptr, "SHA256", nullptr);
    if (m == nullptr) BugAbort();
    return m;
  }();
  return md;
}

// An HMAC-SHA256 context with its digest set and no key: each call
// duplicates it and keys the copy, which costs half of what HMAC() does
// (that one-shot fetches the MAC and the digest and builds a context every
// time). Only ever read after construction, so concurrent duplication is
// safe.
const EVP_MAC_CTX* HmacSha256Template() {
  static EVP_MAC_CTX* const ctx = [] {
    EVP_MAC* mac = EVP_MAC_fetch(nullptr, "HMAC", nullptr);
    EVP_MAC_CTX* c = mac != nullptr ? EVP_MAC_CTX_new(mac) : nullptr;
    EVP_MAC_free(mac);  // the context holds its own reference
    char digest[] = "SHA256";
    const OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_end()};
    if (c == nullptr || EVP_MAC_CTX_set_params(c, params) != 1) BugAbort();
    return c;
  }();
  return ctx;
}

}  // namespace

Sha256Digest Sha256(ByteView data) {
  Sha256Digest out;
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, FetchedSha256(),
                 nullptr) != 1 ||
      len != out.size()) {
    BugAbort();
  }
  return out;
}

struct Sha256Hasher::Impl {
  EVP_MD_CTX* ctx = nullptr;
};

Sha256Hasher::Sha256Hasher() : impl_(new Impl) {
  impl_->ctx = EVP_MD_CTX_new();
  if (impl_->ctx == nullptr ||
      EVP_DigestInit_ex(impl_->ctx, FetchedSha256(), nullptr) != 1) {
    BugAbort();
  }
}

Sha256Hasher::~Sha256Hasher() {
  EVP_MD_CTX_free(impl_->ctx);
  delete impl_;
}

void Sha256Hasher::Update(ByteView data) {
  if (EVP_DigestUpdate(impl_->ctx, data.data(), data.size()) != 1) BugAbort();
}

Sha256Digest Sha256Hasher::Finish() {
  Sha256Digest out;
  unsigned int len = 0;
  if (EVP_DigestFinal_ex(impl_->ctx, out.data(), &len) != 1 ||
      EVP_DigestInit_ex(impl_->ctx, FetchedSha256(), nullptr) != 1) {
    BugAbort();
  }
  return out;
}

Sha256Digest HmacSha256(ByteView key, ByteView data) {
  Sha256Digest out;
  size_t len = 0;
  // An empty key is a valid HMAC key; OpenSSL wants a non-null pointer.
  static const unsigned char kEmpty = 0;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(HmacSha256Template());
  const bool ok = ctx != nullptr &&
                  EVP_MAC_init(ctx, key.empty() ? &kEmpty : key.data(), key.size(), nullptr) == 1 &&
                  EVP_MAC_update(ctx, data.data(), data.size()) == 1 &&
                  EVP_MAC_final(ctx, out.data(), &len, out.size()) == 1 && len == out.size();
  EVP_MAC_CTX_free(ctx);  // wipes the keyed state
  if (!ok) BugAbort();
  return out;
}

StatusOr<SecretBytes> HkdfSha256(ByteView ikm, ByteView salt,
                                 std::string_view info, size_t length) {
  if (length == 0 || length > 255 * kSha256SizeInBytes) {
    return Status::InvalidArgument("HKDF output length out of range");
  }
  auto out = SecretBytes::Zeroed(length);
  if (!out.ok()) return out;

  // Fetched once for the process (a fetch takes a lock and a lookup, and
  // every file create derives keys here). Never freed: it lives as long as
  // libcrypto. (A context duplicated per call would also save the digest
  // lookup, but OpenSSL 3.0's HKDF cannot be duplicated.)
  static EVP_KDF* const kdf = EVP_KDF_fetch(nullptr, "HKDF", nullptr);
  if (kdf == nullptr) return Status::Internal("OpenSSL has no HKDF");
  EVP_KDF_CTX* ctx = EVP_KDF_CTX_new(kdf);
  if (ctx == nullptr) return Status::Internal("EVP_KDF_CTX_new failed");

  std::string digest = "SHA256";
  // OpenSSL's params take non-const pointers but do not write through them.
  auto* ikm_p = const_cast<uint8_t*>(ikm.data());
  auto* salt_p = const_cast<uint8_t*>(salt.data());
  auto* info_p = const_cast<char*>(info.data());
  // An empty salt or info is left out: OpenSSL rejects zero-length octet
  // parameters, and RFC 5869 defines a missing salt as HashLen zero bytes,
  // which is what OpenSSL then uses.
  OSSL_PARAM params[5];
  size_t n = 0;
  params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest.data(), 0);
  params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, ikm_p, ikm.size());
  if (!salt.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, salt_p, salt.size());
  }
  if (!info.empty()) {
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, info_p, info.size());
  }
  params[n] = OSSL_PARAM_construct_end();
  int rc = EVP_KDF_derive(ctx, out->data(), length, params);
  EVP_KDF_CTX_free(ctx);
  if (rc != 1) return Status::Internal("HKDF derivation failed");
  return out;
}

bool ConstantTimeEquals(ByteView a, ByteView b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace envelope::crypto
