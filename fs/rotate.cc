#include "fs/rotate.h"

#include <fcntl.h>
#include <linux/magic.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "core/base/fd_io.h"
#include "core/format/header_io.h"
#include "fs/backing_tree.h"
#include "fs/mount_table.h"
#include "fs/progress.h"
#include "fs/rotation_journal.h"
#include "fs/volume_walk.h"

namespace envelope::fs {

namespace {


struct TargetKey {
  std::string arn;
  std::string key_id;  // as VersionOf names keys
  kms::CurrentVersion version;
};

StatusOr<TargetKey> DescribeTarget(kms::KeyService* kms, const std::string& key) {
  ENVELOPE_ASSIGN_OR_RETURN(kms::KeyInfo info, kms->DescribeKey(key));
  if (info.state != "Enabled") {
    return Status::FailedPrecondition("key " + key + " is " + (info.state.empty() ? "?" : info.state) +
                                      ", not Enabled: nothing can be re-wrapped under it");
  }
  TargetKey t;
  t.arn = info.arn;
  t.key_id = info.key_id;
  for (char& c : t.key_id) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  ENVELOPE_ASSIGN_OR_RETURN(t.version, kms->DescribeCurrentVersion(t.arn));
  return t;
}

// Which blobs are already under the target's current version: by the
// blob's own label where the service has labels (envelope-keyd), else by
// the rotation journal (opaque blobs: fs/rotation_journal.h).
class CurrentTest {
 public:
  CurrentTest(kms::KeyService* kms, const TargetKey& target, RotationJournal* journal)
      : kms_(kms), target_(target), journal_(journal) {}

  bool operator()(ByteView blob) const {
    if (target_.version.number) {
      if (auto label = kms_->VersionOf(blob)) {
        return label->key_id == target_.key_id && label->version >= *target_.version.number;
      }
    }
    return journal_ != nullptr && journal_->Contains(blob);
  }

