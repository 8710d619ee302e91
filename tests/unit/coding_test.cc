#include "core/base/coding.h"

#include <gtest/gtest.h>

namespace envelope {
namespace {

TEST(CodingTest, FixedWidthIsLittleEndian) {
  uint8_t buf[8];
  EncodeFixed16(buf, 0x0102);
  EXPECT_EQ(buf[0], 0x02);
  EXPECT_EQ(buf[1], 0x01);
  EncodeFixed32(buf, 0x01020304);
  EXPECT_EQ(HexEncode(ByteView(buf, 4)), "04030201");
  EncodeFixed64(buf, 0x0102030405060708ull);
  EXPECT_EQ(HexEncode(ByteView(buf, 8)), "0807060504030201");
}

TEST(CodingTest, RoundTrips) {
  uint8_t buf[8];
  for (uint64_t v : {0ull, 1ull, 0xffull, 0xdeadbeefcafef00dull, ~0ull}) {
    EncodeFixed64(buf, v);
    EXPECT_EQ(DecodeFixed64(buf), v);
    EncodeFixed32(buf, static_cast<uint32_t>(v));
    EXPECT_EQ(DecodeFixed32(buf), static_cast<uint32_t>(v));
    EncodeFixed16(buf, static_cast<uint16_t>(v));
    EXPECT_EQ(DecodeFixed16(buf), static_cast<uint16_t>(v));
  }
}

TEST(CodingTest, Hex) {
  Bytes out;
  ASSERT_TRUE(HexDecode("00ff10Ab", &out));
  EXPECT_EQ(out, (Bytes{0x00, 0xff, 0x10, 0xab}));
  EXPECT_EQ(HexEncode(out), "00ff10ab");
  EXPECT_FALSE(HexDecode("abc", &out));
  EXPECT_FALSE(HexDecode("zz", &out));
}

}  // namespace
}  // namespace envelope
