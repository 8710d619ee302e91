// envelope-format-tool: exercises the on-disk format without a key service.
//
//   envelope-format-tool roundtrip IN CIPHER OUT [--chunk-size N] [--xattr]
//       Seals IN into the envelopefs file CIPHER under a fresh random DEK,
//       then opens CIPHER again and writes the plaintext to OUT. The DEK is
//       wrapped under an ephemeral in-memory key that dies with the process,
//       standing in for the key service: afterwards CIPHER can never be
//       opened again (a crypto-erase, by construction).
//       --tamper OFFSET flips one bit of backing byte OFFSET before opening,
//       to show that the damage is reported instead of read as data.
//   envelope-format-tool inspect CIPHER [--xattr] [--chunk-size N]
//       Prints the header fields; needs no key.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "core/base/fd_io.h"
#include "core/base/process_hygiene.h"
#include "core/crypto/aes_gcm.h"
#include "core/crypto/secret_bytes.h"
#include "core/format/chunk_cipher.h"
#include "core/format/content_file.h"
#include "core/format/header_io.h"

namespace {

using envelope::Bytes;
using envelope::ByteView;
using envelope::Status;
using envelope::StatusOr;
using envelope::UniqueFd;
namespace crypto = envelope::crypto;
namespace format = envelope::format;

int Fail(const Status& s) {
  std::fprintf(stderr, "envelope-format-tool: %s\n", s.ToString().c_str());
  return 1;
}

int Usage() {
  std::fprintf(stderr,
               "usage: envelope-format-tool roundtrip IN CIPHER OUT "
               "[--chunk-size N] [--xattr] [--tamper OFFSET]\n"
               "       envelope-format-tool inspect CIPHER [--chunk-size N] "
               "[--xattr]\n");
  return 2;
}

struct Options {
  uint32_t chunk_size = format::kDefaultChunkSizeInBytes;
  bool xattr = false;
  long long tamper_offset = -1;  // flip this backing byte between seal and open
  std::vector<std::string> args;
};

bool ParseOptions(int argc, char** argv, Options* o) {
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--xattr") {
      o->xattr = true;
    } else if (a == "--tamper" && i + 1 < argc) {
      o->tamper_offset = std::stoll(argv[++i]);
    } else if (a == "--chunk-size" && i + 1 < argc) {
      o->chunk_size = static_cast<uint32_t>(std::stoul(argv[++i]));
    } else if (a.rfind("--", 0) == 0) {
      return false;
    } else {
      o->args.push_back(a);
    }
  }
  return true;
}

// Stand-in for the key service: AES-256-GCM under a key that only this
// process ever holds.
class EphemeralWrapper {
 public:
  static StatusOr<EphemeralWrapper> New() {
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes k,
                              crypto::SecretBytes::Random(32));
    ENVELOPE_ASSIGN_OR_RETURN(crypto::Aes256Gcm aead,
                              crypto::Aes256Gcm::New(k.view()));
    return EphemeralWrapper(std::move(aead));
  }
  StatusOr<Bytes> Wrap(const crypto::SecretBytes& dek) {
    Bytes out(dek.size() + crypto::Aes256Gcm::kOverheadInBytes);
    ENVELOPE_RETURN_IF_ERROR(aead_.Seal(dek.view(), ByteView(), out));
    return out;
  }
  StatusOr<crypto::SecretBytes> Unwrap(ByteView blob) {
    if (blob.size() < crypto::Aes256Gcm::kOverheadInBytes) {
      return Status::Corruption("wrapped DEK too short");
    }
    ENVELOPE_ASSIGN_OR_RETURN(
        crypto::SecretBytes dek,
        crypto::SecretBytes::Zeroed(blob.size() -
                                    crypto::Aes256Gcm::kOverheadInBytes));
    ENVELOPE_RETURN_IF_ERROR(aead_.Open(blob, ByteView(), dek.mutable_view()));
    return dek;
  }

 private:
  explicit EphemeralWrapper(crypto::Aes256Gcm aead) : aead_(std::move(aead)) {}
  crypto::Aes256Gcm aead_;
};

