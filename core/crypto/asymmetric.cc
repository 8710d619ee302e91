#include "core/crypto/asymmetric.h"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <memory>

#include "core/crypto/openssl_ptr.h"

namespace envelope::crypto {

namespace {

using Pkey = PkeyPtr;
using Ctx = PkeyCtxPtr;
using Md = MdPtr;

const char* HashName(Hash h) {
  switch (h) {
    case Hash::kSha1: return "SHA1";
    case Hash::kSha224: return "SHA224";
    case Hash::kSha256: return "SHA256";
    case Hash::kSha384: return "SHA384";
    case Hash::kSha512: return "SHA512";
  }
  return "SHA256";
}

StatusOr<Md> FetchMd(Hash h) {
  Md md(EVP_MD_fetch(nullptr, HashName(h), nullptr));
  if (!md) return Status::Internal(std::string("OpenSSL has no ") + HashName(h));
  return md;
}

Status OpenSslError(const char* what) { return Status::Internal(std::string("OpenSSL: ") + what); }

StatusOr<Pkey> LoadPrivate(const SecretBytes& der) {
  const unsigned char* p = der.data();
  Pkey key(d2i_AutoPrivateKey(nullptr, &p, static_cast<long>(der.size())));
  if (!key) return Status::Corruption("the private key material does not parse");
  return key;
}

StatusOr<Pkey> LoadPublic(ByteView der) {
  const unsigned char* p = der.data();
  Pkey key(d2i_PUBKEY(nullptr, &p, static_cast<long>(der.size())));
  if (!key || p != der.data() + der.size()) {
    return Status::InvalidArgument("the public key is not DER SubjectPublicKeyInfo");
  }
  return key;
}

Status SetSignatureParams(EVP_PKEY_CTX* ctx, SignaturePadding padding, const EVP_MD* md) {
  if (padding != SignaturePadding::kEcdsa) {
    const int pad = padding == SignaturePadding::kRsaPss ? RSA_PKCS1_PSS_PADDING : RSA_PKCS1_PADDING;
    if (EVP_PKEY_CTX_set_rsa_padding(ctx, pad) <= 0) return OpenSslError("RSA padding");
    if (padding == SignaturePadding::kRsaPss &&
        (EVP_PKEY_CTX_set_rsa_pss_saltlen(ctx, RSA_PSS_SALTLEN_DIGEST) <= 0 ||
         EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) <= 0)) {
      return OpenSslError("PSS parameters");
    }
  }
  if (EVP_PKEY_CTX_set_signature_md(ctx, md) <= 0) return OpenSslError("signature digest");
  return Status::Ok();
}

Status SetOaepParams(EVP_PKEY_CTX* ctx, const EVP_MD* md) {
  if (EVP_PKEY_CTX_set_rsa_padding(ctx, RSA_PKCS1_OAEP_PADDING) <= 0 ||
      EVP_PKEY_CTX_set_rsa_oaep_md(ctx, md) <= 0 || EVP_PKEY_CTX_set_rsa_mgf1_md(ctx, md) <= 0) {
    return OpenSslError("OAEP parameters");
  }
  return Status::Ok();
}

bool IsRsa(EVP_PKEY* key) { return EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA; }

// A context ready to sign (or verify) `digest` with `key`: the digest's
// length and the padding's fit to the key checked, the parameters set.
StatusOr<Ctx> SignatureContext(EVP_PKEY* key, SignaturePadding padding, Hash hash, ByteView digest,
                               bool sign) {
  if (digest.size() != HashSize(hash)) return Status::InvalidArgument("digest of the wrong length");
  if (IsRsa(key) == (padding == SignaturePadding::kEcdsa)) {
    return Status::InvalidArgument("signing algorithm does not fit the key");
  }
  ENVELOPE_ASSIGN_OR_RETURN(Md md, FetchMd(hash));
  Ctx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key, nullptr));
  if (!ctx || (sign ? EVP_PKEY_sign_init(ctx.get()) : EVP_PKEY_verify_init(ctx.get())) <= 0) {
    return OpenSslError(sign ? "sign init" : "verify init");
  }
  ENVELOPE_RETURN_IF_ERROR(SetSignatureParams(ctx.get(), padding, md.get()));
  return ctx;
}

}  // namespace

size_t HashSize(Hash h) {
  switch (h) {
    case Hash::kSha1: return 20;
    case Hash::kSha224: return 28;
    case Hash::kSha256: return 32;
    case Hash::kSha384: return 48;
    case Hash::kSha512: return 64;
  }
  return 32;
}

