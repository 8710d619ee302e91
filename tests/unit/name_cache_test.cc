#include "fs/name_cache.h"

#include <gtest/gtest.h>

#include <string>

#include "core/crypto/secret_bytes.h"
#include "core/format/name_codec.h"

namespace envelope::fs {
namespace {

format::DirId Id(uint8_t b) {
  format::DirId id;
  id.fill(b);
  return id;
}

format::EncodedName Named(const std::string& backing, const std::string& side = "") {
  return format::EncodedName{backing, side};
}

TEST(NameCacheTest, MissThenHit) {
  NameCache cache(64);
  EXPECT_FALSE(cache.Find(Id(1), "a.txt").has_value());
  cache.Insert(Id(1), "a.txt", Named("AAAA", "side"));
  auto hit = cache.Find(Id(1), "a.txt");
  ASSERT_TRUE(hit.has_value());
  EXPECT_EQ(hit->backing_name, "AAAA");
  EXPECT_EQ(hit->long_name_content, "side");
  EXPECT_EQ(cache.hits(), 1u);
  EXPECT_EQ(cache.misses(), 1u);
}

// The key is (directory id, name): the same name in a directory with
// another id (another directory, or one made again under the same name
// and inode) never finds the old encoding.
TEST(NameCacheTest, KeyedByDirectoryIdNotByName) {
  NameCache cache(64);
  cache.Insert(Id(1), "a.txt", Named("one"));
  EXPECT_FALSE(cache.Find(Id(2), "a.txt").has_value());
  cache.Insert(Id(2), "a.txt", Named("two"));
  // Both may be held at once, or one evicted the other: never mixed up.
  auto one = cache.Find(Id(1), "a.txt");
  auto two = cache.Find(Id(2), "a.txt");
  if (one) {
    EXPECT_EQ(one->backing_name, "one");
  }
  ASSERT_TRUE(two.has_value());
  EXPECT_EQ(two->backing_name, "two");
  EXPECT_FALSE(cache.Find(Id(1), "b.txt").has_value());
  EXPECT_FALSE(cache.Find(Id(1), "a.txt2").has_value());
}

// Bounded: a one-slot cache holds the last name only.
TEST(NameCacheTest, BoundedByCapacity) {
  NameCache cache(1);
  cache.Insert(Id(1), "a", Named("A"));
  cache.Insert(Id(1), "b", Named("B"));
  EXPECT_FALSE(cache.Find(Id(1), "a").has_value());
  ASSERT_TRUE(cache.Find(Id(1), "b").has_value());
  NameCache many(8);
  for (int i = 0; i < 1000; ++i) many.Insert(Id(3), "n" + std::to_string(i), Named("x"));
  size_t held = 0;
  for (int i = 0; i < 1000; ++i) held += many.Find(Id(3), "n" + std::to_string(i)).has_value();
  EXPECT_LE(held, 8u);
  EXPECT_GE(held, 1u);
}

// What the mount caches is what the codec makes, for short and long names.
TEST(NameCacheTest, HoldsWhatTheCodecMakes) {
  auto key = crypto::SecretBytes::CopyOf(Bytes(32, 0x42));
  ASSERT_TRUE(key.ok());
  auto codec = format::NameCodec::New(*key);
  ASSERT_TRUE(codec.ok());
  NameCache cache(16);
  const format::DirId dir = Id(9);
  for (const std::string& name : {std::string("short"), std::string(200, 'l')}) {
    auto en = codec->EncodeName(name, dir);
    ASSERT_TRUE(en.ok());
    cache.Insert(dir, name, *en);
    auto hit = cache.Find(dir, name);
    ASSERT_TRUE(hit.has_value());
    EXPECT_EQ(hit->backing_name, en->backing_name);
    EXPECT_EQ(hit->long_name_content, en->long_name_content);
  }
}

}  // namespace
}  // namespace envelope::fs
