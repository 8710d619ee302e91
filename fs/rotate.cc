#include "fs/rotate.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cctype>
#include <cstring>
#include <fstream>
#include <mutex>
#include <set>
#include <thread>

#include "core/base/fd_io.h"
#include "core/format/header_io.h"
#include "fs/backing_tree.h"
#include "fs/progress.h"
#include "fs/volume_walk.h"
#include "fs/rotation_journal.h"

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

// /proc/self/mounts writes space, tab, newline and backslash as \ooo.
std::string UnescapeMountField(const std::string& field) {
  std::string out;
  for (size_t i = 0; i < field.size(); ++i) {
    if (field[i] == '\\' && i + 3 < field.size() && field[i + 1] >= '0' && field[i + 1] <= '3') {
      out.push_back(static_cast<char>(((field[i + 1] - '0') << 6) | ((field[i + 2] - '0') << 3) |
                                      (field[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(field[i]);
    }
  }
  return out;
}

// A mount of this cipherdir, if any: its source is "envelopefs:CIPHERDIR".
bool IsMounted(const std::string& cipherdir) {
  std::ifstream in("/proc/self/mounts");
  const std::string want = "envelopefs:" + cipherdir;
  std::string source, rest;
  while (in >> source && std::getline(in, rest)) {
    if (UnescapeMountField(source) == want) return true;
  }
  return false;
}

double Now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A mount keeps up to 2 s of file keys made ahead (fs/dek_pool.h) and reads
// a rewritten config within 1 s. Files it creates after this margin are
// wrapped under the target; files created before it are on disk for the
// walk to find.
constexpr double kMountMarginSeconds = 3.5;

void SyncCipherdir(const std::string& cipherdir) {
  UniqueFd fd(::open(cipherdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (fd.valid()) ::syncfs(fd.get());
}

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
  std::unique_ptr<RotationJournal> journal;
  if (!target.version.number) {
    ENVELOPE_ASSIGN_OR_RETURN(UniqueFd dir, backing::OpenDir(top.get(), ""));
    ENVELOPE_ASSIGN_OR_RETURN(journal, RotationJournal::Open(dir.get(), target.arn,
                                                             target.version.marker));
    summary.journal_resumed = journal->resumed();
  }
  const CurrentTest is_current(kms, target, journal.get());
  std::mutex journal_mu;   // guards journal_trouble
  Status journal_trouble;  // the first failure to record, reported once
  auto record = [&](ByteView blob) {
    if (!journal) return;
    Status s = journal->Add(blob);
    std::lock_guard lock(journal_mu);
    if (!s.ok() && journal_trouble.ok()) journal_trouble = s;
  };

  SyncCipherdir(volume->cipherdir());

  // The volume key first: from here on a mount creates files under the
  // target, and a crash leaves a config that opens under either key.
  double ready_at = target.version.since + kMountMarginSeconds;
  if (!is_current(volume->config().wrapped_volume_key) || target.arn != current_key) {
    Status s = volume->RewrapVolumeKey(to_key);
    if (!s.ok()) return s.WithContext("re-wrapping the volume key");
    record(volume->config().wrapped_volume_key);
    summary.volume_key_rewrapped = true;
    ready_at = std::max(ready_at, Now() + kMountMarginSeconds);
  }
  if (IsMounted(volume->cipherdir()) && Now() < ready_at) {
    summary.mount_wait_seconds = ready_at - Now();
    std::this_thread::sleep_for(std::chrono::duration<double>(summary.mount_wait_seconds));
  }

  ENVELOPE_ASSIGN_OR_RETURN(VolumeListing listing, ListVolume(*volume));
  std::vector<const VolumeEntry*> files;
  for (const VolumeEntry& e : listing.entries) {
    if (e.type == DT_REG) files.push_back(&e);
  }
  for (const std::string& p : listing.problems) summary.failures.push_back(p);

  const UniqueFd& root = top;
  std::mutex mu;  // guards summary, seen and fatal
  std::set<std::pair<dev_t, ino_t>> seen;
  Status fatal;
  Progress progress("rotate", files.size(), options.progress);

  auto rotate_one = [&](size_t i) -> bool {
    const VolumeEntry& e = *files[i];
    auto fail = [&](const std::string& why) {
      std::lock_guard lock(mu);
      summary.failures.push_back(listing.DisplayPath(e) + ": " + why);
    };
    progress.Add();
    // No component followed: a directory swapped for a symlink since the
    // walk is a failure to report, not a way out of the cipherdir.
    auto opened = backing::OpenFileBeneath(root.get(), listing.BackingPath(e), O_RDWR);
    if (!opened.ok()) {
      if (ToErrno(opened.status()) != ENOENT) fail(opened.status().ToString());
      return true;  // ENOENT: removed since the walk
    }
    UniqueFd fd = std::move(*opened);
    struct stat st;
    if (::fstat(fd.get(), &st) != 0) return fail(std::string("fstat: ") + std::strerror(errno)), true;
    {
      std::lock_guard lock(mu);
      // Hard links: one file, however many names.
      if (!seen.insert({st.st_dev, st.st_ino}).second) return true;
      if (st.st_size == 0) {
        ++summary.skipped_empty;
        return true;
      }
    }
    auto header = format::ReadHeader(fd.get(), volume->layout());
    if (!header.ok()) return fail(header.status().ToString()), true;
    auto blob = format::ActiveWrappedDek(*header);
    if (!blob.ok()) return fail(blob.status().ToString()), true;
    if (is_current(*blob)) {
      std::lock_guard lock(mu);
      ++summary.already_current;
      return true;
    }
    const auto label = kms->VersionOf(*blob);
    const std::string from = label ? label->key_id + ":" + std::to_string(label->version)
                                   : std::string("unknown");
    // SourceKeyId pins the key the file key must be under: one that a user
    // swapped for a key of their own is not re-wrapped (and so blessed).
    const auto context = volume->config().FileContext(HexEncode(header->file_id));
    auto rewrapped = volume->Rewrap(*blob, context, to_key);
    if (!rewrapped.ok()) {
      if (rewrapped.status().code() == StatusCode::kUnavailable) {
        std::lock_guard lock(mu);
        fatal = rewrapped.status();
        return false;
      }
      fail(rewrapped.status().ToString() +
           (label ? " (file key under key " + label->key_id + " version " +
                        std::to_string(label->version) + ")"
                  : std::string()));
      return true;
    }
    Status s = format::RewriteWrappedDek(fd.get(), &*header, *rewrapped,
                                         format::Durability::kCallerSyncs);
    if (!s.ok()) return fail(s.ToString()), true;
    // The content did not change, so neither may its times: make, rsync and
    // backups go by mtime. (ctime does change: the file's metadata did.)
    const struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (::futimens(fd.get(), times) != 0) {
      return fail(std::string("restoring the file times: ") + std::strerror(errno)), true;
    }
    record(*rewrapped);
    std::lock_guard lock(mu);
    ++summary.rewrapped;
    summary.bytes_written += header->dek_in_xattr() ? rewrapped->size() + 1 : format::kSlotSizeInBytes;
    ++summary.from_versions[from];
    return true;
  };
  ParallelFor(files.size(), options.threads, rotate_one);
  summary.files = seen.size();
  if (!fatal.ok()) return fatal.WithContext("the key service stopped answering; run rotate again");
  if (!journal_trouble.ok()) {
    summary.notes.push_back("the rotation journal could not record every file (" +
                            journal_trouble.ToString() + "): a rerun re-wraps those again");
  }

  SyncCipherdir(volume->cipherdir());
  summary.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() -
      summary.mount_wait_seconds;
  return summary;
}

}  // namespace envelope::fs
