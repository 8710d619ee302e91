// HttpConnection over TLS against an in-process TLS server (asio ssl on
// 127.0.0.1) with certificates the openssl CLI makes for the test suite: a
// trusted CA and a name that matches, an untrusted CA, a certificate for
// another name, keep-alive, SNI, KmsClient signing over https, and servers
// that misbehave (never answer, close mid-response, end a response with or
// without a close_notify, close an idle connection). Every wait is for an
// event (a promise, a condition), never for time.
#include <gtest/gtest.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include "kms/http_transport.h"
#include "kms/kms_client.h"

namespace envelope::kms {
namespace {

namespace net = boost::asio;
namespace ssl = boost::asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using Tcp = net::ip::tcp;
using std::chrono::milliseconds;

// Long enough never to fire on a loaded machine; only a broken test waits
// this long, and then fails instead of hanging.
constexpr auto kEventWait = std::chrono::seconds(60);
constexpr milliseconds kTimeout{30000};

// Writes `text` to `path`.
void WriteText(const std::string& path, const std::string& text) {
  std::ofstream(path) << text;
}

// A TLS server on 127.0.0.1 that answers every HTTP request with 200 and
// the body {"connection":C,"request":R} (C counts connections, R requests
// on this one), keeping the connection open unless the request carries
// "X-Test-Close: 1". "X-Test-Reply" scripts a misbehaviour instead: "hang"
// (never answer), "partial" (half a Content-Length body, then the TCP
// connection closed without a close_notify), "until-close" (a body framed
// by the end of the connection, ended without a close_notify),
// "until-close-notify" (the same, ended with one), "close-idle" (a normal
// keep-alive answer, then the connection closed without warning). It
// records, for each accepted connection, the client's
// port, whether the handshake succeeded and the SNI name, and the headers
// of each request.
class TlsServer {
 public:
  struct Handshake {
    bool ok = false;
    std::string sni;
  };

