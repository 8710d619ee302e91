#include "core/crypto/aes_siv.h"

#include <gtest/gtest.h>

#include "tests/unit/test_hex.h"

namespace envelope::crypto {
namespace {

using testing::Hex;

// RFC 5297, appendix A.1 (deterministic authenticated encryption).
TEST(AesSivTest, Rfc5297A1) {
  auto siv = AesSiv::New(Hex("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"));
  ASSERT_TRUE(siv.ok()) << siv.status().ToString();
  Bytes ad = Hex("101112131415161718191a1b1c1d1e1f2021222324252627");
  Bytes pt = Hex("112233445566778899aabbccddee");
  auto out = siv->Seal(pt, ad);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(HexEncode(*out), "85632d07c6e8f37f950acd320a2ecc9340c02b9690c4dc04daef7f6afe5c");
  auto back = siv->Open(*out, ad);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(*back, pt);
}

TEST(AesSivTest, DeterministicAndBoundToAssociatedData) {
  auto siv = AesSiv::New(Bytes(32, 7));
  ASSERT_TRUE(siv.ok());
  auto a = siv->Seal(AsBytes("name.txt"), AsBytes("dir-1"));
  auto b = siv->Seal(AsBytes("name.txt"), AsBytes("dir-1"));
  auto c = siv->Seal(AsBytes("name.txt"), AsBytes("dir-2"));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok());
  EXPECT_EQ(*a, *b);
  EXPECT_NE(*a, *c);
  EXPECT_EQ(siv->Open(*a, AsBytes("dir-2")).status().code(), StatusCode::kCorruption);
  for (size_t i = 0; i < a->size(); ++i) {
    Bytes bad = *a;
    bad[i] ^= 1;
    EXPECT_FALSE(siv->Open(bad, AsBytes("dir-1")).ok()) << i;
  }
}

TEST(AesSivTest, RejectsWrongKeySize) {
  EXPECT_FALSE(AesSiv::New(Bytes(16)).ok());
  EXPECT_FALSE(AesSiv::New(Bytes(64)).ok());
}

}  // namespace
}  // namespace envelope::crypto

namespace envelope::crypto {
namespace {
// OpenSSL 3.0's AES-SIV refuses an empty plaintext, so the API says so
// instead of failing obscurely; callers with possibly empty values (xattr
// values) prefix a version byte (fs/volume.cc).
TEST(AesSivTest, EmptyPlaintextIsRefused) {
  auto siv = AesSiv::New(Bytes(32, 9));
  ASSERT_TRUE(siv.ok());
  EXPECT_EQ(siv->Seal(ByteView(), AsBytes("ad")).status().code(), StatusCode::kInvalidArgument);
}
}  // namespace
}  // namespace envelope::crypto
