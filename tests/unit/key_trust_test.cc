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

constexpr char kKeyA[] = "00112233-4455-6677-8899-aabbccddeeff";
constexpr char kArnA[] = "arn:aws:kms:local:000000000000:key/00112233-4455-6677-8899-aabbccddeeff";
constexpr char kArnB[] = "arn:aws:kms:local:000000000000:key/99999999-4455-6677-8899-aabbccddeeff";

TEST(KeyTrustTest, ALabelledBlobUnwrapsOnlyUnderTheTrustedKeyItNames) {
  KeyTrust trust;
  trust.Add({kArnA, kKeyA});
  trust.Add({kArnB, "99999999-4455-6677-8899-aabbccddeeff"});
  auto ok = trust.Candidates(kms::BlobVersion{kKeyA, 3}, kArnB);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_EQ(*ok, std::vector<std::string>{kArnA});

  // A blob someone made under a key of their own is refused, not sent.
  auto other = trust.Candidates(kms::BlobVersion{"01122334-4455-6677-8899-aabbccddeeff", 1}, kArnA);
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kCorruption);
  EXPECT_NE(other.status().message().find("does not trust"), std::string::npos);
}

TEST(KeyTrustTest, AnOpaqueBlobTriesTheCurrentKeyFirstThenTheOtherTrustedOnes) {
  KeyTrust trust;
  trust.Add({kArnA, kKeyA});
  trust.Add({kArnB, "99999999-4455-6677-8899-aabbccddeeff"});
  auto order = trust.Candidates(std::nullopt, kArnB);
  ASSERT_TRUE(order.ok());
  EXPECT_EQ(*order, (std::vector<std::string>{kArnB, kArnA}));
}

// The config-file check (CheckNotReplaceable) is tested in path_trust_test.cc,
// its use by Volume::Open in tests/integration/trust_test.py (PinTest).

}  // namespace
}  // namespace envelope::fs
