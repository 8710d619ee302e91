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

StatusOr<Commitment> ComputeCommitment(const crypto::SecretBytes& dek,
                                       const FileId& file_id,
                                       uint16_t version) {
  ENVELOPE_RETURN_IF_ERROR(CheckDekSize(dek));
  if (version != kFormatVersionDense && version != kFormatVersionSparse) {
    return Status::InvalidArgument("no commitment for format version " +
                                   std::to_string(version));
  }
  ENVELOPE_ASSIGN_OR_RETURN(
      crypto::SecretBytes derived,
      crypto::HkdfSha256(dek.view(), file_id,
                         version == kFormatVersionSparse ? kSparseCommitmentInfo
                                                         : kCommitmentInfo,
                         kCommitmentSizeInBytes));
  Commitment out;
  std::memcpy(out.data(), derived.data(), out.size());
  return out;
}

StatusOr<ChunkCipher> ChunkCipher::New(const crypto::SecretBytes& dek,
                                       const FileHeader& header) {
  // The commitment binds the header version: a version flipped without
  // the DEK (to make zeroed chunks read as holes, or to refuse them) no
  // longer matches.
  ENVELOPE_ASSIGN_OR_RETURN(Commitment want,
                            ComputeCommitment(dek, header.file_id, header.version));
  if (!crypto::ConstantTimeEquals(want, header.commitment)) {
    return Status::Corruption(
        "key commitment mismatch: the DEK does not belong to this header");
  }
  return New(dek, header, want);
}

StatusOr<ChunkCipher> ChunkCipher::New(const crypto::SecretBytes& dek,
                                       const FileHeader& header,
                                       const Commitment& derived) {
  ENVELOPE_RETURN_IF_ERROR(CheckDekSize(dek));
  if (!crypto::ConstantTimeEquals(derived, header.commitment)) {
    return Status::InvalidArgument("BUG: the commitment given is not the header's");
  }
  const Commitment& want = derived;
  Commitment sparse_commitment = want;
  if (!header.sparse()) {
    ENVELOPE_ASSIGN_OR_RETURN(
        sparse_commitment,
        ComputeCommitment(dek, header.file_id, kFormatVersionSparse));
  }
  ENVELOPE_ASSIGN_OR_RETURN(
      crypto::SecretBytes key,
      crypto::HkdfSha256(dek.view(), header.file_id, kChunkKeyInfo,
                         crypto::Aes256Gcm::kKeySizeInBytes));
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
