#include "fs/rotation_journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

#include "core/crypto/hash.h"
#include "core/format/name_codec.h"
#include "fs/backing_tree.h"

namespace envelope::fs {

namespace {

constexpr std::string_view kMagic = "envelopefs-rotation v1\n";
constexpr std::string_view kDigestDomain = "envelopefs/v1/rotation";

std::string HeaderFor(const std::string& target, const std::string& marker) {
  return std::string(kMagic) + nlohmann::json{{"target", target}, {"marker", marker}}.dump() + "\n";
}

}  // namespace

RotationJournal::Digest RotationJournal::DigestOf(ByteView blob) {
  const crypto::Sha256Digest full = crypto::Sha256(Concat({AsBytes(kDigestDomain), blob}));
  Digest d;
  std::copy(full.begin(), full.begin() + d.size(), d.begin());
  return d;
}

RotationJournal::RotationJournal(UniqueFd fd, uint64_t end, std::set<Digest> digests)
    : fd_(std::move(fd)), end_(end), digests_(std::move(digests)), resumed_(digests_.size()) {}

StatusOr<std::unique_ptr<RotationJournal>> RotationJournal::Open(int root_dirfd,
                                                                 const std::string& target_arn,
                                                                 const std::string& marker) {
  const std::string name(format::kRotationJournalFileName);
  const std::string header = HeaderFor(target_arn, marker);
  if (!marker.empty()) {
    auto existing = backing::OpenRegular(root_dirfd, name, O_RDWR);
    if (existing.ok()) {
      struct stat st;
      if (::fstat(existing->get(), &st) == 0 && st.st_uid == ::geteuid() &&
          (st.st_mode & 022) == 0 && static_cast<uint64_t>(st.st_size) <= kMaxJournalInBytes &&
          static_cast<size_t>(st.st_size) >= header.size()) {
        Bytes text(static_cast<size_t>(st.st_size));
        auto n = PreadFull(existing->get(), MutableByteView(text.data(), text.size()), 0);
        if (n.ok() && *n == text.size() &&
            std::equal(header.begin(), header.end(), text.begin())) {
          std::set<Digest> digests;
          const size_t records = (text.size() - header.size()) / sizeof(Digest);
          for (size_t i = 0; i < records; ++i) {
            Digest d;
            std::copy_n(text.begin() + header.size() + i * d.size(), d.size(), d.begin());
            digests.insert(d);
          }
          // A torn last record is cut off: later records start at a boundary.
          const uint64_t end = header.size() + records * sizeof(Digest);
          return std::unique_ptr<RotationJournal>(
              new RotationJournal(std::move(*existing), end, std::move(digests)));
        }
      }
    }
  }
  // Another target or version, or not ours: start afresh.
  Status removed = backing::Unlink(root_dirfd, name);
  if (!removed.ok() && ToErrno(removed) != ENOENT) return removed.WithContext("the rotation journal");
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, backing::CreateRegular(root_dirfd, name, 0600, /*exclusive=*/true));
  ENVELOPE_RETURN_IF_ERROR(PwriteFull(fd.get(), AsBytes(header), 0));
  return std::unique_ptr<RotationJournal>(new RotationJournal(std::move(fd), header.size(), {}));
}

bool RotationJournal::Contains(ByteView blob) const {
  const Digest d = DigestOf(blob);
  std::lock_guard lock(mu_);
  return digests_.count(d) != 0;
}

Status RotationJournal::Add(ByteView blob) {
  const Digest d = DigestOf(blob);
  std::lock_guard lock(mu_);
  if (!digests_.insert(d).second) return Status::Ok();
  if (end_ + d.size() > kMaxJournalInBytes) {
    return Status::ResourceExhausted("the rotation journal is full: a rerun re-wraps the rest again");
  }
  ENVELOPE_RETURN_IF_ERROR(PwriteFull(fd_.get(), ByteView(d.data(), d.size()), end_));
  end_ += d.size();
  return Status::Ok();
}

}  // namespace envelope::fs
