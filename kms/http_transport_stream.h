// The byte streams under HttpConnection (http_transport.cc): a connected
// socket read and written with recv/sendmsg, and TLS through an OpenSSL SSL
// object over the same kind of socket. No event loop: the socket is
// non-blocking, each call makes the system call (or the SSL call) first
// and, only when that would block, waits in poll() for the socket, never
// past the deadline set for the exchange (beast::error::timeout then). The
// steady-state exchange costs a sendmsg, a poll and a recv; the Asio
// event loop this replaces registered the socket with epoll and waited on
// it for every read.
//
// Both streams are Beast SyncReadStreams (read_some), so Beast's HTTP
// parser reads from them directly.
//
// Secrets: SocketStream writes the request with one sendmsg of the header
// and the caller's body, without copying either. TlsStream serializes the
// request once into a buffer that is wiped when freed (OpenSSL encrypts it
// in its own write buffer, where only ciphertext is left), and OpenSSL
// wipes each decrypted record (SSL_OP_CLEANSE_PLAINTEXT, set by the
// context). The caller's read buffer should be a WipingFlatBuffer.
//
// TLS end of stream: a close_notify reads as net::error::eof, the end of
// the TCP stream without one as net::ssl::error::stream_truncated, so that
// an attacker who cuts the connection cannot end a response whose length
// is "until the connection closes".
//
// Private to envelope_kms: http_transport.cc is its only includer. With
// that file, the only code of the kms layer that includes Beast or
// OpenSSL's libssl.
//
// Thread safety: a stream is not synchronised; one thread at a time.
#ifndef ENVELOPE_KMS_HTTP_TRANSPORT_STREAM_H_
#define ENVELOPE_KMS_HTTP_TRANSPORT_STREAM_H_

#include <openssl/ssl.h>
#include <poll.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <vector>

#include <boost/asio/buffer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/span_body.hpp>

#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::kms {

using SteadyTime = std::chrono::steady_clock::time_point;
using HttpRequestMessage =
    boost::beast::http::request<boost::beast::http::span_body<const char>>;

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
  friend bool operator==(const WipingAllocator&, const WipingAllocator&) { return true; }
};

using WipingFlatBuffer = boost::beast::basic_flat_buffer<WipingAllocator<char>>;
using WipingChars = std::vector<char, WipingAllocator<char>>;

// The reason an exchange or a connect failed, for a Status message: "timed
// out after 2000 ms", "the server closed the connection", or the error's
// own message ("Connection reset by peer").
std::string Reason(const boost::beast::error_code& ec, std::chrono::milliseconds timeout);

// Waits until `fd` is ready for `events` (POLLIN or POLLOUT) or `deadline`
// passes (beast::error::timeout then). An error or hang-up on the socket
// counts as ready: the call that follows reports it.
boost::beast::error_code WaitFor(int fd, short events, SteadyTime deadline);

Status SetNonBlocking(int fd);

// The two read_some overloads of a Beast SyncReadStream, over the
// stream's own ReadSome(mutable_buffer, error_code&), which fills the
// sequence's first non-empty buffer (read_some may fill less than it was
// given). Shared by SocketStream and TlsStream.
template <typename Stream>
class SyncReadStream {
 public:
  template <typename MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers, boost::beast::error_code& ec) {
    return static_cast<Stream*>(this)->ReadSome(FirstNonEmpty(buffers), ec);
  }
  template <typename MutableBufferSequence>
  size_t read_some(const MutableBufferSequence& buffers) {
    boost::beast::error_code ec;
    const size_t n = read_some(buffers, ec);
    if (ec) throw boost::beast::system_error(ec);
    return n;
  }

 private:
  template <typename MutableBufferSequence>
  static boost::asio::mutable_buffer FirstNonEmpty(const MutableBufferSequence& buffers) {
    for (auto it = boost::asio::buffer_sequence_begin(buffers);
         it != boost::asio::buffer_sequence_end(buffers); ++it) {
      boost::asio::mutable_buffer b = *it;
      if (b.size() != 0) return b;
    }
    return {};
  }
};

// A plain connected socket (Unix or TCP), non-blocking. Does not own the
// descriptor: REQUIRES: it outlives the stream.
class SocketStream : public SyncReadStream<SocketStream> {
 public:
  explicit SocketStream(int fd) : fd_(fd) {}

  void set_deadline(SteadyTime deadline) { deadline_ = deadline; }

  // The whole request: one sendmsg of the header and the body, more only
  // if the socket takes less.
  boost::beast::error_code WriteRequest(HttpRequestMessage& request);
  // Until the socket is readable (or the deadline).
  boost::beast::error_code WaitReadable() { return WaitFor(fd_, POLLIN, deadline_); }
  // Nothing is buffered below the caller's read buffer.
  bool HasPending() const { return false; }
  // Before the descriptor is closed.
  void Release() {}

 private:
  friend class SyncReadStream<SocketStream>;
  size_t ReadSome(boost::asio::mutable_buffer buffer, boost::beast::error_code& ec);

  int fd_;
  SteadyTime deadline_{};
};

struct SslCtxFree {
  void operator()(SSL_CTX* ctx) const { ::SSL_CTX_free(ctx); }
};
using SslCtxPtr = std::unique_ptr<SSL_CTX, SslCtxFree>;

// TLS over a connected non-blocking TCP socket, through a BIO of our own
// that sends with MSG_NOSIGNAL (OpenSSL's socket BIO uses write(), which
// raises SIGPIPE when the peer is gone). Does not own the descriptor:
// REQUIRES: it outlives the stream, or Release() is called first.
class TlsStream : public SyncReadStream<TlsStream> {
 public:
  // The SSL object, with `ctx`'s settings. status() says whether it could
  // be made.
  TlsStream(int fd, SslCtxPtr ctx);
  TlsStream(TlsStream&&) noexcept;
  TlsStream& operator=(TlsStream&&) noexcept;
  ~TlsStream();

  const Status& status() const { return status_; }
  SSL* ssl() { return ssl_; }
  void set_deadline(SteadyTime deadline) { deadline_ = deadline; }

  // The client handshake. On an error of TLS's own (a certificate that
  // does not verify, an alert from the server), *openssl_reason is
  // OpenSSL's reason ("certificate verify failed"); it stays empty for a
  // broken connection or the deadline.
  boost::beast::error_code Connect(std::string* openssl_reason);
  boost::beast::error_code WriteRequest(HttpRequestMessage& request);
  boost::beast::error_code WaitReadable();
  // Decrypted or undecrypted bytes held by OpenSSL.
  bool HasPending() const;
  // Frees the SSL object, before the descriptor is closed.
  void Release();

  // What the BIO saw last; on the heap so that the BIO's pointer to it
  // survives a move of the stream.
  struct BioState {
    int fd = -1;
    int error = 0;  // errno of the last failed send or recv, 0 if none
  };

 private:
  friend class SyncReadStream<TlsStream>;
  size_t ReadSome(boost::asio::mutable_buffer buffer, boost::beast::error_code& ec);
  // Repeats `op` (an SSL call returning 1 on success) while OpenSSL wants
  // the socket readable or writable, waiting for it by the deadline.
  template <typename Op>
  boost::beast::error_code Drive(Op op, std::string* openssl_reason);

  Status status_;
  SslCtxPtr ctx_;
  std::unique_ptr<BioState> bio_state_;
  SSL* ssl_ = nullptr;  // owned; owns its BIO
  int fd_;
  SteadyTime deadline_{};
};

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_HTTP_TRANSPORT_STREAM_H_
