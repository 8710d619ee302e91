#include "core/crypto/hash.h"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/params.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <initializer_list>
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

namespace {

// HMAC-SHA256 under `key` of the concatenation of `parts`, into `out`
// (kSha256SizeInBytes): the keyed state stays in OpenSSL's context, which
// is wiped when freed, and the output goes straight to the caller's
// (secure) buffer. An input part may alias `out`: all are read before the
// result is written.
bool HmacSha256Into(ByteView key, std::initializer_list<ByteView> parts, uint8_t* out) {
  static const unsigned char kEmpty = 0;
  EVP_MAC_CTX* ctx = EVP_MAC_CTX_dup(HmacSha256Template());
  bool ok = ctx != nullptr &&
            EVP_MAC_init(ctx, key.empty() ? &kEmpty : key.data(), key.size(), nullptr) == 1;
  for (ByteView part : parts) {
    ok = ok && (part.empty() || EVP_MAC_update(ctx, part.data(), part.size()) == 1);
  }
  size_t len = 0;
  ok = ok && EVP_MAC_final(ctx, out, &len, kSha256SizeInBytes) == 1 && len == kSha256SizeInBytes;
  EVP_MAC_CTX_free(ctx);
  return ok;
}

}  // namespace

// RFC 5869 on the HMAC template above. OpenSSL 3.0's own HKDF (EVP_KDF)
// fetches the digest and the MAC again on every derivation (EVP_Q_mac),
// which made it the largest item of a file create's CPU time
// (docs/BENCHMARKS.md); HMAC contexts duplicated from the template derive
// the same bytes (the RFC's test vectors, tests/unit/hash_test.cc).
StatusOr<SecretBytes> HkdfSha256(ByteView ikm, ByteView salt,
                                 std::string_view info, size_t length) {
  if (length == 0 || length > 255 * kSha256SizeInBytes) {
    return Status::InvalidArgument("HKDF output length out of range");
  }
  ENVELOPE_ASSIGN_OR_RETURN(SecretBytes prk, HkdfSha256Extract(ikm, salt));
  return HkdfSha256Expand(prk.view(), info, length);
}

StatusOr<SecretBytes> HkdfSha256Extract(ByteView ikm, ByteView salt) {
  ENVELOPE_ASSIGN_OR_RETURN(SecretBytes prk, SecretBytes::Zeroed(kSha256SizeInBytes));
  // A missing salt is HashLen zero bytes (RFC 5869 §2.2), which as an HMAC
  // key is the same as an empty one.
  if (!HmacSha256Into(salt, {ikm}, prk.data())) return Status::Internal("HKDF extract failed");
  return prk;
}

StatusOr<SecretBytes> HkdfSha256Expand(ByteView prk, std::string_view info, size_t length) {
  if (length == 0 || length > 255 * kSha256SizeInBytes) {
    return Status::InvalidArgument("HKDF output length out of range");
  }
  if (prk.size() < kSha256SizeInBytes) return Status::InvalidArgument("HKDF PRK too short");
  ENVELOPE_ASSIGN_OR_RETURN(SecretBytes out, SecretBytes::Zeroed(length));
  // The block T(i) being made, kept for T(i+1).
  ENVELOPE_ASSIGN_OR_RETURN(SecretBytes scratch, SecretBytes::Zeroed(kSha256SizeInBytes));
  uint8_t* block = scratch.data();
  // Expand: T(i) = HMAC(PRK, T(i-1) || info || i), T(0) empty.
  const ByteView info_bytes(reinterpret_cast<const uint8_t*>(info.data()), info.size());
  size_t done = 0;
  for (uint8_t i = 1; done < length; ++i) {
    const ByteView previous(block, i == 1 ? 0 : kSha256SizeInBytes);
    if (!HmacSha256Into(prk, {previous, info_bytes, ByteView(&i, 1)}, block)) {
      return Status::Internal("HKDF expand failed");
    }
    const size_t n = std::min(kSha256SizeInBytes, length - done);
    std::memcpy(out.data() + done, block, n);
    done += n;
  }
  return out;
}

bool ConstantTimeEquals(ByteView a, ByteView b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace envelope::crypto
