#include "core/crypto/hash.h"

#include <gtest/gtest.h>

#include "tests/unit/test_hex.h"

namespace envelope::crypto {
namespace {

using testing::Hex;

TEST(HashTest, Sha256Abc) {  // FIPS 180-2 example
  EXPECT_EQ(HexEncode(Sha256(AsBytes("abc"))),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(HashTest, Sha256HasherMatchesOneShot) {
  Sha256Hasher h;
  h.Update(AsBytes("a"));
  h.Update(AsBytes("bc"));
  EXPECT_EQ(h.Finish(), Sha256(AsBytes("abc")));
  h.Update(AsBytes("abc"));  // reset after Finish
  EXPECT_EQ(h.Finish(), Sha256(AsBytes("abc")));
}

TEST(HashTest, HmacSha256Rfc4231Case2) {
  EXPECT_EQ(HexEncode(HmacSha256(AsBytes("Jefe"),
                                 AsBytes("what do ya want for nothing?"))),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}

TEST(HashTest, HkdfRfc5869Case1) {
  Bytes ikm(22, 0x0b);
  Bytes salt = Hex("000102030405060708090a0b0c");
  Bytes info = Hex("f0f1f2f3f4f5f6f7f8f9");
  auto okm = HkdfSha256(ikm, salt,
                        std::string_view(reinterpret_cast<char*>(info.data()),
                                         info.size()),
                        42);
  ASSERT_TRUE(okm.ok());
  EXPECT_EQ(HexEncode(okm->view()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
            "34007208d5b887185865");
  EXPECT_TRUE(okm->in_secure_heap());
}

// RFC 5869 test case 3: no salt, no info.
TEST(HashTest, HkdfRfc5869Case3EmptySaltAndInfo) {
  Bytes ikm(22, 0x0b);
  auto okm = HkdfSha256(ikm, ByteView(), "", 42);
  ASSERT_TRUE(okm.ok()) << okm.status().ToString();
  EXPECT_EQ(HexEncode(okm->view()),
            "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d"
            "9d201395faa4b61a96c8");
}

// The same case in its two steps; the PRK is the RFC's.
TEST(HashTest, HkdfExtractThenExpandRfc5869Case1) {
  Bytes ikm(22, 0x0b);
  Bytes salt = Hex("000102030405060708090a0b0c");
  Bytes info = Hex("f0f1f2f3f4f5f6f7f8f9");
  auto prk = HkdfSha256Extract(ikm, salt);
  ASSERT_TRUE(prk.ok());
  EXPECT_TRUE(prk->in_secure_heap());
  EXPECT_EQ(HexEncode(prk->view()),
            "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5");
  auto okm = HkdfSha256Expand(
      prk->view(), std::string_view(reinterpret_cast<char*>(info.data()), info.size()), 42);
  ASSERT_TRUE(okm.ok());
  EXPECT_EQ(HexEncode(okm->view()),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf"
            "34007208d5b887185865");
  EXPECT_FALSE(HkdfSha256Expand(ByteView(prk->data(), 31), "x", 32).ok());
  EXPECT_FALSE(HkdfSha256Expand(prk->view(), "x", 0).ok());
}

TEST(HashTest, HkdfRejectsBadLengths) {
  Bytes ikm(32, 1);
  EXPECT_FALSE(HkdfSha256(ikm, ByteView(), "x", 0).ok());
  EXPECT_FALSE(HkdfSha256(ikm, ByteView(), "x", 255 * 32 + 1).ok());
}

TEST(HashTest, ConstantTimeEquals) {
  EXPECT_TRUE(ConstantTimeEquals(AsBytes("abc"), AsBytes("abc")));
  EXPECT_FALSE(ConstantTimeEquals(AsBytes("abc"), AsBytes("abd")));
  EXPECT_FALSE(ConstantTimeEquals(AsBytes("abc"), AsBytes("ab")));
  EXPECT_TRUE(ConstantTimeEquals(ByteView(), ByteView()));
}

}  // namespace
}  // namespace envelope::crypto
