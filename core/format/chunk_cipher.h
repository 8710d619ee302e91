// Per-file keys and chunk sealing (docs/FORMAT.md, "Keys" and "Chunks").
//
// From the file's DEK and file id, HKDF-SHA256 derives two values with their
// own info strings: the AES-256-GCM chunk key and a 32-byte key commitment
// stored in the header. Checking the commitment before any chunk is opened
// makes the header key-committing: one header opens to one plaintext only,
// which AES-GCM alone does not guarantee.
//
// Thread safety: not synchronised (holds one Aes256Gcm); guard it or use one
// per thread.
#ifndef ENVELOPE_CORE_FORMAT_CHUNK_CIPHER_H_
#define ENVELOPE_CORE_FORMAT_CHUNK_CIPHER_H_

#include <cstdint>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/aes_gcm.h"
#include "core/crypto/secret_bytes.h"
#include "core/format/file_header.h"

namespace envelope::format {

// The commitment stored in a header of `version` for `dek` and `file_id`
// (each version has its own HKDF info string, docs/FORMAT.md §2).
StatusOr<Commitment> ComputeCommitment(const crypto::SecretBytes& dek,
                                       const FileId& file_id,
                                       uint16_t version = kFormatVersionDense);

class ChunkCipher {
 public:
  // Checks `header.commitment` against `dek` (constant time) and derives the
  // chunk key. Corruption if the commitment does not match: the DEK belongs
  // to another file or the header was altered.
  static StatusOr<ChunkCipher> New(const crypto::SecretBytes& dek,
                                   const FileHeader& header);
  // The same for a header its caller has just made with the commitment
  // `derived`, computed from `dek` by ComputeCommitment (a new file): that
  // derivation is not made a second time. InvalidArgument if `derived` is
  // not the header's commitment.
  static StatusOr<ChunkCipher> New(const crypto::SecretBytes& dek,
                                   const FileHeader& header,
                                   const Commitment& derived);

  const FileId& file_id() const { return file_id_; }

  // Whether the header this cipher was made for is version 2 (interior
  // chunks may be holes). ContentFile tracks later changes itself.
  bool sparse() const { return sparse_; }
  // The version-2 commitment of this file's DEK, for WriteSparseHeader
  // (header_io) to write; computed at New() while the DEK is at hand. Not
  // secret: it is stored in the header once written.
  const Commitment& sparse_commitment() const { return sparse_commitment_; }

  // Another ChunkCipher for the same file, for use in another thread.
  StatusOr<ChunkCipher> Clone() const;

  // REQUIRES: out.size() == plaintext.size() + kChunkOverheadInBytes
  Status Seal(uint64_t index, bool last, ByteView plaintext,
              MutableByteView out);
  // Corruption (and `out` wiped) unless the chunk authenticates as chunk
  // `index` of this file with the given last flag.
  // REQUIRES: out.size() + kChunkOverheadInBytes == sealed.size()
  Status Open(uint64_t index, bool last, ByteView sealed, MutableByteView out);

  // Fixed nonce, for known-answer vectors only.
  Status SealWithNonceForTesting(ByteView nonce, uint64_t index, bool last,
                                 ByteView plaintext, MutableByteView out);

 private:
  ChunkCipher(crypto::Aes256Gcm aead, const FileId& file_id, bool sparse,
              const Commitment& sparse_commitment)
      : aead_(std::move(aead)),
        file_id_(file_id),
        sparse_(sparse),
        sparse_commitment_(sparse_commitment) {}
  void BuildAad(uint64_t index, bool last, uint8_t* aad) const;

  crypto::Aes256Gcm aead_;
  FileId file_id_;
  bool sparse_;
  Commitment sparse_commitment_;
};

}  // namespace envelope::format

#endif  // ENVELOPE_CORE_FORMAT_CHUNK_CIPHER_H_
