#include "kms/http_transport.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <exception>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/beast/core/basic_stream.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
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

template <typename Protocol>
class BeastConnection final : public HttpConnection {
 public:
  using ProtocolEndpoint = typename Protocol::endpoint;

  Status ConnectTo(const std::vector<ProtocolEndpoint>& endpoints,
                   milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    beast::error_code ec = net::error::host_not_found;
    for (const ProtocolEndpoint& ep : endpoints) {
      beast::error_code ignored;
      stream_.socket().close(ignored);
      stream_.socket().open(ep.protocol(), ec);
      if (ec) continue;
      // Not inherited by programs the caller may exec (the FUSE daemon
      // runs helpers); Asio opens sockets without SOCK_CLOEXEC.
      const int fd = stream_.socket().native_handle();
      (void)::fcntl(fd, F_SETFD, ::fcntl(fd, F_GETFD) | FD_CLOEXEC);
      stream_.expires_at(deadline);
      stream_.async_connect(ep, [&ec](beast::error_code e) { ec = e; });
      Run();
      stream_.expires_never();
      if (!ec) return Status::Ok();
      if (ec == beast::error::timeout) break;
    }
    return Status::Unavailable(Reason(ec, timeout));
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

  int native_handle() { return stream_.socket().native_handle(); }

  bool Reusable() override {
    if (!reusable_ || !stream_.socket().is_open()) return false;
    // Readable while idle means end of stream, an error, or bytes nobody
    // asked for: the connection is done either way.
    pollfd p{};
    p.fd = stream_.socket().native_handle();
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
    if (!stream_.socket().is_open()) {
      return Status::Unavailable("the connection is closed");
    }

    // span_body: the body is written straight from the caller's buffer, so
    // a body that carries plaintext is never copied here.
    http::request<http::span_body<const char>> req;
    req.method(http::verb::post);
    req.target(request.target);
    req.version(11);
    for (const auto& [name, value] : request.headers) req.insert(name, value);
    req.body() = {request.body.data(), request.body.size()};
    req.prepare_payload();

    // One deadline covers the whole exchange.
    stream_.expires_after(timeout);
    beast::error_code ec;
    http::async_write(stream_, req,
                      [&ec](beast::error_code e, size_t) { ec = e; });
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
    stream_.expires_never();
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
    reusable_ = msg.keep_alive() && buffer.size() == 0;
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

  void Close() {
    beast::error_code ignored;
    stream_.socket().shutdown(net::socket_base::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  net::io_context ioc_{1};
  beast::basic_stream<Protocol> stream_{ioc_};
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

StatusOr<std::unique_ptr<HttpConnection>> OpenConnection(
    const Endpoint& endpoint, milliseconds timeout) {
  if (endpoint.kind == Endpoint::kUnix) {
    using Local = net::local::stream_protocol;
    if (endpoint.socket_path.empty() ||
        endpoint.socket_path.size() >= sizeof(sockaddr_un::sun_path)) {
      return Status::InvalidArgument("bad Unix socket path length");
    }
    ENVELOPE_RETURN_IF_ERROR(
        CheckSocketDirectory(endpoint.socket_path, ::geteuid()));
    auto conn = std::make_unique<BeastConnection<Local>>();
    ENVELOPE_RETURN_IF_ERROR(
        conn->ConnectTo({Local::endpoint(endpoint.socket_path)}, timeout));
    ENVELOPE_RETURN_IF_ERROR(
        CheckServerCredentials(conn->native_handle(), endpoint.socket_path));
    return std::unique_ptr<HttpConnection>(std::move(conn));
  }

  using Tcp = net::ip::tcp;
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
  auto conn = std::make_unique<BeastConnection<Tcp>>();
  ENVELOPE_RETURN_IF_ERROR(conn->ConnectTo(endpoints, timeout));
  return std::unique_ptr<HttpConnection>(std::move(conn));
}

}  // namespace

StatusOr<std::unique_ptr<HttpConnection>> HttpConnection::Connect(
    const Endpoint& endpoint, milliseconds timeout) {
  try {
    return OpenConnection(endpoint, timeout);
  } catch (const std::exception& e) {
    return Status::Internal(std::string("connecting failed: ") + e.what());
  }
}

}  // namespace envelope::kms
