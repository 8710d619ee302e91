// Fixed-width little-endian encoding, as in leveldb's util/coding.h.
// Every on-disk and wire integer goes through these: byte order is explicit
// and no struct is ever memcpy'd to disk.
#ifndef ENVELOPE_CORE_BASE_CODING_H_
#define ENVELOPE_CORE_BASE_CODING_H_

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <vector>

namespace envelope {

using Bytes = std::vector<uint8_t>;
using ByteView = std::span<const uint8_t>;
using MutableByteView = std::span<uint8_t>;

inline void EncodeFixed16(uint8_t* dst, uint16_t v) {
  dst[0] = static_cast<uint8_t>(v);
  dst[1] = static_cast<uint8_t>(v >> 8);
}
inline void EncodeFixed32(uint8_t* dst, uint32_t v) {
  for (int i = 0; i < 4; ++i) dst[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline void EncodeFixed64(uint8_t* dst, uint64_t v) {
  for (int i = 0; i < 8; ++i) dst[i] = static_cast<uint8_t>(v >> (8 * i));
}
inline uint16_t DecodeFixed16(const uint8_t* src) {
  return static_cast<uint16_t>(src[0] | (src[1] << 8));
}
inline uint32_t DecodeFixed32(const uint8_t* src) {
  uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | src[i];
  return v;
}
inline uint64_t DecodeFixed64(const uint8_t* src) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | src[i];
  return v;
}

inline ByteView AsBytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// The concatenation of `parts`, sized once. (Also sidesteps a GCC 12 false
// -Warray-bounds on vectors grown from string_views.)
Bytes Concat(std::initializer_list<ByteView> parts);

// Lower-case hex, for ids and test vectors (never for key material).
std::string HexEncode(ByteView bytes);
// REQUIRES: `hex` has even length and only hex digits; returns false if not.
bool HexDecode(std::string_view hex, Bytes* out);

}  // namespace envelope

#endif  // ENVELOPE_CORE_BASE_CODING_H_
