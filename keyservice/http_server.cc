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
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <algorithm>
#include <cctype>
#include <charconv>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
#include <memory>
#include <sstream>
#include <type_traits>

#include <spdlog/spdlog.h>

#include "core/base/ascii.h"
#include "core/crypto/secret_bytes.h"
#include "keyservice/json_output.h"
#include "keyservice/peer_socket.h"
#include "keyservice/tls.h"
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
  Origin origin;     // transport and, for TCP, "ADDR:PORT"
  Principal unix_principal;
  // TLS: the client certificate, if one was presented and verified.
  std::optional<ClientCertificate> client_certificate;
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

// Errors of the connection itself (the peer went away, a deadline passed,
// TLS failed): the connection ends without an answer.
bool IsTransportError(const beast::error_code& ec) {
  return ec == http::error::end_of_stream || ec == asio::error::eof ||
         ec == asio::error::connection_reset || ec == asio::error::operation_aborted ||
         ec == asio::error::broken_pipe || ec == beast::error::timeout ||
         ec == asio::ssl::error::stream_truncated ||
         ec.category() == asio::error::get_ssl_category() ||
         ec.category() == asio::ssl::error::get_stream_category();
}

// Whether the request carries SigV4 authentication (an Authorization
// header, or a presigned query), in which case SigV4 names the principal
// even on a connection with a client certificate.
template <typename Request>
bool CarriesSigV4(const Request& req) {
  if (req.find(http::field::authorization) != req.end()) return true;
  std::string_view target(req.target().data(), req.target().size());
  const size_t q = target.find('?');
  return q != std::string_view::npos &&
         target.find("X-Amz-Signature=", q) != std::string_view::npos;
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

// Runs the operation just started on `io` (and its stream's deadline timer)
// to completion on this thread.
void RunIo(asio::io_context& io) {
  io.restart();
  io.run();
}

// Waits up to `timeout` for the first bytes of a request on `stream` (TLS
// or not: bytes TLS has already decrypted count) and puts them in
// `buffer`. False on timeout, end of stream or error. Bytes already
// buffered (a pipelined request) need no wait.
template <typename Stream>
bool AwaitRequest(Stream& stream, beast::flat_buffer& buffer, std::chrono::seconds timeout,
                  asio::io_context& io) {
  if (buffer.size() > 0) return true;
  constexpr size_t kFirstReadInBytes = 4096;
  beast::error_code ec;
  size_t n = 0;
  beast::get_lowest_layer(stream).expires_after(timeout);
  stream.async_read_some(buffer.prepare(kFirstReadInBytes),
                         [&ec, &n](beast::error_code e, size_t got) {
                           ec = e;
                           n = got;
                         });
  RunIo(io);
  beast::get_lowest_layer(stream).expires_never();
  if (ec || n == 0) return false;
  buffer.commit(n);
  return true;
}

// Gives a Beast stream its own duplicate of `fd`, which the stream closes
// when a deadline expires and at the end; `fd` itself stays open for
// Stop() and for Admit's bookkeeping until the connection is finished.
template <typename Socket, typename Protocol>
bool AssignDuplicate(Socket& socket, const Protocol& protocol, int fd) {
  const int own = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (own < 0) return false;
  beast::error_code ec;
  socket.assign(protocol, own, ec);
  if (ec) {
    ::close(own);
    return false;
  }
  return true;
}

}  // namespace

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
    const bool certificates = options_.tls != nullptr && options_.tls->requests_client_certificates();
    if (options_.access_keys == nullptr && !certificates) {
      return Status::InvalidArgument("the TCP endpoint needs an access-keys file");
    }
    beast::error_code address_ec;
    const asio::ip::address address = asio::ip::make_address(options_.tcp_host, address_ec);
    if (address_ec) {
      return Status::InvalidArgument("--listen wants an IPv4 or IPv6 address, got " +
                                     options_.tcp_host);
    }
    ListenAddress listen{options_.tcp_host, options_.tcp_port, address.is_loopback()};
    ENVELOPE_RETURN_IF_ERROR(CheckListenerTransport(listen, options_.tls != nullptr));
    const asio::ip::tcp::endpoint endpoint(address, options_.tcp_port);
    tcp_family_ = address.is_v6() ? AF_INET6 : AF_INET;
    tcp_fd_ = ::socket(tcp_family_, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (tcp_fd_ < 0) return Status::FromErrno("socket");
    int one = 1;
    ::setsockopt(tcp_fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    // [::] means IPv6 only: an IPv4 peer would appear as ::ffff:a.b.c.d,
    // another name for the same address in limits and the audit trail.
    if (tcp_family_ == AF_INET6) ::setsockopt(tcp_fd_, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
    const std::string where = address.is_v6() ? UrlHost(options_.tcp_host) : options_.tcp_host;
    if (::bind(tcp_fd_, endpoint.data(), static_cast<socklen_t>(endpoint.size())) != 0) {
      return Status::FromErrno("bind " + where + ":" + std::to_string(options_.tcp_port));
    }
    if (::listen(tcp_fd_, 128) != 0) return Status::FromErrno("listen");
    sockaddr_storage bound{};
    socklen_t len = sizeof(bound);
    ::getsockname(tcp_fd_, reinterpret_cast<sockaddr*>(&bound), &len);
    bound_port_ = ntohs(tcp_family_ == AF_INET6
                            ? reinterpret_cast<const sockaddr_in6*>(&bound)->sin6_port
                            : reinterpret_cast<const sockaddr_in*>(&bound)->sin_port);
    host_names_.clear();
    if (!address.is_unspecified()) host_names_.push_back(where);
    if (address.is_unspecified()) host_names_.push_back(address.is_v6() ? "[::1]" : "127.0.0.1");
    host_names_.push_back("localhost");
    if (options_.tls != nullptr) {
      for (const std::string& name : options_.tls->server_names()) host_names_.push_back(name);
    }
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
  if (!PeerOf(fd, tcp, &conn->peer, &conn->origin.remote)) {
    ::close(fd);
    return;
  }
  conn->origin.transport = !tcp ? Origin::Transport::kUnix
                           : options_.tls != nullptr ? Origin::Transport::kTls
                                                     : Origin::Transport::kTcp;
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
  const uint16_t default_port = options_.tls != nullptr ? 443 : 80;
  for (const std::string& name : host_names_) {
    if (ascii::EqualsIgnoreCase(host, name + port)) return true;
    if (bound_port_ == default_port && ascii::EqualsIgnoreCase(host, name)) return true;
  }
  return false;
}

void HttpServer::LogFailedHandshake(const Connection& conn, const std::string& why) {
  constexpr auto kInterval = std::chrono::seconds(1);
  const auto now = std::chrono::steady_clock::now();
  size_t unlogged = 0;
  {
    std::lock_guard lock(handshake_log_mu_);
    if (now - last_handshake_log_ < kInterval) {
      ++handshake_failures_unlogged_;
      spdlog::debug("TLS handshake with {} failed: {}", conn.origin.remote, why);
      return;
    }
    last_handshake_log_ = now;
    unlogged = handshake_failures_unlogged_;
    handshake_failures_unlogged_ = 0;
  }
  if (unlogged == 0) {
    spdlog::info("TLS handshake with {} failed: {}", conn.origin.remote, why);
  } else {
    spdlog::info("TLS handshake with {} failed: {} ({} more failed since the last report)",
                 conn.origin.remote, why, unlogged);
  }
}

void HttpServer::Serve(Connection& conn) noexcept {
  try {
    asio::io_context io{1};
    if (!conn.tcp) {
      auto principal = PrincipalFromUnixSocket(conn.fd);
      if (!principal.ok()) {
        spdlog::warn("dropping a connection: {}", principal.status().ToString());
        return;
      }
      conn.unix_principal = std::move(*principal);
      beast::basic_stream<asio::local::stream_protocol> stream(io);
      if (!AssignDuplicate(stream.socket(), asio::local::stream_protocol(), conn.fd)) return;
      ServeRequests(conn, stream, io);
      return;
    }
    int one = 1;
    ::setsockopt(conn.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    const asio::ip::tcp protocol = tcp_family_ == AF_INET6 ? asio::ip::tcp::v6() : asio::ip::tcp::v4();
    if (options_.tls == nullptr) {
      beast::tcp_stream stream(io);
      if (!AssignDuplicate(stream.socket(), protocol, conn.fd)) return;
      ServeRequests(conn, stream, io);
      return;
    }
    beast::ssl_stream<beast::tcp_stream> stream(io, options_.tls->context());
    if (!AssignDuplicate(beast::get_lowest_layer(stream).socket(), protocol, conn.fd)) return;
    if (!Handshake(conn, stream, io)) return;
    ServeRequests(conn, stream, io);
  } catch (const std::exception& e) {
    spdlog::error("connection from {} ended by an internal error: {}", conn.peer, e.what());
  } catch (...) {
    spdlog::error("connection from {} ended by an internal error", conn.peer);
  }
}

template <typename TlsStream, typename IoContext>
bool HttpServer::Handshake(Connection& conn, TlsStream& stream, IoContext& io) {
  beast::error_code ec;
  beast::get_lowest_layer(stream).expires_after(options_.header_timeout);
  stream.async_handshake(asio::ssl::stream_base::server, [&ec](beast::error_code e) { ec = e; });
  RunIo(io);
  beast::get_lowest_layer(stream).expires_never();
  if (stopping_) return false;
  if (ec) {
    LogFailedHandshake(conn, ec == beast::error::timeout ? "not finished within the header timeout"
                                                         : ec.message());
    return false;
  }
  conn.client_certificate = VerifiedClientCertificate(stream.native_handle());
  if (conn.client_certificate) conn.origin.tls_client_subject = conn.client_certificate->subject;
  return true;
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
  if (conn.tcp && conn.client_certificate && !CarriesSigV4(req)) {
    // Mutual TLS: the verified certificate names the caller. No Host check:
    // the request is bound to this connection, not to a relayable
    // signature.
    who = Principal();
    who.kind = Principal::Kind::kTlsCert;
    who.cert_subject = conn.client_certificate->subject;
    who.cert_issuer = conn.client_certificate->issuer;
    who.cert_serial = conn.client_certificate->serial;
  } else if (conn.tcp) {
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
      if (options_.access_keys == nullptr) return nullptr;  // certificates only
      const AccessKeys::Entry* e = options_.access_keys->Find(id);
      return e ? &e->secret : nullptr;
    };
    auto verified = kms::VerifyRequest(parts, lookup, "kms", std::chrono::system_clock::now(),
                                       options_.max_clock_skew);
    crypto::Cleanse(MutableByteView(reinterpret_cast<uint8_t*>(parts.body.data()),
                                    parts.body.size()));
    if (!verified.ok()) {
      std::string type = AuthErrorType(verified.status().message());
      service_->AuditRejected(target, conn.origin, type, verified.status().message());
      return ErrorResponse(type == "MissingAuthenticationTokenException" ? 403 : 400, type,
                           verified.status().message());
    }
    // The signature covers Host; it must also name this listener, or a
    // request signed for another service (another port) could be relayed
    // here and accepted.
    if (hosts != 1 || !HostMatchesListener(host)) {
      const std::string message = "the signed Host header does not name this endpoint (" +
                                  host_names_.front() + ":" + std::to_string(bound_port_) + ")";
      service_->AuditRejected(target, conn.origin, "InvalidSignatureException", message);
      return ErrorResponse(400, "InvalidSignatureException", message);
    }
    who = Principal();
    who.kind = Principal::Kind::kAccessKey;
    who.access_key_id = *verified;
    who.access_key_name = options_.access_keys->Find(*verified)->principal_name;
  }
  who.origin = conn.origin;
  KmsResponse out = service_->Handle(who, target, req.body());
  Response res{static_cast<http::status>(out.http_status), req.version()};
  res.set(http::field::content_type, "application/x-amz-json-1.1");
  res.body() = std::move(out.body);
  if (out.sensitive) res.set("Cache-Control", "no-store");
  return res;
}

template <typename Stream, typename IoContext>
void HttpServer::ServeRequests(Connection& conn, Stream& stream, IoContext& io) {
  beast::flat_buffer buffer;
  bool first = true;
  for (;;) {
    // Waiting for a request: a new connection gets the header timeout, a
    // kept-alive one the idle timeout.
    if (!AwaitRequest(stream, buffer, first ? options_.header_timeout : options_.idle_timeout,
                      io)) {
      return;
    }
    if (stopping_) return;
    first = false;

    http::request_parser<http::string_body> parser;
    parser.body_limit(options_.max_body_bytes);
    parser.header_limit(static_cast<uint32_t>(options_.max_header_bytes));
    beast::error_code ec;
    beast::get_lowest_layer(stream).expires_after(options_.header_timeout);
    http::async_read_header(stream, buffer, parser, [&ec](beast::error_code e, size_t) { ec = e; });
    RunIo(io);
    // The body limit is checked on the declared length, before any of the
    // body is read.
    if (!ec && parser.content_length().value_or(0) > options_.max_body_bytes) {
      ec = http::error::body_limit;
    }
    if (!ec && !parser.is_done()) {
      beast::get_lowest_layer(stream).expires_after(options_.body_timeout);
      http::async_read(stream, buffer, parser, [&ec](beast::error_code e, size_t) { ec = e; });
      RunIo(io);
    }
    beast::get_lowest_layer(stream).expires_never();
    if (IsTransportError(ec) || stopping_) return;
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
    beast::get_lowest_layer(stream).expires_after(options_.body_timeout);
    beast::error_code write_ec;
    http::async_write(stream, res, [&write_ec](beast::error_code e, size_t) { write_ec = e; });
    RunIo(io);
    beast::get_lowest_layer(stream).expires_never();
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
