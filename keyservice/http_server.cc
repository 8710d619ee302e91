#include "keyservice/http_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <cerrno>
#include <chrono>
#include <cstring>

#include <spdlog/spdlog.h>

#include "core/crypto/secret_bytes.h"
#include "kms/sigv4.h"

namespace envelope::keyservice {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

using Response = http::response<http::string_body>;

Response ErrorResponse(int status, const std::string& type, const std::string& message) {
  Response r{static_cast<http::status>(status), 11};
  r.set(http::field::content_type, "application/x-amz-json-1.1");
  nlohmann::json body = {{"__type", type}, {"message", message}};
  r.body() = body.dump();
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

template <typename Socket>
void SetTimeouts(Socket& sock, int seconds) {
  struct timeval tv {seconds, 0};
  ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(sock.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
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
                          deadline - std::chrono::steady_clock::now())
                          .count();
    if (left <= 0) return;
    pollfd p{fd, POLLIN, 0};
    int rc = ::poll(&p, 1, static_cast<int>(left));
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return;
    ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return;  // end of the client's input, or an error
    drained += static_cast<size_t>(n);
  }
}

}  // namespace

HttpServer::HttpServer(KmsService* service, HttpServerOptions options)
    : service_(service), options_(std::move(options)) {}

HttpServer::~HttpServer() { Stop(); }

Status HttpServer::Start() {
  if (::pipe2(wake_pipe_, O_CLOEXEC) != 0) return Status::FromErrno("pipe2");

  unix_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (unix_fd_ < 0) return Status::FromErrno("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (options_.socket_path.size() >= sizeof(addr.sun_path)) {
    return Status::InvalidArgument("socket path too long: " + options_.socket_path);
  }
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
      std::unique_lock lock(mu_);
      if (connections_.size() >= options_.max_connections) {
        ::close(fd);
        spdlog::warn("connection refused: {} connections open", connections_.size());
        continue;
      }
      connections_.insert(fd);
      const bool tcp = i == 2;
      std::thread([this, fd, tcp] {
        Serve(fd, tcp);
        std::lock_guard l(mu_);
        connections_.erase(fd);
        ::close(fd);
        idle_.notify_all();
      }).detach();
    }
  }
}

void HttpServer::Serve(int fd, bool tcp) {
  asio::io_context io;
  Principal unix_principal;
  // Beast reads and writes through an asio socket wrapping our fd; the fd is
  // released (not closed) at the end so the accept loop owns its lifetime.
  auto run = [&](auto& sock) {
    SetTimeouts(sock, options_.idle_timeout_seconds);
    beast::flat_buffer buffer;
    for (;;) {
      http::request_parser<http::string_body> parser;
      parser.body_limit(options_.max_body_bytes);
      parser.header_limit(16 * 1024);
      beast::error_code ec;
      http::read(sock, buffer, parser, ec);
      if (ec == http::error::end_of_stream || ec == asio::error::eof ||
          ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
          stopping_) {
        return;
      }
      if (ec) {
        Response r = ec == http::error::body_limit
                         ? ErrorResponse(413, "ValidationException",
                                         "request body larger than " +
                                             std::to_string(options_.max_body_bytes) + " bytes")
                         : ErrorResponse(400, "SerializationException",
                                         "malformed HTTP request: " + ec.message());
        r.keep_alive(false);
        r.prepare_payload();
        http::write(sock, r, ec);
        if (!ec) DrainBeforeClose(fd);
        return;
      }
      auto req = parser.release();
      Response res;
      auto target_it = req.find("X-Amz-Target");
      const std::string target = target_it == req.end() ? "" : std::string(target_it->value());

      Principal who = unix_principal;
      std::optional<Response> early;
      if (req.method() != http::verb::post || req.target() != "/") {
        early = ErrorResponse(400, "UnknownOperationException", "only POST / is supported");
      } else if (tcp) {
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
        if (!verified.ok()) {
          std::string type = AuthErrorType(verified.status().message());
          service_->AuditRejected(target, "tcp", type, verified.status().message());
          early = ErrorResponse(type == "MissingAuthenticationTokenException" ? 403 : 400, type,
                                verified.status().message());
        } else {
          who.kind = Principal::Kind::kAccessKey;
          who.access_key_id = *verified;
          who.access_key_name = options_.access_keys->Find(*verified)->principal_name;
        }
      }
      if (early) {
        res = std::move(*early);
      } else {
        KmsResponse out = service_->Handle(who, target, req.body());
        res = Response{static_cast<http::status>(out.http_status), req.version()};
        res.set(http::field::content_type, "application/x-amz-json-1.1");
        res.body() = std::move(out.body);
        if (out.sensitive) res.set("Cache-Control", "no-store");
      }
      crypto::Cleanse(MutableByteView(reinterpret_cast<uint8_t*>(req.body().data()),
                                      req.body().size()));
      res.keep_alive(req.keep_alive());
      res.prepare_payload();
      http::write(sock, res, ec);
      // Response bodies may carry plaintext keys: wipe what we own.
      crypto::Cleanse(MutableByteView(reinterpret_cast<uint8_t*>(res.body().data()),
                                      res.body().size()));
      if (ec || !res.keep_alive()) return;
    }
  };

  if (tcp) {
    asio::ip::tcp::socket sock(io);
    beast::error_code ec;
    sock.assign(asio::ip::tcp::v4(), fd, ec);
    int one = 1;
    ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (!ec) run(sock);
    sock.release(ec);
  } else {
    auto principal = PrincipalFromUnixSocket(fd);
    if (!principal.ok()) {
      spdlog::warn("dropping a connection: {}", principal.status().ToString());
      return;
    }
    unix_principal = std::move(*principal);
    asio::local::stream_protocol::socket sock(io);
    beast::error_code ec;
    sock.assign(asio::local::stream_protocol(), fd, ec);
    if (!ec) run(sock);
    sock.release(ec);
  }
}

}  // namespace envelope::keyservice
