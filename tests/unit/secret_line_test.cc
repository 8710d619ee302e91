#include "core/crypto/secret_line.h"

#include <unistd.h>

#include <string>

#include <gtest/gtest.h>

namespace envelope::crypto {
namespace {

// A pipe holding `text`, its write end closed: reads see `text`, then EOF.
int PipeWith(const std::string& text) {
  int fds[2];
  EXPECT_EQ(::pipe(fds), 0);
  EXPECT_EQ(::write(fds[1], text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::close(fds[1]);
  return fds[0];
}

std::string AsString(const SecretBytes& b) {
  return std::string(b.view().begin(), b.view().end());
}

TEST(SecretLineTest, ReadsOneLineAndNothingAfterIt) {
  int fd = PipeWith("first line\nsecond");
  auto first = ReadSecretLine(fd, 64);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(AsString(*first), "first line");
  auto second = ReadSecretLine(fd, 64);  // up to end of input
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(AsString(*second), "second");
  auto empty = ReadSecretLine(fd, 64);
  ASSERT_TRUE(empty.ok());
  EXPECT_EQ(empty->size(), 0u);
  ::close(fd);
}

TEST(SecretLineTest, ALineOverTheLimitIsRefusedAndConsumed) {
  int fd = PipeWith("12345\nok\n");
  int exact_fd = PipeWith("1234\n");
  auto exact = ReadSecretLine(exact_fd, 4);
  ::close(exact_fd);
  ASSERT_TRUE(exact.ok());
  EXPECT_EQ(AsString(*exact), "1234");
  auto long_line = ReadSecretLine(fd, 4);
  EXPECT_EQ(long_line.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(long_line.status().ToString().find("longer than 4 bytes"), std::string::npos);
  auto next = ReadSecretLine(fd, 4);  // the long line's rest is not left behind
  ASSERT_TRUE(next.ok());
  EXPECT_EQ(AsString(*next), "ok");
  ::close(fd);
}

}  // namespace
}  // namespace envelope::crypto
