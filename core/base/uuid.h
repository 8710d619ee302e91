// The one UUID text form of the project: 16 bytes as lower-case
// 8-4-4-4-12 hex (RFC 9562), as key ids, volume ids and blob labels are
// written.
//
// Thread safety: pure functions.
#ifndef ENVELOPE_CORE_BASE_UUID_H_
#define ENVELOPE_CORE_BASE_UUID_H_

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "core/base/coding.h"

namespace envelope {

// REQUIRES: bytes.size() == 16
std::string FormatUuid(ByteView bytes);
// Sets the version (4) and variant bits of 16 random bytes, then formats
// them: a random UUID from the caller's randomness.
std::string FormatRandomUuid(std::array<uint8_t, 16> random);
// True for 8-4-4-4-12 hex digits of either case.
bool IsUuid(std::string_view text);

}  // namespace envelope

#endif  // ENVELOPE_CORE_BASE_UUID_H_
