#include "kms/http_transport.h"

#include <fcntl.h>
#include <netdb.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <exception>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <type_traits>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/serializer.hpp>
#include <boost/beast/http/span_body.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "core/crypto/secret_bytes.h"

namespace envelope::kms {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

using std::chrono::milliseconds;

// An allocator that wipes memory before giving it back, for the read buffer:
// it holds the raw response, which may carry plaintext, and Beast may
// reallocate it while reading.
template <typename T>
struct WipingAllocator {
  using value_type = T;
  WipingAllocator() = default;
  template <typename U>
  WipingAllocator(const WipingAllocator<U>&) {}  // NOLINT: rebinding
  T* allocate(size_t n) { return std::allocator<T>().allocate(n); }
  void deallocate(T* p, size_t n) {
    crypto::Cleanse({reinterpret_cast<uint8_t*>(p), n * sizeof(T)});
    std::allocator<T>().deallocate(p, n);
  }
  friend bool operator==(const WipingAllocator&, const WipingAllocator&) {
    return true;
  }
};

using WipingFlatBuffer = beast::basic_flat_buffer<WipingAllocator<char>>;

std::string Reason(const beast::error_code& ec, milliseconds timeout) {
  if (ec == beast::error::timeout) {
    return "timed out after " + std::to_string(timeout.count()) + " ms";
  }
  if (ec == http::error::end_of_stream || ec == net::error::eof) {
    return "the server closed the connection";
  }
  return ec.message();
}

using WipingChars = std::vector<char, WipingAllocator<char>>;

using Tcp = net::ip::tcp;
using Local = net::local::stream_protocol;
using SteadyTime = std::chrono::steady_clock::time_point;
// asio's ssl::stream straight over the TCP stream, not beast::ssl_stream:
// the latter's flat_stream copies small multi-buffer writes (the request,
// body included) into a buffer of its own that is freed unwiped.
using TlsStream = net::ssl::stream<beast::tcp_stream>;

template <typename Stream>
inline constexpr bool kIsTls = std::is_same_v<Stream, TlsStream>;

// The whole request in one buffer, wiped when freed. Given several buffers
// (the header's pieces and the body), asio's ssl::stream first copies them
// into an 8 KiB stack buffer that nobody wipes (buffer_sequence_adapter::
// linearise) and sends each write as a small TLS record of its own; a
// single buffer is encrypted where it lies.
template <typename Body>
Status SerializeRequest(http::request<Body>& request, WipingChars* out) {
  http::request_serializer<Body> serializer{request};
  beast::error_code ec;
  while (!ec && !serializer.is_done()) {
    serializer.next(ec, [&](beast::error_code&, const auto& buffers) {
      const size_t n = net::buffer_size(buffers);
      const size_t old = out->size();
      out->resize(old + n);
      net::buffer_copy(net::buffer(out->data() + old, n), buffers);
      serializer.consume(n);
    });
  }
  if (ec) return Status::Internal("serializing the request: " + ec.message());
  return Status::Ok();
}

// Stream: beast::basic_stream<Local>, beast::tcp_stream, or TlsStream. One
// implementation of the exchange for all three; the lowest layer (a
// basic_stream) carries the deadlines either way.
template <typename Stream>
class BeastConnection final : public HttpConnection {
 public:
  BeastConnection() requires(!kIsTls<Stream>) : stream_(ioc_) {}
  explicit BeastConnection(std::unique_ptr<net::ssl::context> tls) requires(kIsTls<Stream>)
      : tls_(std::move(tls)), stream_(ioc_, *tls_) {}

