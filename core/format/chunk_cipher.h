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

// The commitment stored in a new header for `dek` and `file_id`.
StatusOr<Commitment> ComputeCommitment(const crypto::SecretBytes& dek,
                                       const FileId& file_id);

class ChunkCipher {
 public:
  // Checks `header.commitment` against `dek` (constant time) and derives the
  // chunk key. Corruption if the commitment does not match: the DEK belongs
  // to another file or the header was altered.
  static StatusOr<ChunkCipher> New(const crypto::SecretBytes& dek,
                                   const FileHeader& header);

  const FileId& file_id() const { return file_id_; }

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
  ChunkCipher(crypto::Aes256Gcm aead, const FileId& file_id)
      : aead_(std::move(aead)), file_id_(file_id) {}
  void BuildAad(uint64_t index, bool last, uint8_t* aad) const;

  crypto::Aes256Gcm aead_;
  FileId file_id_;
};

}  // namespace envelope::format

#endif  // ENVELOPE_CORE_FORMAT_CHUNK_CIPHER_H_
