#include "core/format/name_codec.h"

#include <gtest/gtest.h>

#include <cerrno>

#include <algorithm>
#include <set>
#include <vector>

namespace envelope::format {
namespace {

class NameCodecTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = crypto::SecretBytes::CopyOf(Bytes(32, 0x42));
    codec_ = std::make_unique<NameCodec>(*NameCodec::New(*key));
    dir_a_.fill(1);
    dir_b_.fill(2);
  }
  std::unique_ptr<NameCodec> codec_;
  DirId dir_a_, dir_b_;
};

TEST_F(NameCodecTest, RoundTripAndDeterminism) {
  for (const std::string& name : std::vector<std::string>{"a", "hello.txt", "with space", "ünïcödé", std::string(175, 'x')}) {
    auto e = codec_->EncodeName(name, dir_a_);
    ASSERT_TRUE(e.ok()) << name;
    EXPECT_TRUE(e->long_name_content.empty());
    EXPECT_LE(e->backing_name.size(), 255u);
    EXPECT_EQ(NameCodec::Classify(e->backing_name), BackingNameKind::kEncrypted);
    EXPECT_EQ(*codec_->DecodeName(e->backing_name, dir_a_), name);
    EXPECT_EQ(codec_->EncodeName(name, dir_a_)->backing_name, e->backing_name);
    EXPECT_NE(codec_->EncodeName(name, dir_b_)->backing_name, e->backing_name);
    EXPECT_FALSE(codec_->DecodeName(e->backing_name, dir_b_).ok());
  }
}

// Xattr names may hold any byte but NUL ('/' included, fstests generic/523)
// and encode exactly as a file name of the zero directory did before, so
// existing backing xattrs keep their names.
TEST_F(NameCodecTest, XattrNames) {
  for (std::string name : {std::string("user.plain"), std::string("user.boo/hoo"), std::string("user./"),
                           std::string("user.\xff")}) {
    auto e = codec_->EncodeXattrName(name);
    ASSERT_TRUE(e.ok()) << name;
    EXPECT_EQ(*codec_->DecodeXattrName(*e), name);
  }
  EXPECT_EQ(*codec_->EncodeXattrName("user.plain"),
            codec_->EncodeName("user.plain", DirId{})->backing_name);
  EXPECT_EQ(codec_->EncodeXattrName(std::string(176, 'x')).status().sys_errno(), ERANGE);
  EXPECT_TRUE(codec_->EncodeXattrName(std::string(175, 'x')).ok());
  EXPECT_FALSE(codec_->EncodeXattrName(std::string("user.a\0b", 8)).ok());
}

TEST_F(NameCodecTest, LongNamesUseAHashAndASideFile) {
  std::string name(255, 'y');
  auto e = codec_->EncodeName(name, dir_a_);
  ASSERT_TRUE(e.ok());
  EXPECT_EQ(NameCodec::Classify(e->backing_name), BackingNameKind::kLong);
  EXPECT_LE(e->backing_name.size(), 255u);
  EXPECT_EQ(NameCodec::Classify(e->backing_name + ".name"), BackingNameKind::kLongSideFile);
  EXPECT_EQ(*codec_->DecodeName(e->long_name_content, dir_a_), name);
  std::string other = name;
  other[200] = 'z';
  EXPECT_NE(codec_->EncodeName(other, dir_a_)->backing_name, e->backing_name);
}

TEST_F(NameCodecTest, RejectsInvalidNames) {
  for (std::string bad : {std::string(""), std::string("."), std::string(".."),
                          std::string("a/b"), std::string("a\0b", 3)}) {
    EXPECT_EQ(codec_->EncodeName(bad, dir_a_).status().code(), StatusCode::kInvalidArgument);
  }
  EXPECT_EQ(ToErrno(codec_->EncodeName(std::string(256, 'x'), dir_a_).status()), ENAMETOOLONG);
}

TEST_F(NameCodecTest, InternalNamesNeverCollideWithEncryptedOnes) {
  EXPECT_EQ(NameCodec::Classify(kDirIdFileName), BackingNameKind::kInternal);
  EXPECT_EQ(NameCodec::Classify(kVolumeConfigFileName), BackingNameKind::kInternal);
  std::set<char> alphabet;
  for (int i = 0; i < 200; ++i) {
    std::string name = "n";
    name += std::to_string(i);  // (GCC 12 misreports "n" + to_string as overlapping)
    auto encoded = codec_->EncodeName(name, dir_a_);
    ASSERT_TRUE(encoded.ok());
    for (char c : encoded->backing_name) alphabet.insert(c);
  }
  EXPECT_EQ(alphabet.count('.'), 0u);
  EXPECT_EQ(alphabet.count('/'), 0u);
}