  template <typename ProtocolEndpoint>
  Status ConnectTo(const std::vector<ProtocolEndpoint>& endpoints, SteadyTime deadline,
                   milliseconds timeout) {
    beast::error_code ec = net::error::host_not_found;
    auto& lowest = Lowest();
    for (const ProtocolEndpoint& ep : endpoints) {
      beast::error_code ignored;
      lowest.socket().close(ignored);
      lowest.socket().open(ep.protocol(), ec);
      if (ec) continue;
      // Not inherited by programs the caller may exec (the FUSE daemon
      // runs helpers); Asio opens sockets without SOCK_CLOEXEC.
      const int fd = lowest.socket().native_handle();
      (void)::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
      lowest.expires_at(deadline);
      lowest.async_connect(ep, [&ec](beast::error_code e) { ec = e; });
      Run();
      lowest.expires_never();
      if (!ec) return Status::Ok();
      if (ec == beast::error::timeout) break;
    }
    return Status::Unavailable(Reason(ec, timeout));
  }

  // SNI and the name the certificate must carry (a DNS name, or an IP
  // address for an IP literal, which gets no SNI: RFC 6066 section 3),
  // then the handshake, by `deadline`. See HttpConnection::Connect for the
  // codes.
  Status Handshake(const Endpoint& endpoint, SteadyTime deadline, milliseconds timeout)
    requires(kIsTls<Stream>)
  {
    SSL* ssl = stream_.native_handle();
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
    // Whole messages are written at once (SerializeRequest), so Nagle's
    // algorithm could only hold back their last segment.
    Lowest().socket().set_option(Tcp::no_delay(true), ec);

    ec = {};
    Lowest().expires_at(deadline);
    stream_.async_handshake(net::ssl::stream_base::client,
                            [&ec](beast::error_code e) { ec = e; });
    Run();
    Lowest().expires_never();
    if (!ec) return Status::Ok();
    Close();
    const long verify = SSL_get_verify_result(ssl);
    ::ERR_clear_error();
    if (ec.category() != net::error::get_ssl_category()) {
      // The connection broke or timed out: worth another try.
      return Status::Unavailable("TLS handshake: " + Reason(ec, timeout));
    }
    std::string why = ec.message();
    if (verify != X509_V_OK) {
      why += std::string(" (") + X509_verify_cert_error_string(verify) + ")";
    }
    const bool ipv6 = host.find(':') != std::string::npos;
    return Status::FailedPrecondition("TLS handshake with " +
                                      (ipv6 ? "[" + host + "]" : host) + ":" +
                                      std::to_string(endpoint.port) + " failed: " + why);
  }

  StatusOr<HttpResponse> RoundTrip(const HttpRequest& request,
                                   milliseconds timeout,
                                   bool* request_written) override {
    *request_written = false;
    try {
      return Exchange(request, timeout, request_written);
    } catch (const std::exception& e) {
      // Asio and Beast report I/O errors through error_code here; only
      // allocation or timer failures throw. Nothing crosses the boundary.
      reusable_ = false;
      Close();
      return Status::Internal(std::string("HTTP exchange failed: ") + e.what());
    }
  }

  int native_handle() { return Lowest().socket().native_handle(); }

  bool Reusable() override {
    if (!reusable_ || !Lowest().socket().is_open()) return false;
    // Readable while idle means end of stream, an error, or bytes nobody
    // asked for: the connection is done either way. (Over TLS that
    // includes a record that is not application data, such as a late
    // session ticket: the connection is dropped, which costs a reconnect
    // and nothing else.)
    pollfd p{};
    p.fd = Lowest().socket().native_handle();
    p.events = POLLIN;
    if (::poll(&p, 1, 0) != 0) {
      reusable_ = false;
      Close();
      return false;
    }
    return true;
  }

 private:
  auto& Lowest() { return beast::get_lowest_layer(stream_); }

  // No bytes past the response anywhere: in the read buffer, and over TLS
  // in OpenSSL's record buffer or the BIO that asio feeds it from.
  bool NothingBuffered(const WipingFlatBuffer& buffer) {
    if (buffer.size() != 0) return false;
    if constexpr (kIsTls<Stream>) {
      SSL* ssl = stream_.native_handle();
      return SSL_has_pending(ssl) == 0 && BIO_ctrl_pending(SSL_get_rbio(ssl)) == 0;
    }
    return true;
  }

