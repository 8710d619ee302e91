#include "keyservice/peer_socket.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstdint>

#include "keyservice/listen_address.h"

namespace envelope::keyservice {

bool PeerOf(int fd, bool tcp, std::string* key, std::string* remote) {
  if (!tcp) {
    struct ucred cred {};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return false;
    *key = "uid:" + std::to_string(cred.uid);
    return true;
  }
  sockaddr_storage addr{};
  socklen_t len = sizeof(addr);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return false;
  char text[INET6_ADDRSTRLEN] = {};
  uint16_t port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    if (::inet_ntop(AF_INET, &in->sin_addr, text, sizeof(text)) == nullptr) return false;
    port = ntohs(in->sin_port);
    *remote = std::string(text) + ":" + std::to_string(port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    if (::inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof(text)) == nullptr) return false;
    port = ntohs(in6->sin6_port);
    *remote = UrlHost(text) + ":" + std::to_string(port);
  } else {
    return false;
  }
  *key = std::string("tcp:") + text;
  return true;
}

bool WaitReadable(int fd, std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return false;
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc < 0 && errno == EINTR) continue;
    return rc > 0;  // readable, or hung up (the read then sees the end)
  }
}

void DrainBeforeClose(int fd) {
  constexpr auto kMaxWait = std::chrono::seconds(2);
  constexpr size_t kMaxDrainInBytes = size_t{16} << 20;
  ::shutdown(fd, SHUT_WR);
  const auto deadline = std::chrono::steady_clock::now() + kMaxWait;
  char buf[16384];
  size_t drained = 0;
  while (drained < kMaxDrainInBytes) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                          deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0 || !WaitReadable(fd, left)) return;
    ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return;  // end of the client's input, or an error
    drained += static_cast<size_t>(n);
  }
}

}  // namespace envelope::keyservice
