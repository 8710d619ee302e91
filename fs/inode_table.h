// The filesystem's inodes: one per backing object (dev, ino) the kernel
// knows about, as in libfuse's example/passthrough_hp.cc. The FUSE inode
// number is the address of the Inode.
//
// Thread safety: InodeTable is thread-safe (table_mu_). Each Inode's mutable
// state is guarded by its own `mu`. Lock order: InodeTable::table_mu_ before
// Inode::mu; never hold either across fuse_reply_*.
#ifndef ENVELOPE_FS_INODE_TABLE_H_
#define ENVELOPE_FS_INODE_TABLE_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "core/format/content_file.h"
#include "core/format/name_codec.h"

namespace envelope::fs {

struct Inode {
  int fd = -1;  // O_PATH descriptor of the backing object; owned
  dev_t dev = 0;
  ino_t ino = 0;
  mode_t type = 0;  // S_IFMT bits
  std::atomic<uint64_t> nlookup{0};

  std::mutex mu;  // guards everything below
  // Directories: the id names are encrypted with, read on first use.
  std::optional<format::DirId> dir_id;
  // Regular files: the content state shared by every open handle.
  int content_fd = -1;  // owned; O_RDWR, or O_RDONLY if the file is read-only to us
  bool content_writable = false;
  std::unique_ptr<format::ContentFile> content;
  int open_count = 0;

  ~Inode();
};

class InodeTable {
 public:
  explicit InodeTable(int root_fd);
  ~InodeTable();

  Inode* root() { return &root_; }
  // The inode for a FUSE inode number.
  Inode* Get(uint64_t ino);
  // Finds or adds the inode of the backing object `fd` refers to and counts
  // one lookup. Takes ownership of `fd` (closed if the inode already exists).
  // Returns nullptr with errno set if fstat fails.
  Inode* Add(int fd, const struct stat& st);
  // Drops `n` lookups; deletes the inode when none remain.
  void Forget(Inode* inode, uint64_t n);

 private:
  Inode root_;
  std::mutex table_mu_;  // guards inodes_
  std::map<std::pair<dev_t, ino_t>, Inode*> inodes_;
};

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_INODE_TABLE_H_
