// The TLS side of envelope-keyd's TCP listener (docs/KEYSERVICE.md,
// "Listeners, TLS and mutual TLS"): one server context made from PEM files,
// TLS 1.2 at least, ECDHE key exchange and AEAD ciphers only (TLS 1.3's
// suites are all AEAD), no renegotiation, no compression; with a client CA,
// client certificates are requested and any one presented must verify
// against it (none presented is allowed: the client must then sign with
// SigV4).
//
// This file and http_server.cc are the daemon's transport: the only code
// outside the crypto layer that sees OpenSSL, through Boost.Asio's wrappers
// (asio::ssl::context owns the SSL_CTX). They are built into the
// envelope-keyd executable only, not into the envelope_keyservice library.
//
// Thread safety: a TlsContext is set up once and then only read; OpenSSL's
// SSL_CTX may be shared by connections on many threads.
#ifndef ENVELOPE_KEYSERVICE_TLS_H_
#define ENVELOPE_KEYSERVICE_TLS_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/asio/ssl/context.hpp>

#include "core/base/status.h"

namespace envelope::keyservice {

struct TlsOptions {
  std::string cert_file;       // PEM: the server certificate, then any intermediates
  std::string key_file;        // PEM: its private key, unencrypted
  std::string client_ca_file;  // PEM: CA(s) for client certificates; empty: none requested
};

// A verified client certificate, named for the principal and the audit.
struct ClientCertificate {
  std::string subject;  // RFC 2253, e.g. "CN=host-a,O=Example"; never empty
  std::string issuer;   // RFC 2253
  std::string serial;   // upper-case hex
};

class TlsContext {
 public:
  // Loads the certificate chain and the key (which must match), and the
  // client CA if given. The key file must be a regular file owned by this
  // process's user and not accessible by group or others: it is refused
  // otherwise (PermissionDenied / FailedPrecondition, saying why).
  // InvalidArgument for files OpenSSL cannot use.
  static StatusOr<std::unique_ptr<TlsContext>> New(const TlsOptions& options);

  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  boost::asio::ssl::context& context() { return context_; }
  bool requests_client_certificates() const { return requests_client_certificates_; }
  // The host names the server certificate is for: its DNS subject
  // alternative names (wildcards left out) and its IP ones (IPv6 in
  // brackets), e.g. {"localhost", "127.0.0.1", "[::1]"}.
  const std::vector<std::string>& server_names() const { return server_names_; }

 private:
  TlsContext();

  boost::asio::ssl::context context_;
  bool requests_client_certificates_ = false;
  std::vector<std::string> server_names_;
};

// After a successful server handshake on `ssl`: the client certificate, if
// one was presented and verified (a presented one that did not verify
// fails the handshake). nullopt if none, or if its subject is empty (it
// names no one).
std::optional<ClientCertificate> VerifiedClientCertificate(SSL* ssl);

}  // namespace envelope::keyservice

#endif  // ENVELOPE_KEYSERVICE_TLS_H_
