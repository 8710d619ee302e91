#include "fs/inode_table.h"

#include <unistd.h>

namespace envelope::fs {

Inode::~Inode() {
  content.reset();
  if (content_fd >= 0) ::close(content_fd);
  if (fd >= 0) ::close(fd);
}

InodeTable::InodeTable(int root_fd) {
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
}

Inode* InodeTable::Get(uint64_t ino) {
  if (ino == 1) return &root_;  // FUSE_ROOT_ID
  return reinterpret_cast<Inode*>(ino);
}

Where Inode::where() const {
  if (fd >= 0) return Where{fd, ""};
  std::lock_guard lock(where_mu);
  return Where{parent != nullptr ? parent->fd : -1, name};
}

Inode* InodeTable::Add(Inode* parent, const std::string& name, const struct stat& st, int dir_fd) {
  Inode* unpin = nullptr;  // a parent no longer recorded, released below
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
    if (it != inodes_.end()) {
      if (dir_fd >= 0) ::close(dir_fd);
      result = it->second;
      ++result->nlookup;
      if (result->fd < 0) {
        // Remember the name just used: the one recorded may be gone.
        std::lock_guard where(result->where_mu);
        if (result->parent != parent) {
          ++parent->nlookup;
          unpin = result->parent;
          result->parent = parent;
        }
        result->name = name;
      }
    } else {
      result = new Inode;
      result->fd = dir_fd;
      result->dev = st.st_dev;
      result->ino = st.st_ino;
      result->type = st.st_mode & S_IFMT;
      result->nlookup = 1;
      if (dir_fd < 0) {
        ++parent->nlookup;
        result->parent = parent;
        result->name = name;
      }
      inodes_[key] = result;
    }
  }
  if (unpin != nullptr) Forget(unpin, 1);
  return result;
}

void InodeTable::Rebind(dev_t dev, ino_t ino, Inode* parent, const std::string& name) {
  Inode* unpin = nullptr;
  {
    std::lock_guard lock(table_mu_);
    auto it = inodes_.find(std::make_pair(dev, ino));
    if (it == inodes_.end() || it->second->fd >= 0) return;
    Inode* inode = it->second;
    std::lock_guard where(inode->where_mu);
    if (inode->parent != parent) {
      ++parent->nlookup;
      unpin = inode->parent;
      inode->parent = parent;
    }
    inode->name = name;
  }
  if (unpin != nullptr) Forget(unpin, 1);
}

void InodeTable::Forget(Inode* inode, uint64_t n) {
  if (inode == &root_) return;
  Inode* unpin = nullptr;
  {
    std::lock_guard lock(table_mu_);
    uint64_t before = inode->nlookup.fetch_sub(n);
    if (before > n) return;
    inodes_.erase(std::make_pair(inode->dev, inode->ino));
    unpin = inode->parent;
    delete inode;
  }
  // A child pinned its directory; the directory may now go too.
  if (unpin != nullptr) Forget(unpin, 1);
}

}  // namespace envelope::fs
