// Reading and writing file headers and wrapped DEKs on a backing file
// descriptor (docs/FORMAT.md, "Header" and "Rewriting the wrapped DEK").
#ifndef ENVELOPE_CORE_FORMAT_HEADER_IO_H_
#define ENVELOPE_CORE_FORMAT_HEADER_IO_H_

#include "core/base/coding.h"
#include "core/base/status.h"
#include "core/format/chunk_cipher.h"
#include "core/format/chunk_layout.h"
#include "core/format/file_header.h"

namespace envelope::format {

// A fresh random 128-bit file id.
StatusOr<FileId> NewFileId();

// The header for a new file of a volume with `layout`, holding `wrapped_dek`
// (the key service's ciphertext blob) in slot 0 at generation 1, or destined
// for the xattr in xattr mode.
StatusOr<FileHeader> NewFileHeader(const ChunkLayout& layout,
                                   const FileId& file_id,
                                   const Commitment& commitment,
                                   ByteView wrapped_dek);

// Turns an empty backing file into a valid empty envelopefs file: the xattr
// (xattr mode), then header and the one empty chunk in a single pwrite.
// REQUIRES: `fd` is open for writing and the file is empty.
Status WriteNewFile(int fd, const FileHeader& header, ChunkCipher* cipher);

// Reads and decodes the header of the backing file `fd`, checks that it
// matches the volume's `layout` (chunk size and DEK location), and in xattr
// mode reads the wrapped DEK xattr into slot 0.
StatusOr<FileHeader> ReadHeader(int fd, const ChunkLayout& layout);

// The wrapped DEK in force: the active slot's blob.
StatusOr<Bytes> ActiveWrappedDek(const FileHeader& header);

// Turns the header of a version-1 file into version 2 (docs/FORMAT.md §6,
// "Holes"): rewrites the 64-byte prefix with version 2 and the version-2
// commitment `cipher` computed from the DEK, and makes it durable
// (fdatasync) before returning, so that no hole can reach the disk ahead of
// the header that allows it. The prefix lies in the file's first 512-byte
// sector, so a crash leaves the old prefix or the new one (sector writes
// are atomic on the devices and filesystems we support).
// REQUIRES: the file is version 1 and `layout` is its volume's.
Status WriteSparseHeader(int fd, const ChunkLayout& layout,
                         const ChunkCipher& cipher);

// Whether RewriteWrappedDek makes its write durable before returning.
enum class Durability {
  kSyncEach,     // fdatasync (fsync in xattr mode) this file
  kCallerSyncs,  // the caller syncs the whole filesystem once, later
};

// Replaces the wrapped DEK without touching any chunk, crash-safely:
// header mode writes the inactive slot with generation + 1, so a crash at
// any byte leaves either the old slot active (the new one is torn, fails its
// checksum and is ignored) or the new one complete; xattr mode relies on
// setxattr replacing a value atomically. The active slot is never written,
// so even without a sync a power cut leaves the file readable under the old
// blob; kCallerSyncs therefore trades only how long the old blob stays in
// force on disk, and is what a volume rotation uses (one syncfs at the end
// instead of one flush per file). Updates *header to match what is on disk.
// REQUIRES: the new blob wraps the same DEK (the caller got it from
// ReEncrypt), so both old and new slot open the same file.
Status RewriteWrappedDek(int fd, FileHeader* header, ByteView new_wrapped_dek,
                         Durability durability = Durability::kSyncEach);

}  // namespace envelope::format

#endif  // ENVELOPE_CORE_FORMAT_HEADER_IO_H_
