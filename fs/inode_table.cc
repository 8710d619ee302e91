#include "fs/inode_table.h"

#include <unistd.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

#include <algorithm>

namespace envelope::fs {

Inode::~Inode() {
  content.reset();
  if (content_fd >= 0) ::close(content_fd);
  if (fd >= 0) ::close(fd);
}

InodeTable::InodeTable(int root_fd, bool shared_storage) : shared_storage_(shared_storage) {
  root_.fd = root_fd;
  struct stat st;
  if (::fstat(root_fd, &st) == 0) {
    root_.dev = st.st_dev;
    root_.ino = st.st_ino;
    root_.type = S_IFDIR;
  }
  root_.nlookup = 2;  // never forgotten
}

InodeTable::~InodeTable() {
  for (auto& [key, inode] : inodes_) delete inode;
  for (Inode* inode : retired_) delete inode;
}

Inode* InodeTable::Get(uint64_t ino) {
  if (ino == 1) return &root_;  // FUSE_ROOT_ID
  return reinterpret_cast<Inode*>(ino);
}

Where Inode::where() const {
  if (fd >= 0) return Where{fd, ""};
  std::lock_guard lock(where_mu);
  // No name left: the file was unlinked (open handles use their own fd).
  if (names.empty()) return Where{-1, ""};
  return Where{names.front().first->fd, names.front().second};
}

namespace {

// Puts (parent, name) first in inode->names; returns true if it is new
// (the caller pins parent). REQUIRES: inode->where_mu held.
bool RememberName(Inode* inode, Inode* parent, const std::string& name) {
  auto& names = inode->names;
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i].first == parent && names[i].second == name) {
      std::rotate(names.begin(), names.begin() + static_cast<ptrdiff_t>(i),
                  names.begin() + static_cast<ptrdiff_t>(i) + 1);
      return false;
    }
  }
  names.insert(names.begin(), {parent, name});
  return true;
}

// Drops (parent, name) from inode->names; returns true if it was there (the
// caller unpins parent). REQUIRES: inode->where_mu held.
bool DropName(Inode* inode, Inode* parent, const std::string& name) {
  auto& names = inode->names;
  for (auto it = names.begin(); it != names.end(); ++it) {
    if (it->first == parent && it->second == name) {
      names.erase(it);
      return true;
    }
  }
  return false;
}

}  // namespace

Inode* InodeTable::Add(Inode* parent, const std::string& name, const struct stat& st, int dir_fd) {
  return AddOrFind(parent, name, st, dir_fd, /*create=*/true);
}

Inode* InodeTable::AddIfKnown(Inode* parent, const std::string& name, const struct stat& st) {
  return AddOrFind(parent, name, st, -1, /*create=*/false);
}

Inode* InodeTable::AddOrFind(Inode* parent, const std::string& name, const struct stat& st,
                             int dir_fd, bool create) {
  std::vector<Inode*> unpin;  // parents no longer recorded, released below
  Inode* result = nullptr;
  {
    std::lock_guard lock(table_mu_);
    if (st.st_dev == root_.dev && st.st_ino == root_.ino) {
      if (dir_fd >= 0) ::close(dir_fd);
      ++root_.nlookup;
      return &root_;
    }
    auto key = std::make_pair(st.st_dev, st.st_ino);
    auto it = inodes_.find(key);
    if (it != inodes_.end() && !it->second->Is(st)) {
      // The object we know by this number was removed and one of another
      // type took the number (another mount, a local user acting on the
      // backing objects they own, or a create of ours after an unlink whose
      // inode the kernel has not forgotten yet): another object.
      if (!create) return nullptr;
      retired_.insert(it->second);
      inodes_.erase(it);
      it = inodes_.end();
    }
    if (it != inodes_.end()) {
      if (dir_fd >= 0) ::close(dir_fd);
      result = it->second;
      ++result->nlookup;
      if (result->fd < 0) {
        std::lock_guard where(result->where_mu);
        if (shared_storage_ && st.st_nlink == 1) {
          // Its one name is this one: any other recorded name was renamed
          // or removed by another mount (or belonged to an object whose
          // number this one reused).
          bool had = false;
          for (auto& [p, n] : result->names) {
            if (p == parent && n == name) {
              had = true;
            } else {
              unpin.push_back(p);
            }
          }
          result->names.assign(1, {parent, name});
          if (!had) ++parent->nlookup;
        } else if (RememberName(result, parent, name)) {
          ++parent->nlookup;
        }
      }
    } else if (!create) {
      return nullptr;
    } else {
      result = new Inode;
      result->fd = dir_fd;
      result->dev = st.st_dev;
      result->ino = st.st_ino;
      result->type = st.st_mode & S_IFMT;
      result->nlookup = 1;
      if (dir_fd < 0) {
        ++parent->nlookup;
        result->names.push_back({parent, name});
      }
      inodes_[key] = result;
    }
  }
  for (Inode* p : unpin) Forget(p, 1);
  return result;
}

