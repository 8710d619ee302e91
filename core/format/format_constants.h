// Constants of the envelopefs file format, versions 1 and 2, shared by reader and
// writer. The byte grammar and worked examples are in docs/FORMAT.md; change
// nothing here without changing that document and its known-answer vectors.
#ifndef ENVELOPE_CORE_FORMAT_FORMAT_CONSTANTS_H_
#define ENVELOPE_CORE_FORMAT_FORMAT_CONSTANTS_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "core/crypto/aes_gcm.h"

namespace envelope::format {

// PNG-style magic: a high-bit byte catches 7-bit transfers, "ENVFS" names the
// format, CR LF catches newline conversion.
inline constexpr uint8_t kMagic[8] = {0x89, 'E', 'N', 'V', 'F', 'S', '\r', '\n'};
// Header versions (docs/FORMAT.md §6, "Holes"). A file that has never had a
// hole is version 1, byte for byte as before version 2 existed; a file that
// may hold holes (unallocated, all-zero interior chunks) is version 2. The
// two differ in nothing but this field and the key commitment, which is
// derived with a version-specific info string: flipping the version changes
// the commitment a DEK must match, so it cannot be done without the DEK.
inline constexpr uint16_t kFormatVersionDense = 1;
inline constexpr uint16_t kFormatVersionSparse = 2;

// Header flags. A reader rejects any bit it does not know.
inline constexpr uint16_t kFlagDekInXattr = 1u << 0;
inline constexpr uint16_t kKnownFlags = kFlagDekInXattr;

inline constexpr size_t kFileIdSizeInBytes = 16;
inline constexpr size_t kCommitmentSizeInBytes = 32;
inline constexpr size_t kDekSizeInBytes = 32;  // AES_256 data key

// Fixed header prefix: magic(8) version(2) flags(2) chunk_size(4)
// file_id(16) commitment(32).
inline constexpr size_t kHeaderPrefixSizeInBytes =
    8 + 2 + 2 + 4 + kFileIdSizeInBytes + kCommitmentSizeInBytes;
static_assert(kHeaderPrefixSizeInBytes == 64);

// Wrapped-DEK slot (header mode): generation(8) blob_len(2) blob(486)
// checksum(16). Two slots let a rewrite go to the inactive one while the
// active one stays intact.
inline constexpr size_t kSlotSizeInBytes = 512;
inline constexpr size_t kSlotChecksumSizeInBytes = 16;
inline constexpr size_t kSlotBlobCapacityInBytes =
    kSlotSizeInBytes - 8 - 2 - kSlotChecksumSizeInBytes;
static_assert(kSlotBlobCapacityInBytes == 486);
inline constexpr size_t kSlotCount = 2;
// Domain separation for the slot checksum (SHA-256, first 16 bytes).
inline constexpr std::string_view kSlotChecksumDomain = "envelopefs/v1/dek-slot";

inline constexpr size_t kHeaderSizeDekInHeader =
    kHeaderPrefixSizeInBytes + kSlotCount * kSlotSizeInBytes;
inline constexpr size_t kHeaderSizeDekInXattr = kHeaderPrefixSizeInBytes;
static_assert(kHeaderSizeDekInHeader == 1088);

// Xattr mode: the wrapped DEK is this xattr on the backing file, whose value
// is version(1) || blob. setxattr replaces a value atomically.
inline constexpr std::string_view kDekXattrName = "user.envelopefs.dek";
inline constexpr uint8_t kDekXattrVersion = 1;

// Chunks: nonce(12) || ciphertext || tag(16).
inline constexpr size_t kChunkOverheadInBytes =
    crypto::Aes256Gcm::kOverheadInBytes;
static_assert(kChunkOverheadInBytes == 28);
inline constexpr uint32_t kMinChunkSizeInBytes = 4096;
inline constexpr uint32_t kMaxChunkSizeInBytes = 1u << 20;
// Chosen from the seal/open microbenchmark, see docs/BENCHMARKS.md.
inline constexpr uint32_t kDefaultChunkSizeInBytes = 4096;

// Chunk AAD: file_id(16) || chunk_index(u64 LE) || last_flag(1).
inline constexpr size_t kChunkAadSizeInBytes = kFileIdSizeInBytes + 8 + 1;

// HKDF-SHA256 info strings; each key use has its own (salt = file id).
inline constexpr std::string_view kChunkKeyInfo =
    "envelopefs/v1/chunk-key/aes-256-gcm";
inline constexpr std::string_view kCommitmentInfo =
    "envelopefs/v1/key-commitment";
inline constexpr std::string_view kSparseCommitmentInfo =
    "envelopefs/v2/key-commitment/sparse";

}  // namespace envelope::format

#endif  // ENVELOPE_CORE_FORMAT_FORMAT_CONSTANTS_H_
