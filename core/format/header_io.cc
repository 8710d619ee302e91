#include "core/format/header_io.h"

#include <sys/xattr.h>
#include <unistd.h>

#include <cerrno>
#include <limits>
#include <string>

#include "core/base/fd_io.h"
#include "core/crypto/random.h"

namespace envelope::format {

StatusOr<FileId> NewFileId() {
  FileId id;
  ENVELOPE_RETURN_IF_ERROR(crypto::RandomBytes(id));
  return id;
}

namespace {

// The prefix fields of a header of `layout`, no slot filled in.
FileHeader HeaderPrefix(const ChunkLayout& layout, uint16_t version, const FileId& file_id,
                        const Commitment& commitment) {
  FileHeader h;
  h.version = version;
  h.flags = layout.header_size() == kHeaderSizeDekInXattr ? kFlagDekInXattr : 0;
  h.chunk_size = layout.chunk_size();
  h.file_id = file_id;
  h.commitment = commitment;
  return h;
}

}  // namespace

StatusOr<FileHeader> NewFileHeader(const ChunkLayout& layout,
                                   const FileId& file_id,
                                   const Commitment& commitment,
                                   ByteView wrapped_dek) {
  ENVELOPE_RETURN_IF_ERROR(ValidateWrappedDekSize(wrapped_dek.size()));
  FileHeader h = HeaderPrefix(layout, kFormatVersionDense, file_id, commitment);
  h.slots[0].generation = 1;
  h.slots[0].wrapped_dek.assign(wrapped_dek.begin(), wrapped_dek.end());
  h.slot_states[0] = SlotState::kValid;
  return h;
}

namespace {

Status WriteDekXattr(int fd, ByteView wrapped_dek) {
  Bytes value;
  value.reserve(1 + wrapped_dek.size());
  value.push_back(kDekXattrVersion);
  value.insert(value.end(), wrapped_dek.begin(), wrapped_dek.end());
  std::string name(kDekXattrName);
  if (::fsetxattr(fd, name.c_str(), value.data(), value.size(), 0) != 0) {
    return Status::FromErrno("fsetxattr " + name);
  }
  return Status::Ok();
}

Status ReadDekXattr(int fd, DekSlot* slot, SlotState* state) {
  std::string name(kDekXattrName);
  uint8_t buf[1 + kSlotBlobCapacityInBytes + 1];
  ssize_t n = ::fgetxattr(fd, name.c_str(), buf, sizeof(buf));
  if (n < 0) {
    if (errno == ENODATA) {
      *state = SlotState::kEmpty;
      return Status::Ok();
    }
    if (errno == ERANGE) {
      *state = SlotState::kDamaged;
      return Status::Ok();
    }
    return Status::FromErrno("fgetxattr " + name);
  }
  if (n < 2 || buf[0] != kDekXattrVersion ||
      !ValidateWrappedDekSize(static_cast<size_t>(n - 1)).ok()) {
    *state = SlotState::kDamaged;
    return Status::Ok();
  }
  slot->generation = 1;
  slot->wrapped_dek.assign(buf + 1, buf + n);
  *state = SlotState::kValid;
  return Status::Ok();
}

}  // namespace

Status WriteNewFile(int fd, const FileHeader& header, ChunkCipher* cipher) {
  if (header.dek_in_xattr()) {
    ENVELOPE_RETURN_IF_ERROR(WriteDekXattr(fd, header.slots[0].wrapped_dek));
  }
  Bytes out;
  header.EncodeTo(&out);
  size_t chunk_at = out.size();
  out.resize(chunk_at + kChunkOverheadInBytes);
  ENVELOPE_RETURN_IF_ERROR(cipher->Seal(
      0, /*last=*/true, ByteView(),
      MutableByteView(out.data() + chunk_at, kChunkOverheadInBytes)));
  return PwriteFull(fd, out, 0);
}

Status WriteSparseHeader(int fd, const ChunkLayout& layout,
                         const ChunkCipher& cipher) {
  uint8_t prefix[kHeaderPrefixSizeInBytes];
  HeaderPrefix(layout, kFormatVersionSparse, cipher.file_id(), cipher.sparse_commitment())
      .EncodePrefixTo(prefix);
  ENVELOPE_RETURN_IF_ERROR(PwriteFull(fd, ByteView(prefix, sizeof(prefix)), 0));
  if (::fdatasync(fd) != 0) return Status::FromErrno("fdatasync");
  return Status::Ok();
}

StatusOr<FileHeader> ReadHeader(int fd, const ChunkLayout& layout) {
  uint8_t buf[kHeaderSizeDekInHeader];
  ENVELOPE_ASSIGN_OR_RETURN(size_t n,
                            PreadFull(fd, MutableByteView(buf, layout.header_size()), 0));
  if (n < layout.header_size()) {
    return Status::Corruption("header: wanted " +
                              std::to_string(layout.header_size()) +
                              " bytes, found " + std::to_string(n));
  }
  ENVELOPE_ASSIGN_OR_RETURN(FileHeader h,
                            FileHeader::DecodeFrom(ByteView(buf, n)));
  if (h.chunk_size != layout.chunk_size()) {
    return Status::Corruption("header: wanted chunk size " +
                              std::to_string(layout.chunk_size()) +
                              " (the volume's), found " +
                              std::to_string(h.chunk_size));
  }
  if (h.encoded_size() != layout.header_size()) {
    return Status::Corruption(
        std::string("header: the volume keeps DEKs in ") +
        (layout.header_size() == kHeaderSizeDekInXattr ? "xattrs" : "headers") +
        ", this file does not");
  }
  if (h.dek_in_xattr()) {
    ENVELOPE_RETURN_IF_ERROR(ReadDekXattr(fd, &h.slots[0], &h.slot_states[0]));
  }
  return h;
}

StatusOr<Bytes> ActiveWrappedDek(const FileHeader& header) {
  ENVELOPE_ASSIGN_OR_RETURN(size_t active, header.ActiveSlot());
  return header.slots[active].wrapped_dek;
}

Status RewriteWrappedDek(int fd, FileHeader* header, ByteView new_wrapped_dek,
                         Durability durability) {
  const bool sync = durability == Durability::kSyncEach;
  ENVELOPE_RETURN_IF_ERROR(ValidateWrappedDekSize(new_wrapped_dek.size()));
  if (header->dek_in_xattr()) {
    ENVELOPE_RETURN_IF_ERROR(WriteDekXattr(fd, new_wrapped_dek));
    if (sync && ::fsync(fd) != 0) return Status::FromErrno("fsync");
    header->slots[0].wrapped_dek.assign(new_wrapped_dek.begin(),
                                        new_wrapped_dek.end());
    header->slot_states[0] = SlotState::kValid;
    return Status::Ok();
  }
  ENVELOPE_ASSIGN_OR_RETURN(size_t active, header->ActiveSlot());
  size_t target = 1 - active;
  const uint64_t generation = header->slots[active].generation;
  if (generation == std::numeric_limits<uint64_t>::max()) {
    // No writer gets there (one rotation per second would take 584 billion
    // years); only a tampered slot does. Wrapping to 0 would encode an
    // empty slot and lose the new blob without a word.
    return Status::Corruption("header: slot generation " + std::to_string(generation) +
                              " cannot be incremented (tampered header)");
  }
  DekSlot slot;
  slot.generation = generation + 1;
  slot.wrapped_dek.assign(new_wrapped_dek.begin(), new_wrapped_dek.end());
  uint8_t encoded[kSlotSizeInBytes];
  EncodeSlot(slot, encoded);
  // Only the inactive slot is written; the active one is never touched, so
  // a crash at any byte leaves a usable slot.
  ENVELOPE_RETURN_IF_ERROR(PwriteFull(fd, encoded, SlotOffset(target)));
  if (sync && ::fdatasync(fd) != 0) return Status::FromErrno("fdatasync");
  header->slots[target] = std::move(slot);
  header->slot_states[target] = SlotState::kValid;
  return Status::Ok();
}

}  // namespace envelope::format
