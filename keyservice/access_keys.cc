#include "keyservice/access_keys.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <vector>

#include "core/base/fd_io.h"

namespace envelope::keyservice {

Status ForEachSecretLine(
    const std::string& path, const std::string& what,
    const std::function<Status(size_t line_no, const std::vector<ByteView>& fields)>& each) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return Status::FromErrno("open " + what + " " + path);
  struct stat st;
  if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + path);
  if ((st.st_mode & 077) != 0) {
    return Status::PermissionDenied(what + " " + path +
                                    " is accessible by group or others; chmod 600 it");
  }
  if (st.st_size > (1 << 20)) return Status::InvalidArgument(path + " is larger than 1 MiB");
  // Read into a secure buffer: the file is all secrets.
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes content,
                            crypto::SecretBytes::Zeroed(static_cast<size_t>(st.st_size)));
  ENVELOPE_ASSIGN_OR_RETURN(size_t n, PreadFull(fd.get(), content.mutable_view(), 0));
  size_t line_no = 0, pos = 0;
  const char* text = reinterpret_cast<const char*>(content.data());
  while (pos < n) {
    size_t end = pos;
    while (end < n && text[end] != '\n') ++end;
    ++line_no;
    // Split the line into whitespace-separated fields without copying the
    // secret into an ordinary string.
    std::vector<ByteView> fields;
    size_t i = pos;
    while (i < end) {
      while (i < end && (text[i] == ' ' || text[i] == '\t' || text[i] == '\r')) ++i;
      if (i >= end || text[i] == '#') break;
      size_t start = i;
      while (i < end && text[i] != ' ' && text[i] != '\t' && text[i] != '\r') ++i;
      fields.emplace_back(content.data() + start, i - start);
    }
    if (!fields.empty()) ENVELOPE_RETURN_IF_ERROR(each(line_no, fields));
    pos = end + 1;
  }
  return Status::Ok();
}

StatusOr<std::unique_ptr<AccessKeys>> AccessKeys::Load(const std::string& path) {
  auto keys = std::make_unique<AccessKeys>();
  auto text = [](ByteView b) { return std::string(b.begin(), b.end()); };
  ENVELOPE_RETURN_IF_ERROR(ForEachSecretLine(
      path, "access-keys file", [&](size_t line_no, const std::vector<ByteView>& fields) -> Status {
        if (fields.size() != 3) {
          return Status::InvalidArgument(path + " line " + std::to_string(line_no) +
                                         ": expected ACCESS_KEY_ID SECRET PRINCIPAL_NAME");
        }
        std::string id = text(fields[0]);
        ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes secret, crypto::SecretBytes::CopyOf(fields[1]));
        if (keys->keys_.count(id)) {
          return Status::InvalidArgument(path + " line " + std::to_string(line_no) +
                                         ": duplicate access key id " + id);
        }
        keys->keys_.emplace(std::move(id), Entry{std::move(secret), text(fields[2])});
        return Status::Ok();
      }));
  if (keys->keys_.empty()) return Status::InvalidArgument(path + " holds no access keys");
  return keys;
}

const AccessKeys::Entry* AccessKeys::Find(std::string_view access_key_id) const {
  auto it = keys_.find(access_key_id);
  return it == keys_.end() ? nullptr : &it->second;
}

}  // namespace envelope::keyservice
