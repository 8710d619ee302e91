#include "fs/rekey.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <mutex>
#include <set>
#include <string_view>
#include <vector>

#include "core/base/coding.h"
#include "core/crypto/random.h"
#include "fs/backing_tree.h"
#include "fs/progress.h"
#include "fs/volume_walk.h"

namespace envelope::fs {

namespace {

constexpr size_t kCopyPieceInBytes = 1 << 20;
constexpr std::string_view kJournalMagic = "envelopefs-rekey v1\n";

// Testing aid (ENVELOPE_TEST_REKEY_KILL=N:STAGE): SIGKILL this process when
// the Nth file of the run reaches STAGE ("copied": the new file is
// complete and synced, nothing renamed; "exchanged": the names are
// swapped, the old object not yet removed; "removed": the file is done,
// its directory not yet synced), so that the crash tests kill at exactly
// the moments that matter rather than at a random one.
void MaybeDie(uint64_t file_number, std::string_view stage) {
  static const char* spec = std::getenv("ENVELOPE_TEST_REKEY_KILL");
  if (spec == nullptr) return;
  const std::string_view s(spec);
  const size_t colon = s.find(':');
  if (colon == std::string_view::npos || s.substr(colon + 1) != stage) return;
  if (std::strtoull(std::string(s.substr(0, colon)).c_str(), nullptr, 10) != file_number) return;
  ::raise(SIGKILL);
}

std::atomic<uint64_t> g_files_started{0};

std::string RandomTempName() {
  uint8_t r[8];
  (void)crypto::RandomBytes(r);
  return kRekeyTempPrefix + HexEncode(ByteView(r, sizeof(r)));
}

// Every extended attribute of `from` that `to` does not have yet (the DEK
// xattr of a volume with --dek-in xattr is the new file's own).
Status CopyXattrs(int from, int to) {
  std::vector<char> names(64 * 1024);
  ssize_t n = ::flistxattr(from, names.data(), names.size());
  if (n < 0) return errno == ENOTSUP ? Status::Ok() : Status::FromErrno("flistxattr");
  std::vector<char> have(64 * 1024);
  ssize_t h = ::flistxattr(to, have.data(), have.size());
  std::set<std::string> existing;
  for (ssize_t i = 0; h > 0 && i < h;) {
    std::string name(have.data() + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    existing.insert(name);
  }
  std::vector<uint8_t> value(64 * 1024 + 64);
  for (ssize_t i = 0; i < n;) {
    std::string name(names.data() + i);
    i += static_cast<ssize_t>(name.size()) + 1;
    if (existing.count(name)) continue;
    ssize_t v = ::fgetxattr(from, name.c_str(), value.data(), value.size());
    if (v < 0) return Status::FromErrno("fgetxattr " + name);
    if (::fsetxattr(to, name.c_str(), value.data(), static_cast<size_t>(v), XATTR_CREATE) != 0) {
      return Status::FromErrno("fsetxattr " + name);
    }
  }
  return Status::Ok();
}

// The plaintext of `from`, holes kept, into the empty `to`.
StatusOr<uint64_t> CopyContent(format::ContentFile* from, format::ContentFile* to) {
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t size, from->Size());
  Bytes buf(kCopyPieceInBytes);
  uint64_t at = 0;
  while (at < size) {
    auto data = from->SeekData(at);
    if (!data.ok()) {
      if (ToErrno(data.status()) == ENXIO) break;
      return data.status();
    }
    if (*data >= size) break;
    ENVELOPE_ASSIGN_OR_RETURN(uint64_t hole, from->SeekHole(*data));
    hole = std::min(hole, size);
    for (uint64_t p = *data; p < hole;) {
      const size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), hole - p));
      ENVELOPE_ASSIGN_OR_RETURN(size_t got, from->Read(p, MutableByteView(buf.data(), want)));
      if (got != want) return Status::Corruption("the file ended early while it was copied");
      ENVELOPE_RETURN_IF_ERROR(to->Write(p, ByteView(buf.data(), got)));
      p += got;
    }
    at = hole;
  }
  ENVELOPE_ASSIGN_OR_RETURN(uint64_t copied, to->Size());
  if (copied < size) ENVELOPE_RETURN_IF_ERROR(to->Truncate(size));
  return size;
}

}  // namespace

