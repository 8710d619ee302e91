#include "fs/rotate.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

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
#include "kms/blob_label.h"

namespace envelope::fs {

namespace {

struct TargetKey {
  std::string arn;
  std::string key_id;  // UUID, as blob labels name it
  uint32_t version = 0;
  double version_created = 0;  // epoch seconds
};

StatusOr<TargetKey> DescribeTarget(kms::KmsClient* kms, const std::string& key) {
  ENVELOPE_ASSIGN_OR_RETURN(nlohmann::json r,
                            kms->Call("TrentService.DescribeKey", {{"KeyId", key}}));
  const nlohmann::json& m = r["KeyMetadata"];
  if (!m.is_object() || !m.contains("KeyId") || !m.contains("CurrentKeyVersion")) {
    return Status::Internal("DescribeKey: the key service did not name the current key version");
  }
  if (m.value("KeyState", "") != "Enabled") {
    return Status::FailedPrecondition("key " + key + " is " + m.value("KeyState", "?") +
                                      ", not Enabled: nothing can be re-wrapped under it");
  }
  TargetKey t;
  t.key_id = m["KeyId"].get<std::string>();
  t.arn = m.value("Arn", t.key_id);
  t.version = m["CurrentKeyVersion"].get<uint32_t>();
  t.version_created = m.value("CreationDate", 0.0);
  if (t.version > 1) {
    // The newest rotation's date is when the current version appeared.
    auto rotations = kms->Call("TrentService.ListKeyRotations", {{"KeyId", t.key_id}, {"Limit", 1000}});
    if (rotations.ok() && (*rotations)["Rotations"].is_array()) {
      for (const auto& r : (*rotations)["Rotations"]) {
        if (r.value("KeyVersion", 0u) == t.version) t.version_created = r.value("RotationDate", 0.0);
      }
    }
  }
  return t;
}

bool Current(const kms::BlobLabel& label, const TargetKey& target) {
  return label.key_id == target.key_id && label.key_version >= target.version;
}

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
  kms::KmsClient* kms = volume->kms();
  // The volume's key (an ARN since Open), or the key the user moves it to;
  // from here on only its ARN is used, so re-pointing an alias mid-run
  // changes nothing.
  const std::string current_key = volume->KeyIdForNewFiles();
  ENVELOPE_ASSIGN_OR_RETURN(TargetKey target,
                            DescribeTarget(kms, options.to_key.empty() ? current_key : options.to_key));
  const std::string to_key = target.arn;
  RotateSummary summary;
  summary.key_arn = target.arn;
  summary.key_version = target.version;

  SyncCipherdir(volume->cipherdir());

  // The volume key first: from here on a mount creates files under the
  // target, and a crash leaves a config that opens under either key.
  double ready_at = target.version_created + kMountMarginSeconds;
  auto volume_label = kms::ReadBlobLabel(volume->config().wrapped_volume_key);
  if (!volume_label.ok() || !Current(*volume_label, target) || target.arn != current_key) {
    Status s = volume->RewrapVolumeKey(to_key);
    if (!s.ok()) return s.WithContext("re-wrapping the volume key");
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

  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, backing::OpenRoot(volume->cipherdir()));
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
    auto label = kms::ReadBlobLabel(*blob);
    if (!label.ok()) return fail(label.status().ToString()), true;
    if (Current(*label, target)) {
      std::lock_guard lock(mu);
      ++summary.already_current;
      return true;
    }
    // SourceKeyId pins the key the file key must be under: one that a user
    // swapped for a key of their own is not re-wrapped (and so blessed).
    auto from_key = volume->KeyIdToUnwrap(*blob);
    if (!from_key.ok()) return fail("the file key is " + from_key.status().ToString()), true;
    const auto context = volume->config().FileContext(HexEncode(header->file_id));
    auto rewrapped = kms->ReEncrypt(*blob, *from_key, context, to_key, context);
    if (!rewrapped.ok()) {
      if (rewrapped.status().code() == StatusCode::kUnavailable) {
        std::lock_guard lock(mu);
        fatal = rewrapped.status();
        return false;
      }
      fail(rewrapped.status().ToString() + " (file key under key " + label->key_id + " version " +
           std::to_string(label->key_version) + ")");
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
    std::lock_guard lock(mu);
    ++summary.rewrapped;
    summary.bytes_written += header->dek_in_xattr() ? rewrapped->size() + 1 : format::kSlotSizeInBytes;
    ++summary.from_versions[label->key_id + ":" + std::to_string(label->key_version)];
    return true;
  };
  ParallelFor(files.size(), options.threads, rotate_one);
  summary.files = seen.size();
  if (!fatal.ok()) return fatal.WithContext("the key service stopped answering; run rotate again");

  SyncCipherdir(volume->cipherdir());
  summary.seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count() -
      summary.mount_wait_seconds;
  return summary;
}

}  // namespace envelope::fs
