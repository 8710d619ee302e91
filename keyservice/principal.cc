#include "keyservice/principal.h"

#include <grp.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <sstream>

namespace envelope::keyservice {

std::vector<std::string> Principal::PolicyNames() const {
  std::vector<std::string> names;
  if (kind == Kind::kService || kind == Kind::kAnonymous) return names;  // matches nothing
  if (kind == Kind::kAccessKey) {
    names.push_back("key:" + access_key_name);
    return names;
  }
  if (kind == Kind::kTlsCert) {
    names.push_back(kTlsPrincipalPrefix + cert_subject);
    return names;
  }
  if (!user_name.empty()) names.push_back("user:" + user_name);
  names.push_back("uid:" + std::to_string(uid));
  for (const auto& g : group_names) names.push_back("group:" + g);
  for (gid_t g : gids) names.push_back("gid:" + std::to_string(g));
  return names;
}

std::string Principal::PrimaryName() const {
  if (kind == Kind::kService) return "envelope-keyd";
  if (kind == Kind::kAnonymous) return "anonymous";
  if (kind == Kind::kAccessKey) return "key:" + access_key_name;
  if (kind == Kind::kTlsCert) return kTlsPrincipalPrefix + cert_subject;
  if (!user_name.empty()) return "user:" + user_name;
  return "uid:" + std::to_string(uid);
}

std::string Principal::OwnerId() const {
  if (kind == Kind::kUnix) return "uid:" + std::to_string(uid);
  if (kind == Kind::kAccessKey) return "key:" + access_key_name;
  if (kind == Kind::kTlsCert) return kTlsPrincipalPrefix + cert_subject;
  return "";
}

const char* Origin::transport_name() const {
  switch (transport) {
    case Transport::kUnix:
      return "unix";
    case Transport::kTcp:
      return "tcp";
    case Transport::kTls:
      return "tls";
    case Transport::kInternal:
      break;
  }
  return "internal";
}

namespace {

// Supplementary groups of the peer process as the kernel sees them
// (/proc/PID/status "Groups:"), which is what a permission check should use,
// rather than what /etc/group says the user could have.
std::vector<gid_t> ProcessGroups(pid_t pid) {
  std::vector<gid_t> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Groups:", 0) != 0) continue;
    std::istringstream fields(line.substr(7));
    long g;
    while (fields >> g) out.push_back(static_cast<gid_t>(g));
  }
  return out;
}

}  // namespace

StatusOr<Principal> PrincipalFromUnixSocket(int fd) {
  struct ucred cred;
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Status::FromErrno("getsockopt SO_PEERCRED");
  }
  Principal p;
  p.kind = Principal::Kind::kUnix;
  p.uid = cred.uid;
  p.gid = cred.gid;
  p.pid = cred.pid;
  p.origin.transport = Origin::Transport::kUnix;

  char buf[16384];
  struct passwd pw, *pw_result = nullptr;
  if (::getpwuid_r(p.uid, &pw, buf, sizeof(buf), &pw_result) == 0 && pw_result) {
    p.user_name = pw.pw_name;
  }
  p.gids.push_back(p.gid);
  for (gid_t g : ProcessGroups(p.pid)) {
    if (std::find(p.gids.begin(), p.gids.end(), g) == p.gids.end()) p.gids.push_back(g);
  }
  for (gid_t g : p.gids) {
    struct group gr, *gr_result = nullptr;
    if (::getgrgid_r(g, &gr, buf, sizeof(buf), &gr_result) == 0 && gr_result) {
      p.group_names.push_back(gr.gr_name);
    }
  }
  char exe[PATH_MAX];
  std::string link = "/proc/" + std::to_string(p.pid) + "/exe";
  ssize_t n = ::readlink(link.c_str(), exe, sizeof(exe) - 1);
  if (n > 0) p.executable.assign(exe, static_cast<size_t>(n));
  return p;
}

}  // namespace envelope::keyservice
