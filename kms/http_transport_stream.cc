#include "kms/http_transport_stream.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <utility>

#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/serializer.hpp>

namespace envelope::kms {

namespace {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

beast::error_code Errno(int e) { return {e, beast::system_category()}; }

}  // namespace

std::string Reason(const beast::error_code& ec, std::chrono::milliseconds timeout) {
  if (ec == beast::error::timeout) {
    return "timed out after " + std::to_string(timeout.count()) + " ms";
  }
  if (ec == http::error::end_of_stream || ec == net::error::eof) {
    return "the server closed the connection";
  }
  if (ec == net::ssl::error::stream_truncated) {
    return "the server closed the connection without a TLS close_notify";
  }
  return ec.message();
}

beast::error_code WaitFor(int fd, short events, SteadyTime deadline) {
  while (true) {
    const auto now = std::chrono::steady_clock::now();
    if (now >= deadline) return beast::error::timeout;
    // Rounded up, so that poll never returns just before the deadline and
    // leaves a spin of zero-timeout polls.
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - now).count();
    pollfd p{};
    p.fd = fd;
    p.events = events;
    const int n = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, INT_MAX)));
    if (n > 0) return {};
    if (n < 0 && errno != EINTR) return Errno(errno);
  }
}

Status SetNonBlocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0) {
    return Status::FromErrno("fcntl O_NONBLOCK");
  }
  return Status::Ok();
}

// --- SocketStream ---

beast::error_code SocketStream::WriteRequest(HttpRequestMessage& request) {
  http::request_serializer<http::span_body<const char>> serializer{request};
  beast::error_code ec;
  while (!ec && !serializer.is_done()) {
    serializer.next(ec, [&](beast::error_code& visit_ec, const auto& buffers) {
      // The header's pieces and the body: a handful of buffers.
      iovec iov[16];
      size_t count = 0;
      for (auto it = net::buffer_sequence_begin(buffers);
           it != net::buffer_sequence_end(buffers) && count < std::size(iov); ++it) {
        net::const_buffer b = *it;
        if (b.size() == 0) continue;
        iov[count].iov_base = const_cast<void*>(b.data());
        iov[count].iov_len = b.size();
        ++count;
      }
      msghdr msg{};
      msg.msg_iov = iov;
      msg.msg_iovlen = count;
      while (true) {
        const ssize_t n = ::sendmsg(fd_, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n >= 0) {
          serializer.consume(static_cast<size_t>(n));
          return;
        }
        if (errno == EINTR) continue;
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
          visit_ec = Errno(errno);
          return;
        }
        visit_ec = WaitFor(fd_, POLLOUT, deadline_);
        if (visit_ec) return;
      }
    });
  }
  return ec;
}

size_t SocketStream::ReadSome(net::mutable_buffer buffer, beast::error_code& ec) {
  ec = {};
  if (buffer.size() == 0) return 0;
  while (true) {
    const ssize_t n = ::recv(fd_, buffer.data(), buffer.size(), MSG_DONTWAIT);
    if (n > 0) return static_cast<size_t>(n);
    if (n == 0) {
      ec = net::error::eof;
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      ec = Errno(errno);
      return 0;
    }
    ec = WaitFor(fd_, POLLIN, deadline_);
    if (ec) return 0;
  }
}

// --- TlsStream's BIO: the socket, with MSG_NOSIGNAL. ---

