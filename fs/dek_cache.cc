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
  auto it = entries_.find(wrapped);
  if (it != entries_.end()) {
    lru_.erase(it->second.lru);
    entries_.erase(it);
  }
  while (entries_.size() >= max_entries_) {
    entries_.erase(lru_.back());
    lru_.pop_back();
  }
  lru_.push_front(wrapped);
  entries_[wrapped] = Entry{std::move(dek), std::chrono::steady_clock::now(), lru_.begin()};
}

size_t DekCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace envelope::fs
