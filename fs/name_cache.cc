#include "fs/name_cache.h"

#include <functional>

namespace envelope::fs {

NameCache::NameCache(size_t capacity) : slots_(capacity == 0 ? 1 : capacity) {}

size_t NameCache::SlotOf(const format::DirId& dir, std::string_view name) const {
  size_t h = std::hash<std::string_view>{}(name);
  const std::string_view id(reinterpret_cast<const char*>(dir.data()), dir.size());
  h ^= std::hash<std::string_view>{}(id) + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
  return h % slots_.size();
}

std::optional<format::EncodedName> NameCache::Find(const format::DirId& dir,
                                                   std::string_view name) const {
  const size_t i = SlotOf(dir, name);
  std::lock_guard lock(mu_);
  const Slot& s = slots_[i];
  if (s.used && s.dir == dir && s.name == name) {
    ++hits_;
    return s.encoded;
  }
  ++misses_;
  return std::nullopt;
}

void NameCache::Insert(const format::DirId& dir, std::string_view name,
                       const format::EncodedName& en) {
  const size_t i = SlotOf(dir, name);
  std::lock_guard lock(mu_);
  Slot& s = slots_[i];
  s.used = true;
  s.dir = dir;
  s.name.assign(name);
  s.encoded = en;
}

size_t NameCache::hits() const {
  std::lock_guard lock(mu_);
  return hits_;
}

size_t NameCache::misses() const {
  std::lock_guard lock(mu_);
  return misses_;
}

}  // namespace envelope::fs