  StatusOr<HttpResponse> Exchange(const HttpRequest& request,
                                  milliseconds timeout,
                                  bool* request_written) {
    reusable_ = false;
    if (!Lowest().socket().is_open()) {
      return Status::Unavailable("the connection is closed");
    }

    // span_body: the body is written straight from the caller's buffer, so
    // a body that carries plaintext is never copied here (over TLS: once,
    // into a buffer that is wiped).
    http::request<http::span_body<const char>> req;
    req.method(http::verb::post);
    req.target(request.target);
    req.version(11);
    for (const auto& [name, value] : request.headers) req.insert(name, value);
    req.body() = {request.body.data(), request.body.size()};
    req.prepare_payload();

    beast::error_code ec;
    WipingChars serialized;
    if constexpr (kIsTls<Stream>) {
      serialized.reserve(request.body.size() + 1024);
      ENVELOPE_RETURN_IF_ERROR(SerializeRequest(req, &serialized));
    }
    // One deadline covers the whole exchange.
    Lowest().expires_after(timeout);
    if constexpr (kIsTls<Stream>) {
      net::async_write(stream_, net::buffer(serialized),
                       [&ec](beast::error_code e, size_t) { ec = e; });
    } else {
      http::async_write(stream_, req,
                        [&ec](beast::error_code e, size_t) { ec = e; });
    }
    Run();
    if (ec) {
      Close();
      return Status::Unavailable("sending the request: " +
                                 Reason(ec, timeout));
    }
    *request_written = true;

    WipingFlatBuffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxHttpResponseBodyInBytes);
    // The header first, then the body: Beast 1.74's eager parsing (what
    // async_read does) skips the body limit check for a Content-Length that
    // arrives in the same read as the first body bytes, so the limit is
    // checked here, before any of the body is stored.
    http::async_read_header(stream_, buffer, parser,
                            [&ec](beast::error_code e, size_t) { ec = e; });
    Run();
    if (!ec && parser.content_length().value_or(0) >
                   kMaxHttpResponseBodyInBytes) {
      ec = http::error::body_limit;
    }
    if (!ec && !parser.is_done()) {
      http::async_read(stream_, buffer, parser,
                       [&ec](beast::error_code e, size_t) { ec = e; });
      Run();
    }
    Lowest().expires_never();
    if (ec == http::error::body_limit) {
      Close();
      return Status::ResourceExhausted(
          "the response body is larger than " +
          std::to_string(kMaxHttpResponseBodyInBytes) + " bytes");
    }
    if (ec) {
      Close();
      return Status::Unavailable("reading the response: " +
                                 Reason(ec, timeout));
    }
    http::response<http::string_body>& msg = parser.get();
    // Bytes past the response mean the framing went wrong somewhere; never
    // read the next response out of them.
    reusable_ = msg.keep_alive() && NothingBuffered(buffer);
    if (!reusable_) Close();
    HttpResponse out;
    out.status = static_cast<int>(msg.result_int());
    out.body = std::move(msg.body());
    return out;
  }

  // Runs the operations just started (and the stream's deadline timer, which
  // Beast cancels when they finish) to completion on this thread.
  void Run() {
    ioc_.restart();
    ioc_.run();
  }

  // Over TLS without a close_notify: nothing is sent after the last
  // response, and HTTP's framing, not TLS's, says where a response ends.
  void Close() {
    beast::error_code ignored;
    Lowest().socket().shutdown(net::socket_base::shutdown_both, ignored);
    Lowest().socket().close(ignored);
  }

