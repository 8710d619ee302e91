// Fuzzes the name codec: the input as a backing name (Classify, DecodeName,
// DecodeSymlinkTarget, base64url) and as a plaintext name and symlink
// target (EncodeName, EncodeSymlinkTarget), under a fixed test name key and
// directory id. Invariants: encoding round-trips; a backing name that
// decodes is the one encoding of its plaintext (no second backing name can
// stand for the same file); a decoded name is a valid file name.
#include <string>

#include "core/format/name_codec.h"
#include "tests/fuzz/fuzz_util.h"

namespace envelope::format {
namespace {

const NameCodec& Codec() {
  static const NameCodec* codec = [] {
    auto c = NameCodec::New(fuzz::Secret(fuzz::kNameKey));
    FUZZ_CHECK(c.ok());
    return new NameCodec(std::move(*c));
  }();
  return *codec;
}

void Run(std::string_view in) {
  const NameCodec& codec = Codec();
  const DirId dir = fuzz::kDirId;
  (void)NameCodec::Classify(in);

  Bytes raw;
  if (Base64UrlDecode(in, &raw)) FUZZ_CHECK(Base64UrlEncode(raw) == in);

  // The input as what a directory listing of the cipherdir returns.
  auto name = codec.DecodeName(in, dir);
  if (name.ok()) {
    FUZZ_CHECK(!name->empty() && name->size() <= kMaxNameInBytes);
    FUZZ_CHECK(*name != "." && *name != "..");
    FUZZ_CHECK(name->find('/') == std::string::npos && name->find('\0') == std::string::npos);
    auto again = codec.EncodeName(*name, dir);
    FUZZ_CHECK(again.ok());
    FUZZ_CHECK((again->long_name_content.empty() ? again->backing_name
                                                 : again->long_name_content) == in);
  }
  auto target = codec.DecodeSymlinkTarget(in, dir);
  if (target.ok()) {
    auto again = codec.EncodeSymlinkTarget(*target, dir);
    FUZZ_CHECK(again.ok() && *again == in);
  }

  // The input as a name or target a user creates.
  auto encoded = codec.EncodeName(in, dir);
  if (encoded.ok()) {
    FUZZ_CHECK(in.size() <= kMaxNameInBytes);
    FUZZ_CHECK(encoded->backing_name.size() <= kMaxNameInBytes);
    const bool long_name = !encoded->long_name_content.empty();
    FUZZ_CHECK(long_name == (in.size() > kMaxShortNameInBytes));
    FUZZ_CHECK(NameCodec::Classify(encoded->backing_name) ==
               (long_name ? BackingNameKind::kLong : BackingNameKind::kEncrypted));
    auto decoded = codec.DecodeName(
        long_name ? encoded->long_name_content : encoded->backing_name, dir);
    FUZZ_CHECK(decoded.ok() && *decoded == in);
  }
  auto sealed = codec.EncodeSymlinkTarget(in, dir);
  if (sealed.ok()) {
    auto opened = codec.DecodeSymlinkTarget(*sealed, dir);
    FUZZ_CHECK(opened.ok() && *opened == in);
  }
}

}  // namespace
}  // namespace envelope::format

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  envelope::format::Run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
