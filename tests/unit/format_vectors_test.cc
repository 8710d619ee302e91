// Known-answer vectors for format version 1, as listed in docs/FORMAT.md.
// The expected bytes come from tests/vectors/make_format_vectors.py, an
// independent implementation (python3-cryptography + hashlib). If this test
// fails, the on-disk format changed: that must be a deliberate choice with a
// new format version, a new doc section and new vectors.
#include <fcntl.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "core/crypto/hash.h"
#include "core/format/chunk_cipher.h"
#include "core/format/content_file.h"
#include "core/format/header_io.h"
#include "tests/unit/test_files.h"

namespace envelope::format {
namespace {

constexpr char kCommitment[] =
    "b7d4c5ef19b6992548e961dae35979a898552400d0ffd6d8b2788a094ee7fcbe";
constexpr char kHeaderPrefix[] =
    "89454e5646530d0a0100000000100000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
    "b7d4c5ef19b6992548e961dae35979a898552400d0ffd6d8b2788a094ee7fcbe";
constexpr char kSlot0Head[] =
    "01000000000000002500777261707065642d64656b2d626c6f622d66726f6d2d"
    "7468652d6b65792d73657276696365";
constexpr char kSlot0Checksum[] = "b9898abb2a75ebff860ee37d35e892d8";
constexpr char kHeaderSha256[] =
    "3656c2e44c249bfa858d88ea7c214d4e5f045862e702f50bb3b6db8bc7e29bfd";
constexpr char kXattrHeader[] =
    "89454e5646530d0a0100010000100000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
    "b7d4c5ef19b6992548e961dae35979a898552400d0ffd6d8b2788a094ee7fcbe";
constexpr char kChunkA[] =
    "101112131415161718191a1bc33b0c0d3222d5f2351dd9243e6d9706056a28fd"
    "afc22a1c91823e64d896bcb83707e44c9f603be2c469075c86527f";
constexpr char kChunkB[] =
    "404142434445464748494a4b4fa4b815bd898f3cb2aa43a3d6a189715f2b6c04"
    "a50cb5aa43856e197314a054";
constexpr char kEmptyChunk[] = "101112131415161718191a1b5cdaa277396ec75dbe2e23fd637a998e";
constexpr char kFileASha256[] =
    "8d9624b5e3527384ba8005d6887f02958d35e744cd98394e09071787fc1bb960";
// Version 2 (docs/FORMAT.md §10, "Version 2"): a three-chunk file whose
// chunk 1 is a hole.
constexpr char kV2Commitment[] =
    "af2d08c45bcee6f3806754b120f4799b6e302ee552c17ce2354e5bca7d64e34a";
constexpr char kV2HeaderPrefix[] =
    "89454e5646530d0a0200000000100000a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
    "af2d08c45bcee6f3806754b120f4799b6e302ee552c17ce2354e5bca7d64e34a";
constexpr char kV2ChunkB2[] =
    "404142434445464748494a4b4fa4b815bd898f3cb2aa43a3d6a18971f75c5363c30f4fac00e15739e590841b";
constexpr char kFileSSha256[] =
    "fe3a7d42fd8e1855de7a9d48d0352a1aee546c7bedc91dcebce4d8651cb0f6a2";
constexpr char kWrapped[] = "wrapped-dek-blob-from-the-key-service";
constexpr char kPlainA[] = "envelopefs known-answer vector\n";
constexpr char kPlainB[] = "interior chunk 1";

class FormatVectorsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Bytes dek_bytes(32);
    for (size_t i = 0; i < 32; ++i) dek_bytes[i] = static_cast<uint8_t>(i);
    dek_ = std::move(*crypto::SecretBytes::CopyOf(dek_bytes));
    for (size_t i = 0; i < id_.size(); ++i) id_[i] = static_cast<uint8_t>(0xa0 + i);
  }
  FileHeader Header(bool xattr) {
    auto layout = ChunkLayout::ForVolume(xattr, 4096);
    auto c = ComputeCommitment(dek_, id_);
    auto h = NewFileHeader(*layout, id_, *c, AsBytes(kWrapped));
    EXPECT_TRUE(h.ok());
    return *h;
  }
  static Bytes Nonce(uint8_t first) {
    Bytes n(12);
    for (size_t i = 0; i < 12; ++i) n[i] = static_cast<uint8_t>(first + i);
    return n;
  }

  crypto::SecretBytes dek_;
  FileId id_;
};

TEST_F(FormatVectorsTest, Commitment) {
  auto c = ComputeCommitment(dek_, id_);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(HexEncode(*c), kCommitment);
}

