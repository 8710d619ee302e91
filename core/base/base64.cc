#include "core/base/base64.h"

namespace envelope {

namespace {
constexpr char kAlphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int Value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}
}  // namespace

std::string Base64Encode(ByteView data) {
  std::string out;
  out.reserve((data.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= data.size(); i += 3) {
    uint32_t v = (data[i] << 16) | (data[i + 1] << 8) | data[i + 2];
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  if (i + 1 == data.size()) {
    uint32_t v = data[i] << 16;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out += "==";
  } else if (i + 2 == data.size()) {
    uint32_t v = (data[i] << 16) | (data[i + 1] << 8);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back('=');
  }
  return out;
}

long Base64DecodedSize(std::string_view text) {
  if (text.size() % 4 != 0) return -1;
  size_t pad = 0;
  if (!text.empty() && text.back() == '=') pad = text[text.size() - 2] == '=' ? 2 : 1;
  return static_cast<long>(text.size() / 4 * 3 - pad);
}

bool Base64DecodeInto(std::string_view text, MutableByteView out) {
  const long size = Base64DecodedSize(text);
  if (size < 0 || out.size() != static_cast<size_t>(size)) return false;
  uint8_t* dst = out.data();
  for (size_t i = 0; i < text.size(); i += 4) {
    const bool last = i + 4 == text.size();
    int a = Value(text[i]), b = Value(text[i + 1]);
    if (a < 0 || b < 0) return false;
    int pad = 0;
    if (last && text[i + 3] == '=') pad = text[i + 2] == '=' ? 2 : 1;
    int c = pad == 2 ? 0 : Value(text[i + 2]);
    int d = pad >= 1 ? 0 : Value(text[i + 3]);
    if (c < 0 || d < 0) return false;
    uint32_t v = (a << 18) | (b << 12) | (c << 6) | d;
    // Unused low bits must be zero, so every byte string has one encoding.
    if ((pad == 2 && (v & 0xffff) != 0) || (pad == 1 && (v & 0xff) != 0)) return false;
    *dst++ = static_cast<uint8_t>(v >> 16);
    if (pad < 2) *dst++ = static_cast<uint8_t>(v >> 8);
    if (pad < 1) *dst++ = static_cast<uint8_t>(v);
  }
  return true;
}

bool Base64Decode(std::string_view text, Bytes* out) {
  const long size = Base64DecodedSize(text);
  if (size < 0) return false;
  out->resize(static_cast<size_t>(size));
  return Base64DecodeInto(text, *out);
}

}  // namespace envelope
