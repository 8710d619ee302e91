#include "keyservice/listen_address.h"

#include <sys/stat.h>
#include <unistd.h>

#include <boost/asio/ip/address.hpp>
#include <cerrno>
#include <charconv>

#include "kms/endpoint.h"

namespace envelope::keyservice {

namespace asio = boost::asio;

StatusOr<ListenAddress> ParseListenAddress(std::string_view text) {
  const auto wanted = [&] {
    return Status::InvalidArgument(
        "--listen wants HOST:PORT with PORT from 0 to 65535, got " + std::string(text) +
        " (HOST: an IPv4 address, or an IPv6 address in brackets as in [::1]:7800)");
  };
  ListenAddress out;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return wanted();
    }
    out.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return wanted();
    out.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) return wanted();  // IPv6 needs brackets
  }
  // from_chars, not stoi: a malformed port is an error message, never an
  // exception that kills the daemon, and 70000 is not silently 4464.
  unsigned value = 0;
  auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || ec != std::errc() || end != port.data() + port.size() || value > 65535) {
    return wanted();
  }
  out.port = static_cast<uint16_t>(value);
  boost::system::error_code address_ec;
  const asio::ip::address address = asio::ip::make_address(out.host, address_ec);
  if (address_ec || (text.front() == '[') != address.is_v6()) return wanted();
  if (address.is_v6() && address.to_v6().scope_id() != 0) return wanted();
  out.loopback = address.is_loopback();
  return out;
}

Status PrepareSocketDirectory(const std::string& socket_path) {
  const size_t slash = socket_path.rfind('/');
  if (slash == std::string::npos || slash == 0) {
    return Status::InvalidArgument("the socket path must be absolute and not in /: " +
                                   socket_path);
  }
  const std::string dir = socket_path.substr(0, slash);
  const uid_t self = ::geteuid();
  if (::mkdir(dir.c_str(), self == 0 ? 0755 : 0700) == 0) {
    // mkdir's mode is filtered by the umask; set it exactly.
    if (::chmod(dir.c_str(), self == 0 ? 0755 : 0700) != 0) {
      return Status::FromErrno("chmod " + dir);
    }
  } else if (errno != EEXIST) {
    return Status::FromErrno("creating the socket directory " + dir);
  }
  Status s = kms::CheckSocketDirectory(socket_path, self);
  if (s.code() == StatusCode::kFailedPrecondition) {
    return Status::FailedPrecondition(
        s.message() + "; remove it or choose another --socket (it must belong to uid " +
        std::to_string(self) + " or root and not be group- or world-writable, and so must "
        "every directory above it unless sticky)");
  }
  return s;
}

std::string UrlHost(std::string_view address) {
  if (address.find(':') == std::string_view::npos) return std::string(address);
  std::string out(1, '[');  // appends: GCC 12's -Wrestrict misfires on "[" + s + "]"
  out.append(address).push_back(']');
  return out;
}

Status CheckListenerTransport(const ListenAddress& address, bool tls) {
  // Plain HTTP leaves this host only with TLS around it: SigV4 signs
  // requests but encrypts nothing, and answers carry plaintext keys.
  if (address.loopback || tls) return Status::Ok();
  return Status::InvalidArgument(
      "--listen " + address.host +
      " is not a loopback address: plain TCP is served on loopback only (127.0.0.0/8, ::1), "
      "because requests and answers (plaintext data keys) would cross the network "
      "unencrypted; give --tls-cert FILE --tls-key FILE to serve TLS on it");
}

}  // namespace envelope::keyservice