TEST_F(FormatVectorsTest, HeaderModeHeader) {
  Bytes enc;
  Header(false).EncodeTo(&enc);
  ASSERT_EQ(enc.size(), 1088u);
  EXPECT_EQ(HexEncode(ByteView(enc.data(), 64)), kHeaderPrefix);
  EXPECT_EQ(HexEncode(ByteView(enc.data() + 64, 10 + 37)), kSlot0Head);
  EXPECT_EQ(HexEncode(ByteView(enc.data() + 64 + 496, 16)), kSlot0Checksum);
  EXPECT_EQ(HexEncode(crypto::Sha256(enc)), kHeaderSha256);
}

TEST_F(FormatVectorsTest, XattrModeHeader) {
  Bytes enc;
  Header(true).EncodeTo(&enc);
  EXPECT_EQ(HexEncode(enc), kXattrHeader);
}

TEST_F(FormatVectorsTest, Chunks) {
  FileHeader h = Header(false);
  auto cipher = ChunkCipher::New(dek_, h);
  ASSERT_TRUE(cipher.ok());
  Bytes a(sizeof(kPlainA) - 1 + kChunkOverheadInBytes);
  ASSERT_TRUE(cipher->SealWithNonceForTesting(Nonce(0x10), 0, true, AsBytes(kPlainA), a).ok());
  EXPECT_EQ(HexEncode(a), kChunkA);
  Bytes b(sizeof(kPlainB) - 1 + kChunkOverheadInBytes);
  ASSERT_TRUE(cipher->SealWithNonceForTesting(Nonce(0x40), 1, false, AsBytes(kPlainB), b).ok());
  EXPECT_EQ(HexEncode(b), kChunkB);
  Bytes e(kChunkOverheadInBytes);
  ASSERT_TRUE(cipher->SealWithNonceForTesting(Nonce(0x10), 0, true, ByteView(), e).ok());
  EXPECT_EQ(HexEncode(e), kEmptyChunk);

  // And the other way: the vectors open, with their index and flag only.
  Bytes out(sizeof(kPlainB) - 1);
  ASSERT_TRUE(cipher->Open(1, false, b, out).ok());
  EXPECT_EQ(std::string(out.begin(), out.end()), kPlainB);
  EXPECT_FALSE(cipher->Open(1, true, b, out).ok());
  EXPECT_FALSE(cipher->Open(2, false, b, out).ok());
}

// The complete one-chunk file, written to disk and read back through the
// content layer as a mount would read it.
TEST_F(FormatVectorsTest, WholeFileOpensThroughTheContentLayer) {
  Bytes file;
  FileHeader h = Header(false);
  h.EncodeTo(&file);
  Bytes chunk;
  ASSERT_TRUE(HexDecode(kChunkA, &chunk));
  file.insert(file.end(), chunk.begin(), chunk.end());
  ASSERT_EQ(file.size(), 1147u);
  EXPECT_EQ(HexEncode(crypto::Sha256(file)), kFileASha256);

  testing::TempDir dir;
  const std::string path = dir.File("vector");
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(PwriteFull(fd.get(), file, 0).ok());
  auto layout = ChunkLayout::ForVolume(false, 4096);
  auto read = ReadHeader(fd.get(), *layout);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(*ActiveWrappedDek(*read), Bytes(AsBytes(kWrapped).begin(), AsBytes(kWrapped).end()));
  auto cipher = ChunkCipher::New(dek_, *read);
  ASSERT_TRUE(cipher.ok());
  ContentFile content(fd.get(), *layout, std::move(*cipher));
  Bytes out(100);
  auto n = content.Read(0, out);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(std::string(out.begin(), out.begin() + *n), kPlainA);
}

