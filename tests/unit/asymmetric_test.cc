// Asymmetric keys and HMAC-SHA-2 (core/crypto/asymmetric.h): RFC 4231
// vectors for HMAC, and for every key kind: sign and verify both message
// forms, a wrong signature or digest refused, RSA-OAEP round trips and
// limits, ECDH agreement. (The integration tests check signatures with the
// openssl command as well.)
#include "core/crypto/asymmetric.h"

#include <gtest/gtest.h>

#include "tests/unit/test_hex.h"

namespace envelope::crypto {
namespace {

using envelope::testing::Hex;

TEST(AsymmetricTest, HmacSha2MatchesRfc4231) {
  auto key = SecretBytes::CopyOf(AsBytes("Jefe"));
  ASSERT_TRUE(key.ok());
  const Bytes data = Bytes(AsBytes("what do ya want for nothing?").begin(),
                           AsBytes("what do ya want for nothing?").end());
  struct Case {
    Hash hash;
    const char* mac;
  } cases[] = {
      {Hash::kSha224, "a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44"},
      {Hash::kSha256, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"},
      {Hash::kSha384,
       "af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649"},
      {Hash::kSha512,
       "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737"},
  };
  for (const Case& c : cases) {
    auto mac = HmacSha2(c.hash, *key, data);
    ASSERT_TRUE(mac.ok());
    EXPECT_EQ(*mac, Hex(c.mac));
  }
}

struct KindCase {
  KeyPairKind kind;
  SignaturePadding padding;
};

class KeyPairTest : public ::testing::TestWithParam<KindCase> {};

TEST_P(KeyPairTest, SignsAndVerifies) {
  auto key = GenerateKeyPair(GetParam().kind);
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_TRUE(key->in_secure_heap());
  auto pub = PublicKeyOf(*key);
  ASSERT_TRUE(pub.ok());
  for (Hash h : {Hash::kSha256, Hash::kSha384, Hash::kSha512}) {
    const Bytes digest = HashOf(h, AsBytes("message"));
    auto sig = SignDigest(*key, GetParam().padding, h, digest);
    ASSERT_TRUE(sig.ok()) << sig.status().ToString();
    EXPECT_TRUE(*VerifyDigest(*pub, GetParam().padding, h, digest, *sig));
    Bytes other = HashOf(h, AsBytes("massage"));
    EXPECT_FALSE(*VerifyDigest(*pub, GetParam().padding, h, other, *sig));
    Bytes bad = *sig;
    bad[bad.size() / 2] ^= 1;
    EXPECT_FALSE(*VerifyDigest(*pub, GetParam().padding, h, digest, bad));
    EXPECT_FALSE(SignDigest(*key, GetParam().padding, h, Bytes(5)).ok());
  }
  // The other family's padding does not fit.
  const SignaturePadding wrong = GetParam().padding == SignaturePadding::kEcdsa
                                     ? SignaturePadding::kRsaPss
                                     : SignaturePadding::kEcdsa;
  EXPECT_FALSE(SignDigest(*key, wrong, Hash::kSha256, HashOf(Hash::kSha256, {})).ok());
}

INSTANTIATE_TEST_SUITE_P(
    Kinds, KeyPairTest,
    ::testing::Values(KindCase{KeyPairKind::kRsa2048, SignaturePadding::kRsaPss},
                      KindCase{KeyPairKind::kRsa2048, SignaturePadding::kRsaPkcs1},
                      KindCase{KeyPairKind::kEcP256, SignaturePadding::kEcdsa},
                      KindCase{KeyPairKind::kEcP384, SignaturePadding::kEcdsa},
                      KindCase{KeyPairKind::kEcP521, SignaturePadding::kEcdsa},
                      KindCase{KeyPairKind::kEcSecp256k1, SignaturePadding::kEcdsa}));

TEST(AsymmetricTest, RsaOaepRoundTripsAndRefusesTooLongOrDamaged) {
  auto key = GenerateKeyPair(KeyPairKind::kRsa2048);
  ASSERT_TRUE(key.ok());
  auto pub = PublicKeyOf(*key);
  for (Hash h : {Hash::kSha1, Hash::kSha256}) {
    auto max = RsaOaepMaxPlaintext(*pub, h);
    ASSERT_TRUE(max.ok());
    EXPECT_EQ(*max, h == Hash::kSha1 ? 214u : 190u);  // AWS's figures for RSA_2048
    Bytes pt(*max, 0x5a);
    auto ct = RsaOaepEncrypt(*pub, h, pt);
    ASSERT_TRUE(ct.ok());
    auto back = RsaOaepDecrypt(*key, h, *ct);
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(Bytes(back->view().begin(), back->view().end()), pt);
    EXPECT_FALSE(RsaOaepEncrypt(*pub, h, Bytes(*max + 1)).ok());
    Bytes bad = *ct;
    bad[10] ^= 1;
    EXPECT_EQ(RsaOaepDecrypt(*key, h, bad).status().code(), StatusCode::kCorruption);
  }
}

TEST(AsymmetricTest, EcdhAgrees) {
  auto a = GenerateKeyPair(KeyPairKind::kEcP256);
  auto b = GenerateKeyPair(KeyPairKind::kEcP256);
  auto other_curve = GenerateKeyPair(KeyPairKind::kEcP384);
  ASSERT_TRUE(a.ok() && b.ok() && other_curve.ok());
  auto ab = EcdhSharedSecret(*a, *PublicKeyOf(*b));
  auto ba = EcdhSharedSecret(*b, *PublicKeyOf(*a));
  ASSERT_TRUE(ab.ok() && ba.ok());
  EXPECT_EQ(ab->size(), 32u);
  EXPECT_TRUE(std::equal(ab->view().begin(), ab->view().end(), ba->view().begin()));
  EXPECT_FALSE(EcdhSharedSecret(*a, *PublicKeyOf(*other_curve)).ok());
  EXPECT_FALSE(EcdhSharedSecret(*a, AsBytes("not a key")).ok());
}

}  // namespace
}  // namespace envelope::crypto
