#include "core/crypto/random.h"

#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <set>
#include <string>

namespace envelope::crypto {
namespace {

TEST(RandomTest, RandomBytesFillsAndDiffers) {
  uint8_t a[32] = {}, b[32] = {};
  ASSERT_TRUE(RandomBytes(a).ok());
  ASSERT_TRUE(RandomBytes(b).ok());
  EXPECT_NE(HexEncode(a), HexEncode(b));
}

TEST(RandomTest, PublicBytesNeverRepeatAcrossPoolRefills) {
  std::set<std::string> seen;
  for (int i = 0; i < 2000; ++i) {  // > 5 refills of the 4 KiB pool
    uint8_t nonce[12];
    ASSERT_TRUE(RandomPublicBytes(nonce).ok());
    EXPECT_TRUE(seen.insert(HexEncode(nonce)).second);
  }
}

TEST(RandomTest, PublicBytesRejectLargeRequests) {
  uint8_t big[65];
  EXPECT_FALSE(RandomPublicBytes(big).ok());
}

// A forked child must not hand out the bytes its parent hands out next:
// two processes sealing with the same nonce under one key would be fatal.
TEST(RandomTest, ForkedChildDoesNotReuseParentPool) {
  uint8_t warm[12];
  ASSERT_TRUE(RandomPublicBytes(warm).ok());  // parent's pool is now full
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    uint8_t child[12];
    bool ok = RandomPublicBytes(child).ok() &&
              ::write(fds[1], child, sizeof(child)) == sizeof(child);
    ::_exit(ok ? 0 : 1);
  }
  uint8_t parent[12], child[12];
  ASSERT_TRUE(RandomPublicBytes(parent).ok());
  ASSERT_EQ(::read(fds[0], child, sizeof(child)), static_cast<ssize_t>(sizeof(child)));
  int status = 0;
  ::waitpid(pid, &status, 0);
  ::close(fds[0]);
  ::close(fds[1]);
  EXPECT_EQ(status, 0);
  EXPECT_NE(HexEncode(parent), HexEncode(child));
}

}  // namespace
}  // namespace envelope::crypto