StatusOr<RekeyedFile> RekeyFile(Volume* volume, int dirfd, const std::string& name, dev_t dev,
                                ino_t ino) {
  const uint64_t number = g_files_started.fetch_add(1) + 1;
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd old_fd, backing::OpenRegular(dirfd, name, O_RDONLY));
  struct stat st;
  if (::fstat(old_fd.get(), &st) != 0) return Status::FromErrno("fstat");
  if (st.st_dev != dev || st.st_ino != ino) {
    return Status::IoError("the backing name was replaced", ESTALE);
  }
  if (st.st_nlink != 1) {
    return Status::IoError("hard-linked: one rename cannot move every name", EMLINK);
  }
  ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<format::ContentFile> old,
                            volume->OpenContent(old_fd.get()));

  const std::string temp = RandomTempName();
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd new_fd,
                            backing::CreateRegular(dirfd, temp, 0600, /*exclusive=*/true));
  RekeyedFile out;
  Status s = [&]() -> Status {
    ENVELOPE_ASSIGN_OR_RETURN(out.content, volume->CreateContent(new_fd.get()));
    ENVELOPE_ASSIGN_OR_RETURN(out.plaintext_bytes, CopyContent(old.get(), out.content.get()));
    ENVELOPE_RETURN_IF_ERROR(CopyXattrs(old_fd.get(), new_fd.get()));
    // Owner before mode (a chown clears set-id bits), times last (every
    // write above moved them).
    if ((st.st_uid != ::geteuid() || st.st_gid != ::getegid()) &&
        ::fchown(new_fd.get(), st.st_uid, st.st_gid) != 0) {
      return Status::FromErrno("fchown");
    }
    if (::fchmod(new_fd.get(), st.st_mode & 07777) != 0) return Status::FromErrno("fchmod");
    const struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (::futimens(new_fd.get(), times) != 0) return Status::FromErrno("futimens");
    if (::fsync(new_fd.get()) != 0) return Status::FromErrno("fsync");
    return Status::Ok();
  }();
  if (!s.ok()) {
    out.content.reset();
    (void)backing::Unlink(dirfd, temp);
    return s;
  }
  MaybeDie(number, "copied");

  s = backing::Rename(dirfd, temp, dirfd, name, RENAME_EXCHANGE);
  if (!s.ok()) {
    out.content.reset();
    (void)backing::Unlink(dirfd, temp);
    return s;
  }
  // What went to the temporary name must be what was copied: a name
  // changed meanwhile (a rename by the mount or a user) is given back.
  struct stat swapped;
  if (!backing::Stat(dirfd, temp, &swapped).ok() || swapped.st_dev != dev ||
      swapped.st_ino != ino) {
    (void)backing::Rename(dirfd, temp, dirfd, name, RENAME_EXCHANGE);
    out.content.reset();
    (void)backing::Unlink(dirfd, temp);
    return Status::IoError("the backing name changed while the file was re-keyed", ESTALE);
  }
  MaybeDie(number, "exchanged");
  ENVELOPE_RETURN_IF_ERROR(backing::Unlink(dirfd, temp).WithContext("the old copy"));
  MaybeDie(number, "removed");
  if (::fstat(new_fd.get(), &out.st) != 0) return Status::FromErrno("fstat");
  out.fd = std::move(new_fd);
  return out;
}

