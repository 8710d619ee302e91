// The key service's HTTP/1.1 front: a Unix-socket endpoint (peer credentials
// identify the caller) and an optional TCP endpoint on any address: plain
// HTTP on loopback addresses only, TLS (tls.h) on any. A TCP request is
// authenticated by its SigV4 signature (a key from the access-keys file)
// or, on a TLS connection whose client certificate verified against the
// client CA, by that certificate when it carries no SigV4 Authorization
// (docs/KEYSERVICE.md, "Listeners, TLS and mutual TLS"). Built on
// Boost.Beast, one thread per connection: a key service has few,
// long-lived keep-alive clients, and one thread's straight-line code is
// simpler to get right. Each connection runs its own io_context on its
// thread, so every read and write, and the TLS handshake, has a real
// deadline (Beast stream timeouts).
//
// Hostile clients: connections are capped per peer (uid or TCP address,
// TLS or not) and in all, slow or idle ones time out (a TLS handshake
// within the header timeout), a failed handshake ends only its own
// connection, a signed TCP request's Host must name this listener, and a
// request that throws gets a 500 InternalFailure, never the process.
//
// Thread safety: Start() and Stop() from one thread; connections run on
// their own threads and call KmsService, which is thread-safe.
#ifndef ENVELOPE_KEYSERVICE_HTTP_SERVER_H_
#define ENVELOPE_KEYSERVICE_HTTP_SERVER_H_

#include <atomic>
#include <condition_variable>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "core/base/status.h"
#include "keyservice/access_keys.h"
#include "keyservice/kms_service.h"
#include "keyservice/listen_address.h"

namespace envelope::keyservice {

class TlsContext;  // tls.h

struct HttpServerOptions {
  std::string socket_path;
  std::string tcp_host;  // empty: no TCP endpoint; else an address, as ListenAddress::host
  uint16_t tcp_port = 0;
  // Non-null: the TCP endpoint speaks TLS with this context, which must
  // outlive the server. Required unless tcp_host is a loopback address.
  TlsContext* tls = nullptr;
  // Required with TCP, unless `tls` verifies client certificates (then
  // nullptr means: no SigV4 access keys, certificates only).
  const AccessKeys* access_keys = nullptr;
  size_t max_body_bytes = 64 * 1024;
  size_t max_header_bytes = 16 * 1024;
  // Open connections in all, and per peer: a Unix-socket peer is its uid
  // (SO_PEERCRED at accept), a TCP peer its address, TLS or not (before
  // any authentication or handshake, so every access key and certificate
  // on one address shares it). One peer at its cap never keeps another
  // peer out.
  size_t max_connections = 1024;
  size_t max_connections_per_peer = 128;
  // A new connection must finish its TLS handshake, and then send a
  // complete request header, each within header_timeout; between requests a kept-alive connection may idle for
  // idle_timeout; the body, and then the response, must each go through
  // within body_timeout. A connection that misses one is closed.
  std::chrono::seconds header_timeout{10};
  std::chrono::seconds idle_timeout{60};
  std::chrono::seconds body_timeout{30};
  std::chrono::seconds max_clock_skew{300};  // SigV4 X-Amz-Date tolerance
};


class HttpServer {
 public:
  HttpServer(KmsService* service, HttpServerOptions options);
  ~HttpServer();

  // Binds and listens (the socket file gets mode 0666: who may do what is
  // decided by key policies, not by file permissions), then accepts on a
  // background thread. The socket's directory must pass
  // PrepareSocketDirectory's check.
  Status Start();
  // Stops accepting, shuts every connection down and waits for them.
  void Stop();

  // The TCP port actually bound (useful with port 0).
  uint16_t tcp_port() const { return bound_port_; }

 private:
  struct Connection;  // one accepted connection (http_server.cc)

  void AcceptLoop();
  void Admit(int fd, bool tcp);
  // Runs a connection to its end. Never throws: whatever a request does,
  // the daemon keeps serving everyone else.
  void Serve(Connection& conn) noexcept;
  // The TLS handshake of a new connection, under the header timeout.
  // False (logged, rate-limited) if it failed.
  template <typename TlsStream, typename IoContext>
  bool Handshake(Connection& conn, TlsStream& stream, IoContext& io);
  template <typename Stream, typename IoContext>
  void ServeRequests(Connection& conn, Stream& stream, IoContext& io);
  // The response to one parsed request (authentication, Host, the KMS
  // operation). May throw; ServeRequests turns that into a 500.
  template <typename Request>
  auto Answer(const Connection& conn, Request& req);
  // Whether the Host header of a signed TCP request names this listener.
  bool HostMatchesListener(std::string_view host) const;
  // Logs a failed handshake at info level, at most once a second (the rest
  // at debug level, counted in the next info line).
  void LogFailedHandshake(const Connection& conn, const std::string& why);

  KmsService* const service_;
  const HttpServerOptions options_;
  int unix_fd_ = -1;
  int tcp_fd_ = -1;
  int tcp_family_ = 0;  // AF_INET or AF_INET6
  int wake_pipe_[2] = {-1, -1};
  uint16_t bound_port_ = 0;
  // Host names a signed request may give (with ":PORT"): the listening
  // address unless it is a wildcard, localhost, the loopback address of a
  // wildcard's family, and the TLS certificate's names. Set by Start().
  std::vector<std::string> host_names_;
  std::thread acceptor_;
  std::atomic<bool> stopping_{false};

  std::mutex mu_;                 // guards connections_, per_peer_, capped_
  std::condition_variable idle_;  // signalled when a connection ends
  std::set<int> connections_;     // fds of live connections
  std::map<std::string, size_t> per_peer_;  // open connections per peer
  // Peers refused since they last dropped below their cap ("*": the cap in
  // all), so that each episode is logged once.
  std::set<std::string> capped_;

  std::mutex handshake_log_mu_;  // guards the two below
  std::chrono::steady_clock::time_point last_handshake_log_{};
  size_t handshake_failures_unlogged_ = 0;
};

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_HTTP_SERVER_H_