void InodeTable::Renumber(Inode* inode, const struct stat& st) {
  std::lock_guard lock(table_mu_);
  auto old = inodes_.find(std::make_pair(inode->dev, inode->ino.load()));
  if (old != inodes_.end() && old->second == inode) inodes_.erase(old);
  auto key = std::make_pair(st.st_dev, st.st_ino);
  if (auto stale = inodes_.find(key); stale != inodes_.end() && stale->second != inode) {
    retired_.insert(stale->second);
    inodes_.erase(stale);
  }
  inode->ino = st.st_ino;
  inodes_[key] = inode;
}

Inode* InodeTable::KnownNonDirectory(const struct stat& st) {
  auto it = inodes_.find(std::make_pair(st.st_dev, st.st_ino));
  if (it == inodes_.end() || it->second->fd >= 0 || !it->second->Is(st)) return nullptr;
  return it->second;
}

void InodeTable::Rebind(const struct stat& st, Inode* old_parent, const std::string& old_name,
                        Inode* parent, const std::string& name) {
  Inode* unpin = nullptr;
  {
    std::lock_guard lock(table_mu_);
    Inode* inode = KnownNonDirectory(st);
    if (inode == nullptr) return;
    std::lock_guard where(inode->where_mu);
    if (RememberName(inode, parent, name)) ++parent->nlookup;
    if (old_parent != nullptr && !(old_parent == parent && old_name == name) &&
        DropName(inode, old_parent, old_name)) {
      unpin = old_parent;
    }
  }
  if (unpin != nullptr) Forget(unpin, 1);
}

void InodeTable::Unbind(const struct stat& st, Inode* parent, const std::string& name) {
  bool dropped = false;
  {
    std::lock_guard lock(table_mu_);
    Inode* inode = KnownNonDirectory(st);
    if (inode == nullptr) return;
    std::lock_guard where(inode->where_mu);
    dropped = DropName(inode, parent, name);
  }
  if (dropped) Forget(parent, 1);
}

void InodeTable::Forget(Inode* inode, uint64_t n) {
  if (inode == &root_) return;
  std::vector<std::pair<Inode*, std::string>> unpin;
  bool trim = false;
  {
    std::lock_guard lock(table_mu_);
    uint64_t before = inode->nlookup.fetch_sub(n);
    if (before > n) return;
    // A retired inode's number may belong to a newer inode by now.
    auto it = inodes_.find(std::make_pair(inode->dev, inode->ino.load()));
    if (it != inodes_.end() && it->second == inode) inodes_.erase(it);
    retired_.erase(inode);
    unpin.swap(inode->names);
    if (++deleted_since_trim_ >= kTrimAfter) {
      deleted_since_trim_ = 0;
      trim = true;
    }
  }
  // Out of the table, so no other thread reaches it: its descriptors are
  // closed without holding up every lookup (close can wait on the backing
  // filesystem).
  delete inode;
#ifdef __GLIBC__
  if (trim) ::malloc_trim(0);
#else
  (void)trim;
#endif
  // A child pinned its directories; they may now go too.
  for (auto& [parent, name] : unpin) Forget(parent, 1);
}

}  // namespace envelope::fs