namespace {

// The resumable run's journal (see rekey.h): magic, then the new objects'
// inode numbers, 8 bytes little-endian each. Also the run's lock (flock).
class Journal {
 public:
  static StatusOr<std::unique_ptr<Journal>> Open(int root_fd) {
    const std::string name(kRekeyJournalName);
    auto fd = backing::OpenRegular(root_fd, name, O_RDWR);
    bool fresh = false;
    if (!fd.ok()) {
      if (ToErrno(fd.status()) != ENOENT) return fd.status().WithContext("the rekey journal");
      fd = backing::CreateRegular(root_fd, name, 0600, /*exclusive=*/true);
      if (!fd.ok()) return fd.status().WithContext("the rekey journal");
      fresh = true;
    }
    if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) {
      return Status::FailedPrecondition("another envelopefs rekey is running on this volume");
    }
    struct stat st;
    if (::fstat(fd->get(), &st) != 0) return Status::FromErrno("fstat the rekey journal");
    std::unique_ptr<Journal> j(new Journal(std::move(*fd)));
    const bool ours = st.st_uid == ::geteuid() && (st.st_mode & 022) == 0;
    if (!fresh && ours && static_cast<size_t>(st.st_size) >= kJournalMagic.size()) {
      Bytes text(static_cast<size_t>(st.st_size));
      auto n = PreadFull(j->fd_.get(), MutableByteView(text.data(), text.size()), 0);
      if (n.ok() && *n == text.size() &&
          std::equal(kJournalMagic.begin(), kJournalMagic.end(), text.begin())) {
        const size_t records = (text.size() - kJournalMagic.size()) / 8;
        for (size_t i = 0; i < records; ++i) {
          j->done_.insert(DecodeFixed64(text.data() + kJournalMagic.size() + i * 8));
        }
        j->end_ = kJournalMagic.size() + records * 8;  // a torn record is cut off
        return j;
      }
    }
    // New, or not one we can trust: start afresh.
    if (::ftruncate(j->fd_.get(), 0) != 0) return Status::FromErrno("truncate the rekey journal");
    ENVELOPE_RETURN_IF_ERROR(PwriteFull(j->fd_.get(), AsBytes(kJournalMagic), 0));
    j->end_ = kJournalMagic.size();
    return j;
  }

  bool Done(ino_t ino) const { return done_.count(static_cast<uint64_t>(ino)) > 0; }
  size_t size() const { return done_.size(); }

  // Records files whose renames are durable.
  Status Add(const std::vector<uint64_t>& inos) {
    if (inos.empty()) return Status::Ok();
    Bytes b(inos.size() * 8);
    for (size_t i = 0; i < inos.size(); ++i) EncodeFixed64(b.data() + i * 8, inos[i]);
    ENVELOPE_RETURN_IF_ERROR(PwriteFull(fd_.get(), b, end_));
    end_ += b.size();
    if (::fdatasync(fd_.get()) != 0) return Status::FromErrno("fdatasync the rekey journal");
    return Status::Ok();
  }

 private:
  explicit Journal(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
  uint64_t end_ = 0;
  std::set<uint64_t> done_;
};

// Removes the temporaries an interrupted run left in the directory `dirfd`:
// regular files of ours whose name starts with kRekeyTempPrefix.
uint64_t RemoveStaleTemporaries(int dirfd) {
  auto readable = backing::OpenDir(dirfd, "");
  if (!readable.ok()) return 0;
  DIR* d = ::fdopendir(readable->get());
  if (d == nullptr) return 0;
  readable->release();
  std::vector<std::string> stale;
  while (dirent* de = ::readdir(d)) {
    if (std::string_view(de->d_name).rfind(kRekeyTempPrefix, 0) == 0) stale.push_back(de->d_name);
  }
  uint64_t removed = 0;
  for (const std::string& n : stale) {
    struct stat st;
    if (backing::Stat(::dirfd(d), n, &st).ok() && S_ISREG(st.st_mode) &&
        backing::Unlink(::dirfd(d), n).ok()) {
      ++removed;
    }
  }
  ::closedir(d);
  return removed;
}

}  // namespace

