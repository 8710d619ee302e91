// A minimal synchronous HTTP/1.1 client connection, over a Unix stream
// socket, loopback TCP, or TLS to any host, for the KMS JSON protocol: one
// persistent keep-alive connection, one request at a time, POST with a
// body, a Content-Length-framed or chunked response of at most 1 MiB.
//
// Plain blocking I/O, no event loop: the socket is non-blocking, and each
// read or write makes its system call (for TLS, its OpenSSL call) first,
// waiting in poll() only when that would block, never past the exchange's
// deadline. HTTP is parsed by Boost.Beast's parser reading from that
// stream; TLS is OpenSSL 3's SSL object over the socket. Beast and OpenSSL
// stay inside http_transport.cc and http_transport_stream.{h,cc}, the only
// files of the kms layer that include them.
//
// TLS (Endpoint::kHttps): TLS 1.2 or later; the server's certificate must
// chain to the system's default trust store (OpenSSL's default paths:
// Debian's /etc/ssl/certs) or to TlsOptions::ca_file, and must name the
// host (DNS name checked with SNI sent; an IP literal checked against the
// certificate's IP addresses, no SNI).
//
// Secrets: the request body is written from the caller's buffer without a
// copy over a socket, and over TLS from one copy that is wiped (see
// http_transport_stream.h); the caller wipes its own. The read buffer
// is wiped when it is freed, and OpenSSL wipes its decrypted records
// (SSL_OP_CLEANSE_PLAINTEXT). The response body is moved out of the parser;
// for a Content-Length response it was allocated once at its final size,
// so no stale partial copies are left behind for the caller to worry about.
//
// Thread safety: an HttpConnection is not synchronised; use one per thread
// (KmsClient pools them).
#ifndef ENVELOPE_KMS_HTTP_TRANSPORT_H_
#define ENVELOPE_KMS_HTTP_TRANSPORT_H_

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "core/base/status.h"
#include "kms/endpoint.h"

namespace envelope::kms {

inline constexpr size_t kMaxHttpResponseBodyInBytes = size_t{1} << 20;

struct HttpRequest {
  std::string target = "/";
  // Sent in order. Content-Length is added by the transport; Host and the
  // rest are the caller's (they must match what was signed).
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

struct HttpResponse {
  int status = 0;
  std::string body;
};

struct TlsOptions {
  // A PEM file of CA certificates to trust instead of the system's default
  // store; "" for the system store. Ignored for endpoints without TLS.
  std::string ca_file;
};

class HttpConnection {
 public:
  virtual ~HttpConnection() = default;

  // Connects to `endpoint` within `timeout`: for http "localhost" tries
  // 127.0.0.1, then ::1; for https the host is resolved (getaddrinfo), each
  // address tried in turn, and the TLS handshake done, all by the same
  // deadline. Unavailable on failure to get there, the message being the
  // reason only ("Connection refused", "No such file or directory", "timed
  // out after 2000 ms", "resolving kms.example: Name or service not
  // known", "TLS handshake: the server closed the connection"): the caller
  // knows which endpoint it asked for.
  //
  // A TLS handshake that fails on TLS's own terms (the certificate does
  // not verify or does not name the host, no common protocol version) is
  // FailedPrecondition, not Unavailable, so that a client does not retry
  // it; the message is whole, e.g. "TLS handshake with kms.example:443
  // failed: certificate verify failed (hostname mismatch)". A `tls.ca_file`
  // that cannot be read or holds no certificate is InvalidArgument.
  //
  // A Unix socket is trusted only if its directory passes
  // CheckSocketDirectory (FailedPrecondition otherwise, checked before
  // connecting) and the process serving it runs as this user or root
  // (SO_PEERCRED; PermissionDenied otherwise, checked before anything is
  // sent). Both messages name the socket.
  static StatusOr<std::unique_ptr<HttpConnection>> Connect(
      const Endpoint& endpoint, std::chrono::milliseconds timeout,
      const TlsOptions& tls = {});

  // POSTs `request` and reads the response, all within `timeout`. Any HTTP
  // status is a successful exchange; errors are about the exchange itself:
  // Unavailable for a broken connection, a timeout or a malformed response,
  // ResourceExhausted for a response body over 1 MiB. After an error the
  // connection is unusable.
  //
  // *request_written says whether the whole request reached the socket.
  // When it is false the server cannot have acted on the request (it never
  // saw all of it), so even a non-idempotent request may be sent again.
  // REQUIRES: request_written != nullptr
  virtual StatusOr<HttpResponse> RoundTrip(const HttpRequest& request,
                                           std::chrono::milliseconds timeout,
                                           bool* request_written) = 0;

  // True if the connection may carry another request: the last exchange
  // succeeded, the server allowed keep-alive (and did not end the response
  // body by ending the stream), nothing past the response was
  // received, and the server has not closed the connection since (a
  // zero-timeout poll, so that a pooled connection the server dropped while
  // idle is discarded before a request is written to it rather than
  // after). The same over TLS, where anything readable while idle (a
  // close_notify, a late session ticket) also ends the connection.
  virtual bool Reusable() = 0;
};

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_HTTP_TRANSPORT_H_
