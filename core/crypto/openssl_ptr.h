// Owning pointers for the OpenSSL objects core/crypto holds: one deleter
// template, each type freed by its own OpenSSL function. Internal to
// core/crypto, the one module that sees OpenSSL (keyservice's TLS code has
// its own, for the TLS types).
#ifndef ENVELOPE_CORE_CRYPTO_OPENSSL_PTR_H_
#define ENVELOPE_CORE_CRYPTO_OPENSSL_PTR_H_

#include <openssl/evp.h>
#include <openssl/x509.h>

#include <memory>

namespace envelope::crypto {

template <typename T, void (*Free)(T*)>
struct OpensslFree {
  void operator()(T* p) const { Free(p); }
};

using CipherPtr = std::unique_ptr<EVP_CIPHER, OpensslFree<EVP_CIPHER, EVP_CIPHER_free>>;
// EVP_CIPHER_CTX_free cleanses the context, key schedule included.
using CipherCtxPtr =
    std::unique_ptr<EVP_CIPHER_CTX, OpensslFree<EVP_CIPHER_CTX, EVP_CIPHER_CTX_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, OpensslFree<EVP_PKEY, EVP_PKEY_free>>;
using PkeyCtxPtr = std::unique_ptr<EVP_PKEY_CTX, OpensslFree<EVP_PKEY_CTX, EVP_PKEY_CTX_free>>;
using MdPtr = std::unique_ptr<EVP_MD, OpensslFree<EVP_MD, EVP_MD_free>>;
using MacPtr = std::unique_ptr<EVP_MAC, OpensslFree<EVP_MAC, EVP_MAC_free>>;
using MacCtxPtr = std::unique_ptr<EVP_MAC_CTX, OpensslFree<EVP_MAC_CTX, EVP_MAC_CTX_free>>;
using Pkcs8Ptr = std::unique_ptr<PKCS8_PRIV_KEY_INFO,
                                 OpensslFree<PKCS8_PRIV_KEY_INFO, PKCS8_PRIV_KEY_INFO_free>>;

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_OPENSSL_PTR_H_
