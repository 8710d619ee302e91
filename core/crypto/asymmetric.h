// Asymmetric keys and HMAC-SHA-2 for the key service's non-symmetric KMS
// keys (docs/KEYSERVICE.md, "Asymmetric and HMAC keys"): RSA and EC key
// pairs, signatures, RSA-OAEP, ECDH, HMAC with SHA-224..512. OpenSSL 3's
// EVP interface underneath.
//
// A private key travels as PKCS#8 DER in SecretBytes, so it is stored and
// kept like any key material. OpenSSL's encoders and decoders use ordinary
// heap buffers for a moment while a key is generated or loaded (freed at
// once; docs/SECURITY.md notes it); the loaded key's private numbers live
// in OpenSSL's secure heap.
//
// Thread safety: free functions, no shared state.
#ifndef ENVELOPE_CORE_CRYPTO_ASYMMETRIC_H_
#define ENVELOPE_CORE_CRYPTO_ASYMMETRIC_H_

#include <string_view>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::crypto {

enum class KeyPairKind {
  kRsa2048, kRsa3072, kRsa4096,
  kEcP256, kEcP384, kEcP521, kEcSecp256k1,
};

enum class Hash { kSha1, kSha224, kSha256, kSha384, kSha512 };
size_t HashSize(Hash h);
// SHA-1 is accepted only for RSA-OAEP (RSAES_OAEP_SHA_1), as AWS.
Bytes HashOf(Hash h, ByteView data);

enum class SignaturePadding { kRsaPss, kRsaPkcs1, kEcdsa };

// A new key pair, its private key as PKCS#8 DER.
StatusOr<SecretBytes> GenerateKeyPair(KeyPairKind kind);
// The public half as DER SubjectPublicKeyInfo (what GetPublicKey answers).
StatusOr<Bytes> PublicKeyOf(const SecretBytes& private_der);

// Signs `digest` (HashSize(hash) bytes, already hashed). RSA-PSS uses MGF1
// with the same hash and a salt as long as the hash; ECDSA answers DER
// (X9.62 Ecdsa-Sig-Value), as AWS does.
StatusOr<Bytes> SignDigest(const SecretBytes& private_der, SignaturePadding padding, Hash hash,
                           ByteView digest);
// Whether `signature` is valid for `digest` under the public half of
// `private_der` (or a DER SubjectPublicKeyInfo `public_der`).
StatusOr<bool> VerifyDigest(ByteView public_der, SignaturePadding padding, Hash hash,
                            ByteView digest, ByteView signature);

// RSA-OAEP with MGF1 over the same hash (RSAES_OAEP_SHA_1 / _SHA_256).
StatusOr<Bytes> RsaOaepEncrypt(ByteView public_der, Hash hash, ByteView plaintext);
// Corruption if the ciphertext does not decrypt.
StatusOr<SecretBytes> RsaOaepDecrypt(const SecretBytes& private_der, Hash hash,
                                     ByteView ciphertext);
// The largest plaintext RsaOaepEncrypt takes for this key and hash.
StatusOr<size_t> RsaOaepMaxPlaintext(ByteView public_der, Hash hash);

// ECDH: the shared secret (the x coordinate) of our private key and the
// peer's public key (DER SubjectPublicKeyInfo, same curve).
StatusOr<SecretBytes> EcdhSharedSecret(const SecretBytes& private_der, ByteView peer_public_der);

// HMAC with SHA-224, -256, -384 or -512.
StatusOr<Bytes> HmacSha2(Hash hash, const SecretBytes& key, ByteView data);

}  // namespace envelope::crypto

#endif  // ENVELOPE_CORE_CRYPTO_ASYMMETRIC_H_
