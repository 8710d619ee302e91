// Shamir's secret sharing: hand-computed vectors for the field arithmetic,
// every subset of a 3-of-5 split, and both directions against an
// implementation of its own, libgfshare's gfsplit and gfcombine (Debian's
// libgfshare-bin, installed by scripts/setup.sh).
#include "core/crypto/shamir.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <string>

#include "tests/unit/test_files.h"

namespace envelope::crypto {
namespace {

SecretBytes Bytes1(std::initializer_list<uint8_t> b) {
  return std::move(*SecretBytes::CopyOf(envelope::Bytes(b)));
}

std::string Str(const SecretBytes& s) { return std::string(s.view().begin(), s.view().end()); }

ShamirShare Share(uint8_t x, std::initializer_list<uint8_t> y) { return ShamirShare{x, Bytes1(y)}; }

// Two shares (an initializer list would copy them, and SecretBytes does
// not copy).
std::vector<ShamirShare> Two(ShamirShare a, ShamirShare b) {
  std::vector<ShamirShare> v;
  v.push_back(std::move(a));
  v.push_back(std::move(b));
  return v;
}

std::vector<ShamirShare> Pick(const std::vector<ShamirShare>& all, std::vector<int> which) {
  std::vector<ShamirShare> out;
  for (int i : which) {
    out.push_back(ShamirShare{all[i].x, std::move(*SecretBytes::CopyOf(all[i].y.view()))});
  }
  return out;
}

// p(x) = 0x42 + 0x07 x: p(1) = 0x45, p(2) = 0x42 ^ 0x0e = 0x4c,
// p(3) = 0x42 ^ (0x0e ^ 0x07) = 0x4b.
TEST(ShamirTest, HandComputedLine) {
  EXPECT_EQ(Str(*ShamirCombine(Two(Share(1, {0x45}), Share(2, {0x4c})))), "\x42");
  EXPECT_EQ(Str(*ShamirCombine(Two(Share(2, {0x4c}), Share(3, {0x4b})))), "\x42");
  EXPECT_EQ(Str(*ShamirCombine(Two(Share(3, {0x4b}), Share(1, {0x45})))), "\x42");
}

// p(x) = 0x80 x reduces modulo 0x11D at x = 2: 0x100 ^ 0x11D = 0x1D.
TEST(ShamirTest, HandComputedReduction) {
  auto s = ShamirCombine(Two(Share(1, {0x80}), Share(2, {0x1d})));
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->data()[0], 0);
}

TEST(ShamirTest, AnyThreeOfFiveGiveTheSecretAndTwoDoNot) {
  auto secret = SecretBytes::Random(32);
  ASSERT_TRUE(secret.ok());
  auto shares = ShamirSplit(*secret, 3, 5);
  ASSERT_TRUE(shares.ok()) << shares.status().ToString();
  ASSERT_EQ(shares->size(), 5u);
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ((*shares)[i].x, i + 1);
    EXPECT_EQ((*shares)[i].y.size(), 32u);
    EXPECT_TRUE((*shares)[i].y.in_secure_heap());
  }
  int triples = 0;
  for (int a = 0; a < 5; ++a) {
    for (int b = a + 1; b < 5; ++b) {
      auto two = ShamirCombine(Pick(*shares, {a, b}));
      ASSERT_TRUE(two.ok());
      EXPECT_NE(Str(*two), Str(*secret)) << a << b;
      for (int c = b + 1; c < 5; ++c) {
        auto got = ShamirCombine(Pick(*shares, {c, a, b}));  // any order
        ASSERT_TRUE(got.ok());
        EXPECT_EQ(Str(*got), Str(*secret)) << a << b << c;
        ++triples;
      }
    }
  }
  EXPECT_EQ(triples, 10);
  auto all = ShamirCombine(Pick(*shares, {0, 1, 2, 3, 4}));  // more than needed
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(Str(*all), Str(*secret));
  // Two splits of the same secret share nothing.
  auto again = ShamirSplit(*secret, 3, 5);
  ASSERT_TRUE(again.ok());
  EXPECT_NE(Str((*again)[0].y), Str((*shares)[0].y));
}

TEST(ShamirTest, RefusesWhatCannotBeRight) {
  auto secret = SecretBytes::Random(16);
  EXPECT_FALSE(ShamirSplit(*secret, 1, 5).ok());  // every share would be the secret
  EXPECT_FALSE(ShamirSplit(*secret, 4, 3).ok());
  EXPECT_FALSE(ShamirSplit(*secret, 2, 256).ok());
  EXPECT_TRUE(ShamirSplit(*secret, 255, 255).ok());
  EXPECT_FALSE(ShamirSplit(*SecretBytes::Zeroed(0), 2, 3).ok());
  EXPECT_FALSE(ShamirCombine(std::vector<ShamirShare>()).ok());
  EXPECT_FALSE(ShamirCombine(Two(Share(0, {1}), Share(2, {2}))).ok());
  EXPECT_FALSE(ShamirCombine(Two(Share(1, {1}), Share(1, {1}))).ok());
  EXPECT_FALSE(ShamirCombine(Two(Share(1, {1}), Share(2, {1, 2}))).ok());
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, std::string_view data) {
  std::ofstream(path, std::ios::binary).write(data.data(), static_cast<std::streamsize>(data.size()));
}

// gfsplit names each share STEM.NNN, NNN its x in decimal.
std::string ShareFile(const testing::TempDir& dir, uint8_t x) {
  char name[16];
  std::snprintf(name, sizeof(name), "s.%03u", x);
  return dir.File(name);
}

TEST(ShamirTest, GfcombineRecoversOurShares) {
  testing::TempDir dir;
  auto secret = SecretBytes::Random(48);
  auto shares = ShamirSplit(*secret, 3, 5);
  ASSERT_TRUE(shares.ok());
  for (int i : {4, 0, 2}) WriteFile(ShareFile(dir, (*shares)[i].x), Str((*shares)[i].y));
  const std::string cmd = "gfcombine -o " + dir.File("out") + " " + ShareFile(dir, 5) + " " +
                          ShareFile(dir, 1) + " " + ShareFile(dir, 3);
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "gfcombine (libgfshare-bin) missing? run scripts/setup.sh";
  EXPECT_EQ(ReadFile(dir.File("out")), Str(*secret));
}

TEST(ShamirTest, WeRecoverGfsplitsShares) {
  testing::TempDir dir;
  const std::string secret = "a recovery key of thirty-two b.";
  WriteFile(dir.File("secret"), secret);
  const std::string cmd = "gfsplit -n 3 -m 5 " + dir.File("secret") + " " + dir.File("s");
  ASSERT_EQ(std::system(cmd.c_str()), 0) << "gfsplit (libgfshare-bin) missing? run scripts/setup.sh";
  // gfsplit picks its x coordinates at random: find the five files.
  std::vector<ShamirShare> found;
  for (unsigned x = 1; x <= 255; ++x) {
    std::string data = ReadFile(ShareFile(dir, static_cast<uint8_t>(x)));
    if (data.empty()) continue;
    found.push_back(ShamirShare{static_cast<uint8_t>(x), std::move(*SecretBytes::CopyOf(AsBytes(data)))});
  }
  ASSERT_EQ(found.size(), 5u);
  auto got = ShamirCombine(Pick(found, {1, 3, 4}));
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(Str(*got), secret);
  auto two = ShamirCombine(Pick(found, {0, 2}));
  ASSERT_TRUE(two.ok());
  EXPECT_NE(Str(*two), secret);
}

}  // namespace
}  // namespace envelope::crypto
