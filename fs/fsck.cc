#include "fs/fsck.h"

#include <fcntl.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <mutex>
#include <set>

#include "core/base/fd_io.h"
#include "core/format/header_io.h"
#include "fs/backing_tree.h"
#include "fs/progress.h"
#include "fs/volume_walk.h"

namespace envelope::fs {

namespace {

struct FileResult {
  std::string key_version;  // "KEYID:VERSION", "" if the header did not say
  uint64_t bytes = 0;
  uint64_t chunks = 0;
  bool torn_spare = false;
  std::string damage;       // "" when the file is fine
};

// Checks one regular file. Unavailable means the key service is gone and
// the whole check must stop.
StatusOr<FileResult> CheckFile(Volume* volume, int fd, const struct stat& st, bool deep) {
  FileResult r;
  if (st.st_size == 0) {
    r.damage = "empty backing file: no header (an interrupted create)";
    return r;
  }
  auto size = volume->layout().PlaintextSize(static_cast<uint64_t>(st.st_size));
  if (!size.ok()) {
    r.damage = size.status().ToString();
    return r;
  }
  r.bytes = *size;
  auto header = format::ReadHeader(fd, volume->layout());
  if (!header.ok()) {
    r.damage = header.status().ToString();
    return r;
  }
  auto active = header->ActiveSlot();
  if (active.ok()) {
    const size_t spare = 1 - *active;
    r.torn_spare = !header->dek_in_xattr() &&
                   header->slot_states[spare] == format::SlotState::kDamaged;
    auto label = volume->kms()->VersionOf(header->slots[*active].wrapped_dek);
    if (label) r.key_version = label->key_id + ":" + std::to_string(label->version);
  }
  auto content = volume->OpenContent(fd, *header);
  if (!content.ok()) {
    if (content.status().code() == StatusCode::kUnavailable) return content.status();
    std::string why = content.status().ToString();
    if (why.find("KMSInvalidStateException") != std::string::npos &&
        why.find("retired") != std::string::npos) {
      why = "crypto-erased: its file key is wrapped under a retired key version and can never "
            "be opened again (" + why + ")";
    }
    r.damage = why;
    return r;
  }
  if (deep) {
    Status s = (*content)->VerifyAll();
    if (!s.ok()) {
      r.damage = s.ToString();
      return r;
    }
    r.chunks = volume->layout().ChunkCount(*size);
  }
  return r;
}

}  // namespace

StatusOr<FsckReport> FsckVolume(Volume* volume, const FsckOptions& options) {
  ENVELOPE_ASSIGN_OR_RETURN(VolumeListing listing, ListVolume(*volume));
  FsckReport report;
  report.damaged = listing.problems;
  report.directories = listing.dirs.size();
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd root, backing::OpenRoot(volume->cipherdir()));

  std::vector<const VolumeEntry*> files;
  for (const VolumeEntry& e : listing.entries) {
    if (e.type == DT_REG) {
      files.push_back(&e);
    } else if (e.type == DT_LNK) {
      ++report.symlinks;
      auto dir = backing::OpenDirBeneath(root.get(), listing.dirs[e.dir].backing_path);
      auto target = dir.ok() ? volume->ReadSymlink(dir->get(), e.backing)
                             : StatusOr<std::string>(dir.status());
      if (!target.ok()) {
        report.damaged.push_back(listing.DisplayPath(e) + ": symlink target: " +
                                 target.status().ToString());
      }
    } else if (e.type != DT_DIR) {
      ++report.others;
    }
  }
  std::mutex mu;  // guards report, seen and fatal
  std::set<std::pair<dev_t, ino_t>> seen;
  Status fatal;
  Progress progress(options.deep ? "fsck --deep" : "fsck", files.size(), options.progress);
  ParallelFor(files.size(), options.threads, [&](size_t i) {
    const VolumeEntry& e = *files[i];
    progress.Add();
    // No component followed (as in rotate).
    auto fd = backing::OpenFileBeneath(root.get(), listing.BackingPath(e), O_RDONLY);
    struct stat st;
    StatusOr<FileResult> r = FileResult{};
    if (!fd.ok()) {
      r = fd.status();
    } else if (::fstat(fd->get(), &st) != 0) {
      r = Status::FromErrno("fstat");
    } else {
      {
        // Hard links: one file, however many names.
        std::lock_guard lock(mu);
        if (!seen.insert({st.st_dev, st.st_ino}).second) return true;
      }
      r = CheckFile(volume, fd->get(), st, options.deep);
    }
    std::lock_guard lock(mu);
    if (!r.ok()) {
      if (r.status().code() == StatusCode::kUnavailable) {
        fatal = r.status();
        return false;
      }
      report.damaged.push_back(listing.DisplayPath(e) + ": " + r.status().ToString());
      return true;
    }
    if (!r->key_version.empty()) ++report.key_versions[r->key_version];
    if (r->torn_spare) ++report.torn_spare_slots;
    report.bytes += r->bytes;
    report.chunks_verified += r->chunks;
    if (!r->damage.empty()) report.damaged.push_back(listing.DisplayPath(e) + ": " + r->damage);
    return true;
  });
  if (!fatal.ok()) return fatal.WithContext("the key service stopped answering");
  report.files = seen.size();
  return report;
}

}  // namespace envelope::fs
