// Standard base64 (RFC 4648 §4, with padding), as the AWS JSON protocol
// uses for blobs. Decoding is strict: wrong characters, wrong padding or a
// wrong length fail instead of being skipped.
#ifndef ENVELOPE_CORE_BASE_BASE64_H_
#define ENVELOPE_CORE_BASE_BASE64_H_

#include <string>
#include <string_view>

#include "core/base/coding.h"

namespace envelope {

std::string Base64Encode(ByteView data);
// Returns false on malformed input; `out` is unspecified then.
bool Base64Decode(std::string_view text, Bytes* out);

}  // namespace envelope

#endif  // ENVELOPE_CORE_BASE_BASE64_H_