 private:
  kms::KeyService* const kms_;
  const TargetKey& target_;
  RotationJournal* const journal_;
};

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

double SecondsSince(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

// A mount keeps up to 2 s of file keys made ahead (fs/dek_pool.h) and reads
// a rewritten config within 1 s. Files it creates after this margin are
// wrapped under the target; files created before it are on disk for the
// walk to find.
constexpr double kMountMarginSeconds = 3.5;

// Whether an ext4 filesystem has a journal: /sys/fs/ext4/DEV/journal_task
// names the journal's thread, or says "<none>". Unknown (an older kernel
// without the file) counts as no.
bool Ext4HasJournal(dev_t dev) {
  std::error_code ec;
  const auto device = std::filesystem::read_symlink(
      "/sys/dev/block/" + std::to_string(major(dev)) + ":" + std::to_string(minor(dev)), ec);
  if (ec) return false;
  std::ifstream in("/sys/fs/ext4/" + device.filename().string() + "/journal_task");
  std::string task;
  return static_cast<bool>(in >> task) && task != "<none>";
}

// Whether the slot writes of a run can be made durable file by file rather
// than by one syncfs of the whole filesystem (docs/ROTATION.md,
// "Durability"): on ext4 and XFS a header slot overwrites, in place,
// blocks the file has had since its creation, so its data reaching the
// device and one cache flush make it durable. An xattr value is metadata:
// one journal commit after the last write (XFS, ext4 with a journal)
// carries it; ext4 without a journal would need an fsync per file. Other
// filesystems (btrfs copies on write, NFS needs a COMMIT per file) sync the
// whole filesystem.
bool FileByFileDurable(int dirfd, bool dek_in_xattr) {
  struct statfs sfs;
  struct stat st;
  if (::fstatfs(dirfd, &sfs) != 0 || ::fstat(dirfd, &st) != 0) return false;
  if (sfs.f_type == XFS_SUPER_MAGIC) return true;
  if (sfs.f_type != EXT4_SUPER_MAGIC) return false;
  return !dek_in_xattr || Ext4HasJournal(st.st_dev);
}

void Syncfs(int fd) { ::syncfs(fd); }

// One file of a batch, from its header read to its new slot.
struct Pending {
  size_t index = 0;  // into the run's files
  UniqueFd fd;
  struct stat st {};
  format::FileHeader header;
  Bytes blob;
  std::optional<kms::BlobVersion> label;
  kms::EncryptionContextMap context;
  std::vector<std::string> source_keys;  // the trusted keys to try, in order
};

// What one worker counted, added to the summary at the end of each batch.
struct Tally {
  uint64_t files = 0;
  uint64_t rewrapped = 0;
  uint64_t already_current = 0;
  uint64_t skipped_empty = 0;
  uint64_t bytes_written = 0;
  uint64_t not_durable = 0;  // counted in `rewrapped`, then the writeback failed
  std::map<std::string, uint64_t> from_versions;
  std::vector<std::pair<size_t, std::string>> failures;  // (file, reason)
};

// The walk over the files: workers take batches; everything shared is
// guarded as written beside it.
class Walk {
 public:
  Walk(Volume* volume, const VolumeListing& listing, std::vector<const VolumeEntry*> files,
       int root_fd, const CurrentTest& is_current, RotationJournal* journal,
       std::string to_key, bool sync_ranges, size_t files_per_batch, Progress* progress)
      : volume_(volume),
        kms_(volume->kms()),
        listing_(listing),
        files_(std::move(files)),
        root_fd_(root_fd),
        is_current_(is_current),
        journal_(journal),
        to_key_(std::move(to_key)),
        sync_ranges_(sync_ranges),
        files_per_batch_(std::max<size_t>(1, files_per_batch)),
        progress_(progress) {}

  // Runs `threads` workers to the end (or to a fatal error) and adds what
  // they did to *summary. Returns the fatal error, if any.
  Status Run(int threads, RotateSummary* summary);

  // The first failure to record a blob in the journal, if any.
  Status journal_trouble() const {
    std::lock_guard lock(mu_);
    return journal_trouble_;
  }

 private:
  void Worker();
  // Opens and reads one file; nullopt when there is nothing to write.
  std::optional<Pending> Prepare(size_t index, Tally* tally);
  // Writes the new slot of `p` (or records why not). False on a fatal
  // error (the key service stopped answering).
  bool Finish(Pending* p, StatusOr<Bytes> rewrapped, Tally* tally);
  // Writes `fd`'s new slot (in the file's header) back to the device:
  // starts that writeback, or (`wait`) also waits until it has finished.
  static Status WriteBackSlot(int fd, bool wait);
  void Record(ByteView blob);
  void Merge(Tally* tally);

  Volume* const volume_;
  kms::KeyService* const kms_;
  const VolumeListing& listing_;
  const std::vector<const VolumeEntry*> files_;
  const int root_fd_;
  const CurrentTest& is_current_;
  RotationJournal* const journal_;
  const std::string to_key_;
  const bool sync_ranges_;  // per-file writeback (FileByFileDurable), else one syncfs
  const size_t files_per_batch_;  // RotateOptions::files_per_batch, at least 1
  Progress* const progress_;

  std::atomic<size_t> next_{0};      // the next batch's first file
  std::atomic<bool> stop_{false};    // a fatal error: start no more batches
  mutable std::mutex mu_;            // guards everything below
  std::set<std::pair<dev_t, ino_t>> seen_;  // files with more than one link
  RotateSummary* summary_ = nullptr;
  std::vector<std::pair<size_t, std::string>> failures_;
  Status fatal_;
  Status journal_trouble_;
};

std::optional<Pending> Walk::Prepare(size_t index, Tally* tally) {
  const VolumeEntry& e = *files_[index];
  auto fail = [&](const std::string& why) {
    tally->failures.emplace_back(index, why);
    return std::nullopt;
  };
  progress_->Add();
  // No component followed: a directory swapped for a symlink since the
  // walk is a failure to report, not a way out of the cipherdir.
  auto opened = backing::OpenFileBeneath(root_fd_, listing_.BackingPath(e), O_RDWR);
  if (!opened.ok()) {
    if (ToErrno(opened.status()) != ENOENT) return fail(opened.status().ToString());
    return std::nullopt;  // removed since the walk
  }
  Pending p;
  p.index = index;
  p.fd = std::move(*opened);
  if (::fstat(p.fd.get(), &p.st) != 0) return fail(std::string("fstat: ") + std::strerror(errno));
  if (p.st.st_nlink > 1) {
    // Hard links: one file, however many names.
    std::lock_guard lock(mu_);
    if (!seen_.insert({p.st.st_dev, p.st.st_ino}).second) return std::nullopt;
  }
  ++tally->files;
  if (p.st.st_size == 0) {
    ++tally->skipped_empty;
    return std::nullopt;
  }
  auto header = format::ReadHeader(p.fd.get(), volume_->layout());
  if (!header.ok()) return fail(header.status().ToString());
  p.header = std::move(*header);
  auto blob = format::ActiveWrappedDek(p.header);
  if (!blob.ok()) return fail(blob.status().ToString());
  p.blob = std::move(*blob);
  if (is_current_(p.blob)) {
    ++tally->already_current;
    return std::nullopt;
  }
  p.label = kms_->VersionOf(p.blob);
  // SourceKeyId pins the key the file key must be under: one that a user
  // swapped for a key of their own is not re-wrapped (and so blessed).
  auto keys = volume_->KeyIdsToUnwrap(p.blob);
  if (!keys.ok()) return fail(keys.status().ToString());
  p.source_keys = std::move(*keys);
  p.context = volume_->config().FileContext(HexEncode(p.header.file_id));
  return p;
}

bool Walk::Finish(Pending* p, StatusOr<Bytes> rewrapped, Tally* tally) {
  const auto& label = p->label;
  if (!rewrapped.ok()) {
    if (rewrapped.status().code() == StatusCode::kUnavailable) {
      std::lock_guard lock(mu_);
      if (fatal_.ok()) fatal_ = rewrapped.status();
      return false;
    }
    tally->failures.emplace_back(
        p->index, rewrapped.status().ToString() +
                      (label ? " (file key under key " + label->key_id + " version " +
                                   std::to_string(label->version) + ")"
                             : std::string()));
    return true;
  }
  Status s = format::RewriteWrappedDek(p->fd.get(), &p->header, *rewrapped,
                                       format::Durability::kCallerSyncs);
  if (!s.ok()) {
    tally->failures.emplace_back(p->index, s.ToString());
    return true;
  }
  // The content did not change, so neither may its times: make, rsync and
  // backups go by mtime. (ctime does change: the file's metadata did.)
  const struct timespec times[2] = {p->st.st_atim, p->st.st_mtim};
  if (::futimens(p->fd.get(), times) != 0) {
    tally->failures.emplace_back(p->index,
                                 std::string("restoring the file times: ") + std::strerror(errno));
    return true;
  }
  if (sync_ranges_ && !p->header.dek_in_xattr()) {
    s = WriteBackSlot(p->fd.get(), /*wait=*/false);
    if (!s.ok()) {
      tally->failures.emplace_back(p->index, s.ToString());
      return true;
    }
  }
  Record(*rewrapped);
  ++tally->rewrapped;
  tally->bytes_written +=
      p->header.dek_in_xattr() ? rewrapped->size() + 1 : format::kSlotSizeInBytes;
  ++tally->from_versions[label ? label->key_id + ":" + std::to_string(label->version)
                               : std::string("unknown")];
  return true;
}

// The slot lies in the header, in the file's first bytes.
Status Walk::WriteBackSlot(int fd, bool wait) {
  const unsigned flags = wait ? SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                    SYNC_FILE_RANGE_WAIT_AFTER
                              : SYNC_FILE_RANGE_WRITE;
  if (::sync_file_range(fd, 0, format::kHeaderSizeDekInHeader, flags) != 0) {
    return Status::FromErrno("writing the new slot back (sync_file_range)");
  }
  return Status::Ok();
}

void Walk::Record(ByteView blob) {
  if (journal_ == nullptr) return;
  Status s = journal_->Add(blob);
  if (s.ok()) return;
  std::lock_guard lock(mu_);
  if (journal_trouble_.ok()) journal_trouble_ = s;
}

void Walk::Merge(Tally* tally) {
  std::lock_guard lock(mu_);
  RotateSummary& sum = *summary_;
  sum.files += tally->files;
  sum.rewrapped += tally->rewrapped - tally->not_durable;
  sum.already_current += tally->already_current;
  sum.skipped_empty += tally->skipped_empty;
  sum.bytes_written += tally->bytes_written;
  for (const auto& [from, n] : tally->from_versions) sum.from_versions[from] += n;
  for (auto& f : tally->failures) failures_.push_back(std::move(f));
  *tally = Tally();
}

void Walk::Worker() {
  Tally tally;
  // The written files of the previous batch, whose writeback this batch's
  // work has given time to finish.
  std::vector<Pending> previous;
  auto settle = [&](std::vector<Pending>* written) {
    for (Pending& p : *written) {
      Status s = WriteBackSlot(p.fd.get(), /*wait=*/true);
      if (!s.ok()) {
        // Counted as re-wrapped, but not known to be on the disk: a failure.
        ++tally.not_durable;
        tally.failures.emplace_back(p.index, s.ToString());
      }
    }
    written->clear();
  };
  while (!stop_.load(std::memory_order_relaxed)) {
    const size_t start = next_.fetch_add(files_per_batch_, std::memory_order_relaxed);
    if (start >= files_.size()) break;
    const size_t end = std::min(files_.size(), start + files_per_batch_);
    std::vector<Pending> batch;
    batch.reserve(end - start);
    for (size_t i = start; i < end; ++i) {
      if (auto p = Prepare(i, &tally)) batch.push_back(std::move(*p));
    }
    // One request for every file whose key its label names; a file that
    // may be under any of several trusted keys (opaque blobs) tries them
    // in turn.
    std::vector<kms::ReEncryptItem> items;
    std::vector<size_t> which;
    for (size_t k = 0; k < batch.size(); ++k) {
      if (batch[k].source_keys.size() == 1) {
        items.push_back({batch[k].blob, batch[k].source_keys[0], batch[k].context,
                         batch[k].context});
        which.push_back(k);
      }
    }
    std::vector<std::optional<StatusOr<Bytes>>> results(batch.size());
    if (!items.empty()) {
      std::vector<StatusOr<Bytes>> many = kms_->ReEncryptMany(items, to_key_);
      for (size_t j = 0; j < which.size(); ++j) {
        results[which[j]] =
            j < many.size() ? std::move(many[j]) : StatusOr<Bytes>(Status::Internal("no result"));
      }
    }
    std::vector<Pending> written;
    for (size_t k = 0; k < batch.size(); ++k) {
      Pending& p = batch[k];
      StatusOr<Bytes> rewrapped = results[k] ? std::move(*results[k])
                                             : volume_->Rewrap(p.blob, p.context, to_key_);
      const uint64_t before = tally.rewrapped;
      if (!Finish(&p, std::move(rewrapped), &tally)) {
        stop_ = true;
        continue;  // the slots already re-wrapped in this batch are still written
      }
      if (tally.rewrapped != before && sync_ranges_ && !p.header.dek_in_xattr()) {
        written.push_back(std::move(p));
      }
    }
    settle(&previous);
    previous = std::move(written);
    Merge(&tally);
  }
  settle(&previous);
  Merge(&tally);
}

Status Walk::Run(int threads, RotateSummary* summary) {
  summary_ = summary;
  const size_t batches = (files_.size() + files_per_batch_ - 1) / files_per_batch_;
  // A worker holds up to two batches' descriptors: no more workers than the
  // descriptor limit allows (with room for everything else).
  struct rlimit files_limit {};
  size_t most = static_cast<size_t>(std::max(threads, 1));
  if (::getrlimit(RLIMIT_NOFILE, &files_limit) == 0 && files_limit.rlim_cur != RLIM_INFINITY) {
    const size_t fds = static_cast<size_t>(files_limit.rlim_cur);
    most = std::min(most, std::max<size_t>(1, fds > 64 ? (fds - 64) / (2 * files_per_batch_) : 1));
  }
  const size_t count = std::min(batches, most);
  std::vector<std::thread> pool;
  for (size_t t = 1; t < count; ++t) pool.emplace_back([this] { Worker(); });
  if (count > 0) Worker();
  for (auto& t : pool) t.join();
  summary_ = nullptr;
  // Failures in the order of the walk, each named by its plaintext path
  // (decrypted now: only failures need one).
  std::sort(failures_.begin(), failures_.end());
  for (const auto& [index, why] : failures_) {
    summary->failures.push_back(listing_.DecodePath(*volume_, root_fd_, *files_[index]) + ": " +
                                why);
  }
  return fatal_;
}

// The marker of a run in progress (docs/ROTATION.md, "Durability"):
// created before the first slot write, removed once every slot written is
// durable. A run that finds it knows that an earlier one stopped before
// then, and that slots it wrote may still be in the page cache only.
constexpr char kMarkerName[] = ".envelopefs.rotating";

}  // namespace

StatusOr<RotateSummary> RotateVolume(Volume* volume, const RotateOptions& options) {
  const auto started = std::chrono::steady_clock::now();
  kms::KeyService* kms = volume->kms();
  // The volume's key (an ARN since Open), or the key the user moves it to;
  // from here on only its ARN is used, so re-pointing an alias mid-run
  // changes nothing.
  const std::string current_key = volume->KeyIdForNewFiles();
  ENVELOPE_ASSIGN_OR_RETURN(TargetKey target,
                            DescribeTarget(kms, options.to_key.empty() ? current_key : options.to_key));
  const std::string to_key = target.arn;
  RotateSummary summary;
  summary.key_arn = target.arn;
  summary.key_version = target.version.number.value_or(0);
  summary.version_marker = target.version.marker;

  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd top, backing::OpenRoot(volume->cipherdir()));
  // The top directory opened for reading: syncfs, fsync and the marker.
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd top_dir, backing::OpenDir(top.get(), ""));
  std::unique_ptr<RotationJournal> journal;
  if (!target.version.number) {
    ENVELOPE_ASSIGN_OR_RETURN(journal, RotationJournal::Open(top_dir.get(), target.arn,
                                                             target.version.marker));
    summary.journal_resumed = journal->resumed();
  }
  const CurrentTest is_current(kms, target, journal.get());