Status Seal(EphemeralWrapper* wrapper, const format::ChunkLayout& layout,
            const std::string& in_path, const std::string& cipher_path,
            uint64_t* bytes) {
  UniqueFd in(::open(in_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return Status::FromErrno("open " + in_path);
  UniqueFd out(::open(cipher_path.c_str(),
                      O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  if (!out.valid()) return Status::FromErrno("open " + cipher_path);

  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes dek,
                            crypto::SecretBytes::Random(format::kDekSizeInBytes));
  ENVELOPE_ASSIGN_OR_RETURN(Bytes wrapped, wrapper->Wrap(dek));
  ENVELOPE_ASSIGN_OR_RETURN(format::FileId id, format::NewFileId());
  ENVELOPE_ASSIGN_OR_RETURN(format::Commitment c,
                            format::ComputeCommitment(dek, id));
  ENVELOPE_ASSIGN_OR_RETURN(format::FileHeader header,
                            format::NewFileHeader(layout, id, c, wrapped));
  ENVELOPE_ASSIGN_OR_RETURN(format::ChunkCipher cipher,
                            format::ChunkCipher::New(dek, header));
  ENVELOPE_RETURN_IF_ERROR(format::WriteNewFile(out.get(), header, &cipher));
  format::ContentFile file(out.get(), layout, std::move(cipher));

  Bytes buf(1 << 20);
  uint64_t offset = 0;
  for (;;) {
    ENVELOPE_ASSIGN_OR_RETURN(size_t n, envelope::PreadFull(in.get(), buf, offset));
    if (n == 0) break;
    ENVELOPE_RETURN_IF_ERROR(file.Write(offset, ByteView(buf.data(), n)));
    offset += n;
  }
  if (::fsync(out.get()) != 0) return Status::FromErrno("fsync");
  *bytes = offset;
  return Status::Ok();
}

Status Open(EphemeralWrapper* wrapper, const format::ChunkLayout& layout,
            const std::string& cipher_path, const std::string& out_path) {
  UniqueFd in(::open(cipher_path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!in.valid()) return Status::FromErrno("open " + cipher_path);
  UniqueFd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC,
                      0600));
  if (!out.valid()) return Status::FromErrno("open " + out_path);
  ENVELOPE_ASSIGN_OR_RETURN(format::FileHeader header,
                            format::ReadHeader(in.get(), layout));
  ENVELOPE_ASSIGN_OR_RETURN(Bytes wrapped, format::ActiveWrappedDek(header));
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes dek, wrapper->Unwrap(wrapped));
  ENVELOPE_ASSIGN_OR_RETURN(format::ChunkCipher cipher,
                            format::ChunkCipher::New(dek, header));
  format::ContentFile file(in.get(), layout, std::move(cipher));
  Bytes buf(1 << 20);
  uint64_t offset = 0;
  for (;;) {
    ENVELOPE_ASSIGN_OR_RETURN(size_t n, file.Read(offset, buf));
    if (n == 0) break;
    ENVELOPE_RETURN_IF_ERROR(envelope::PwriteFull(out.get(), ByteView(buf.data(), n), offset));
    offset += n;
  }
  return Status::Ok();
}

Status FlipByte(const std::string& path, long long offset) {
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + path);
  uint8_t b = 0;
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, envelope::PreadFull(fd.get(), {&b, 1}, offset));
  if (n != 1) return Status::InvalidArgument("--tamper offset past the end");
  b ^= 0x01;
  return envelope::PwriteFull(fd.get(), ByteView(&b, 1), offset);
}

int Roundtrip(const Options& o) {
  if (o.args.size() != 3) return Usage();
  auto layout = format::ChunkLayout::ForVolume(o.xattr, o.chunk_size);
  if (!layout.ok()) return Fail(layout.status());
  auto wrapper = EphemeralWrapper::New();
  if (!wrapper.ok()) return Fail(wrapper.status());
  uint64_t bytes = 0;
  Status s = Seal(&*wrapper, *layout, o.args[0], o.args[1], &bytes);
  if (!s.ok()) return Fail(s);
  if (o.tamper_offset >= 0) {
    s = FlipByte(o.args[1], o.tamper_offset);
    if (!s.ok()) return Fail(s);
    std::printf("flipped one bit of backing byte %lld of %s\n",
                o.tamper_offset, o.args[1].c_str());
    std::fflush(stdout);
  }
  s = Open(&*wrapper, *layout, o.args[1], o.args[2]);
  if (!s.ok()) return Fail(s);
  std::printf("sealed %llu bytes into %s and opened them again into %s\n",
              static_cast<unsigned long long>(bytes), o.args[1].c_str(),
              o.args[2].c_str());
  return 0;
}

int Inspect(const Options& o) {
  if (o.args.size() != 1) return Usage();
  auto layout = format::ChunkLayout::ForVolume(o.xattr, o.chunk_size);
  if (!layout.ok()) return Fail(layout.status());
  UniqueFd fd(::open(o.args[0].c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Fail(Status::FromErrno("open " + o.args[0]));
  auto header = format::ReadHeader(fd.get(), *layout);
  if (!header.ok()) return Fail(header.status());
  off_t backing = ::lseek(fd.get(), 0, SEEK_END);
  auto size = layout->PlaintextSize(static_cast<uint64_t>(backing));
  std::printf("format version  %u (%s)\n", header->version,
              header->sparse() ? "may have holes" : "no holes");
  std::printf("dek location    %s\n", header->dek_in_xattr() ? "xattr" : "header");
  std::printf("chunk size      %u\n", header->chunk_size);
  std::printf("file id         %s\n", envelope::HexEncode(header->file_id).c_str());
  std::printf("backing size    %lld\n", static_cast<long long>(backing));
  std::printf("plaintext size  %s\n",
              size.ok() ? std::to_string(*size).c_str()
                        : size.status().ToString().c_str());
  for (size_t i = 0; i < format::kSlotCount; ++i) {
    const char* state = header->slot_states[i] == format::SlotState::kValid
                            ? "valid"
                            : header->slot_states[i] == format::SlotState::kEmpty
                                  ? "empty"
                                  : "damaged";
    std::printf("slot %zu          %s generation %llu wrapped dek %zu bytes\n",
                i, state,
                static_cast<unsigned long long>(header->slots[i].generation),
                header->slots[i].wrapped_dek.size());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Before anything holds key material: no core dumps, no ptrace by peers.
  if (envelope::Status s = envelope::HardenProcess(); !s.ok()) {
    std::fprintf(stderr, "envelope-format-tool: %s\n", s.ToString().c_str());
    return 1;
  }
  if (argc < 2) return Usage();
  Options o;
  if (!ParseOptions(argc, argv, &o)) return Usage();
  std::string cmd = argv[1];
  if (cmd == "roundtrip") return Roundtrip(o);
  if (cmd == "inspect") return Inspect(o);
  return Usage();
}
