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

Inode* InodeTable::Add(int fd, const struct stat& st) {
  std::lock_guard lock(table_mu_);
  if (st.st_dev == root_.dev && st.st_ino == root_.ino) {
    ::close(fd);
    ++root_.nlookup;
    return &root_;
  }
  auto key = std::make_pair(st.st_dev, st.st_ino);
  auto it = inodes_.find(key);
  if (it != inodes_.end()) {
    ::close(fd);
    ++it->second->nlookup;
    return it->second;
  }
  auto* inode = new Inode;
  inode->fd = fd;
  inode->dev = st.st_dev;
  inode->ino = st.st_ino;
  inode->type = st.st_mode & S_IFMT;
  inode->nlookup = 1;
  inodes_[key] = inode;
  return inode;
}

void InodeTable::Forget(Inode* inode, uint64_t n) {
  if (inode == &root_) return;
  std::lock_guard lock(table_mu_);
  uint64_t before = inode->nlookup.fetch_sub(n);
  if (before > n) return;
  inodes_.erase(std::make_pair(inode->dev, inode->ino));
  delete inode;
}

}  // namespace envelope::fs
