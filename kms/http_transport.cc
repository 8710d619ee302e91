#include "kms/http_transport.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>
#include <exception>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>

#include "core/base/fd_io.h"
#include "kms/http_transport_stream.h"

namespace envelope::kms {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

using std::chrono::milliseconds;
using Tcp = net::ip::tcp;

// Stream: SocketStream (a Unix socket or loopback TCP) or TlsStream. One
// implementation of the exchange for both; the stream reads and writes
// with the connection's deadline (http_transport_stream.h).
template <typename Stream>
class Connection final : public HttpConnection {
 public:
  Connection(UniqueFd fd, Stream stream) : fd_(std::move(fd)), stream_(std::move(stream)) {}
  ~Connection() override { Close(); }

  StatusOr<HttpResponse> RoundTrip(const HttpRequest& request,
                                   milliseconds timeout,
                                   bool* request_written) override {
    *request_written = false;
    try {
      return Exchange(request, timeout, request_written);
    } catch (const std::exception& e) {
      // Beast reports I/O errors through error_code here; only allocation
      // failures throw. Nothing crosses the boundary.
      reusable_ = false;
      Close();
      return Status::Internal(std::string("HTTP exchange failed: ") + e.what());
    }
  }

  bool Reusable() override {
    if (!reusable_ || !fd_.valid()) return false;
    // Readable while idle means end of stream, an error, or bytes nobody
    // asked for: the connection is done either way. (Over TLS that
    // includes a record that is not application data, such as a late
    // session ticket: the connection is dropped, which costs a reconnect
    // and nothing else.)
    pollfd p{};
    p.fd = fd_.get();
    p.events = POLLIN;
    if (::poll(&p, 1, 0) != 0) {
      reusable_ = false;
      Close();
      return false;
    }
    return true;
  }

 private:
  StatusOr<HttpResponse> Exchange(const HttpRequest& request,
                                  milliseconds timeout,
                                  bool* request_written) {
    reusable_ = false;
    if (!fd_.valid()) return Status::Unavailable("the connection is closed");

    // span_body: the body is written straight from the caller's buffer
    // (over TLS: once into a buffer that is wiped; see TlsStream).
    http::request<http::span_body<const char>> req;
    req.method(http::verb::post);
    req.target(request.target);
    req.version(11);
    for (const auto& [name, value] : request.headers) req.insert(name, value);
    req.body() = {request.body.data(), request.body.size()};
    req.prepare_payload();

    // One deadline covers the whole exchange.
    stream_.set_deadline(std::chrono::steady_clock::now() + timeout);
    beast::error_code ec = stream_.WriteRequest(req);
    if (ec) {
      Close();
      return Status::Unavailable("sending the request: " + Reason(ec, timeout));
    }
    *request_written = true;

    WipingFlatBuffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxHttpResponseBodyInBytes);
    // The server needs time to answer: wait before the first read instead
    // of trying one that cannot succeed yet.
    ec = stream_.WaitReadable();
    // The header first, then the body: Beast 1.74's eager parsing (what
    // http::read does) skips the body limit check for a Content-Length
    // that arrives in the same read as the first body bytes, so the limit
    // is checked here, before any of the body is stored.
    if (!ec) http::read_header(stream_, buffer, parser, ec);
    if (!ec && parser.content_length().value_or(0) > kMaxHttpResponseBodyInBytes) {
      ec = http::error::body_limit;
    }
    if (!ec && !parser.is_done()) http::read(stream_, buffer, parser, ec);
    if (ec == http::error::body_limit) {
      Close();
      return Status::ResourceExhausted("the response body is larger than " +
                                       std::to_string(kMaxHttpResponseBodyInBytes) + " bytes");
    }
    if (ec) {
      Close();
      return Status::Unavailable("reading the response: " + Reason(ec, timeout));
    }
    http::response<http::string_body>& msg = parser.get();
    // Bytes past the response mean the framing went wrong somewhere; never
    // read the next response out of them. need_eof: the server did not
    // allow keep-alive, or the body was framed by the end of the stream
    // (which has come, though over TLS the socket may still be open).
    reusable_ = !msg.need_eof() && buffer.size() == 0 && !stream_.HasPending();
    if (!reusable_) Close();
    HttpResponse out;
    out.status = static_cast<int>(msg.result_int());
    out.body = std::move(msg.body());
    return out;
  }