TEST_F(NameCodecTest, TamperedNameFails) {
  auto e = codec_->EncodeName("secret-plan.txt", dir_a_);
  std::string bad = e->backing_name;
  bad[3] = bad[3] == 'A' ? 'B' : 'A';
  EXPECT_EQ(codec_->DecodeName(bad, dir_a_).status().code(), StatusCode::kCorruption);
  EXPECT_FALSE(codec_->DecodeName("not*base64", dir_a_).ok());
}

TEST_F(NameCodecTest, SymlinkTargets) {
  std::string target = "../some/where/" + std::string(3000, 'p');
  auto e = codec_->EncodeSymlinkTarget(target, dir_a_);
  ASSERT_TRUE(e.ok());
  EXPECT_LE(e->size(), 4095u);
  EXPECT_EQ(*codec_->DecodeSymlinkTarget(*e, dir_a_), target);
  // A sealed target never opens as a name (domain separation).
  EXPECT_FALSE(codec_->DecodeName(*e, dir_a_).ok());
  // Up to 3055 bytes the encoding fits a backing symlink (longer ones go
  // to the volume's long-target store); 4095 is the limit, as on Linux.
  EXPECT_LE(codec_->EncodeSymlinkTarget(std::string(3055, 't'), dir_a_)->size(),
            kMaxInlineTargetInBytes);
  EXPECT_GT(codec_->EncodeSymlinkTarget(std::string(3056, 't'), dir_a_)->size(),
            kMaxInlineTargetInBytes);
  EXPECT_TRUE(codec_->EncodeSymlinkTarget(std::string(4095, 't'), dir_a_).ok());
  EXPECT_EQ(ToErrno(codec_->EncodeSymlinkTarget(std::string(4096, 't'), dir_a_).status()),
            ENAMETOOLONG);
}

TEST(Base64UrlTest, RoundTrip) {
  for (size_t n = 0; n < 40; ++n) {
    Bytes b(n);
    for (size_t i = 0; i < n; ++i) b[i] = static_cast<uint8_t>(i * 37 + 250);
    std::string s = Base64UrlEncode(b);
    EXPECT_EQ(s.find_first_of("+/="), std::string::npos);
    Bytes back;
    ASSERT_TRUE(Base64UrlDecode(s, &back));
    EXPECT_EQ(back, b);
  }
  Bytes out;
  EXPECT_FALSE(Base64UrlDecode("a", &out));
  EXPECT_FALSE(Base64UrlDecode("ab+c", &out));
}

}  // namespace
}  // namespace envelope::format

namespace envelope::format {
namespace {
// Known answers from tests/vectors/make_format_vectors.py (python3-cryptography's
// AESSIV), as listed in docs/FORMAT.md §8.
TEST(NameCodecVectorsTest, KnownAnswers) {
  Bytes key(32), dir(16);
  for (size_t i = 0; i < 32; ++i) key[i] = static_cast<uint8_t>(0x20 + i);
  for (size_t i = 0; i < 16; ++i) dir[i] = static_cast<uint8_t>(0x60 + i);
  auto codec = NameCodec::New(*crypto::SecretBytes::CopyOf(key));
  ASSERT_TRUE(codec.ok());
  DirId id;
  std::copy(dir.begin(), dir.end(), id.begin());
  EXPECT_EQ(codec->EncodeName("hello.txt", id)->backing_name, "Kh7Sb-CCAi4ALUdV7El9Mi9nVZipMlcsQg");
  EXPECT_EQ(*codec->EncodeSymlinkTarget("../target", DirId{}), "6MrDDahJrQNdEDutewaY8nGq9kU5sWzd_g");
  EXPECT_EQ(codec->EncodeName(std::string(200, 'L'), id)->backing_name,
            "envelopefs.long.2JC18bvkuR73v928CYDC2qyIPDtjnujNla2GXfiRUgA");
}
}  // namespace
}  // namespace envelope::format
