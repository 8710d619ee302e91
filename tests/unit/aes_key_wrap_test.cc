// AES key wrap with padding (RFC 5649) under a 256-bit key. RFC 5649's own
// vectors use a 192-bit KEK; the known answer here is what `openssl enc
// -id-aes256-wrap-pad -iv A65959A6 -K <kek>` (the command AWS's import
// documentation uses) prints for this KEK and material. Plus round trips
// of other lengths and a damaged wrap refused.
#include "core/crypto/aes_key_wrap.h"

#include <gtest/gtest.h>

#include "tests/unit/test_hex.h"

namespace envelope::crypto {
namespace {

using envelope::testing::Hex;

TEST(AesKeyWrapTest, KnownAnswerAndRoundTrips) {
  auto kek = SecretBytes::CopyOf(
      Hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"));
  ASSERT_TRUE(kek.ok());
  const Bytes material = Hex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f");
  auto wrapped = AesKeyWrapPad(*kek, material);
  ASSERT_TRUE(wrapped.ok()) << wrapped.status().ToString();
  EXPECT_EQ(*wrapped, Hex("4a8029243027353b0694cf1bd8fc745bb0ce8a739b19b1960b12426d4c39cfeda926d103ab34e9f6"));
  auto back = AesKeyUnwrapPad(*kek, *wrapped);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(Bytes(back->view().begin(), back->view().end()), material);
  for (size_t n : {1u, 7u, 20u, 64u}) {
    Bytes pt(n, 0x42);
    auto w = AesKeyWrapPad(*kek, pt);
    ASSERT_TRUE(w.ok());
    auto b = AesKeyUnwrapPad(*kek, *w);
    ASSERT_TRUE(b.ok());
    EXPECT_EQ(Bytes(b->view().begin(), b->view().end()), pt);
  }
  Bytes damaged = *wrapped;
  damaged[3] ^= 1;
  EXPECT_EQ(AesKeyUnwrapPad(*kek, damaged).status().code(), StatusCode::kCorruption);
  EXPECT_FALSE(AesKeyUnwrapPad(*kek, Bytes(12)).ok());
}

}  // namespace
}  // namespace envelope::crypto