  net::io_context ioc_{1};
  std::unique_ptr<net::ssl::context> tls_;  // TlsStream only; outlives stream_
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

// getaddrinfo has no timeout and cannot be cancelled, so it runs on a
// thread of its own that the caller stops waiting for at `deadline`; the
// thread then finishes on its own, owning everything it touches. (Asio's
// resolver would do the same on a thread that destroying the io_context
// joins, blocking past the deadline.) An IP literal needs no lookup.
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

// Peer verification against the system's default trust store or
// `ca_file`, TLS 1.2 or later.
StatusOr<std::unique_ptr<net::ssl::context>> MakeTlsContext(const TlsOptions& options) {
  auto tls = std::make_unique<net::ssl::context>(net::ssl::context::tls_client);
  SSL_CTX* ctx = tls->native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
    return Status::Internal("cannot require TLS 1.2");
  }
  // SSL_OP_CLEANSE_PLAINTEXT: OpenSSL wipes each decrypted record once it
  // is handed over, instead of keeping it in its buffer until overwritten
  // (responses carry plaintext data keys).
  SSL_CTX_set_options(ctx, SSL_OP_CLEANSE_PLAINTEXT | SSL_OP_NO_COMPRESSION |
                               SSL_OP_NO_RENEGOTIATION);
  tls->set_verify_mode(net::ssl::verify_peer);
  beast::error_code ec;
  if (options.ca_file.empty()) {
    tls->set_default_verify_paths(ec);
    if (ec) return Status::FailedPrecondition("cannot load the system's CA certificates: " + ec.message());
    return tls;
  }
  // The OS error first: OpenSSL's own says "system lib" and nothing else.
  if (::access(options.ca_file.c_str(), R_OK) != 0) {
    return Status::InvalidArgument("cannot read the CA file " + options.ca_file + ": " +
                                   std::strerror(errno));
  }
  tls->load_verify_file(options.ca_file, ec);
  ::ERR_clear_error();
  if (ec) {
    return Status::InvalidArgument("the CA file " + options.ca_file +
                                   " holds no usable PEM certificate: " + ec.message());
  }
  return tls;
}

StatusOr<std::unique_ptr<HttpConnection>> OpenConnection(
    const Endpoint& endpoint, milliseconds timeout, const TlsOptions& tls) {
  const SteadyTime deadline = std::chrono::steady_clock::now() + timeout;
  if (endpoint.kind == Endpoint::kUnix) {
    if (endpoint.socket_path.empty() ||
        endpoint.socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
      return Status::InvalidArgument("bad Unix socket path length");
    }
    ENVELOPE_RETURN_IF_ERROR(
        CheckSocketDirectory(endpoint.socket_path, ::geteuid()));
    auto conn = std::make_unique<BeastConnection<beast::basic_stream<Local>>>();
    ENVELOPE_RETURN_IF_ERROR(conn->ConnectTo(
        std::vector<Local::endpoint>{Local::endpoint(endpoint.socket_path)}, deadline, timeout));
    ENVELOPE_RETURN_IF_ERROR(
        CheckServerCredentials(conn->native_handle(), endpoint.socket_path));
    return std::unique_ptr<HttpConnection>(std::move(conn));
  }

  if (endpoint.kind == Endpoint::kHttps) {
    ENVELOPE_ASSIGN_OR_RETURN(std::vector<Tcp::endpoint> endpoints,
                              ResolveHost(endpoint.host, endpoint.port, deadline, timeout));
    ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<net::ssl::context> context, MakeTlsContext(tls));
    auto conn = std::make_unique<BeastConnection<TlsStream>>(std::move(context));
    ENVELOPE_RETURN_IF_ERROR(conn->ConnectTo(endpoints, deadline, timeout));
    ENVELOPE_RETURN_IF_ERROR(conn->Handshake(endpoint, deadline, timeout));
    return std::unique_ptr<HttpConnection>(std::move(conn));
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
  auto conn = std::make_unique<BeastConnection<beast::tcp_stream>>();
  ENVELOPE_RETURN_IF_ERROR(conn->ConnectTo(endpoints, deadline, timeout));
  return std::unique_ptr<HttpConnection>(std::move(conn));
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
