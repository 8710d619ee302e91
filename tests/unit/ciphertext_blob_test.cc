#include "keyservice/ciphertext_blob.h"

#include <gtest/gtest.h>

#include "kms/blob_label.h"

namespace envelope::keyservice {
namespace {

crypto::SecretBytes Material(uint8_t fill) {
  return std::move(*crypto::SecretBytes::CopyOf(Bytes(32, fill)));
}

BlobHeader Header() {
  BlobHeader h;
  EXPECT_TRUE(ParseKeyId("1b4e28ba-2fa1-41d2-883f-0016d3cca427", &h.key_id));
  h.key_version = 3;
  return h;
}

TEST(CiphertextBlobTest, RoundTripNamesKeyAndVersion) {
  auto m = Material(1);
  EncryptionContext ctx{{"volume", "v1"}, {"file", "f1"}};
  auto blob = SealBlob(m, Header(), ctx, AsBytes("data key bytes"));
  ASSERT_TRUE(blob.ok());
  EXPECT_EQ(blob->size(), kBlobOverheadInBytes + 14);
  auto h = PeekBlob(*blob);
  ASSERT_TRUE(h.ok());
  EXPECT_EQ(FormatKeyId(h->key_id), "1b4e28ba-2fa1-41d2-883f-0016d3cca427");
  EXPECT_EQ(h->key_version, 3u);
  auto back = OpenBlob(m, *blob, ctx);
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(std::string(back->view().begin(), back->view().end()), "data key bytes");
}

// The client's reading of the clear label (kms/blob_label.h) agrees with
// the service's own, on a blob the service made.
TEST(CiphertextBlobTest, ClientReadsTheSameLabel) {
  auto blob = SealBlob(Material(2), Header(), {{"a", "b"}}, AsBytes("k"));
  ASSERT_TRUE(blob.ok());
  auto label = kms::ReadBlobLabel(*blob);
  ASSERT_TRUE(label.ok());
  EXPECT_EQ(label->key_id, "1b4e28ba-2fa1-41d2-883f-0016d3cca427");
  EXPECT_EQ(label->key_version, 3u);
  EXPECT_FALSE(kms::ReadBlobLabel(Bytes(60, 0)).ok());
  Bytes v2 = *blob;
  v2[2] = 2;
  EXPECT_FALSE(kms::ReadBlobLabel(v2).ok());
}

TEST(CiphertextBlobTest, WrongContextFails) {
  auto m = Material(2);
  auto blob = SealBlob(m, Header(), {{"app", "a"}}, AsBytes("x"));
  ASSERT_TRUE(blob.ok());
  EXPECT_EQ(OpenBlob(m, *blob, {{"app", "b"}}).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(OpenBlob(m, *blob, {}).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(OpenBlob(m, *blob, {{"app", "a"}, {"x", ""}}).status().code(),
            StatusCode::kCorruption);
}

// Emulators that concatenate k1v1k2v2 accept {"ab":"c"} for {"a":"bc"}.
TEST(CiphertextBlobTest, ContextEncodingIsUnambiguous) {
  EXPECT_NE(EncodeContext({{"a", "bc"}}), EncodeContext({{"ab", "c"}}));
  EXPECT_NE(EncodeContext({{"a", ""}, {"b", ""}}), EncodeContext({{"ab", ""}}));
  auto m = Material(3);
  auto blob = SealBlob(m, Header(), {{"a", "bc"}}, AsBytes("secret"));
  ASSERT_TRUE(blob.ok());
  EXPECT_FALSE(OpenBlob(m, *blob, {{"ab", "c"}}).ok());
  EXPECT_TRUE(OpenBlob(m, *blob, {{"a", "bc"}}).ok());
}

TEST(CiphertextBlobTest, ContextEncodingKnownAnswer) {
  // count=2 | len=1 "a" len=2 "bc" | len=1 "d" len=0 ""
  EXPECT_EQ(HexEncode(EncodeContext({{"d", ""}, {"a", "bc"}})),
            "02000000" "0100000061" "020000006263" "0100000064" "00000000");
}

TEST(CiphertextBlobTest, RelabelledHeaderFails) {
  auto m = Material(4);
  auto blob = SealBlob(m, Header(), {}, AsBytes("x"));
  ASSERT_TRUE(blob.ok());
  for (size_t i = 0; i < kBlobHeaderSizeInBytes; ++i) {
    Bytes bad = *blob;
    bad[i] ^= 1;
    EXPECT_FALSE(OpenBlob(m, bad, {}).ok()) << "byte " << i;
  }
}

TEST(CiphertextBlobTest, PeekRejectsGarbage) {
  EXPECT_FALSE(PeekBlob(Bytes()).ok());
  EXPECT_FALSE(PeekBlob(Bytes(60, 0)).ok());
  Bytes wrong_version(60, 0);
  wrong_version[0] = 'E';
  wrong_version[1] = 'K';
  wrong_version[2] = 2;
  EXPECT_FALSE(PeekBlob(wrong_version).ok());
}

TEST(CiphertextBlobTest, KeyIdParsing) {
  KeyIdBytes id;
  EXPECT_TRUE(ParseKeyId("1B4E28BA-2FA1-41D2-883F-0016D3CCA427", &id));
  EXPECT_EQ(FormatKeyId(id), "1b4e28ba-2fa1-41d2-883f-0016d3cca427");
  EXPECT_FALSE(ParseKeyId("1b4e28ba2fa141d2883f0016d3cca427", &id));
  EXPECT_FALSE(ParseKeyId("1b4e28ba-2fa1-41d2-883f-0016d3cca42", &id));
  EXPECT_FALSE(ParseKeyId("zb4e28ba-2fa1-41d2-883f-0016d3cca427", &id));
  EXPECT_FALSE(ParseKeyId("alias/foo", &id));
}

}  // namespace
}  // namespace envelope::keyservice
