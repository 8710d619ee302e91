// Fuzzes the key service's ciphertext blob: PeekBlob and OpenBlob (under a
// fixed test key version, with and without an encryption context), the
// clients' reading of the clear label (kms::ReadBlobLabel, which
// KeydKeyService::VersionOf uses), and key id parsing. Invariants: the service and
// its clients agree on every label; an opened blob re-seals and reopens to
// the same plaintext; a parsed key id formats back to the same id.
#include "keyservice/ciphertext_blob.h"
#include "kms/blob_label.h"
#include "tests/fuzz/fuzz_util.h"

namespace envelope::keyservice {
namespace {

void Run(ByteView in) {
  static const crypto::SecretBytes* material =
      new crypto::SecretBytes(fuzz::Secret(fuzz::kBlobMaterial));

  auto header = PeekBlob(in);
  auto label = kms::ReadBlobLabel(in);
  FUZZ_CHECK(header.ok() == label.ok());
  if (header.ok()) {
    FUZZ_CHECK(label->key_id == FormatKeyId(header->key_id));
    FUZZ_CHECK(label->key_version == header->key_version);
    KeyIdBytes parsed;
    FUZZ_CHECK(ParseKeyId(label->key_id, &parsed) && parsed == header->key_id);
  }
  if (label.ok()) FUZZ_CHECK(label->plaintext_size + kBlobOverheadInBytes == in.size());

  for (const EncryptionContext& context :
       {EncryptionContext{}, EncryptionContext{{"app", "fuzz"}}}) {
    auto plain = OpenBlob(*material, in, context);
    if (!plain.ok()) continue;
    FUZZ_CHECK(header.ok());
    auto resealed = SealBlob(*material, *header, context, plain->view());
    FUZZ_CHECK(resealed.ok() && resealed->size() == in.size());
    auto reopened = OpenBlob(*material, *resealed, context);
    FUZZ_CHECK(reopened.ok());
    FUZZ_CHECK(ByteView(reopened->view()).size() == plain->size());
    FUZZ_CHECK(std::equal(reopened->view().begin(), reopened->view().end(),
                          plain->view().begin()));
  }

  // The input as key id text.
  std::string_view text(reinterpret_cast<const char*>(in.data()), in.size());
  KeyIdBytes id;
  if (ParseKeyId(text, &id)) {
    std::string formatted = FormatKeyId(id);
    FUZZ_CHECK(formatted.size() == text.size());
    for (size_t i = 0; i < text.size(); ++i) {
      FUZZ_CHECK(formatted[i] == std::tolower(static_cast<unsigned char>(text[i])));
    }
  }
}

}  // namespace
}  // namespace envelope::keyservice

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  envelope::keyservice::Run(envelope::ByteView(data, size));
  return 0;
}
