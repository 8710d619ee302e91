#include "core/crypto/aes_siv.h"

#include <openssl/evp.h>

#include <climits>
#include <memory>
#include <mutex>

#include "core/crypto/openssl_ptr.h"

namespace envelope::crypto {

namespace {

using CtxPtr = CipherCtxPtr;

}  // namespace

// One context keyed for each direction. EVP_CIPHER_CTX_free cleanses them.
struct AesSiv::Keyed {
  std::mutex mu;  // guards the copies out of the two contexts
  CtxPtr encrypt;
  CtxPtr decrypt;

  // A fresh context in the state of `from` right after keying.
  CtxPtr CopyOf(const CtxPtr& from) {
    CtxPtr ctx(EVP_CIPHER_CTX_new());
    if (!ctx) return nullptr;
    std::lock_guard lock(mu);
    if (EVP_CIPHER_CTX_copy(ctx.get(), from.get()) != 1) return nullptr;
    return ctx;
  }
};

StatusOr<AesSiv> AesSiv::New(ByteView key) {
  if (key.size() != kKeySizeInBytes) {
    return Status::InvalidArgument("AES-SIV needs a 32-byte key");
  }
  CipherPtr cipher(EVP_CIPHER_fetch(nullptr, "AES-128-SIV", nullptr));
  if (!cipher) return Status::Unimplemented("this OpenSSL has no AES-128-SIV");
  auto keyed = std::make_shared<Keyed>();
  keyed->encrypt.reset(EVP_CIPHER_CTX_new());
  keyed->decrypt.reset(EVP_CIPHER_CTX_new());
  if (!keyed->encrypt || !keyed->decrypt ||
      EVP_EncryptInit_ex2(keyed->encrypt.get(), cipher.get(), key.data(), nullptr, nullptr) != 1 ||
      EVP_DecryptInit_ex2(keyed->decrypt.get(), cipher.get(), key.data(), nullptr, nullptr) != 1) {
    return Status::Internal("AES-SIV key setup failed");
  }
  return AesSiv(std::move(keyed));
}

StatusOr<Bytes> AesSiv::Seal(ByteView plaintext, ByteView ad) const {
  if (plaintext.empty() || plaintext.size() > INT_MAX || ad.size() > INT_MAX) {
    return Status::InvalidArgument("AES-SIV plaintext must be 1 byte to 2 GiB");
  }
  CtxPtr ctx = keyed_->CopyOf(keyed_->encrypt);
  if (!ctx) return Status::Internal("AES-SIV setup failed");
  Bytes out(kTagSizeInBytes + plaintext.size());
  int len = 0;
  // SIV processes associated data and plaintext in one pass each; an
  // Update with a NULL output is one AD component.
  bool ok = EVP_EncryptUpdate(ctx.get(), nullptr, &len, ad.data(), static_cast<int>(ad.size())) == 1 &&
            EVP_EncryptUpdate(ctx.get(), out.data() + kTagSizeInBytes, &len, plaintext.data(),
                              static_cast<int>(plaintext.size())) == 1 &&
            EVP_EncryptFinal_ex(ctx.get(), out.data() + kTagSizeInBytes + plaintext.size(), &len) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_GET_TAG, kTagSizeInBytes, out.data()) == 1;
  if (!ok) return Status::Internal("AES-SIV encryption failed");
  return out;
}

StatusOr<Bytes> AesSiv::Open(ByteView sealed, ByteView ad) const {
  if (sealed.size() <= kTagSizeInBytes || sealed.size() > INT_MAX || ad.size() > INT_MAX) {
    return Status::Corruption("AES-SIV input has the wrong size");
  }
  CtxPtr ctx = keyed_->CopyOf(keyed_->decrypt);
  if (!ctx) return Status::Internal("AES-SIV setup failed");
  const size_t n = sealed.size() - kTagSizeInBytes;
  Bytes out(n);
  int len = 0;
  bool ok = EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_AEAD_SET_TAG, kTagSizeInBytes,
                                const_cast<uint8_t*>(sealed.data())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), nullptr, &len, ad.data(), static_cast<int>(ad.size())) == 1 &&
            EVP_DecryptUpdate(ctx.get(), out.data(), &len, sealed.data() + kTagSizeInBytes,
                              static_cast<int>(n)) == 1 &&
            EVP_DecryptFinal_ex(ctx.get(), out.data() + n, &len) == 1;
  if (!ok) {
    Cleanse(out);
    return Status::Corruption("AES-SIV authentication failed");
  }
  return out;
}

}  // namespace envelope::crypto