  TlsServer(const std::string& cert_chain, const std::string& key) {
    tls_.use_certificate_chain_file(cert_chain);
    tls_.use_private_key_file(key, ssl::context::pem);
    acceptor_.open(Tcp::v4());
    acceptor_.bind(Tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    Accept();
    thread_ = std::thread([this] { ioc_.run(); });
  }
  ~TlsServer() {
    ioc_.stop();
    thread_.join();
  }

  uint16_t port() const { return port_; }

  // The handshake on the connection from client port `client_port`, once
  // the server has finished it (either way).
  std::optional<Handshake> WaitForHandshake(uint16_t client_port) {
    std::unique_lock lock(mu_);
    if (!changed_.wait_for(lock, kEventWait, [&] { return handshakes_.count(client_port) != 0; })) {
      return std::nullopt;
    }
    return handshakes_.at(client_port);
  }
  // The first handshake the server finished.
  std::optional<Handshake> WaitForFirstHandshake() {
    std::unique_lock lock(mu_);
    if (!changed_.wait_for(lock, kEventWait, [&] { return !order_.empty(); })) {
      return std::nullopt;
    }
    return handshakes_.at(order_.front());
  }
  // Client ports in the order the server accepted them, once it has
  // accepted `client_port`: the accept queue is FIFO, so every connection
  // made before that one is in the list by then.
  std::vector<uint16_t> AcceptedUpTo(uint16_t client_port) {
    std::unique_lock lock(mu_);
    changed_.wait_for(lock, kEventWait, [&] {
      return std::find(accepted_.begin(), accepted_.end(), client_port) != accepted_.end();
    });
    return accepted_;
  }
  // Once `n` connections were closed after a "close-idle" answer.
  bool WaitForIdleCloses(int n) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, kEventWait, [&] { return idle_closed_ >= n; });
  }
  // Headers of every request so far, in order.
  std::vector<std::map<std::string, std::string>> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  struct Session : std::enable_shared_from_this<Session> {
    Session(TlsServer* server, Tcp::socket socket, int number, uint16_t client_port)
        : server(server),
          stream(std::move(socket), server->tls_),
          number(number),
          client_port(client_port) {}

    void Start() {
      server->Record([&] { server->accepted_.push_back(client_port); });
      stream.async_handshake(ssl::stream_base::server, [self = shared_from_this()](
                                                           beast::error_code ec) {
        Handshake h;
        h.ok = !ec;
        if (const char* name = SSL_get_servername(self->stream.native_handle(),
                                                  TLSEXT_NAMETYPE_host_name)) {
          h.sni = name;
        }
        self->server->Record([&] {
          self->server->handshakes_[self->client_port] = h;
          self->server->order_.push_back(self->client_port);
        });
        if (!ec) self->Read();
      });
    }

    void Read() {
      request = {};
      http::async_read(stream, buffer, request,
                       [self = shared_from_this()](beast::error_code ec, size_t) {
                         if (!ec) self->Respond();
                       });
    }

    void Respond() {
      std::map<std::string, std::string> headers;
      for (const auto& field : request) {
        headers[std::string(field.name_string())] = std::string(field.value());
      }
      const bool close = request["X-Test-Close"] == "1";
      const std::string script(request["X-Test-Reply"]);
      server->Record([&] { server->requests_.push_back(headers); });
      if (script == "hang") {
        // Kept (and the connection open) until the server is destroyed.
        server->Record([&] { server->hung_.push_back(shared_from_this()); });
        return;
      }
      if (script == "partial" || script == "until-close" || script == "until-close-notify") {
        raw = script == "partial" ? "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"
                                  : "HTTP/1.1 200 OK\r\n\r\npart";
        net::async_write(stream, net::buffer(raw),
                         [self = shared_from_this(), script](beast::error_code ec, size_t) {
                           if (ec) return;
                           if (script != "until-close-notify") return self->CloseTcp();
                           // Sends the close_notify, then waits for the
                           // client's, which never comes: it closes.
                           self->stream.async_shutdown(
                               [self](beast::error_code) { self->CloseTcp(); });
                         });
        return;
      }
      const bool close_idle = script == "close-idle";
      ++requests;
      response = {};
      response.result(http::status::ok);
      response.version(11);
      response.set(http::field::content_type, "application/x-amz-json-1.1");
      response.body() = "{\"connection\":" + std::to_string(number) +
                        ",\"request\":" + std::to_string(requests) + "}";
      response.keep_alive(!close);
      response.prepare_payload();
      http::async_write(stream, response,
                        [self = shared_from_this(), close, close_idle](beast::error_code ec,
                                                                      size_t) {
                          if (ec) return;
                          if (close || close_idle) {
                            self->CloseTcp();
                            if (close_idle) {
                              self->server->Record([&] { ++self->server->idle_closed_; });
                            }
                            return;
                          }
                          self->Read();
                        });
    }

    // The TCP connection, without a close_notify.
    void CloseTcp() {
      beast::error_code ignored;
      stream.next_layer().shutdown(Tcp::socket::shutdown_both, ignored);
      stream.next_layer().close(ignored);
    }

    TlsServer* server;
    ssl::stream<Tcp::socket> stream;
    const int number;
    const uint16_t client_port;
    int requests = 0;
    beast::flat_buffer buffer;
    http::request<http::string_body> request;
    http::response<http::string_body> response;
    std::string raw;
  };

  // The peer's address comes from accept() itself: by the time a
  // connection is taken from the queue its client may have gone (a failed
  // handshake), and getpeername would fail.
  void Accept() {
    pending_ = std::make_unique<Tcp::socket>(ioc_);
    acceptor_.async_accept(*pending_, peer_, [this](beast::error_code ec) {
      if (ec) return;
      std::make_shared<Session>(this, std::move(*pending_), ++connections_, peer_.port())
          ->Start();
      Accept();
    });
  }

  template <typename F>
  void Record(F&& f) {
    {
      std::lock_guard lock(mu_);
      f();
    }
    changed_.notify_all();
  }

  net::io_context ioc_{1};
  ssl::context tls_{ssl::context::tls_server};
  Tcp::acceptor acceptor_{ioc_};
  uint16_t port_ = 0;
  // The server thread's only:
  std::unique_ptr<Tcp::socket> pending_;
  Tcp::endpoint peer_;
  int connections_ = 0;
  std::thread thread_;