namespace {

TlsStream::BioState* StateOf(BIO* bio) {
  return static_cast<TlsStream::BioState*>(BIO_get_data(bio));
}

int BioWrite(BIO* bio, const char* data, size_t size, size_t* written) {
  BIO_clear_retry_flags(bio);
  TlsStream::BioState* state = StateOf(bio);
  while (true) {
    const ssize_t n = ::send(state->fd, data, size, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n >= 0) {
      *written = static_cast<size_t>(n);
      return 1;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BIO_set_retry_write(bio);
    } else {
      state->error = errno;
    }
    return 0;
  }
}

int BioRead(BIO* bio, char* data, size_t size, size_t* read) {
  BIO_clear_retry_flags(bio);
  TlsStream::BioState* state = StateOf(bio);
  while (true) {
    const ssize_t n = ::recv(state->fd, data, size, MSG_DONTWAIT);
    if (n > 0) {
      *read = static_cast<size_t>(n);
      return 1;
    }
    if (n == 0) {
      // As OpenSSL's socket BIO does: BIO_eof() then says so, and OpenSSL
      // reports an end without close_notify as unexpected.
      BIO_set_flags(bio, BIO_FLAGS_IN_EOF);
      return 0;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      BIO_set_retry_read(bio);
    } else {
      state->error = errno;
    }
    return 0;
  }
}

long BioCtrl(BIO* bio, int cmd, long, void*) {  // NOLINT(runtime/int): OpenSSL's type
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;
    case BIO_CTRL_EOF:
      return BIO_test_flags(bio, BIO_FLAGS_IN_EOF) != 0 ? 1 : 0;
    default:
      return 0;
  }
}

int BioCreate(BIO* bio) {
  BIO_set_init(bio, 1);
  return 1;
}

// Made once, kept for the life of the process.
const BIO_METHOD* SocketBioMethod() {
  static const BIO_METHOD* const method = [] {
    BIO_METHOD* m = ::BIO_meth_new(::BIO_get_new_index() | BIO_TYPE_SOURCE_SINK,
                                   "envelope socket");
    if (m == nullptr || ::BIO_meth_set_write_ex(m, BioWrite) != 1 ||
        ::BIO_meth_set_read_ex(m, BioRead) != 1 || ::BIO_meth_set_ctrl(m, BioCtrl) != 1 ||
        ::BIO_meth_set_create(m, BioCreate) != 1) {
      return static_cast<BIO_METHOD*>(nullptr);
    }
    return m;
  }();
  return method;
}

}  // namespace

// --- TlsStream ---

TlsStream::TlsStream(int fd, SslCtxPtr ctx)
    : ctx_(std::move(ctx)), bio_state_(std::make_unique<BioState>()), fd_(fd) {
  bio_state_->fd = fd;
  const BIO_METHOD* method = SocketBioMethod();
  BIO* bio = method != nullptr ? ::BIO_new(method) : nullptr;
  ssl_ = bio != nullptr ? ::SSL_new(ctx_.get()) : nullptr;
  if (ssl_ == nullptr) {
    ::BIO_free(bio);
    ::ERR_clear_error();
    status_ = Status::Internal("cannot make an OpenSSL connection object");
    return;
  }
  BIO_set_data(bio, bio_state_.get());
  ::SSL_set_bio(ssl_, bio, bio);  // the SSL object owns the BIO now
}

TlsStream::TlsStream(TlsStream&& other) noexcept
    : status_(std::move(other.status_)),
      ctx_(std::move(other.ctx_)),
      bio_state_(std::move(other.bio_state_)),
      ssl_(std::exchange(other.ssl_, nullptr)),
      fd_(other.fd_),
      deadline_(other.deadline_) {}

TlsStream& TlsStream::operator=(TlsStream&& other) noexcept {
  if (this != &other) {
    Release();
    status_ = std::move(other.status_);
    ctx_ = std::move(other.ctx_);
    bio_state_ = std::move(other.bio_state_);
    ssl_ = std::exchange(other.ssl_, nullptr);
    fd_ = other.fd_;
    deadline_ = other.deadline_;
  }
  return *this;
}

TlsStream::~TlsStream() { Release(); }

void TlsStream::Release() {
  ::SSL_free(ssl_);  // sends nothing (no close_notify: see Close in http_transport.cc)
  ssl_ = nullptr;
}

