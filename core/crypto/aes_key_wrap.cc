#include "core/crypto/aes_key_wrap.h"

#include <openssl/evp.h>

#include <memory>

#include "core/crypto/openssl_ptr.h"

namespace envelope::crypto {

namespace {

// One pass of AES-256-WRAP-PAD; `out` must hold in.size() + 8 bytes.
StatusOr<size_t> Run(bool wrap, const SecretBytes& kek, ByteView in, uint8_t* out) {
  if (kek.size() != 32) return Status::InvalidArgument("AES key wrap needs a 256-bit key");
  CipherPtr cipher(EVP_CIPHER_fetch(nullptr, "AES-256-WRAP-PAD", nullptr));
  CipherCtxPtr ctx(EVP_CIPHER_CTX_new());
  if (!cipher || !ctx) return Status::Internal("OpenSSL: AES-256-WRAP-PAD is not available");
  EVP_CIPHER_CTX_set_flags(ctx.get(), EVP_CIPHER_CTX_FLAG_WRAP_ALLOW);
  if (EVP_CipherInit_ex2(ctx.get(), cipher.get(), kek.data(), nullptr, wrap ? 1 : 0, nullptr) !=
      1) {
    return Status::Internal("OpenSSL: AES key wrap init");
  }
  int n = 0, tail = 0;
  if (EVP_CipherUpdate(ctx.get(), out, &n, in.data(), static_cast<int>(in.size())) != 1 ||
      EVP_CipherFinal_ex(ctx.get(), out + n, &tail) != 1) {
    return wrap ? Status::Internal("OpenSSL: AES key wrap")
                : Status::Corruption("the wrapped key does not unwrap");
  }
  return static_cast<size_t>(n + tail);
}

}  // namespace

StatusOr<Bytes> AesKeyWrapPad(const SecretBytes& kek, ByteView plaintext) {
  if (plaintext.empty()) return Status::InvalidArgument("nothing to wrap");
  Bytes out(plaintext.size() + 16);
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, Run(true, kek, plaintext, out.data()));
  out.resize(n);
  return out;
}

StatusOr<SecretBytes> AesKeyUnwrapPad(const SecretBytes& kek, ByteView wrapped) {
  if (wrapped.size() < 16 || wrapped.size() % 8 != 0) {
    return Status::Corruption("the wrapped key is not a multiple of 8 bytes of at least 16");
  }
  ENVELOPE_ASSIGN_OR_RETURN(SecretBytes out, SecretBytes::Zeroed(wrapped.size() + 8));
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, Run(false, kek, wrapped, out.data()));
  return SecretBytes::CopyOf(out.view().first(n));
}

}  // namespace envelope::crypto
