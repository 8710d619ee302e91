// fs::Volume over FakeKeyService: file keys, pinning and the key service's
// failures, with blobs that carry a label (envelope-keyd) and opaque ones
// (AWS KMS). The same rules through a real mount and daemon:
// tests/integration/trust_test.py and fs_test.py.
#include "fs/volume.h"

#include <gtest/gtest.h>

#include "tests/unit/volume_fixture.h"

namespace envelope::fs {
namespace {

using testing::VolumeFixture;

// (Appending, not "literal" + string: GCC 12 warns falsely on that, -Wrestrict.)
std::string Numbered(std::string prefix, int i) {
  prefix += std::to_string(i);
  return prefix;
}

class VolumeTest : public ::testing::TestWithParam<bool> {
 protected:
  VolumeFixture fx_{/*labelled=*/GetParam()};
};

TEST_P(VolumeTest, FilesRoundTripAndKeysAreMadeInBatches) {
  auto volume = fx_.Open();
  ASSERT_TRUE(volume.ok()) << volume.status().ToString();
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(fx_.WriteFile(**volume, Numbered("f", i), Numbered("content ", i)).ok());
  }
  // One data key for the volume key, then a pool refill: the pool asks for
  // many keys at once, not one request per create.
  EXPECT_GE(fx_.kms().Calls("GenerateDataKey"), 6);

  auto reopened = fx_.Open();
  ASSERT_TRUE(reopened.ok()) << reopened.status().ToString();
  const int64_t decrypts = fx_.kms().Calls("Decrypt");
  for (int i = 0; i < 5; ++i) {
    auto text = fx_.ReadFile(**reopened, Numbered("f", i));
    ASSERT_TRUE(text.ok()) << text.status().ToString();
    EXPECT_EQ(*text, Numbered("content ", i));
  }
  EXPECT_EQ(fx_.kms().Calls("Decrypt"), decrypts + 5);
  // A second open of the same file is served from the DEK cache.
  ASSERT_TRUE(fx_.ReadFile(**reopened, "f0").ok());
  EXPECT_EQ(fx_.kms().Calls("Decrypt"), decrypts + 5);
}

TEST_P(VolumeTest, APinOfAnotherKeyIsRefused) {
  const std::string other = fx_.kms().CreateKey("other");
  auto volume = fx_.Open({other});
  ASSERT_FALSE(volume.ok());
  // Labelled: refused before the service is asked; opaque: the service
  // says the blob is not under the pinned key.
  EXPECT_EQ(volume.status().code(), StatusCode::kCorruption) << volume.status().ToString();
}

TEST_P(VolumeTest, AFileKeySwappedForOneUnderAnotherKeyNeverOpens) {
  auto volume = fx_.Open();
  ASSERT_TRUE(volume.ok());
  ASSERT_TRUE(fx_.WriteFile(**volume, "victim", "secret").ok());
  // An attacker with write access to the cipherdir wraps a DEK of their
  // own under a key they control, with the right context.
  const std::string theirs = fx_.kms().CreateKey("attacker");
  auto wrapped = fx_.WrappedDek(**volume, "victim");
  ASSERT_TRUE(wrapped.ok());
  auto planted = fx_.kms().GenerateDataKey(theirs, {{"x", "y"}});
  ASSERT_TRUE(planted.ok());
  auto fresh = fx_.Open();
  ASSERT_TRUE(fresh.ok());
  auto unwrapped = (*fresh)->Unwrap(planted->ciphertext_blob, {{"x", "y"}});
  ASSERT_FALSE(unwrapped.ok());
  EXPECT_EQ(unwrapped.status().code(), StatusCode::kCorruption) << unwrapped.status().ToString();
  // And the real blob still opens.
  EXPECT_TRUE((*fresh)->KeyIdsToUnwrap(*wrapped).ok());
}

TEST_P(VolumeTest, ADisabledKeyOrADeadServiceFailsTheOpenWithItsReason) {
  auto volume = fx_.Open();
  ASSERT_TRUE(volume.ok());
  ASSERT_TRUE(fx_.WriteFile(**volume, "a", "x").ok());
  fx_.kms().SetKeyState(fx_.key(), "Disabled");
  auto disabled = fx_.Open();
  ASSERT_FALSE(disabled.ok());
  EXPECT_EQ(disabled.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(disabled.status().message().find("DisabledException"), std::string::npos)
      << disabled.status().ToString();
  fx_.kms().SetKeyState(fx_.key(), "Enabled");

  auto open = fx_.Open();
  ASSERT_TRUE(open.ok());
  fx_.kms().FailAfter(0);
  auto text = fx_.ReadFile(**open, "a");
  ASSERT_FALSE(text.ok());
  EXPECT_EQ(text.status().code(), StatusCode::kUnavailable);
  fx_.kms().Restore();
  text = fx_.ReadFile(**open, "a");
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text, "x");
}

TEST_P(VolumeTest, AFileKeyUnderAnotherTrustedKeyOpens) {
  // After `rotate --to-key` was interrupted, files are under either key.
  auto volume = fx_.Open();
  ASSERT_TRUE(volume.ok());
  ASSERT_TRUE(fx_.WriteFile(**volume, "old", "under the first key").ok());
  const std::string second = fx_.kms().CreateKey("second");
  auto both = fx_.Open({fx_.key()}, {second});
  ASSERT_TRUE(both.ok()) << both.status().ToString();
  ASSERT_TRUE((*both)->RewrapVolumeKey(second).ok());
  auto moved = fx_.Open({second}, {fx_.key()});
  ASSERT_TRUE(moved.ok()) << moved.status().ToString();
  auto text = fx_.ReadFile(**moved, "old");
  ASSERT_TRUE(text.ok()) << text.status().ToString();
  EXPECT_EQ(*text, "under the first key");
}

INSTANTIATE_TEST_SUITE_P(Blobs, VolumeTest, ::testing::Values(true, false),
                         [](const auto& info) { return info.param ? "Labelled" : "Opaque"; });

}  // namespace
}  // namespace envelope::fs
