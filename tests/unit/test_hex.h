// Hex literals for known-answer tests.
#ifndef ENVELOPE_TESTS_UNIT_TEST_HEX_H_
#define ENVELOPE_TESTS_UNIT_TEST_HEX_H_

#include <gtest/gtest.h>

#include <string_view>

#include "core/base/coding.h"

namespace envelope::testing {

// The bytes of a hex literal; a malformed literal fails the test.
inline Bytes Hex(std::string_view hex) {
  Bytes b;
  EXPECT_TRUE(HexDecode(hex, &b)) << hex;
  return b;
}

}  // namespace envelope::testing

#endif  // ENVELOPE_TESTS_UNIT_TEST_HEX_H_