  std::mutex mu_;
  std::condition_variable changed_;
  std::vector<uint16_t> accepted_;                          // guarded by mu_
  std::map<uint16_t, Handshake> handshakes_;                // guarded by mu_
  std::vector<uint16_t> order_;                             // guarded by mu_
  std::vector<std::map<std::string, std::string>> requests_;  // guarded by mu_
  int idle_closed_ = 0;                                       // guarded by mu_
  // Declared after ioc_, so released before it is destroyed.
  std::vector<std::shared_ptr<Session>> hung_;  // guarded by mu_
};

class TlsTransportTest : public ::testing::Test {
 protected:
  // The certificates, made once: ca.pem signs localhost.pem (DNS:localhost,
  // IP:127.0.0.1) and other-name.pem (DNS:other.example); other-ca.pem is
  // a second CA that signed nothing here.
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/tls-transport-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = new std::string(tmpl);
    const std::string& d = *dir_;
    WriteText(d + "/ca.cnf",
              "[req]\ndistinguished_name = dn\nx509_extensions = v3_ca\nprompt = no\n"
              "[dn]\nCN = envelopefs test CA\n"
              "[v3_ca]\nbasicConstraints = critical,CA:TRUE\n"
              "keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n");
    WriteText(d + "/csr.cnf", "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = x\n");
    WriteText(d + "/localhost.ext",
              "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n"
              "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:localhost,IP:127.0.0.1\n");
    WriteText(d + "/other-name.ext",
              "basicConstraints = CA:FALSE\nkeyUsage = critical,digitalSignature\n"
              "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:other.example\n");
    const std::string key = " -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";
    const std::vector<std::string> commands = {
        "openssl req -x509 -config ca.cnf" + key + " -keyout ca.key -out ca.pem -days 30",
        "openssl req -x509 -config ca.cnf" + key +
            " -keyout other-ca.key -out other-ca.pem -days 30 -subj '/CN=unrelated CA'",
        "openssl req -new -config csr.cnf" + key +
            " -keyout localhost.key -out localhost.csr -subj /CN=localhost",
        "openssl x509 -req -in localhost.csr -CA ca.pem -CAkey ca.key -set_serial 2 "
        "-days 30 -extfile localhost.ext -out localhost.pem",
        "openssl req -new -config csr.cnf" + key +
            " -keyout other-name.key -out other-name.csr -subj /CN=other.example",
        "openssl x509 -req -in other-name.csr -CA ca.pem -CAkey ca.key -set_serial 3 "
        "-days 30 -extfile other-name.ext -out other-name.pem",
    };
    for (const std::string& command : commands) {
      const std::string line = "cd '" + d + "' && " + command + " >openssl.log 2>&1";
      if (std::system(line.c_str()) != 0) {
        std::ifstream log(d + "/openssl.log");
        std::stringstream text;
        text << log.rdbuf();
        FAIL() << command << " failed:\n" << text.str();
      }
    }
  }
  static void TearDownTestSuite() {
    if (dir_ != nullptr) std::filesystem::remove_all(*dir_);
    delete dir_;
    dir_ = nullptr;
  }

  void SetUp() override {
    if (dir_ == nullptr || !std::filesystem::exists(File("other-name.pem"))) {
      GTEST_FAIL() << "the test certificates were not made";
    }
  }

  static std::string File(const std::string& name) { return *dir_ + "/" + name; }

  static Endpoint Https(const std::string& host, uint16_t port) {
    auto ep = ParseEndpoint("https://" + host + ":" + std::to_string(port));
    EXPECT_TRUE(ep.ok()) << ep.status().ToString();
    return *ep;
  }

  static StatusOr<std::unique_ptr<HttpConnection>> Connect(const Endpoint& ep,
                                                           const std::string& ca_file) {
    TlsOptions tls;
    tls.ca_file = ca_file;
    return HttpConnection::Connect(ep, kTimeout, tls);
  }