  // Over TLS without a close_notify: nothing is sent after the last
  // response, and HTTP's framing, not TLS's, says where a response ends.
  void Close() {
    if (!fd_.valid()) return;
    stream_.Release();
    ::shutdown(fd_.get(), SHUT_RDWR);
    fd_ = UniqueFd();
  }

  UniqueFd fd_;     // the socket; stream_ uses it, Close() ends both
  Stream stream_;
  bool reusable_ = false;
};

// The process serving a Unix socket must be this user or root: anyone else
// could be a fake service waiting for secrets (a socket planted in a
// directory they control, or a default path they created first). Checked
// after connect and before any byte is sent. SO_PEERCRED on a connected
// socket gives the credentials the server had when it called listen().
Status CheckServerCredentials(int fd, const std::string& socket_path) {
  struct ucred cred {};
  socklen_t len = sizeof(cred);
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
    return Status::FromErrno("getsockopt SO_PEERCRED");
  }
  const uid_t self = ::geteuid();
  if (cred.uid == self || cred.uid == 0) return Status::Ok();
  return Status::PermissionDenied(
      "refusing the key service at unix:" + socket_path +
      ": it is served by uid " + std::to_string(cred.uid) + " (pid " +
      std::to_string(cred.pid) + "), not by uid " + std::to_string(self) +
      " or root; nothing was sent");
}

// A Unix stream socket connected to `path` by `deadline`, non-blocking.
// The connect itself blocks (a non-blocking one fails with EAGAIN when the
// listen queue is full, and nothing can be waited for then), bounded by
// SO_SNDTIMEO, which Linux applies to a Unix socket's connect.
StatusOr<UniqueFd> ConnectUnix(const std::string& path, SteadyTime deadline,
                               milliseconds timeout) {
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::FromErrno("socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.data(), path.size());
  while (true) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) break;
    const auto left = std::chrono::ceil<std::chrono::microseconds>(deadline - now).count();
    timeval tv{};
    tv.tv_sec = static_cast<time_t>(left / 1000000);
    tv.tv_usec = static_cast<suseconds_t>(left % 1000000);
    if (::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv)) != 0) {
      return Status::FromErrno("setsockopt SO_SNDTIMEO");
    }
    if (::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
      ENVELOPE_RETURN_IF_ERROR(SetNonBlocking(fd.get()));
      return fd;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EINPROGRESS) break;  // SO_SNDTIMEO expired
    return Status::Unavailable(std::strerror(errno));
  }
  return Status::Unavailable(Reason(beast::error::timeout, timeout));
}

