// The filesystem's inodes: one per backing object (dev, ino) the kernel
// knows about, as in libfuse's example/passthrough_hp.cc. The FUSE inode
// number is the address of the Inode.
//
// Thread safety: InodeTable is thread-safe (table_mu_). Each Inode's mutable
// state is guarded by its own `mu`. Lock order: one Inode::mu before
// InodeTable::table_mu_ (Renumber); the table never takes an Inode::mu.
// Never hold either across fuse_reply_*.
//
// A backing inode number can be reused: an object is removed and a new one
// takes its number while the kernel still holds this table's inode of the
// old one. With -o sharedstorage another mount does that; without it, a
// local user who owns backing objects (allow_other) can do it behind the
// mount's back, and so can the mount itself (an unlink frees a number whose
// inode the kernel forgets later, if a process still holds a reference,
// and the next create gets it). The rule, in both modes: an inode stands
// for one object, its (dev, ino) and file type (Inode::Is). A lookup that
// finds a known number with another file type gives the new object an inode
// of its own, as a kernel filesystem gives a new object a new inode; the old
// inode keeps serving the kernel's references to the old object until they
// are forgotten, and its recorded names lead to nothing (ENOENT) or to
// another object (ESTALE: EnvelopeFs::Stat). A number reused by an object
// of the same type cannot be told apart, and need not be: an inode of a
// non-directory that is not open holds nothing but its names, and an open
// file's descriptor pins its number (docs/SHARED_STORAGE.md §4). A
// directory's inode holds a descriptor, which pins its number.
//
// With -o sharedstorage a recorded name can also be stale
// (docs/SHARED_STORAGE.md): a lookup of a non-directory with one link makes
// the name found its only name.
#ifndef ENVELOPE_FS_INODE_TABLE_H_
#define ENVELOPE_FS_INODE_TABLE_H_

#include <sys/stat.h>
#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "core/format/content_file.h"
#include "core/format/name_codec.h"
#include "fs/shared_storage.h"

namespace envelope::fs {

// Where a backing object is: a directory by its own O_PATH descriptor, any
// other object by (its directory's descriptor, its backing name). Only
// directories hold descriptors, so a tree of 80,000 files does not need
// 80,000 open descriptors (RLIMIT_NOFILE can be as low as 20,000).
struct Where {
  int dirfd;
  std::string name;  // empty for a directory: then dirfd is the object itself
  // False for a file whose every known name was unlinked: it has no path
  // left (open handles reach it through their own descriptor).
  bool known() const { return dirfd >= 0; }
};

struct Inode {
  int fd = -1;  // directories only: O_PATH descriptor; owned
  dev_t dev = 0;
  // Changes only when rekey replaces the backing object (Renumber), under
  // `mu` and table_mu_; read anywhere.
  std::atomic<ino_t> ino{0};
  mode_t type = 0;  // S_IFMT bits
  std::atomic<uint64_t> nlookup{0};

  // Non-directories: every (directory, backing name) the kernel knows it
  // by, most recently used first. A hard-linked file has several; when one
  // is unlinked or renamed away the others still reach it (after `link a b;
  // unlink b`, a cached dentry of `a` must still stat). Each recorded
  // directory is pinned by one lookup count. Guarded by where_mu (a leaf
  // lock).
  mutable std::mutex where_mu;
  std::vector<std::pair<Inode*, std::string>> names;

  Where where() const;
  // Whether the backing stat `st` is this inode's object: the same (dev,
  // ino) and file type. The one test of identity for the table's merges by
  // number and for the calls that stat a recorded name.
  bool Is(const struct stat& st) const {
    return st.st_dev == dev && st.st_ino == ino && (st.st_mode & S_IFMT) == type;
  }

  // Guards everything below. Shared only by reads of `content`
  // (ContentFile::Read may run in parallel); exclusive for everything else.
  std::shared_mutex mu;
  // Directories: the id names are encrypted with, read on first use.
  std::optional<format::DirId> dir_id;
  // Regular files: the content state shared by every open handle.
  int content_fd = -1;  // owned; O_RDWR, or O_RDONLY if the file is read-only to us
  bool content_writable = false;
  std::unique_ptr<format::ContentFile> content;
  int open_count = 0;
  // -o sharedstorage: the backing file as this mount's last request on
  // `content` left it (shared::WithContent).
  shared::BackingStamp seen;

  ~Inode();
};

class InodeTable {
 public:
  // `shared_storage`: other mounts change the same tree (see above).
  InodeTable(int root_fd, bool shared_storage);
  ~InodeTable();

  Inode* root() { return &root_; }
  // The inode for a FUSE inode number.
  Inode* Get(uint64_t ino);
  // Finds or adds the inode of the backing object `name` in `parent` (whose
  // stat is `st`) and counts one lookup. For a directory `dir_fd` is its
  // O_PATH descriptor, owned from here on (closed if the inode exists);
  // other objects pass -1 and are recorded by (parent, name). A known inode
  // of the same number and another type is retired (see above) and the
  // object gets a new one.
  Inode* Add(Inode* parent, const std::string& name, const struct stat& st, int dir_fd);
  // The same if the inode is already known (Inode::Is), else nullptr and
  // nothing done: a directory looked up again needs no new descriptor.
  Inode* AddIfKnown(Inode* parent, const std::string& name, const struct stat& st);
  // Records that the non-directory `st`, if known (Inode::Is), is now `name`
  // in `parent` (after a rename, a link) and, if `old_parent` is not null,
  // no longer `old_name` in `old_parent`.
  void Rebind(const struct stat& st, Inode* old_parent, const std::string& old_name,
              Inode* parent, const std::string& name);
  // Records that `name` in `parent` no longer names the object `st` (after
  // an unlink, or a rename over it).
  void Unbind(const struct stat& st, Inode* parent, const std::string& name);
  // The non-directory `inode` is now the backing object `st` (rekey
  // swapped a new object in under its name): the table finds it by the new
  // number. A stale inode known by that number is retired.
  // REQUIRES: inode->mu held (this takes table_mu_ after it).
  void Renumber(Inode* inode, const struct stat& st);
  // Drops `n` lookups; deletes the inode when none remain. After every
  // kTrimAfter deleted inodes it hands the process's free heap memory back
  // to the kernel (malloc_trim), outside table_mu_: glibc keeps what a
  // thread frees in that thread's arena, libfuse's workers come and go, and
  // the inodes of a forgotten tree stayed as free chunks that later lookups
  // (in other arenas) did not reuse. Measured in docs/BENCHMARKS.md
  // ("Scaling").
  void Forget(Inode* inode, uint64_t n);
  static constexpr uint64_t kTrimAfter = 8192;

 private:
  Inode* AddOrFind(Inode* parent, const std::string& name, const struct stat& st, int dir_fd,
                   bool create);
  // The inode of the non-directory `st` if the table knows it.
  // REQUIRES: table_mu_ held.
  Inode* KnownNonDirectory(const struct stat& st);
  Inode root_;
  const bool shared_storage_;
  std::mutex table_mu_;  // guards inodes_, retired_ and deleted_since_trim_
  std::map<std::pair<dev_t, ino_t>, Inode*> inodes_;
  // Inodes whose number a new object of another type took: out of inodes_,
  // deleted when the kernel forgets them or with the table.
  std::set<Inode*> retired_;
  // Inodes deleted since the last malloc_trim; guarded by table_mu_.
  uint64_t deleted_since_trim_ = 0;
};

}  // namespace envelope::fs

#endif  // ENVELOPE_FS_INODE_TABLE_H_