bool TlsStream::HasPending() const { return ssl_ != nullptr && ::SSL_has_pending(ssl_) != 0; }

template <typename Op>
beast::error_code TlsStream::Drive(Op op, std::string* openssl_reason) {
  if (ssl_ == nullptr) return net::error::bad_descriptor;
  while (true) {
    ::ERR_clear_error();
    bio_state_->error = 0;
    const int result = op();
    if (result == 1) return {};
    const int error = ::SSL_get_error(ssl_, result);
    if (error == SSL_ERROR_WANT_READ || error == SSL_ERROR_WANT_WRITE) {
      beast::error_code ec =
          WaitFor(fd_, error == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline_);
      if (ec) return ec;
      continue;
    }
    const unsigned long first = ::ERR_peek_error();  // NOLINT(runtime/int)
    if (error == SSL_ERROR_ZERO_RETURN) {  // a close_notify
      ::ERR_clear_error();
      return net::error::eof;
    }
    if ((error == SSL_ERROR_SSL && ERR_GET_LIB(first) == ERR_LIB_SSL &&
         ERR_GET_REASON(first) == SSL_R_UNEXPECTED_EOF_WHILE_READING) ||
        (error == SSL_ERROR_SYSCALL && bio_state_->error == 0 && first == 0)) {
      ::ERR_clear_error();
      return net::ssl::error::stream_truncated;
    }
    if (error == SSL_ERROR_SYSCALL && bio_state_->error != 0) {
      ::ERR_clear_error();
      return Errno(bio_state_->error);
    }
    if (error == SSL_ERROR_SSL && first != 0) {
      const char* reason = ::ERR_reason_error_string(first);
      ::ERR_clear_error();
      if (openssl_reason != nullptr) *openssl_reason = reason != nullptr ? reason : "TLS error";
      // The category Asio's TLS reported these in: message() is the reason.
      return {static_cast<int>(first), net::error::get_ssl_category()};
    }
    ::ERR_clear_error();
    return net::ssl::error::unexpected_result;
  }
}

beast::error_code TlsStream::Connect(std::string* openssl_reason) {
  return Drive([this] { return ::SSL_connect(ssl_); }, openssl_reason);
}

beast::error_code TlsStream::WriteRequest(HttpRequestMessage& request) {
  // The whole request in one buffer, wiped when freed, written with one
  // SSL_write: one TLS record for a request of up to 16 KiB, and no copy
  // of the body anywhere but here and OpenSSL's write buffer (encrypted in
  // place there).
  WipingChars serialized;
  serialized.reserve(request.body().size() + 1024);
  http::request_serializer<http::span_body<const char>> serializer{request};
  beast::error_code ec;
  while (!ec && !serializer.is_done()) {
    serializer.next(ec, [&](beast::error_code&, const auto& buffers) {
      const size_t n = net::buffer_size(buffers);
      const size_t old = serialized.size();
      serialized.resize(old + n);
      net::buffer_copy(net::buffer(serialized.data() + old, n), buffers);
      serializer.consume(n);
    });
  }
  if (ec) return ec;
  // Without SSL_MODE_ENABLE_PARTIAL_WRITE, SSL_write_ex writes everything
  // or is repeated with the same arguments.
  size_t written = 0;
  return Drive(
      [&] { return ::SSL_write_ex(ssl_, serialized.data(), serialized.size(), &written); },
      nullptr);
}

beast::error_code TlsStream::WaitReadable() {
  if (HasPending()) return {};
  return WaitFor(fd_, POLLIN, deadline_);
}

size_t TlsStream::ReadSome(net::mutable_buffer buffer, beast::error_code& ec) {
  size_t read = 0;
  ec = {};
  if (buffer.size() == 0) return 0;
  ec = Drive([&] { return ::SSL_read_ex(ssl_, buffer.data(), buffer.size(), &read); }, nullptr);
  return ec ? 0 : read;
}

}  // namespace envelope::kms