// A non-blocking TCP socket connected to the first of `endpoints` that
// accepts by `deadline`.
StatusOr<UniqueFd> ConnectTcp(const std::vector<Tcp::endpoint>& endpoints, SteadyTime deadline,
                              milliseconds timeout) {
  beast::error_code ec = net::error::host_not_found;
  for (const Tcp::endpoint& ep : endpoints) {
    // Not inherited by programs the caller may exec (the FUSE daemon runs
    // helpers).
    UniqueFd fd(::socket(ep.protocol().family(), SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd.valid()) {
      ec = {errno, beast::system_category()};
      continue;
    }
    if (::connect(fd.get(), ep.data(), static_cast<socklen_t>(ep.size())) != 0) {
      if (errno != EINPROGRESS) {
        ec = {errno, beast::system_category()};
        continue;
      }
      ec = WaitFor(fd.get(), POLLOUT, deadline);
      if (ec == beast::error::timeout) break;
      int error = 0;
      socklen_t len = sizeof(error);
      if (!ec && ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &error, &len) != 0) error = errno;
      if (!ec && error != 0) ec = {error, beast::system_category()};
      if (ec) continue;
    }
    // Whole messages are written at once, so Nagle's algorithm could only
    // hold back their last segment.
    const int one = 1;
    (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
  }
  return Status::Unavailable(Reason(ec, timeout));
}

// getaddrinfo has no timeout and cannot be cancelled, so it runs on a
// thread of its own that the caller stops waiting for at `deadline`; the
// thread then finishes on its own, owning everything it touches. An IP
// literal needs no lookup.
StatusOr<std::vector<Tcp::endpoint>> ResolveHost(const std::string& host, uint16_t port,
                                                 SteadyTime deadline, milliseconds timeout) {
  beast::error_code ec;
  const net::ip::address literal = net::ip::make_address(host, ec);
  if (!ec) return std::vector<Tcp::endpoint>{Tcp::endpoint(literal, port)};

  using Result = StatusOr<std::vector<Tcp::endpoint>>;
  auto promise = std::make_shared<std::promise<Result>>();
  std::future<Result> future = promise->get_future();
  std::thread([promise, host, port] {
    try {
      addrinfo hints{};
      hints.ai_family = AF_UNSPEC;
      hints.ai_socktype = SOCK_STREAM;
      hints.ai_flags = AI_NUMERICSERV;
      addrinfo* list = nullptr;
      const int rc = ::getaddrinfo(host.c_str(), std::to_string(port).c_str(), &hints, &list);
      std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(list, &::freeaddrinfo);
      if (rc != 0) {
        const std::string why = rc == EAI_SYSTEM ? std::strerror(errno) : ::gai_strerror(rc);
        promise->set_value(Status::Unavailable("resolving " + host + ": " + why));
        return;
      }
      std::vector<Tcp::endpoint> endpoints;
      for (const addrinfo* a = list; a != nullptr; a = a->ai_next) {
        Tcp::endpoint ep;
        if ((a->ai_family != AF_INET && a->ai_family != AF_INET6) ||
            a->ai_addrlen > ep.capacity()) {
          continue;
        }
        std::memcpy(ep.data(), a->ai_addr, a->ai_addrlen);
        endpoints.push_back(ep);
      }
      if (endpoints.empty()) {
        promise->set_value(Status::Unavailable("resolving " + host + ": no IP address"));
      } else {
        promise->set_value(std::move(endpoints));
      }
    } catch (...) {
      promise->set_exception(std::current_exception());
    }
  }).detach();
  if (future.wait_until(deadline) != std::future_status::ready) {
    return Status::Unavailable("resolving " + host + ": timed out after " +
                               std::to_string(timeout.count()) + " ms");
  }
  return future.get();
}

// OpenSSL's reason for its oldest queued error, and the queue emptied.
std::string TakeOpenSslError() {
  const unsigned long e = ::ERR_peek_error();
  const char* reason = e != 0 ? ::ERR_reason_error_string(e) : nullptr;
  ::ERR_clear_error();
  return reason != nullptr ? reason : "unknown OpenSSL error";
}

// Peer verification against the system's default trust store or
// `ca_file`, TLS 1.2 or later.
StatusOr<SslCtxPtr> MakeTlsContext(const TlsOptions& options) {
  SslCtxPtr ctx(::SSL_CTX_new(::TLS_client_method()));
  if (ctx == nullptr) return Status::Internal("SSL_CTX_new: " + TakeOpenSslError());
  if (SSL_CTX_set_min_proto_version(ctx.get(), TLS1_2_VERSION) != 1) {
    return Status::Internal("cannot require TLS 1.2");
  }
  // SSL_OP_CLEANSE_PLAINTEXT: OpenSSL wipes each decrypted record once it
  // is handed over, instead of keeping it in its buffer until overwritten
  // (responses carry plaintext data keys).
  SSL_CTX_set_options(ctx.get(), SSL_OP_CLEANSE_PLAINTEXT | SSL_OP_NO_COMPRESSION |
                                     SSL_OP_NO_RENEGOTIATION);
  ::SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  if (options.ca_file.empty()) {
    if (::SSL_CTX_set_default_verify_paths(ctx.get()) != 1) {
      return Status::FailedPrecondition("cannot load the system's CA certificates: " +
                                        TakeOpenSslError());
    }
    return ctx;
  }
  // The OS error first: OpenSSL's own says "system lib" and nothing else.
  if (::access(options.ca_file.c_str(), R_OK) != 0) {
    return Status::InvalidArgument("cannot read the CA file " + options.ca_file + ": " +
                                   std::strerror(errno));
  }
  if (::SSL_CTX_load_verify_locations(ctx.get(), options.ca_file.c_str(), nullptr) != 1) {
    return Status::InvalidArgument("the CA file " + options.ca_file +
                                   " holds no usable PEM certificate: " + TakeOpenSslError());
  }
  ::ERR_clear_error();
  return ctx;
}

// SNI and the name the certificate must carry (a DNS name, or an IP
// address for an IP literal, which gets no SNI: RFC 6066 section 3), then
// the handshake, by `deadline`. See HttpConnection::Connect for the codes.
StatusOr<TlsStream> Handshake(int fd, SslCtxPtr ctx, const Endpoint& endpoint,
                              SteadyTime deadline, milliseconds timeout) {
  TlsStream stream(fd, std::move(ctx));
  ENVELOPE_RETURN_IF_ERROR(stream.status());
  SSL* ssl = stream.ssl();
  const std::string& host = endpoint.host;
  beast::error_code ec;
  net::ip::make_address(host, ec);
  const bool ip_literal = !ec;
  SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
  if (ip_literal) {
    if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host.c_str()) != 1) {
      return Status::Internal("cannot set the IP address to verify: " + host);
    }
  } else if (SSL_set_tlsext_host_name(ssl, host.c_str()) != 1 ||
             SSL_set1_host(ssl, host.c_str()) != 1) {
    return Status::Internal("cannot set the TLS host name: " + host);
  }

  stream.set_deadline(deadline);
  std::string openssl_reason;
  ec = stream.Connect(&openssl_reason);
  if (!ec) return stream;
  const long verify = SSL_get_verify_result(ssl);
  if (openssl_reason.empty()) {
    // The connection broke or timed out: worth another try.
    return Status::Unavailable("TLS handshake: " + Reason(ec, timeout));
  }
  std::string why = openssl_reason;
  if (verify != X509_V_OK) {
    why += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
  }
  const bool ipv6 = host.find(':') != std::string::npos;
  return Status::FailedPrecondition("TLS handshake with " + (ipv6 ? "[" + host + "]" : host) +
                                    ":" + std::to_string(endpoint.port) + " failed: " + why);
}