// Version 2: the commitment under its own info string, the prefix that
// WriteSparseHeader writes, and a file with a hole written byte by byte from
// the vectors, read back through the content layer.
TEST_F(FormatVectorsTest, SparseFile) {
  auto c = ComputeCommitment(dek_, id_, kFormatVersionSparse);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(HexEncode(*c), kV2Commitment);

  testing::TempDir dir;
  const std::string path = dir.File("sparse");
  UniqueFd fd(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  auto layout = ChunkLayout::ForVolume(false, 4096);
  Bytes file;
  Header(false).EncodeTo(&file);
  ASSERT_TRUE(PwriteFull(fd.get(), file, 0).ok());
  auto dense = ChunkCipher::New(dek_, Header(false));
  ASSERT_TRUE(dense.ok());
  ASSERT_TRUE(WriteSparseHeader(fd.get(), *layout, *dense).ok());
  Bytes prefix(64);
  ASSERT_EQ(::pread(fd.get(), prefix.data(), 64, 0), 64);
  EXPECT_EQ(HexEncode(prefix), kV2HeaderPrefix);

  auto header = ReadHeader(fd.get(), *layout);
  ASSERT_TRUE(header.ok()) << header.status().ToString();
  EXPECT_TRUE(header->sparse());
  auto cipher = ChunkCipher::New(dek_, *header);
  ASSERT_TRUE(cipher.ok()) << cipher.status().ToString();
  Bytes full(4096, 0x5a);
  Bytes chunk0(4096 + kChunkOverheadInBytes);
  ASSERT_TRUE(cipher->SealWithNonceForTesting(Nonce(0x10), 0, false, full, chunk0).ok());
  Bytes b2(sizeof(kPlainB) - 1 + kChunkOverheadInBytes);
  ASSERT_TRUE(cipher->SealWithNonceForTesting(Nonce(0x40), 2, true, AsBytes(kPlainB), b2).ok());
  EXPECT_EQ(HexEncode(b2), kV2ChunkB2);
  file.clear();
  file.insert(file.end(), prefix.begin(), prefix.end());
  Bytes rest(1088 - 64);
  ASSERT_EQ(::pread(fd.get(), rest.data(), rest.size(), 64), static_cast<ssize_t>(rest.size()));
  file.insert(file.end(), rest.begin(), rest.end());
  file.insert(file.end(), chunk0.begin(), chunk0.end());
  file.resize(file.size() + 4096 + kChunkOverheadInBytes, 0);  // the hole
  file.insert(file.end(), b2.begin(), b2.end());
  ASSERT_EQ(file.size(), 9380u);
  EXPECT_EQ(HexEncode(crypto::Sha256(file)), kFileSSha256);

  ASSERT_TRUE(PwriteFull(fd.get(), file, 0).ok());
  ContentFile content(fd.get(), *layout, std::move(*cipher));
  Bytes out(3 * 4096);
  auto n = content.Read(0, out);
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  Bytes want = full;
  want.resize(2 * 4096, 0);
  want.insert(want.end(), AsBytes(kPlainB).begin(), AsBytes(kPlainB).end());
  out.resize(*n);
  EXPECT_EQ(out, want);
  // The hole was written as zeros, so the backing file has no hole for
  // SEEK_HOLE to find (it answers the end); SEEK_DATA reads and skips it.
  EXPECT_EQ(*content.SeekData(4096), 2 * 4096u);
}

// A create derives the commitment and the cipher from one FileKeys: the
// same commitment and the same chunks as each derived on its own.
TEST_F(FormatVectorsTest, FileKeysGiveTheSameCommitmentsAndChunks) {
  auto keys = FileKeys::Derive(dek_, id_);
  ASSERT_TRUE(keys.ok());
  auto dense = keys->CommitmentFor(kFormatVersionDense);
  ASSERT_TRUE(dense.ok());
  EXPECT_EQ(HexEncode(*dense), kCommitment);
  auto sparse = keys->CommitmentFor(kFormatVersionSparse);
  ASSERT_TRUE(sparse.ok());
  EXPECT_EQ(*sparse, *ComputeCommitment(dek_, id_, kFormatVersionSparse));
  EXPECT_NE(*sparse, *dense);
  EXPECT_FALSE(keys->CommitmentFor(7).ok());

  auto cipher = ChunkCipher::New(*keys, Header(false));
  ASSERT_TRUE(cipher.ok()) << cipher.status().ToString();
  EXPECT_EQ(cipher->sparse_commitment(), *sparse);
  Bytes a(sizeof(kPlainA) - 1 + kChunkOverheadInBytes);
  ASSERT_TRUE(cipher->SealWithNonceForTesting(Nonce(0x10), 0, true, AsBytes(kPlainA), a).ok());
  EXPECT_EQ(HexEncode(a), kChunkA);
}

TEST_F(FormatVectorsTest, FileKeysAreCheckedAgainstTheHeader) {
  // Another file's header: refused as a bug, before any commitment check.
  FileId other_id = id_;
  other_id[0] ^= 1;
  auto others = FileKeys::Derive(dek_, other_id);
  ASSERT_TRUE(others.ok());
  EXPECT_EQ(ChunkCipher::New(*others, Header(false)).status().code(),
            StatusCode::kInvalidArgument);
  // The right file id under another DEK: the commitment does not match.
  Bytes other(32, 0x77);
  auto wrong = FileKeys::Derive(*crypto::SecretBytes::CopyOf(other), id_);
  ASSERT_TRUE(wrong.ok());
  EXPECT_EQ(ChunkCipher::New(*wrong, Header(false)).status().code(), StatusCode::kCorruption);
  // A DEK of the wrong size is refused at derivation.
  EXPECT_FALSE(FileKeys::Derive(*crypto::SecretBytes::CopyOf(Bytes(16, 1)), id_).ok());
}

TEST_F(FormatVectorsTest, WrongDekFailsTheCommitment) {
  Bytes other(32, 0x77);
  auto wrong = crypto::SecretBytes::CopyOf(other);
  auto cipher = ChunkCipher::New(*wrong, Header(false));
  EXPECT_EQ(cipher.status().code(), StatusCode::kCorruption);
}

}  // namespace
}  // namespace envelope::format
