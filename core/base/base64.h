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

// The decoded size of `text`, or -1 if its length or padding cannot be
// valid base64. Lets a caller decode into a buffer it chose (for secrets:
// the secure heap) with Base64DecodeInto.
long Base64DecodedSize(std::string_view text);
// REQUIRES: out.size() == Base64DecodedSize(text) >= 0.
// Returns false on malformed input; `out` is unspecified then.
bool Base64DecodeInto(std::string_view text, MutableByteView out);

}  // namespace envelope

#endif  // ENVELOPE_CORE_BASE_BASE64_H_