  // One POST; its body, or the error.
  static StatusOr<std::string> Post(HttpConnection* c, const Endpoint& ep, bool close = false) {
    HttpRequest request;
    request.headers = {{"Host", ep.HostHeader()}, {"Content-Type", "application/x-amz-json-1.1"}};
    if (close) request.headers.emplace_back("X-Test-Close", "1");
    request.body = "{}";
    bool written = false;
    auto response = c->RoundTrip(request, kTimeout, &written);
    if (!response.ok()) return response.status();
    EXPECT_TRUE(written);
    EXPECT_EQ(response->status, 200);
    return response->body;
  }

  // One POST with "X-Test-Reply: `script`": the response, or the error.
  static StatusOr<HttpResponse> Scripted(HttpConnection* c, const Endpoint& ep,
                                         const std::string& script, milliseconds timeout,
                                         bool* written) {
    HttpRequest request;
    request.headers = {{"Host", ep.HostHeader()}, {"X-Test-Reply", script}};
    request.body = "{}";
    return c->RoundTrip(request, timeout, written);
  }

  static std::string* dir_;
};

std::string* TlsTransportTest::dir_ = nullptr;

TEST_F(TlsTransportTest, TrustedCaAndMatchingNameSucceedWithSni) {
  TlsServer server(File("localhost.pem"), File("localhost.key"));
  const Endpoint ep = Https("localhost", server.port());
  auto c = Connect(ep, File("ca.pem"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  auto body = Post(c->get(), ep);
  ASSERT_TRUE(body.ok()) << body.status().ToString();
  EXPECT_EQ(*body, R"({"connection":1,"request":1})");
  auto handshake = server.WaitForFirstHandshake();
  ASSERT_TRUE(handshake.has_value());
  EXPECT_TRUE(handshake->ok);
  EXPECT_EQ(handshake->sni, "localhost");
  const auto requests = server.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].at("Host"), "localhost:" + std::to_string(server.port()));
}

