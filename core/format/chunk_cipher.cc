#include "core/format/chunk_cipher.h"

#include <cstring>
#include <string>

#include "core/crypto/hash.h"

namespace envelope::format {

namespace {
Status CheckDekSize(const crypto::SecretBytes& dek) {
  if (dek.size() != kDekSizeInBytes) {
    return Status::InvalidArgument("a file DEK must be 32 bytes");
  }
  return Status::Ok();
}
}  // namespace

StatusOr<FileKeys> FileKeys::Derive(const crypto::SecretBytes& dek, const FileId& file_id) {
  ENVELOPE_RETURN_IF_ERROR(CheckDekSize(dek));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes prk, crypto::HkdfSha256Extract(dek.view(), file_id));
  return FileKeys(std::move(prk), file_id);
}

StatusOr<Commitment> FileKeys::CommitmentFor(uint16_t version) {
  if (version != kFormatVersionDense && version != kFormatVersionSparse) {
    return Status::InvalidArgument("no commitment for format version " +
                                   std::to_string(version));
  }
  std::optional<Commitment>& kept = version == kFormatVersionSparse ? sparse_ : dense_;
  if (!kept) {
    ENVELOPE_ASSIGN_OR_RETURN(
        crypto::SecretBytes derived,
        crypto::HkdfSha256Expand(prk_.view(),
                                 version == kFormatVersionSparse ? kSparseCommitmentInfo
                                                                 : kCommitmentInfo,
                                 kCommitmentSizeInBytes));
    Commitment c;
    std::memcpy(c.data(), derived.data(), c.size());
    kept = c;
  }
  return *kept;
}

StatusOr<crypto::SecretBytes> FileKeys::ChunkKey() const {
  return crypto::HkdfSha256Expand(prk_.view(), kChunkKeyInfo, crypto::Aes256Gcm::kKeySizeInBytes);
}

StatusOr<Commitment> ComputeCommitment(const crypto::SecretBytes& dek,
                                       const FileId& file_id,
                                       uint16_t version) {
  ENVELOPE_ASSIGN_OR_RETURN(FileKeys keys, FileKeys::Derive(dek, file_id));
  return keys.CommitmentFor(version);
}

StatusOr<ChunkCipher> ChunkCipher::New(const crypto::SecretBytes& dek,
                                       const FileHeader& header) {
  ENVELOPE_ASSIGN_OR_RETURN(FileKeys keys, FileKeys::Derive(dek, header.file_id));
  return New(keys, header);
}

StatusOr<ChunkCipher> ChunkCipher::New(FileKeys& keys, const FileHeader& header) {
  if (keys.file_id() != header.file_id) {
    return Status::InvalidArgument("BUG: file keys derived for another file id");
  }
  // The commitment binds the header version: a version flipped without
  // the DEK (to make zeroed chunks read as holes, or to refuse them) no
  // longer matches.
  ENVELOPE_ASSIGN_OR_RETURN(Commitment want, keys.CommitmentFor(header.version));
  if (!crypto::ConstantTimeEquals(want, header.commitment)) {
    return Status::Corruption(
        "key commitment mismatch: the DEK does not belong to this header");
  }
  ENVELOPE_ASSIGN_OR_RETURN(Commitment sparse_commitment,
                            keys.CommitmentFor(kFormatVersionSparse));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes key, keys.ChunkKey());
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm aead,
                            crypto::Aes256Gcm::New(key.view()));
  return ChunkCipher(std::move(aead), header.file_id, header.sparse(),
                     sparse_commitment);
}

void ChunkCipher::BuildAad(uint64_t index, bool last, uint8_t* aad) const {
  std::memcpy(aad, file_id_.data(), file_id_.size());
  EncodeFixed64(aad + kFileIdSizeInBytes, index);
  aad[kFileIdSizeInBytes + 8] = last ? 1 : 0;
}

Status ChunkCipher::Seal(uint64_t index, bool last, ByteView plaintext,
                         MutableByteView out) {
  uint8_t aad[kChunkAadSizeInBytes];
  BuildAad(index, last, aad);
  return aead_.Seal(plaintext, aad, out);
}

StatusOr<ChunkCipher> ChunkCipher::Clone() const {
  ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm aead, aead_.Clone());
  return ChunkCipher(std::move(aead), file_id_, sparse_, sparse_commitment_);
}

Status ChunkCipher::Open(uint64_t index, bool last, ByteView sealed,
                         MutableByteView out) {
  uint8_t aad[kChunkAadSizeInBytes];
  BuildAad(index, last, aad);
  return aead_.Open(sealed, aad, out);
}

Status ChunkCipher::SealWithNonceForTesting(ByteView nonce, uint64_t index,
                                            bool last, ByteView plaintext,
                                            MutableByteView out) {
  uint8_t aad[kChunkAadSizeInBytes];
  BuildAad(index, last, aad);
  return aead_.SealWithNonceForTesting(nonce, plaintext, aad, out);
}

}  // namespace envelope::format
