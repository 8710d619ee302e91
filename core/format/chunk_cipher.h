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
#include <optional>

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/crypto/aes_gcm.h"
#include "core/crypto/secret_bytes.h"
#include "core/format/file_header.h"

namespace envelope::format {

// The derivations from one file's DEK and file id (docs/FORMAT.md §2): one
// HKDF-Extract (salt = file id, IKM = DEK), then an Expand for each
// commitment and for the chunk key. A create needs the dense and sparse
// commitments and the chunk key; made one by one, each was an Extract and
// an Expand of its own (two HMACs each), now they share the first.
//
// Holds key material (the PRK, in SecretBytes); short-lived, one per open
// or create. Thread safety: none.
class FileKeys {
 public:
  static StatusOr<FileKeys> Derive(const crypto::SecretBytes& dek, const FileId& file_id);

  const FileId& file_id() const { return file_id_; }
  // The commitment a header of `version` stores (computed once, then kept).
  StatusOr<Commitment> CommitmentFor(uint16_t version);
  // The AES-256-GCM key of the file's chunks.
  StatusOr<crypto::SecretBytes> ChunkKey() const;

 private:
  FileKeys(crypto::SecretBytes prk, const FileId& file_id)
      : prk_(std::move(prk)), file_id_(file_id) {}
  crypto::SecretBytes prk_;
  FileId file_id_;
  std::optional<Commitment> dense_, sparse_;
};

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
  // The same from the file's derivations (a new file: the caller made its
  // header's commitment from `keys`, so the check costs nothing more).
  // InvalidArgument if `keys` are another file id's.
  static StatusOr<ChunkCipher> New(FileKeys& keys, const FileHeader& header);

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
