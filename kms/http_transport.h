// A minimal synchronous HTTP/1.1 client connection, over a Unix stream
// socket or loopback TCP, for the KMS JSON protocol: one persistent
// keep-alive connection, one request at a time, POST with a body, a
// Content-Length-framed or chunked response of at most 1 MiB.
//
// Built on Boost.Beast (the project's HTTP library); Beast and Asio stay
// inside http_transport.cc. Each connection runs its own io_context on the
// calling thread, so "synchronous" calls still get real deadlines: Asio's
// blocking calls ignore SO_RCVTIMEO (they poll again on EAGAIN), so the
// timeouts here are Beast stream deadlines that close the socket when they
// expire.
//
// Secrets: the request body is written from the caller's buffer without a
// copy (the caller wipes it); the read buffer is wiped when it is freed. The
// response body is moved out of the parser; for a Content-Length response it
// was allocated once at its final size, so no stale partial copies are left
// behind for the caller to worry about.
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

class HttpConnection {
 public:
  virtual ~HttpConnection() = default;

  // Connects to `endpoint` ("localhost" tries 127.0.0.1, then ::1) within
  // `timeout`. Unavailable on failure, the message being the reason only
  // ("Connection refused", "No such file or directory", "timed out after
  // 2000 ms"): the caller knows which endpoint it asked for.
  //
  // A Unix socket is trusted only if its directory passes
  // CheckSocketDirectory (FailedPrecondition otherwise, checked before
  // connecting) and the process serving it runs as this user or root
  // (SO_PEERCRED; PermissionDenied otherwise, checked before anything is
  // sent). Both messages name the socket.
  static StatusOr<std::unique_ptr<HttpConnection>> Connect(
      const Endpoint& endpoint, std::chrono::milliseconds timeout);

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
  // succeeded, the server allowed keep-alive, and the server has not closed
  // the connection since (a zero-timeout poll, so that a pooled connection
  // the server dropped while idle is discarded before a request is written
  // to it rather than after).
  virtual bool Reusable() = 0;
};

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_HTTP_TRANSPORT_H_
