#include "core/crypto/aes_gcm.h"

#include <openssl/evp.h>

#include <climits>
#include <cstring>
#include <utility>

#include "core/crypto/random.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::crypto {

StatusOr<Aes256Gcm> Aes256Gcm::New(ByteView key) {
  if (key.size() != kKeySizeInBytes) {
    return Status::InvalidArgument("AES-256-GCM needs a 32-byte key");
  }
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return Status::ResourceExhausted("EVP_CIPHER_CTX_new");
  // Expand the key once; every Seal/Open afterwards only sets the nonce.
  if (EVP_CipherInit_ex(ctx, EVP_aes_256_gcm(), nullptr, key.data(), nullptr,
                        1) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_GCM_SET_IVLEN,
                          static_cast<int>(kNonceSizeInBytes), nullptr) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return Status::Internal("AES-256-GCM key setup failed");
  }
  return Aes256Gcm(ctx);
}

StatusOr<Aes256Gcm> Aes256Gcm::Clone() const {
  EVP_CIPHER_CTX* ctx = EVP_CIPHER_CTX_new();
  if (ctx == nullptr) return Status::ResourceExhausted("EVP_CIPHER_CTX_new");
  if (EVP_CIPHER_CTX_copy(ctx, ctx_) != 1) {
    EVP_CIPHER_CTX_free(ctx);
    return Status::Internal("AES-256-GCM context copy failed");
  }
  return Aes256Gcm(ctx);
}

Aes256Gcm::Aes256Gcm(Aes256Gcm&& other) noexcept
    : ctx_(std::exchange(other.ctx_, nullptr)) {}

Aes256Gcm& Aes256Gcm::operator=(Aes256Gcm&& other) noexcept {
  if (this != &other) {
    EVP_CIPHER_CTX_free(ctx_);
    ctx_ = std::exchange(other.ctx_, nullptr);
  }
  return *this;
}

// EVP_CIPHER_CTX_free cleanses the context, including the key schedule.
Aes256Gcm::~Aes256Gcm() { EVP_CIPHER_CTX_free(ctx_); }

Status Aes256Gcm::Seal(ByteView plaintext, ByteView aad, MutableByteView out) {
  uint8_t nonce[kNonceSizeInBytes];
  ENVELOPE_RETURN_IF_ERROR(RandomPublicBytes(nonce));
  return SealWithNonce(nonce, plaintext, aad, out);
}

Status Aes256Gcm::SealWithNonceForTesting(ByteView nonce, ByteView plaintext,
                                          ByteView aad, MutableByteView out) {
  return SealWithNonce(nonce, plaintext, aad, out);
}

Status Aes256Gcm::SealWithNonce(ByteView nonce, ByteView plaintext,
                                ByteView aad, MutableByteView out) {
  if (ctx_ == nullptr) return Status::Internal("BUG: moved-from Aes256Gcm");
  if (nonce.size() != kNonceSizeInBytes ||
      out.size() != plaintext.size() + kOverheadInBytes ||
      plaintext.size() > INT_MAX || aad.size() > INT_MAX) {
    return Status::InvalidArgument("AES-256-GCM seal: bad buffer sizes");
  }
  std::memcpy(out.data(), nonce.data(), kNonceSizeInBytes);
  uint8_t* ct = out.data() + kNonceSizeInBytes;
  int len = 0;
  if (EVP_CipherInit_ex(ctx_, nullptr, nullptr, nullptr, nonce.data(), 1) !=
      1) {
    return Status::Internal("AES-256-GCM nonce setup failed");
  }
  if (!aad.empty() && EVP_CipherUpdate(ctx_, nullptr, &len, aad.data(),
                                       static_cast<int>(aad.size())) != 1) {
    return Status::Internal("AES-256-GCM AAD failed");
  }
  if (!plaintext.empty() &&
      EVP_CipherUpdate(ctx_, ct, &len, plaintext.data(),
                       static_cast<int>(plaintext.size())) != 1) {
    return Status::Internal("AES-256-GCM encrypt failed");
  }
  if (EVP_CipherFinal_ex(ctx_, ct + plaintext.size(), &len) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_GET_TAG,
                          static_cast<int>(kTagSizeInBytes),
                          ct + plaintext.size()) != 1) {
    return Status::Internal("AES-256-GCM tag failed");
  }
  return Status::Ok();
}

Status Aes256Gcm::Open(ByteView sealed, ByteView aad, MutableByteView out) {
  if (ctx_ == nullptr) return Status::Internal("BUG: moved-from Aes256Gcm");
  if (sealed.size() < kOverheadInBytes ||
      out.size() != sealed.size() - kOverheadInBytes ||
      out.size() > INT_MAX || aad.size() > INT_MAX) {
    return Status::InvalidArgument("AES-256-GCM open: bad buffer sizes");
  }
  const uint8_t* nonce = sealed.data();
  const uint8_t* ct = nonce + kNonceSizeInBytes;
  const uint8_t* tag = ct + out.size();
  int len = 0;
  bool ok =
      EVP_CipherInit_ex(ctx_, nullptr, nullptr, nullptr, nonce, 0) == 1 &&
      (aad.empty() || EVP_CipherUpdate(ctx_, nullptr, &len, aad.data(),
                                       static_cast<int>(aad.size())) == 1) &&
      (out.empty() || EVP_CipherUpdate(ctx_, out.data(), &len, ct,
                                       static_cast<int>(out.size())) == 1) &&
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_SET_TAG,
                          static_cast<int>(kTagSizeInBytes),
                          const_cast<uint8_t*>(tag)) == 1 &&
      EVP_CipherFinal_ex(ctx_, out.data() + out.size(), &len) == 1;
  if (!ok) {
    Cleanse(out);
    return Status::Corruption("AES-256-GCM authentication failed");
  }
  return Status::Ok();
}

}  // namespace envelope::crypto
