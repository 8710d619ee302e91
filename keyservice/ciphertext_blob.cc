#include "keyservice/ciphertext_blob.h"

#include <algorithm>
#include <cstring>

#include "core/base/uuid.h"
#include "core/crypto/aes_gcm.h"

namespace envelope::keyservice {

namespace {
constexpr std::string_view kAadDomain = "envelope-keyd/v1/blob";

void AppendU32(Bytes* out, uint32_t v) {
  uint8_t b[4];
  EncodeFixed32(b, v);
  out->insert(out->end(), b, b + 4);
}

Bytes BuildAad(ByteView header, const EncryptionContext& context) {
  return Concat({AsBytes(kAadDomain), header, EncodeContext(context)});
}

// The first kBlobHeaderSizeInBytes bytes of a blob.
void WriteHeader(const BlobHeader& header, uint8_t* out) {
  out[0] = kBlobMagic[0];
  out[1] = kBlobMagic[1];
  out[2] = kBlobVersion;
  std::memcpy(out + 3, header.key_id.data(), 16);
  EncodeFixed32(out + 19, header.key_version);
}

}  // namespace

Bytes EncodeContext(const EncryptionContext& context) {
  Bytes out;
  // Sized up front (one allocation; it also keeps GCC 12's
  // -Wstringop-overflow from misreading the first insert into an empty
  // vector in unity builds).
  size_t size = 4;
  for (const auto& [k, v] : context) size += 8 + k.size() + v.size();
  out.reserve(size);
  AppendU32(&out, static_cast<uint32_t>(context.size()));
  for (const auto& [k, v] : context) {
    AppendU32(&out, static_cast<uint32_t>(k.size()));
    out.insert(out.end(), k.begin(), k.end());
    AppendU32(&out, static_cast<uint32_t>(v.size()));
    out.insert(out.end(), v.begin(), v.end());
  }
  return out;
}

bool ParseKeyId(std::string_view text, KeyIdBytes* out) {
  // 8-4-4-4-12 hex digits.
  if (text.size() != 36 || text[8] != '-' || text[13] != '-' || text[18] != '-' ||
      text[23] != '-') {
    return false;
  }
  std::string hex;
  for (char c : text) {
    if (c != '-') hex.push_back(c);
  }
  Bytes bytes;
  if (hex.size() != 32 || !HexDecode(hex, &bytes)) return false;
  std::copy(bytes.begin(), bytes.end(), out->begin());
  return true;
}

std::string FormatKeyId(const KeyIdBytes& id) { return FormatUuid(id); }

StatusOr<Bytes> SealBlob(const crypto::SecretBytes& material,
                         const BlobHeader& header,
                         const EncryptionContext& context,
                         ByteView plaintext) {
  ENVELOPE_ASSIGN_OR_RETURN(BlobSealer sealer, BlobSealer::New(material, header));
  return sealer.Seal(context, plaintext);
}

StatusOr<BlobSealer> BlobSealer::New(const crypto::SecretBytes& material,
                                     const BlobHeader& header) {
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm aead, crypto::Aes256Gcm::New(material.view()));
  return BlobSealer(std::move(aead), header);
}

StatusOr<Bytes> BlobSealer::Seal(const EncryptionContext& context, ByteView plaintext) {
  Bytes blob(kBlobOverheadInBytes + plaintext.size());
  WriteHeader(header_, blob.data());
  Bytes aad = BuildAad(ByteView(blob.data(), kBlobHeaderSizeInBytes), context);
  ENVELOPE_RETURN_IF_ERROR(aead_.Seal(
      plaintext, aad,
      MutableByteView(blob.data() + kBlobHeaderSizeInBytes,
                      plaintext.size() + crypto::Aes256Gcm::kOverheadInBytes)));
  return blob;
}

StatusOr<BlobHeader> PeekBlob(ByteView blob) {
  if (blob.size() < kBlobOverheadInBytes || blob[0] != kBlobMagic[0] ||
      blob[1] != kBlobMagic[1]) {
    return Status::InvalidArgument("not an envelope-keyd ciphertext blob");
  }
  if (blob[2] != kBlobVersion) {
    return Status::InvalidArgument("unsupported ciphertext blob version " +
                                   std::to_string(blob[2]));
  }
  BlobHeader h;
  std::memcpy(h.key_id.data(), blob.data() + 3, 16);
  h.key_version = DecodeFixed32(blob.data() + 19);
  return h;
}

StatusOr<crypto::SecretBytes> OpenBlob(const crypto::SecretBytes& material,
                                       ByteView blob,
                                       const EncryptionContext& context) {
  ENVELOPE_RETURN_IF_ERROR(PeekBlob(blob).status());
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm aead,
                            crypto::Aes256Gcm::New(material.view()));
  Bytes aad = BuildAad(blob.first(kBlobHeaderSizeInBytes), context);
  ENVELOPE_ASSIGN_OR_RETURN(
      crypto::SecretBytes out,
      crypto::SecretBytes::Zeroed(blob.size() - kBlobOverheadInBytes));
  ENVELOPE_RETURN_IF_ERROR(
      aead.Open(blob.subspan(kBlobHeaderSizeInBytes), aad, out.mutable_view()));
  return out;
}

StatusOr<Bytes> SealBlobWith(const BlobHeader& header, const EncryptionContext& context,
                             ByteView plaintext, const ExternalSeal& seal) {
  Bytes blob(kBlobHeaderSizeInBytes);
  WriteHeader(header, blob.data());
  ENVELOPE_ASSIGN_OR_RETURN(Bytes sealed, seal(plaintext, BuildAad(blob, context)));
  if (sealed.size() != plaintext.size() + kBlobOverheadInBytes - kBlobHeaderSizeInBytes) {
    return Status::Internal("an external sealer returned a value of the wrong size");
  }
  blob.insert(blob.end(), sealed.begin(), sealed.end());
  return blob;
}

StatusOr<crypto::SecretBytes> OpenBlobWith(ByteView blob, const EncryptionContext& context,
                                           const ExternalOpen& open) {
  ENVELOPE_RETURN_IF_ERROR(PeekBlob(blob).status());
  Bytes aad = BuildAad(blob.first(kBlobHeaderSizeInBytes), context);
  return open(blob.subspan(kBlobHeaderSizeInBytes), aad);
}

}  // namespace envelope::keyservice
