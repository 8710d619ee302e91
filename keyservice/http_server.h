// The key service's HTTP/1.1 front: a Unix-socket endpoint (peer credentials
// identify the caller) and an optional loopback TCP endpoint (every request
// SigV4-signed with a key from the access-keys file). Built on Boost.Beast,
// synchronous, one thread per connection: a local key service has few,
// long-lived keep-alive clients, and blocking code is simpler to get right.
//
// Thread safety: Start() and Stop() from one thread; connections run on
// their own threads and call KmsService, which is thread-safe.
#ifndef ENVELOPE_KEYSERVICE_HTTP_SERVER_H_
#define ENVELOPE_KEYSERVICE_HTTP_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>

#include "core/base/status.h"
#include "keyservice/access_keys.h"
#include "keyservice/kms_service.h"

namespace envelope::keyservice {

struct HttpServerOptions {
  std::string socket_path;
  std::string tcp_host;  // empty: no TCP endpoint
  uint16_t tcp_port = 0;
  const AccessKeys* access_keys = nullptr;  // required with TCP
  size_t max_body_bytes = 64 * 1024;
  int idle_timeout_seconds = 120;
  size_t max_connections = 1024;
  std::chrono::seconds max_clock_skew{300};  // SigV4 X-Amz-Date tolerance
};

class HttpServer {
 public:
  HttpServer(KmsService* service, HttpServerOptions options);
  ~HttpServer();

  // Binds and listens (the socket file gets mode 0666: who may do what is
  // decided by key policies, not by file permissions), then accepts on a
  // background thread.
  Status Start();
  // Stops accepting, shuts every connection down and waits for them.
  void Stop();

  // The TCP port actually bound (useful with port 0).
  uint16_t tcp_port() const { return bound_port_; }

 private:
  void AcceptLoop();
  void Serve(int fd, bool tcp);

  KmsService* const service_;
  const HttpServerOptions options_;
  int unix_fd_ = -1;
  int tcp_fd_ = -1;
  int wake_pipe_[2] = {-1, -1};
  uint16_t bound_port_ = 0;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};

  std::mutex mu_;                 // guards connections_
  std::condition_variable idle_;  // signalled when a connection ends
  std::set<int> connections_;     // fds of live connections
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_HTTP_SERVER_H_