Bytes HashOf(Hash h, ByteView data) {
  Bytes out(HashSize(h));
  unsigned int len = 0;
  auto md = FetchMd(h);
  if (!md.ok() || EVP_Digest(data.data(), data.size(), out.data(), &len, md->get(), nullptr) != 1 ||
      len != out.size()) {
    std::abort();  // hashing memory cannot fail short of a broken OpenSSL
  }
  return out;
}

StatusOr<SecretBytes> GenerateKeyPair(KeyPairKind kind) {
  Pkey key;
  switch (kind) {
    case KeyPairKind::kRsa2048: key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})); break;
    case KeyPairKind::kRsa3072: key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{3072})); break;
    case KeyPairKind::kRsa4096: key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{4096})); break;
    case KeyPairKind::kEcP256: key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256")); break;
    case KeyPairKind::kEcP384: key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-384")); break;
    case KeyPairKind::kEcP521: key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-521")); break;
    case KeyPairKind::kEcSecp256k1:
      key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "secp256k1"));
      break;
  }
  if (!key) return OpenSslError("key pair generation");
  Pkcs8Ptr p8(EVP_PKEY2PKCS8(key.get()));
  if (!p8) return OpenSslError("PKCS#8 encoding");
  const int len = i2d_PKCS8_PRIV_KEY_INFO(p8.get(), nullptr);
  if (len <= 0) return OpenSslError("PKCS#8 encoding");
  ENVELOPE_ASSIGN_OR_RETURN(SecretBytes der, SecretBytes::Zeroed(static_cast<size_t>(len)));
  unsigned char* p = der.data();
  if (i2d_PKCS8_PRIV_KEY_INFO(p8.get(), &p) != len) return OpenSslError("PKCS#8 encoding");
  return der;
}

StatusOr<Bytes> PublicKeyOf(const SecretBytes& private_der) {
  ENVELOPE_ASSIGN_OR_RETURN(Pkey key, LoadPrivate(private_der));
  const int len = i2d_PUBKEY(key.get(), nullptr);
  if (len <= 0) return OpenSslError("public key encoding");
  Bytes out(static_cast<size_t>(len));
  unsigned char* p = out.data();
  if (i2d_PUBKEY(key.get(), &p) != len) return OpenSslError("public key encoding");
  return out;
}

StatusOr<Bytes> SignDigest(const SecretBytes& private_der, SignaturePadding padding, Hash hash,
                           ByteView digest) {
  ENVELOPE_ASSIGN_OR_RETURN(Pkey key, LoadPrivate(private_der));
  ENVELOPE_ASSIGN_OR_RETURN(Ctx ctx, SignatureContext(key.get(), padding, hash, digest, true));
  size_t len = 0;
  if (EVP_PKEY_sign(ctx.get(), nullptr, &len, digest.data(), digest.size()) <= 0) {
    return OpenSslError("sign");
  }
  Bytes sig(len);
  if (EVP_PKEY_sign(ctx.get(), sig.data(), &len, digest.data(), digest.size()) <= 0) {
    return OpenSslError("sign");
  }
  sig.resize(len);
  return sig;
}

StatusOr<bool> VerifyDigest(ByteView public_der, SignaturePadding padding, Hash hash,
                            ByteView digest, ByteView signature) {
  ENVELOPE_ASSIGN_OR_RETURN(Pkey key, LoadPublic(public_der));
  ENVELOPE_ASSIGN_OR_RETURN(Ctx ctx, SignatureContext(key.get(), padding, hash, digest, false));
  return EVP_PKEY_verify(ctx.get(), signature.data(), signature.size(), digest.data(),
                         digest.size()) == 1;
}

StatusOr<Bytes> RsaOaepEncrypt(ByteView public_der, Hash hash, ByteView plaintext) {
  ENVELOPE_ASSIGN_OR_RETURN(Pkey key, LoadPublic(public_der));
  if (!IsRsa(key.get())) return Status::InvalidArgument("RSA-OAEP needs an RSA key");
  ENVELOPE_ASSIGN_OR_RETURN(Md md, FetchMd(hash));
  Ctx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!ctx || EVP_PKEY_encrypt_init(ctx.get()) <= 0) return OpenSslError("encrypt init");
  ENVELOPE_RETURN_IF_ERROR(SetOaepParams(ctx.get(), md.get()));
  size_t len = 0;
  if (EVP_PKEY_encrypt(ctx.get(), nullptr, &len, plaintext.data(), plaintext.size()) <= 0) {
    return OpenSslError("encrypt");
  }
  Bytes out(len);
  if (EVP_PKEY_encrypt(ctx.get(), out.data(), &len, plaintext.data(), plaintext.size()) <= 0) {
    return Status::InvalidArgument("the plaintext is too long for this key and algorithm");
  }
  out.resize(len);
  return out;
}