TEST_F(TlsTransportTest, IpLiteralIsCheckedAgainstTheCertificateWithoutSni) {
  TlsServer server(File("localhost.pem"), File("localhost.key"));
  const Endpoint ep = Https("127.0.0.1", server.port());
  auto c = Connect(ep, File("ca.pem"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  ASSERT_TRUE(Post(c->get(), ep).ok());
  auto handshake = server.WaitForFirstHandshake();
  ASSERT_TRUE(handshake.has_value());
  EXPECT_TRUE(handshake->ok);
  EXPECT_EQ(handshake->sni, "");  // RFC 6066: no SNI for an address
}

TEST_F(TlsTransportTest, KeepAliveCarriesASecondRequest) {
  TlsServer server(File("localhost.pem"), File("localhost.key"));
  const Endpoint ep = Https("localhost", server.port());
  auto c = Connect(ep, File("ca.pem"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE((*c)->Reusable());  // nothing exchanged yet
  auto first = Post(c->get(), ep);
  ASSERT_TRUE(first.ok()) << first.status().ToString();
  EXPECT_EQ(*first, R"({"connection":1,"request":1})");
  EXPECT_TRUE((*c)->Reusable());
  auto second = Post(c->get(), ep);
  ASSERT_TRUE(second.ok()) << second.status().ToString();
  EXPECT_EQ(*second, R"({"connection":1,"request":2})");
  EXPECT_TRUE((*c)->Reusable());
  // A response that closes the connection ends its reuse.
  auto last = Post(c->get(), ep, /*close=*/true);
  ASSERT_TRUE(last.ok()) << last.status().ToString();
  EXPECT_EQ(*last, R"({"connection":1,"request":3})");
  EXPECT_FALSE((*c)->Reusable());
  EXPECT_EQ(Post(c->get(), ep).status().code(), StatusCode::kUnavailable);
}

TEST_F(TlsTransportTest, UntrustedCaIsACertificateErrorNotRetried) {
  TlsServer server(File("localhost.pem"), File("localhost.key"));
  const Endpoint ep = Https("localhost", server.port());
  auto c = Connect(ep, File("other-ca.pem"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition) << c.status().ToString();
  EXPECT_EQ(c.status().message().rfind("TLS handshake with localhost:" +
                                           std::to_string(server.port()) +
                                           " failed: certificate verify failed (",
                                       0),
            0u)
      << c.status().message();
  EXPECT_FALSE(ShouldRetry("TrentService.Decrypt", c.status(), /*request_written=*/false));

  // Through KmsClient, with retries allowed: one connection, no retry.
  KmsClient::Options options;
  options.endpoint = ep;
  options.ca_file = File("other-ca.pem");
  Credentials creds;
  creds.access_key_id = "AKIDEXAMPLE";
  creds.secret_access_key = *crypto::SecretBytes::CopyOf(AsBytes("secret"));
  options.credentials = std::move(creds);
  options.max_retries = 3;
  options.backoff_base = milliseconds(0);
  options.connect_timeout = kTimeout;
  auto client = KmsClient::New(std::move(options));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  auto response = (*client)->Call("TrentService.ListKeys", nlohmann::json::object());
  ASSERT_FALSE(response.ok());
  EXPECT_EQ(response.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(response.status().message().find("certificate verify failed"), std::string::npos)
      << response.status().message();
  // A last connection of our own marks the end of the accept queue: every
  // connection the client made is before it.
  net::io_context ioc;
  Tcp::socket probe(ioc);
  probe.connect(Tcp::endpoint(net::ip::make_address("127.0.0.1"), server.port()));
  const std::vector<uint16_t> accepted = server.AcceptedUpTo(probe.local_endpoint().port());
  ASSERT_FALSE(accepted.empty());
  EXPECT_EQ(accepted.back(), probe.local_endpoint().port());
  EXPECT_EQ(accepted.size(), 3u);  // Connect above, the client's one attempt, the probe
}

TEST_F(TlsTransportTest, HostnameMismatchFails) {
  TlsServer server(File("other-name.pem"), File("other-name.key"));
  const Endpoint ep = Https("localhost", server.port());
  auto c = Connect(ep, File("ca.pem"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(c.status().message().find("certificate verify failed (hostname mismatch)"),
            std::string::npos)
      << c.status().message();
  // An address the certificate does not name either.
  c = Connect(Https("127.0.0.1", server.port()), File("ca.pem"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(c.status().message().find("(IP address mismatch)"), std::string::npos)
      << c.status().message();
}

TEST_F(TlsTransportTest, SystemStoreDoesNotTrustTheTestCa) {
  TlsServer server(File("localhost.pem"), File("localhost.key"));
  auto c = Connect(Https("localhost", server.port()), "");
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(c.status().message().find("certificate verify failed"), std::string::npos)
      << c.status().message();
}

TEST_F(TlsTransportTest, BadCaFileIsInvalidArgument) {
  TlsServer server(File("localhost.pem"), File("localhost.key"));
  const Endpoint ep = Https("localhost", server.port());
  auto c = Connect(ep, File("missing.pem"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("No such file or directory"), std::string::npos)
      << c.status().message();
  c = Connect(ep, File("ca.cnf"));  // a file, but no certificate in it
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(c.status().message().find("no usable PEM certificate"), std::string::npos)
      << c.status().message();
}

TEST_F(TlsTransportTest, SilentServerTimesOutAsUnavailable) {
  // A listener nobody accepts from: the kernel completes the TCP handshake,
  // the TLS one never gets an answer. A network failure, so retryable.
  net::io_context ioc;
  Tcp::acceptor silent(ioc, Tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
  const Endpoint ep = Https("127.0.0.1", silent.local_endpoint().port());
  TlsOptions tls;
  tls.ca_file = File("ca.pem");
  auto c = HttpConnection::Connect(ep, milliseconds(200), tls);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable) << c.status().ToString();
  EXPECT_EQ(c.status().message(), "TLS handshake: timed out after 200 ms");
}

TEST_F(TlsTransportTest, ServerThatNeverAnswersHitsTheDeadline) {
  TlsServer server(File("localhost.pem"), File("localhost.key"));
  const Endpoint ep = Https("localhost", server.port());
  auto c = Connect(ep, File("ca.pem"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  bool written = false;
  auto r = Scripted(c->get(), ep, "hang", milliseconds(200), &written);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "reading the response: timed out after 200 ms");
  EXPECT_TRUE(written);
  EXPECT_FALSE((*c)->Reusable());
}

TEST_F(TlsTransportTest, ServerThatClosesMidResponse) {
  TlsServer server(File("localhost.pem"), File("localhost.key"));
  const Endpoint ep = Https("localhost", server.port());
  auto c = Connect(ep, File("ca.pem"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  bool written = false;
  auto r = Scripted(c->get(), ep, "partial", kTimeout, &written);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(),
            "reading the response: the server closed the connection without a TLS close_notify");
  EXPECT_TRUE(written);
  EXPECT_FALSE((*c)->Reusable());
}

// A body framed by the end of the connection is complete only if TLS says
// the server ended it (a close_notify): anyone on the path can end the TCP
// connection.
TEST_F(TlsTransportTest, BodyEndedByTheConnectionNeedsACloseNotify) {
  TlsServer server(File("localhost.pem"), File("localhost.key"));
  const Endpoint ep = Https("localhost", server.port());
  auto c = Connect(ep, File("ca.pem"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  bool written = false;
  auto r = Scripted(c->get(), ep, "until-close", kTimeout, &written);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(),
            "reading the response: the server closed the connection without a TLS close_notify");

  c = Connect(ep, File("ca.pem"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  r = Scripted(c->get(), ep, "until-close-notify", kTimeout, &written);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "part");
  EXPECT_FALSE((*c)->Reusable());
}

TEST_F(TlsTransportTest, PooledConnectionClosedWhileIdleIsNotReused) {
  TlsServer server(File("localhost.pem"), File("localhost.key"));
  const Endpoint ep = Https("localhost", server.port());
  auto c = Connect(ep, File("ca.pem"));
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  bool written = false;
  auto r = Scripted(c->get(), ep, "close-idle", kTimeout, &written);
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  ASSERT_TRUE(server.WaitForIdleCloses(1));
  // The FIN is on its way or here; wait for it (bounded), not for a time.
  const auto give_up = std::chrono::steady_clock::now() + kEventWait;
  bool reusable = true;
  while ((reusable = (*c)->Reusable()) && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  EXPECT_FALSE(reusable);
  auto again = Post(c->get(), ep);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().message(), "the connection is closed");
}

TEST_F(TlsTransportTest, KmsClientSignsForTheHttpsHost) {
  TlsServer server(File("localhost.pem"), File("localhost.key"));
  KmsClient::Options options;
  options.endpoint = Https("localhost", server.port());
  options.ca_file = File("ca.pem");
  Credentials creds;
  creds.access_key_id = "AKIDEXAMPLE";
  creds.secret_access_key = *crypto::SecretBytes::CopyOf(AsBytes("secret"));
  options.credentials = std::move(creds);
  options.region = "eu-west-1";
  options.connect_timeout = kTimeout;
  options.request_timeout = kTimeout;
  auto client = KmsClient::New(std::move(options));
  ASSERT_TRUE(client.ok()) << client.status().ToString();
  for (int i = 1; i <= 2; ++i) {
    auto response = (*client)->Call("TrentService.ListKeys", nlohmann::json::object());
    ASSERT_TRUE(response.ok()) << response.status().ToString();
    // The pooled connection carries the second call.
    EXPECT_EQ(*response, nlohmann::json({{"connection", 1}, {"request", i}}));
  }
  const auto requests = server.requests();
  ASSERT_EQ(requests.size(), 2u);
  EXPECT_EQ(requests[0].at("Host"), "localhost:" + std::to_string(server.port()));
  const std::string& auth = requests[0].at("Authorization");
  EXPECT_EQ(auth.rfind("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/", 0), 0u) << auth;
  EXPECT_NE(auth.find("/eu-west-1/kms/aws4_request"), std::string::npos) << auth;
  EXPECT_NE(auth.find("SignedHeaders=content-type;host;x-amz-date;x-amz-target"),
            std::string::npos)
      << auth;
}

TEST(KmsClientHttpsTest, CredentialsAreRequired) {
  KmsClient::Options options;
  options.endpoint = *ParseEndpoint("aws:eu-west-1");
  auto client = KmsClient::New(std::move(options));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(client.status().message().find("https://kms.eu-west-1.amazonaws.com requires SigV4"),
            std::string::npos)
      << client.status().message();
}

}  // namespace
}  // namespace envelope::kms
