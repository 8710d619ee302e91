#include "core/crypto/aes_gcm.h"

#include <gtest/gtest.h>

#include "tests/unit/test_hex.h"

#include <set>
#include <string>

namespace envelope::crypto {
namespace {

using testing::Hex;

// McGrew & Viega, "The Galois/Counter Mode of Operation", test case 16
// (AES-256, 96-bit IV, with AAD).
TEST(Aes256GcmTest, KnownAnswerGcmSpecCase16) {
  Bytes key = Hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308");
  Bytes iv = Hex("cafebabefacedbaddecaf888");
  Bytes aad = Hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
  Bytes pt = Hex(
      "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72"
      "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39");
  std::string want =
      "cafebabefacedbaddecaf888"
      "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa"
      "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662"
      "76fc6ece0f4e1768cddf8853bb2d551b";
  auto aead = Aes256Gcm::New(key);
  ASSERT_TRUE(aead.ok());
  Bytes out(pt.size() + Aes256Gcm::kOverheadInBytes);
  ASSERT_TRUE(aead->SealWithNonceForTesting(iv, pt, aad, out).ok());
  EXPECT_EQ(HexEncode(out), want);
  Bytes back(pt.size());
  ASSERT_TRUE(aead->Open(out, aad, back).ok());
  EXPECT_EQ(back, pt);
}

TEST(Aes256GcmTest, RoundTripAndFreshNonces) {
  Bytes key(32, 7);
  auto aead = Aes256Gcm::New(key);
  ASSERT_TRUE(aead.ok());
  Bytes pt = {'h', 'e', 'l', 'l', 'o'};
  std::set<std::string> nonces;
  for (int i = 0; i < 100; ++i) {
    Bytes out(pt.size() + Aes256Gcm::kOverheadInBytes);
    ASSERT_TRUE(aead->Seal(pt, AsBytes("ad"), out).ok());
    nonces.insert(HexEncode(ByteView(out.data(), Aes256Gcm::kNonceSizeInBytes)));
    Bytes back(pt.size());
    ASSERT_TRUE(aead->Open(out, AsBytes("ad"), back).ok());
    EXPECT_EQ(back, pt);
  }
  EXPECT_EQ(nonces.size(), 100u);
}

TEST(Aes256GcmTest, CloneHasTheSameKeyAndItsOwnState) {
  Bytes key(32, 7);
  auto aead = Aes256Gcm::New(key);
  ASSERT_TRUE(aead.ok());
  auto clone = aead->Clone();
  ASSERT_TRUE(clone.ok());
  Bytes pt = {'h', 'i'};
  Bytes sealed(pt.size() + Aes256Gcm::kOverheadInBytes);
  ASSERT_TRUE(aead->Seal(pt, AsBytes("ad"), sealed).ok());
  Bytes back(pt.size());
  ASSERT_TRUE(clone->Open(sealed, AsBytes("ad"), back).ok());
  EXPECT_EQ(back, pt);
  ASSERT_TRUE(clone->Seal(pt, AsBytes("ad"), sealed).ok());
  ASSERT_TRUE(aead->Open(sealed, AsBytes("ad"), back).ok());
  EXPECT_EQ(back, pt);
  // A different key does not open it.
  auto other = Aes256Gcm::New(Bytes(32, 8));
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->Open(sealed, AsBytes("ad"), back).ok());
}

TEST(Aes256GcmTest, EmptyPlaintext) {
  auto aead = Aes256Gcm::New(Bytes(32, 1));
  ASSERT_TRUE(aead.ok());
  Bytes out(Aes256Gcm::kOverheadInBytes);
  ASSERT_TRUE(aead->Seal(ByteView(), AsBytes("x"), out).ok());
  ASSERT_TRUE(aead->Open(out, AsBytes("x"), MutableByteView()).ok());
  EXPECT_FALSE(aead->Open(out, AsBytes("y"), MutableByteView()).ok());
}

TEST(Aes256GcmTest, EveryFlippedByteFailsAndWipesOutput) {
  auto aead = Aes256Gcm::New(Bytes(32, 9));
  ASSERT_TRUE(aead.ok());
  Bytes pt(40, 0x5a);
  Bytes sealed(pt.size() + Aes256Gcm::kOverheadInBytes);
  ASSERT_TRUE(aead->Seal(pt, AsBytes("aad"), sealed).ok());
  for (size_t i = 0; i < sealed.size(); ++i) {
    Bytes bad = sealed;
    bad[i] ^= 0x01;
    Bytes out(pt.size(), 0xee);
    Status s = aead->Open(bad, AsBytes("aad"), out);
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << "byte " << i;
    for (uint8_t b : out) ASSERT_EQ(b, 0) << "unauthenticated output at " << i;
  }
}

TEST(Aes256GcmTest, WrongAadFails) {
  auto aead = Aes256Gcm::New(Bytes(32, 3));
  ASSERT_TRUE(aead.ok());
  Bytes pt(10, 1);
  Bytes sealed(pt.size() + Aes256Gcm::kOverheadInBytes);
  ASSERT_TRUE(aead->Seal(pt, AsBytes("a"), sealed).ok());
  Bytes out(pt.size());
  EXPECT_EQ(aead->Open(sealed, AsBytes("b"), out).code(), StatusCode::kCorruption);
  EXPECT_EQ(aead->Open(sealed, ByteView(), out).code(), StatusCode::kCorruption);
}

TEST(Aes256GcmTest, RejectsWrongKeySize) {
  EXPECT_EQ(Aes256Gcm::New(Bytes(16)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Aes256Gcm::New(Bytes(33)).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(Aes256Gcm::New(Bytes()).status().code(), StatusCode::kInvalidArgument);
}

TEST(Aes256GcmTest, RejectsWrongBufferSizes) {
  auto aead = Aes256Gcm::New(Bytes(32));
  ASSERT_TRUE(aead.ok());
  Bytes pt(8);
  Bytes small(pt.size() + Aes256Gcm::kOverheadInBytes - 1);
  EXPECT_EQ(aead->Seal(pt, ByteView(), small).code(), StatusCode::kInvalidArgument);
  Bytes tiny(Aes256Gcm::kOverheadInBytes - 1);
  EXPECT_EQ(aead->Open(tiny, ByteView(), MutableByteView()).code(),
            StatusCode::kInvalidArgument);
  Bytes bad_nonce(11);
  Bytes out(pt.size() + Aes256Gcm::kOverheadInBytes);
  EXPECT_EQ(aead->SealWithNonceForTesting(bad_nonce, pt, ByteView(), out).code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace envelope::crypto