StatusOr<SecretBytes> RsaOaepDecrypt(const SecretBytes& private_der, Hash hash,
                                     ByteView ciphertext) {
  ENVELOPE_ASSIGN_OR_RETURN(Pkey key, LoadPrivate(private_der));
  if (!IsRsa(key.get())) return Status::InvalidArgument("RSA-OAEP needs an RSA key");
  ENVELOPE_ASSIGN_OR_RETURN(Md md, FetchMd(hash));
  Ctx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!ctx || EVP_PKEY_decrypt_init(ctx.get()) <= 0) return OpenSslError("decrypt init");
  ENVELOPE_RETURN_IF_ERROR(SetOaepParams(ctx.get(), md.get()));
  size_t len = 0;
  if (EVP_PKEY_decrypt(ctx.get(), nullptr, &len, ciphertext.data(), ciphertext.size()) <= 0) {
    return Status::Corruption("the ciphertext does not decrypt");
  }
  ENVELOPE_ASSIGN_OR_RETURN(SecretBytes out, SecretBytes::Zeroed(len));
  if (EVP_PKEY_decrypt(ctx.get(), out.data(), &len, ciphertext.data(), ciphertext.size()) <= 0) {
    return Status::Corruption("the ciphertext does not decrypt");
  }
  return SecretBytes::CopyOf(out.view().first(len));
}

StatusOr<size_t> RsaOaepMaxPlaintext(ByteView public_der, Hash hash) {
  ENVELOPE_ASSIGN_OR_RETURN(Pkey key, LoadPublic(public_der));
  if (!IsRsa(key.get())) return Status::InvalidArgument("RSA-OAEP needs an RSA key");
  const size_t bytes = static_cast<size_t>(EVP_PKEY_get_size(key.get()));
  return bytes - 2 * HashSize(hash) - 2;
}

StatusOr<SecretBytes> EcdhSharedSecret(const SecretBytes& private_der, ByteView peer_public_der) {
  ENVELOPE_ASSIGN_OR_RETURN(Pkey key, LoadPrivate(private_der));
  ENVELOPE_ASSIGN_OR_RETURN(Pkey peer, LoadPublic(peer_public_der));
  if (IsRsa(key.get()) || EVP_PKEY_get_base_id(peer.get()) != EVP_PKEY_EC) {
    return Status::InvalidArgument("ECDH needs two EC keys");
  }
  Ctx ctx(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!ctx || EVP_PKEY_derive_init(ctx.get()) <= 0) return OpenSslError("derive init");
  if (EVP_PKEY_derive_set_peer(ctx.get(), peer.get()) <= 0) {
    return Status::InvalidArgument("the public key is not on this key's curve");
  }
  size_t len = 0;
  if (EVP_PKEY_derive(ctx.get(), nullptr, &len) <= 0) return OpenSslError("derive");
  ENVELOPE_ASSIGN_OR_RETURN(SecretBytes out, SecretBytes::Zeroed(len));
  if (EVP_PKEY_derive(ctx.get(), out.data(), &len) <= 0) return OpenSslError("derive");
  return SecretBytes::CopyOf(out.view().first(len));
}

StatusOr<Bytes> HmacSha2(Hash hash, const SecretBytes& key, ByteView data) {
  if (hash == Hash::kSha1) return Status::InvalidArgument("HMAC keys use SHA-2");
  MacPtr mac(EVP_MAC_fetch(nullptr, "HMAC", nullptr));
  MacCtxPtr ctx(mac ? EVP_MAC_CTX_new(mac.get()) : nullptr);
  if (!ctx) return OpenSslError("HMAC");
  std::string digest = HashName(hash);
  const OSSL_PARAM params[] = {
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest.data(), 0),
      OSSL_PARAM_construct_end()};
  static const unsigned char kEmpty = 0;
  if (EVP_MAC_init(ctx.get(), key.empty() ? &kEmpty : key.data(), key.size(), params) != 1 ||
      EVP_MAC_update(ctx.get(), data.empty() ? &kEmpty : data.data(), data.size()) != 1) {
    return OpenSslError("HMAC");
  }
  Bytes out(HashSize(hash));
  size_t len = 0;
  if (EVP_MAC_final(ctx.get(), out.data(), &len, out.size()) != 1 || len != out.size()) {
    return OpenSslError("HMAC");
  }
  return out;
}

}  // namespace envelope::crypto
