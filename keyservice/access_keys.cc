#include "keyservice/access_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sstream>
#include <vector>

#include "core/base/fd_io.h"

namespace envelope::keyservice {

StatusOr<std::unique_ptr<AccessKeys>> AccessKeys::Load(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open access-keys file " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path);
  if ((st.st_mode & 077) != 0) {
    return Status::PermissionDenied("access-keys file " + path +
                                    " is accessible by group or others; chmod 600 it");
  }
  if (st.st_size > (1 << 20)) return Status::InvalidArgument(path + " is larger than 1 MiB");
  // Read into a secure buffer: the file is all secrets.
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes content,
                            crypto::SecretBytes::Zeroed(static_cast<size_t>(st.st_size)));
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, PreadFull(fd.get(), content.mutable_view(), 0));
  auto keys = std::make_unique<AccessKeys>();
  size_t line_no = 0, pos = 0;
  const char* text = reinterpret_cast<const char*>(content.data());
  while (pos < n) {
    size_t end = pos;
    while (end < n && text[end] != '\n') ++end;
    ++line_no;
    // Split the line into whitespace-separated fields without copying the
    // secret into an ordinary string.
    std::vector<std::pair<size_t, size_t>> fields;
    size_t i = pos;
    while (i < end) {
      while (i < end && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r')) ++i;
      if (i >= end || text[i] == '#') break;
      size_t start = i;
      while (i < end && text[i] != ' ' && text[i] != '\t' && text[i] != '\r') ++i;
      fields.emplace_back(start, i - start);
    }
    if (!fields.empty()) {
      if (fields.size() != 3) {
        return Status::InvalidArgument(path + " line " + std::to_string(line_no) +
                                       ": expected ACCESS_KEY_ID SECRET PRINCIPAL_NAME");
      }
      std::string id(text + fields[0].first, fields[0].second);
      ENVELOPE_ASSIGN_OR_RETURN(
          crypto::SecretBytes secret,
          crypto::SecretBytes::CopyOf(ByteView(content.data() + fields[1].first, fields[1].second)));
      std::string name(text + fields[2].first, fields[2].second);
      if (keys->keys_.count(id)) {
        return Status::InvalidArgument(path + " line " + std::to_string(line_no) +
                                       ": duplicate access key id " + id);
      }
      keys->keys_.emplace(std::move(id), Entry{std::move(secret), std::move(name)});
    }
    pos = end + 1;
  }
  if (keys->keys_.empty()) return Status::InvalidArgument(path + " holds no access keys");
  return keys;
}

const AccessKeys::Entry* AccessKeys::Find(std::string_view access_key_id) const {
  auto it = keys_.find(access_key_id);
  return it == keys_.end() ? nullptr : &it->second;
}

}  // namespace envelope::keyservice
