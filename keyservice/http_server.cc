#include "keyservice/http_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <sstream>
#include <type_traits>

#include <spdlog/spdlog.h>

#include "core/crypto/secret_bytes.h"
#include "keyservice/json_output.h"
#include "kms/endpoint.h"
#include "kms/sigv4.h"

namespace envelope::keyservice {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

struct HttpServer::Connection {
  int fd = -1;
  bool tcp = false;
  std::string peer;  // "uid:N" or "tcp:ADDRESS", the key of per_peer_
  Principal unix_principal;
};

namespace {

using Response = http::response<http::string_body>;

Response ErrorResponse(int status, const std::string& type, const std::string& message) {
  Response r{static_cast<http::status>(status), 11};
  r.set(http::field::content_type, "application/x-amz-json-1.1");
  nlohmann::json body = {{"__type", type}, {"message", message}};
  r.body() = DumpJson(body);
  return r;
}

// AWS's error types for authentication failures, chosen by the fixed phrase
// that kms::VerifyRequest puts at the start of its message.
std::string AuthErrorType(const std::string& message) {
  if (message.rfind("missing authentication", 0) == 0) return "MissingAuthenticationTokenException";
  if (message.rfind("malformed authentication", 0) == 0) return "IncompleteSignatureException";
  if (message.rfind("unknown access key", 0) == 0) return "UnrecognizedClientException";
  return "InvalidSignatureException";  // stale request, signature mismatch
}

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

// The peer a connection counts against: the uid on the Unix socket, the
// address on TCP. Empty if the kernel cannot say (the connection is then
// dropped).
std::string PeerKey(int fd, bool tcp) {
  if (!tcp) {
    struct ucred cred {};
    socklen_t len = sizeof(cred);
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) return "";
    return "uid:" + std::to_string(cred.uid);
  }
  sockaddr_in in{};
  socklen_t len = sizeof(in);
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&in), &len) != 0) return "";
  char text[INET_ADDRSTRLEN] = {};
  if (::inet_ntop(AF_INET, &in.sin_addr, text, sizeof(text)) == nullptr) return "";
  return std::string("tcp:") + text;
}

// A connection over a limit gets a short answer, if its socket takes it
// without blocking, and is closed.
void Refuse(int fd, const std::string& message) {
  Response r = ErrorResponse(503, "ThrottlingException", message);
  r.keep_alive(false);
  r.prepare_payload();
  std::ostringstream text;
  text << r;
  const std::string bytes = text.str();
  (void)!::send(fd, bytes.data(), bytes.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
  ::shutdown(fd, SHUT_RDWR);
  ::close(fd);
}

// Waits up to `timeout` for the first byte of a request. False on timeout,
// end of stream or error.
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

// After an error answer to a request whose body was not read (too large,
// malformed): stop writing, then read and drop what the client is still
// sending, for a bounded time and amount. Closing with unread input makes
// the kernel reset the connection (or, on a Unix socket, fail the client's
// next write with EPIPE), and a client still writing its body then fails
// before it ever reads the answer (RFC 9112, section 9.6).
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

// Runs the operation just started on `io` (and its stream's deadline timer)
// to completion on this thread.
void RunIo(asio::io_context& io) {
  io.restart();
  io.run();
}

}  // namespace

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

