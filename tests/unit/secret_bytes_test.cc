#include "core/crypto/secret_bytes.h"

#include <fstream>
#include <string>

#include <gtest/gtest.h>

namespace envelope::crypto {
namespace {

TEST(SecretBytesTest, ZeroedLivesInTheSecureHeap) {
  auto s = SecretBytes::Zeroed(32);
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->size(), 32u);
  EXPECT_TRUE(s->in_secure_heap());
  for (uint8_t b : s->view()) EXPECT_EQ(b, 0);
}

TEST(SecretBytesTest, SecureHeapIsLockedInMemory) {
  auto state = InitSecureHeap();
  ASSERT_TRUE(state.ok());
  if (*state != SecureHeapState::kLocked) {
    GTEST_SKIP() << "RLIMIT_MEMLOCK too small to lock the secure heap here";
  }
  auto s = SecretBytes::Random(32);  // touch the arena so pages are locked
  ASSERT_TRUE(s.ok());
  std::ifstream status("/proc/self/status");
  std::string line;
  long locked_kb = -1;
  while (std::getline(status, line)) {
    if (line.rfind("VmLck:", 0) == 0) locked_kb = std::stol(line.substr(6));
  }
  EXPECT_GT(locked_kb, 0);
}

TEST(SecretBytesTest, RandomDiffers) {
  auto a = SecretBytes::Random(32);
  auto b = SecretBytes::Random(32);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(HexEncode(a->view()), HexEncode(b->view()));
}

TEST(SecretBytesTest, MoveLeavesSourceEmpty) {
  auto a = SecretBytes::CopyOf(AsBytes("0123456789abcdef"));
  ASSERT_TRUE(a.ok());
  SecretBytes b = std::move(*a);
  EXPECT_TRUE(a->empty());
  EXPECT_EQ(a->data(), nullptr);
  EXPECT_EQ(std::string(b.view().begin(), b.view().end()), "0123456789abcdef");
  SecretBytes c;
  c = std::move(b);
  EXPECT_TRUE(b.empty());
  EXPECT_EQ(c.size(), 16u);
}

TEST(SecretBytesTest, EmptyValue) {
  auto s = SecretBytes::Zeroed(0);
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->empty());
  EXPECT_FALSE(s->in_secure_heap());
}

TEST(SecretBytesTest, ExhaustedArenaIsAnErrorNotSwappableMemory) {
  // Far more than the whole arena: must fail rather than fall back.
  auto s = SecretBytes::Zeroed(64u << 20);
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kResourceExhausted);
}

TEST(SecretBytesTest, Cleanse) {
  uint8_t buf[4] = {1, 2, 3, 4};
  Cleanse(buf);
  for (uint8_t b : buf) EXPECT_EQ(b, 0);
}

}  // namespace
}  // namespace envelope::crypto
