#include "fs/key_trust.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace envelope::fs {
namespace {

// An envelope-keyd blob label for key 00112233-...-eeff (docs/KEYSERVICE.md)
// followed by filler: KeyTrust reads only the label.
Bytes BlobUnder(uint8_t first_byte_of_key) {
  Bytes blob = {'E', 'K', 0x01};
  for (int i = 0; i < 16; ++i) blob.push_back(static_cast<uint8_t>(first_byte_of_key + i * 0x11));
  for (int i = 0; i < 4 + 12 + 32 + 16; ++i) blob.push_back(i == 0 ? 1 : 0);
  return blob;
}

TEST(KeyTrustTest, UnwrapsOnlyUnderATrustedKey) {
  KeyTrust trust;
  trust.Add({"arn:aws:kms:local:000000000000:key/00112233-4455-6677-8899-aabbccddeeff",
             "00112233-4455-6677-8899-aabbccddeeff"});
  auto ok = trust.KeyIdFor(BlobUnder(0x00), "fallback");
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ok, "arn:aws:kms:local:000000000000:key/00112233-4455-6677-8899-aabbccddeeff");

  // A blob someone made under a key of their own is refused, not sent.
  auto other = trust.KeyIdFor(BlobUnder(0x01), "fallback");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kCorruption);
  EXPECT_NE(other.status().message().find("does not trust"), std::string::npos);

  // A blob without an envelope-keyd label (AWS KMS) goes to the fallback.
  auto aws = trust.KeyIdFor(Bytes{1, 2, 3, 4}, "fallback");
  ASSERT_TRUE(aws.ok());
  EXPECT_EQ(*aws, "fallback");
}

// The config-file check (CheckNotReplaceable) is tested in path_trust_test.cc,
// its use by Volume::Open in tests/integration/trust_test.py (PinTest).

}  // namespace
}  // namespace envelope::fs