StatusOr<RekeySummary> RekeyVolume(Volume* volume, const RekeyOptions& options) {
  RekeySummary summary;
  Progress clock("", 0, false);
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, backing::OpenRoot(volume->cipherdir()));
  ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<Journal> journal, Journal::Open(root.get()));
  summary.resumed = 0;
  ENVELOPE_ASSIGN_OR_RETURN(VolumeListing listing,
                            ListVolume(*volume, ListOptions{.decode_names = !options.files.empty()}));

  // The files: regular, and named if names were given.
  std::vector<const VolumeEntry*> work;
  std::set<std::string> wanted(options.files.begin(), options.files.end());
  for (const VolumeEntry& e : listing.entries) {
    if (e.type != DT_REG) continue;
    if (!wanted.empty()) {
      auto it = wanted.find(listing.DisplayPath(e));
      if (it == wanted.end()) continue;
      wanted.erase(it);
    }
    work.push_back(&e);
  }
  if (!wanted.empty()) {
    return Status::NotFound("no regular file " + *wanted.begin() + " in the volume");
  }
  for (const VolumeDir& dir : listing.dirs) {
    auto fd = backing::OpenDirBeneath(root.get(), dir.backing_path);
    if (fd.ok()) summary.stale_temporaries += RemoveStaleTemporaries(fd->get());
  }
  // Directory by directory, in inode order within each: one descriptor per
  // directory at a time per worker, and reads in disk order.
  std::sort(work.begin(), work.end(), [](const VolumeEntry* a, const VolumeEntry* b) {
    return a->dir != b->dir ? a->dir < b->dir : a->ino < b->ino;
  });
  uint64_t total_bytes = 0;
  std::vector<uint64_t> sizes(work.size(), 0);
  // One descriptor per directory (the work is sorted by directory).
  StatusOr<UniqueFd> dir_fd = Status::NotFound("none yet");
  uint32_t dir_of_fd = 0;
  for (size_t i = 0; i < work.size(); ++i) {
    struct stat st;
    if (!dir_fd.ok() || dir_of_fd != work[i]->dir) {
      dir_of_fd = work[i]->dir;
      dir_fd = backing::OpenDirBeneath(root.get(), listing.dirs[dir_of_fd].backing_path);
    }
    if (dir_fd.ok() && backing::Stat(dir_fd->get(), work[i]->backing, &st).ok()) {
      auto plain = volume->layout().PlaintextSize(static_cast<uint64_t>(st.st_size));
      sizes[i] = plain.ok() ? *plain : 0;
      total_bytes += sizes[i];
    }
  }
  summary.files = work.size();

  std::mutex mu;  // guards summary's counters and failures, and the batch below
  std::vector<uint64_t> batch;           // new inode numbers not yet journaled
  std::set<uint32_t> batch_dirs;         // directories to fsync before they are
  auto flush = [&]() -> Status {         // REQUIRES: mu held
    for (uint32_t d : batch_dirs) {
      auto fd = backing::OpenDirBeneath(root.get(), listing.dirs[d].backing_path);
      if (fd.ok() && ::fsync(fd->get()) != 0) return Status::FromErrno("fsync a directory");
    }
    Status s = journal->Add(batch);
    batch.clear();
    batch_dirs.clear();
    return s;
  };
  {
    Progress progress("rekey", total_bytes, options.progress, Progress::Unit::kBytes);
    ParallelFor(work.size(), options.threads, [&](size_t i) {
      const VolumeEntry& e = *work[i];
      auto dir = backing::OpenDirBeneath(root.get(), listing.dirs[e.dir].backing_path);
      struct stat st;
      Status s = dir.status();
      if (s.ok()) s = backing::Stat(dir->get(), e.backing, &st);
      if (s.ok() && journal->Done(st.st_ino)) {
        std::lock_guard lock(mu);
        ++summary.resumed;
        progress.Add(sizes[i]);
        return true;
      }
      StatusOr<RekeyedFile> done = s;
      if (s.ok()) done = RekeyFile(volume, dir->get(), e.backing, st.st_dev, st.st_ino);
      std::lock_guard lock(mu);
      progress.Add(sizes[i]);
      if (!done.ok()) {
        if (ToErrno(done.status()) == EMLINK) {
          ++summary.hard_linked;
        } else {
          summary.failures.push_back(listing.DecodePath(*volume, root.get(), e) + ": " +
                                     done.status().ToString());
        }
        return true;
      }
      ++summary.rekeyed;
      summary.bytes += done->plaintext_bytes;
      batch.push_back(static_cast<uint64_t>(done->st.st_ino));
      batch_dirs.insert(e.dir);
      if (batch.size() >= 64) {
        Status f = flush();
        if (!f.ok()) summary.failures.push_back("journal: " + f.ToString());
      }
      return true;
    });
    std::lock_guard lock(mu);
    Status f = flush();
    if (!f.ok()) summary.failures.push_back("journal: " + f.ToString());
  }
  // Done: the next run is a new one. After failures the journal stays, so
  // that a rerun does only what is left.
  if (summary.failures.empty()) {
    (void)backing::Unlink(root.get(), kRekeyJournalName);
  }
  summary.seconds = clock.ElapsedSeconds();
  return summary;
}

