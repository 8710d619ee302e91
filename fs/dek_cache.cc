#include "fs/dek_cache.h"

namespace envelope::fs {

std::shared_ptr<const crypto::SecretBytes> DekCache::Find(const std::string& wrapped) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(wrapped);
  if (it == entries_.end()) return nullptr;
  if (std::chrono::steady_clock::now() - it->second.inserted > max_age_) {
    lru_.erase(it->second.lru);
    entries_.erase(it);
    return nullptr;
  }
  lru_.splice(lru_.begin(), lru_, it->second.lru);
  return it->second.dek;
}

void DekCache::Insert(const std::string& wrapped, std::shared_ptr<const crypto::SecretBytes> dek) {
  if (max_entries_ == 0) return;
  std::lock_guard lock(mu_);
  const auto now = std::chrono::steady_clock::now();
  auto it = entries_.find(wrapped);
  if (it != entries_.end()) {
    it->second.dek = std::move(dek);
    it->second.inserted = now;
    lru_.splice(lru_.begin(), lru_, it->second.lru);
    return;
  }
  while (entries_.size() >= max_entries_) {
    // Found first, then erased by iterator: the key is the node's own.
    auto oldest = entries_.find(*lru_.back());
    lru_.pop_back();
    entries_.erase(oldest);
  }
  it = entries_.emplace(wrapped, Entry{std::move(dek), now, {}}).first;
  lru_.push_front(&it->first);
  it->second.lru = lru_.begin();
}

size_t DekCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace envelope::fs