HttpServer::HttpServer(KmsService* service, HttpServerOptions options)
    : service_(service), options_(std::move(options)) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start() {
  if (::pipe2(wake_pipe_, O_CLOEXEC) != 0) return Status::FromErrno("pipe2");

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options_.socket_path.size() >= sizeof(addr.sun_path)) {
    return Status::InvalidArgument("socket path too long: " + options_.socket_path);
  }
  ENVELOPE_RETURN_IF_ERROR(PrepareSocketDirectory(options_.socket_path));
  unix_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (unix_fd_ < 0) return Status::FromErrno("socket");
  std::strcpy(addr.sun_path, options_.socket_path.c_str());
  // A socket file left by a dead daemon is removed; a live one is not ours.
  int probe = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (::connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0) {
    ::close(probe);
    return Status::AlreadyExists("another process is serving " + options_.socket_path);
  }
  ::close(probe);
  ::unlink(options_.socket_path.c_str());
  if (::bind(unix_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Status::FromErrno("bind " + options_.socket_path);
  }
  ::chmod(options_.socket_path.c_str(), 0666);
  if (::listen(unix_fd_, 128) != 0) return Status::FromErrno("listen");

  if (!options_.tcp_host.empty()) {
    if (options_.access_keys == nullptr) {
      return Status::InvalidArgument("the TCP endpoint needs an access-keys file");
    }
    tcp_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (tcp_fd_ < 0) return Status::FromErrno("socket");
    int one = 1;
    ::setsockopt(tcp_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    sockaddr_in in{};
    in.sin_family = AF_INET;
    in.sin_port = htons(options_.tcp_port);
    if (::inet_pton(AF_INET, options_.tcp_host.c_str(), &in.sin_addr) != 1 ||
        (ntohl(in.sin_addr.s_addr) >> 24) != 127) {
      return Status::InvalidArgument("--listen must be a loopback IPv4 address, got " +
                                     options_.tcp_host);
    }
    if (::bind(tcp_fd_, reinterpret_cast<sockaddr*>(&in), sizeof(in)) != 0) {
      return Status::FromErrno("bind " + options_.tcp_host + ":" + std::to_string(options_.tcp_port));
    }
    if (::listen(tcp_fd_, 128) != 0) return Status::FromErrno("listen");
    socklen_t len = sizeof(in);
    ::getsockname(tcp_fd_, reinterpret_cast<sockaddr*>(&in), &len);
    bound_port_ = ntohs(in.sin_port);
  }
  acceptor_ = std::thread([this] { AcceptLoop(); });
  return Status::Ok();
}

void HttpServer::Stop() {
  if (!acceptor_.joinable()) return;
  stopping_ = true;
  (void)!::write(wake_pipe_[1], "x", 1);
  acceptor_.join();
  {
    std::unique_lock lock(mu_);
    for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
    idle_.wait(lock, [this] { return connections_.empty(); });
  }
  for (int* fd : {&unix_fd_, &tcp_fd_, &wake_pipe_[0], &wake_pipe_[1]}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  ::unlink(options_.socket_path.c_str());
}

void HttpServer::AcceptLoop() {
  while (!stopping_) {
    pollfd fds[3] = {{wake_pipe_[0], POLLIN, 0}, {unix_fd_, POLLIN, 0}, {tcp_fd_, POLLIN, 0}};
    int n = ::poll(fds, tcp_fd_ >= 0 ? 3 : 2, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      spdlog::error("poll: {}", std::strerror(errno));
      return;
    }
    if (fds[0].revents) return;
    for (int i = 1; i <= 2; ++i) {
      if (!(fds[i].revents & POLLIN)) continue;
      int fd = ::accept4(fds[i].fd, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) continue;
      Admit(fd, i == 2);
    }
  }
}

void HttpServer::Admit(int fd, bool tcp) {
  auto conn = std::make_shared<Connection>();
  conn->fd = fd;
  conn->tcp = tcp;
  conn->peer = PeerKey(fd, tcp);
  if (conn->peer.empty()) {
    ::close(fd);
    return;
  }
  {
    std::lock_guard lock(mu_);
    if (connections_.size() >= options_.max_connections) {
      if (capped_.insert("*").second) {  // once per episode, as below
        spdlog::warn("connections refused: {} open, the limit in all", connections_.size());
      }
      Refuse(fd, "the key service has too many open connections");
      return;
    }
    size_t& mine = per_peer_[conn->peer];
    if (mine >= options_.max_connections_per_peer) {
      // Logged once per episode: a peer hammering at its cap must not
      // flood the log.
      if (capped_.insert(conn->peer).second) {
        spdlog::warn("connections from {} refused: it has {} open, the limit per peer", conn->peer,
                     mine);
      }
      Refuse(fd, conn->peer + " has too many open connections to the key service");
      return;
    }
    ++mine;
    connections_.insert(fd);
  }
  auto finish = [this](const Connection& c) {
    std::lock_guard l(mu_);
    connections_.erase(c.fd);
    if (connections_.size() < options_.max_connections) capped_.erase("*");
    auto it = per_peer_.find(c.peer);
    if (it != per_peer_.end() && --it->second < options_.max_connections_per_peer) {
      capped_.erase(c.peer);
      if (it->second == 0) per_peer_.erase(it);
    }
    ::close(c.fd);
    idle_.notify_all();
  };
  try {
    std::thread([this, conn, finish] {
      Serve(*conn);
      finish(*conn);
    }).detach();
  } catch (const std::exception& e) {
    // No thread for it (resource limits): drop this connection only.
    spdlog::error("cannot start a connection thread: {}", e.what());
    finish(*conn);
  }
}

bool HttpServer::HostMatchesListener(std::string_view host) const {
  const std::string port = ":" + std::to_string(bound_port_);
  for (const std::string& name : {options_.tcp_host, std::string("localhost")}) {
    if (EqualsIgnoreCase(host, name + port)) return true;
    if (bound_port_ == 80 && EqualsIgnoreCase(host, name)) return true;
  }
  return false;
}

void HttpServer::Serve(Connection& conn) noexcept {
  try {
    if (conn.tcp) {
      int one = 1;
      ::setsockopt(conn.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
      ServeRequests<asio::ip::tcp>(conn);
    } else {
      auto principal = PrincipalFromUnixSocket(conn.fd);
      if (!principal.ok()) {
        spdlog::warn("dropping a connection: {}", principal.status().ToString());
        return;
      }
      conn.unix_principal = std::move(*principal);
      ServeRequests<asio::local::stream_protocol>(conn);
    }
  } catch (const std::exception& e) {
    spdlog::error("connection from {} ended by an internal error: {}", conn.peer, e.what());
  } catch (...) {
    spdlog::error("connection from {} ended by an internal error", conn.peer);
  }
}

template <typename Request>
auto HttpServer::Answer(const Connection& conn, Request& req) {
  std::string target;
  size_t targets = 0;
  size_t hosts = 0;
  std::string_view host;
  for (const auto& h : req) {
    if (beast::iequals(h.name_string(), "X-Amz-Target")) {
      ++targets;
      target = std::string(h.value());
    } else if (h.name() == http::field::host) {
      ++hosts;
      host = std::string_view(h.value().data(), h.value().size());
    }
  }
  if (req.method() != http::verb::post || req.target() != "/") {
    return ErrorResponse(400, "UnknownOperationException", "only POST / is supported");
  }
  if (targets > 1) {
    return ErrorResponse(400, "UnknownOperationException", "more than one X-Amz-Target header");
  }
  Principal who = conn.unix_principal;
  if (conn.tcp) {
    kms::HttpRequestParts parts;
    parts.method = std::string(req.method_string());
    std::string_view t(req.target().data(), req.target().size());
    auto q = t.find('?');
    parts.path = std::string(t.substr(0, q));
    parts.query = q == std::string_view::npos ? "" : std::string(t.substr(q + 1));
    for (const auto& h : req) {
      parts.headers.emplace_back(std::string(h.name_string()), std::string(h.value()));
    }
    parts.body = req.body();
    auto lookup = [this](std::string_view id) -> const crypto::SecretBytes* {
      const AccessKeys::Entry* e = options_.access_keys->Find(id);
      return e ? &e->secret : nullptr;
    };
    auto verified = kms::VerifyRequest(parts, lookup, "kms", std::chrono::system_clock::now(),
                                       options_.max_clock_skew);
    crypto::Cleanse(MutableByteView(reinterpret_cast<uint8_t*>(parts.body.data()),
                                    parts.body.size()));
    if (!verified.ok()) {
      std::string type = AuthErrorType(verified.status().message());
      service_->AuditRejected(target, "tcp", type, verified.status().message());
      return ErrorResponse(type == "MissingAuthenticationTokenException" ? 403 : 400, type,
                           verified.status().message());
    }
    // The signature covers Host; it must also name this listener, or a
    // request signed for another service (another port) could be relayed
    // here and accepted.
    if (hosts != 1 || !HostMatchesListener(host)) {
      const std::string message = "the signed Host header does not name this endpoint (" +
                                  options_.tcp_host + ":" + std::to_string(bound_port_) + ")";
      service_->AuditRejected(target, "tcp", "InvalidSignatureException", message);
      return ErrorResponse(400, "InvalidSignatureException", message);
    }
    who.kind = Principal::Kind::kAccessKey;
    who.access_key_id = *verified;
    who.access_key_name = options_.access_keys->Find(*verified)->principal_name;
  }
  KmsResponse out = service_->Handle(who, target, req.body());
  Response res{static_cast<http::status>(out.http_status), req.version()};
  res.set(http::field::content_type, "application/x-amz-json-1.1");
  res.body() = std::move(out.body);
  if (out.sensitive) res.set("Cache-Control", "no-store");
  return res;
}

template <typename Protocol>
void HttpServer::ServeRequests(Connection& conn) {
  asio::io_context io{1};
  beast::basic_stream<Protocol> stream(io);
  // Beast reads and writes through its own duplicate of the fd, which it
  // closes when a deadline expires and at the end; conn.fd stays open for
  // Stop() and for Admit's bookkeeping until the connection is finished.
  const int own = ::fcntl(conn.fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return;
  beast::error_code assign_ec;
  if constexpr (std::is_same_v<Protocol, asio::ip::tcp>) {
    stream.socket().assign(asio::ip::tcp::v4(), own, assign_ec);
  } else {
    stream.socket().assign(Protocol(), own, assign_ec);
  }
  if (assign_ec) {
    ::close(own);
    return;
  }

  beast::flat_buffer buffer;
  bool first = true;
  for (;;) {
    // Waiting for a request: a new connection gets the header timeout, a
    // kept-alive one the idle timeout. Bytes already buffered (a pipelined
    // request) need no wait.
    if (buffer.size() == 0 &&
        !WaitReadable(conn.fd, first ? options_.header_timeout : options_.idle_timeout)) {
      return;
    }
    if (stopping_) return;
    first = false;

    http::request_parser<http::string_body> parser;
    parser.body_limit(options_.max_body_bytes);
    parser.header_limit(static_cast<uint32_t>(options_.max_header_bytes));
    beast::error_code ec;
    stream.expires_after(options_.header_timeout);
    http::async_read_header(stream, buffer, parser, [&ec](beast::error_code e, size_t) { ec = e; });
    RunIo(io);
    // The body limit is checked on the declared length, before any of the
    // body is read.
    if (!ec && parser.content_length().value_or(0) > options_.max_body_bytes) {
      ec = http::error::body_limit;
    }
    if (!ec && !parser.is_done()) {
      stream.expires_after(options_.body_timeout);
      http::async_read(stream, buffer, parser, [&ec](beast::error_code e, size_t) { ec = e; });
      RunIo(io);
    }
    stream.expires_never();
    if (ec == http::error::end_of_stream || ec == asio::error::eof ||
        ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
        ec == beast::error::timeout || stopping_) {
      return;
    }
    Response res;
    if (ec) {
      res = ec == http::error::body_limit
                ? ErrorResponse(413, "ValidationException",
                                "request body larger than " +
                                    std::to_string(options_.max_body_bytes) + " bytes")
                : ErrorResponse(400, "SerializationException",
                                "malformed HTTP request: " + ec.message());
      res.keep_alive(false);
    } else {
      auto req = parser.release();
      try {
        res = Answer(conn, req);
      } catch (const std::exception& e) {
        spdlog::error("request from {} failed internally: {}", conn.peer, e.what());
        res = ErrorResponse(500, "InternalFailure", "the request failed inside the key service");
      } catch (...) {
        spdlog::error("request from {} failed internally", conn.peer);
        res = ErrorResponse(500, "InternalFailure", "the request failed inside the key service");
      }
      crypto::Cleanse(MutableByteView(reinterpret_cast<uint8_t*>(req.body().data()),
                                      req.body().size()));
      res.keep_alive(req.keep_alive() && res.result_int() != 500);
    }
    res.prepare_payload();
    stream.expires_after(options_.body_timeout);
    beast::error_code write_ec;
    http::async_write(stream, res, [&write_ec](beast::error_code e, size_t) { write_ec = e; });
    RunIo(io);
    stream.expires_never();
    // Response bodies may carry plaintext keys: wipe what we own.
    crypto::Cleanse(MutableByteView(reinterpret_cast<uint8_t*>(res.body().data()),
                                    res.body().size()));
    if (write_ec) return;
    if (ec) {
      DrainBeforeClose(conn.fd);
      return;
    }
    if (!res.keep_alive()) return;
  }
}

}  // namespace envelope::keyservice