StatusOr<RekeySummary> RekeyThroughMount(const std::string& cipherdir,
                                         const std::string& mountpoint,
                                         const RekeyOptions& options) {
  namespace stdfs = std::filesystem;
  RekeySummary summary;
  Progress clock("", 0, false);
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, backing::OpenRoot(cipherdir));
  ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<Journal> journal, Journal::Open(root.get()));

  // The regular files, with their sizes for the progress; symlinks are not
  // followed.
  std::vector<std::pair<std::string, uint64_t>> work;
  auto add = [&](const std::string& path) -> Status {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0) return Status::FromErrno(path);
    if (S_ISREG(st.st_mode)) work.emplace_back(path, static_cast<uint64_t>(st.st_size));
    return Status::Ok();
  };
  if (options.files.empty()) {
    std::error_code ec;
    for (auto it = stdfs::recursive_directory_iterator(mountpoint, ec);
         !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
      if (it->is_regular_file(ec) && !it->is_symlink(ec)) (void)add(it->path().string());
    }
    if (ec) return Status::IoError("walking " + mountpoint + ": " + ec.message(), ec.value());
  } else {
    for (const std::string& f : options.files) {
      const size_t before = work.size();
      Status s = add(mountpoint + (f.rfind('/', 0) == 0 ? "" : "/") + f);
      if (!s.ok() || work.size() == before) {
        return Status::NotFound("no regular file " + f + " in the volume");
      }
    }
  }
  summary.files = work.size();
  uint64_t total_bytes = 0;
  for (const auto& [path, size] : work) total_bytes += size;

  std::mutex mu;  // guards summary and batch
  std::vector<uint64_t> batch;
  {
    Progress progress("rekey", total_bytes, options.progress, Progress::Unit::kBytes);
    ParallelFor(work.size(), options.threads, [&](size_t i) {
      const auto& [path, size] = work[i];
      struct stat st;
      Status s;
      if (::lstat(path.c_str(), &st) != 0) {
        s = Status::FromErrno("stat");
      } else if (journal->Done(st.st_ino)) {
        std::lock_guard lock(mu);
        ++summary.resumed;
        progress.Add(size);
        return true;
      } else if (::setxattr(path.c_str(), kRekeyXattrName, "", 0, 0) != 0) {
        s = Status::FromErrno(errno == EPERM ? "rekey through a mount needs root (CAP_SYS_ADMIN)"
                                             : "rekey");
      } else if (::lstat(path.c_str(), &st) != 0) {
        s = Status::FromErrno("stat after the rekey");
      }
      std::lock_guard lock(mu);
      progress.Add(size);
      if (!s.ok()) {
        if (ToErrno(s) == EMLINK) {
          ++summary.hard_linked;
        } else {
          summary.failures.push_back(path.substr(mountpoint.size()) + ": " + s.ToString());
        }
        return true;
      }
      ++summary.rekeyed;
      summary.bytes += static_cast<uint64_t>(st.st_size);
      batch.push_back(static_cast<uint64_t>(st.st_ino));
      if (batch.size() >= 64) {
        Status f = journal->Add(batch);
        batch.clear();
        if (!f.ok()) summary.failures.push_back("journal: " + f.ToString());
      }
      return true;
    });
    std::lock_guard lock(mu);
    Status f = journal->Add(batch);
    if (!f.ok()) summary.failures.push_back("journal: " + f.ToString());
  }
  if (summary.failures.empty()) (void)backing::Unlink(root.get(), kRekeyJournalName);
  summary.seconds = clock.ElapsedSeconds();
  return summary;
}

}  // namespace envelope::fs