StatusOr<std::unique_ptr<HttpConnection>> OpenConnection(
    const Endpoint& endpoint, milliseconds timeout, const TlsOptions& tls) {
  const SteadyTime deadline = std::chrono::steady_clock::now() + timeout;
  if (endpoint.kind == Endpoint::kUnix) {
    if (endpoint.socket_path.empty() ||
        endpoint.socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
      return Status::InvalidArgument("bad Unix socket path length");
    }
    ENVELOPE_RETURN_IF_ERROR(CheckSocketDirectory(endpoint.socket_path, ::geteuid()));
    ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, ConnectUnix(endpoint.socket_path, deadline, timeout));
    ENVELOPE_RETURN_IF_ERROR(CheckServerCredentials(fd.get(), endpoint.socket_path));
    SocketStream stream(fd.get());
    return std::unique_ptr<HttpConnection>(
        std::make_unique<Connection<SocketStream>>(std::move(fd), std::move(stream)));
  }

  if (endpoint.kind == Endpoint::kHttps) {
    ENVELOPE_ASSIGN_OR_RETURN(std::vector<Tcp::endpoint> endpoints,
                              ResolveHost(endpoint.host, endpoint.port, deadline, timeout));
    ENVELOPE_ASSIGN_OR_RETURN(SslCtxPtr context, MakeTlsContext(tls));
    ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, ConnectTcp(endpoints, deadline, timeout));
    ENVELOPE_ASSIGN_OR_RETURN(TlsStream stream,
                              Handshake(fd.get(), std::move(context), endpoint, deadline, timeout));
    return std::unique_ptr<HttpConnection>(
        std::make_unique<Connection<TlsStream>>(std::move(fd), std::move(stream)));
  }

  std::vector<Tcp::endpoint> endpoints;
  // Loopback only, resolved here rather than by getaddrinfo: no resolver
  // configuration can send "localhost" elsewhere, and nothing blocks
  // outside the connect deadline.
  std::vector<std::string> addresses;
  if (endpoint.host == "localhost") {
    addresses = {"127.0.0.1", "::1"};
  } else {
    addresses = {endpoint.host};
  }
  for (const std::string& a : addresses) {
    beast::error_code ec;
    net::ip::address address = net::ip::make_address(a, ec);
    if (ec || !address.is_loopback()) {
      return Status::InvalidArgument("not a loopback address: " + a);
    }
    endpoints.emplace_back(address, endpoint.port);
  }
  ENVELOPE_ASSIGN_OR_RETURN(UniqueFd fd, ConnectTcp(endpoints, deadline, timeout));
  SocketStream stream(fd.get());
  return std::unique_ptr<HttpConnection>(
      std::make_unique<Connection<SocketStream>>(std::move(fd), std::move(stream)));
}

}  // namespace

StatusOr<std::unique_ptr<HttpConnection>> HttpConnection::Connect(
    const Endpoint& endpoint, milliseconds timeout, const TlsOptions& tls) {
  try {
    return OpenConnection(endpoint, timeout, tls);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("connecting failed: ") + e.what());
  }
}

}  // namespace envelope::kms