  // Durability (docs/ROTATION.md): slots an interrupted earlier run wrote
  // may still be only in the page cache, and must reach the disk before
  // this run overwrites the other slot of the same files. The marker says
  // whether there was such a run; without a marker (it cannot be made) every
  // run syncs first, and last.
  bool sync_ranges = FileByFileDurable(
      top_dir.get(), volume->layout().header_size() == format::kHeaderSizeDekInXattr);
  struct stat marker_st;
  const bool interrupted = backing::Stat(top_dir.get(), kMarkerName, &marker_st).ok();
  bool marked = interrupted;
  if (!marked) {
    marked = backing::CreateRegular(top_dir.get(), kMarkerName, 0600, /*exclusive=*/false).ok();
  }
  if (!marked) sync_ranges = false;
  if (interrupted || !marked) {
    Syncfs(top_dir.get());
    if (interrupted) {
      summary.notes.push_back("an earlier rotation of this volume was interrupted: its writes "
                              "were synced to disk first");
    }
  }
  summary.durability = sync_ranges ? "per-file writeback, one fsync" : "syncfs";

  // The volume key first: from here on a mount creates files under the
  // target, and a crash leaves a config that opens under either key.
  double ready_at = target.version.since + kMountMarginSeconds;
  if (!is_current(volume->config().wrapped_volume_key) || target.arn != current_key) {
    Status s = volume->RewrapVolumeKey(to_key);
    if (!s.ok()) return s.WithContext("re-wrapping the volume key");
    if (journal) {
      Status recorded = journal->Add(volume->config().wrapped_volume_key);
      if (!recorded.ok()) {
        summary.notes.push_back("the rotation journal could not record the volume key (" +
                                recorded.ToString() + ")");
      }
    }
    summary.volume_key_rewrapped = true;
    ready_at = std::max(ready_at, Now() + kMountMarginSeconds);
  }
  if (IsMounted(volume->cipherdir()) && Now() < ready_at) {
    summary.mount_wait_seconds = ready_at - Now();
    std::this_thread::sleep_for(std::chrono::duration<double>(summary.mount_wait_seconds));
  }

  // The walk needs no plaintext names: only a failure is named by one.
  const auto walk_started = std::chrono::steady_clock::now();
  ENVELOPE_ASSIGN_OR_RETURN(VolumeListing listing,
                            ListVolume(*volume, ListOptions{.decode_names = false}));
  std::vector<const VolumeEntry*> files;
  for (const VolumeEntry& e : listing.entries) {
    if (e.type == DT_REG) files.push_back(&e);
  }
  for (const std::string& p : listing.problems) summary.failures.push_back(p);
  // In inode order: inodes and (on the usual allocators) file blocks lie on
  // the disk in about that order, so a cold walk reads nearly sequentially
  // instead of at random.
  std::sort(files.begin(), files.end(),
            [](const VolumeEntry* a, const VolumeEntry* b) { return a->ino < b->ino; });
  summary.walk_seconds = SecondsSince(walk_started);

  Status fatal;
  {
    Progress progress("rotate", files.size(), options.progress);
    Walk walk(volume, listing, std::move(files), top.get(), is_current, journal.get(), to_key,
              sync_ranges, options.files_per_batch, &progress);
    fatal = walk.Run(options.threads, &summary);
    Status trouble = walk.journal_trouble();
    if (!trouble.ok()) {
      summary.notes.push_back("the rotation journal could not record every file (" +
                              trouble.ToString() + "): a rerun re-wraps those again");
    }
  }
  if (!fatal.ok()) return fatal.WithContext("the key service stopped answering; run rotate again");

  // Every slot written is on the device (the workers waited for each), but
  // maybe in its volatile cache, and xattr values are in the filesystem's
  // journal only. Removing the marker and fsyncing the top directory
  // commits the journal transaction that holds the removal, and with it
  // every earlier one, behind a cache flush; without a journal (ext4), the
  // fsync still ends with the flush. Elsewhere, syncfs.
  const auto sync_started = std::chrono::steady_clock::now();
  Status removed = sync_ranges ? backing::Unlink(top_dir.get(), kMarkerName) : Status::Ok();
  if (!removed.ok() && ToErrno(removed) != ENOENT) return removed.WithContext("the run marker");
  if (sync_ranges && removed.ok()) {
    if (::fsync(top_dir.get()) != 0) {
      return Status::FromErrno("making the re-wrapped slots durable (fsync of the cipherdir)");
    }
  } else {
    // (Also when someone else removed the marker: the fsync above would
    // then commit nothing.)
    Syncfs(top_dir.get());
    if (marked) (void)backing::Unlink(top_dir.get(), kMarkerName);
  }
  summary.sync_seconds = SecondsSince(sync_started);
  summary.seconds = SecondsSince(started) - summary.mount_wait_seconds;
  return summary;
}

}  // namespace envelope::fs
