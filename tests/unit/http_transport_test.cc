// HttpConnection over a Unix socket and loopback TCP against a scripted
// server that takes one connection and does one thing with it: answer,
// never answer, close in the middle of a response, close while the
// connection is idle, or never read. Every wait is for an event (a future,
// a socket becoming readable), never for time.
#include "kms/http_transport.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <future>
#include <string>
#include <thread>

namespace envelope::kms {
namespace {

using std::chrono::milliseconds;

// Long enough never to fire on a loaded machine; only a broken test waits
// this long, and then fails instead of hanging.
constexpr milliseconds kLong{60000};

// Reads one request (header and Content-Length body) from `fd`; false if the
// client went away first.
bool ReadRequest(int fd) {
  std::string buf;
  char chunk[65536];
  size_t end;
  while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buf.append(chunk, static_cast<size_t>(n));
  }
  size_t length = 0;
  const size_t at = buf.find("Content-Length: ");
  if (at != std::string::npos && at < end) length = std::stoul(buf.substr(at + 16));
  while (buf.size() < end + 4 + length) {
    const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buf.append(chunk, static_cast<size_t>(n));
  }
  return true;
}

void SendAll(int fd, const std::string& data) {
  size_t sent = 0;
  while (sent < data.size()) {
    const ssize_t n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) return;
    sent += static_cast<size_t>(n);
  }
}

// Blocks until the client closes its end (or resets it).
void WaitForClientClose(int fd) {
  char c;
  while (::recv(fd, &c, 1, 0) > 0) {
  }
}

const std::string kOkResponse =
    "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.1\r\n"
    "Content-Length: 2\r\n\r\n{}";

// Accepts one connection on a Unix socket or 127.0.0.1 and runs `script`
// on it on a thread of its own; the destructor waits for the script.
class OneConnectionServer {
 public:
  using Script = std::function<void(int fd)>;

  OneConnectionServer(bool tcp, Script script) {
    if (tcp) {
      listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
      socklen_t len = sizeof(addr);
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
      endpoint_.kind = Endpoint::kTcp;
      endpoint_.host = "127.0.0.1";
      endpoint_.port = ntohs(addr.sin_port);
    } else {
      char tmpl[] = "/tmp/http-transport-test-XXXXXX";
      EXPECT_NE(::mkdtemp(tmpl), nullptr);
      dir_ = tmpl;
      listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      endpoint_.kind = Endpoint::kUnix;
      endpoint_.socket_path = dir_ + "/kms.sock";
      std::strncpy(addr.sun_path, endpoint_.socket_path.c_str(), sizeof(addr.sun_path) - 1);
      EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
    }
    EXPECT_EQ(::listen(listen_fd_, 4), 0);
    thread_ = std::thread([this, script = std::move(script)] {
      const int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      script(fd);
      ::close(fd);
    });
  }
  ~OneConnectionServer() {
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept() if nobody came
    thread_.join();
    ::close(listen_fd_);
    if (!dir_.empty()) (void)std::system(("rm -rf '" + dir_ + "'").c_str());
  }

  const Endpoint& endpoint() const { return endpoint_; }

 private:
  std::string dir_;
  Endpoint endpoint_;
  int listen_fd_ = -1;
  std::thread thread_;
};

HttpRequest Request(std::string body = "{}") {
  HttpRequest request;
  request.headers = {{"Host", "localhost"}, {"Content-Type", "application/x-amz-json-1.1"}};
  request.body = std::move(body);
  return request;
}

class HttpTransportTest : public ::testing::TestWithParam<bool> {
 protected:
  bool tcp() const { return GetParam(); }
};

INSTANTIATE_TEST_SUITE_P(UnixAndTcp, HttpTransportTest, ::testing::Bool(),
                         [](const auto& info) { return info.param ? "Tcp" : "Unix"; });

TEST_P(HttpTransportTest, KeepAliveExchanges) {
  OneConnectionServer server(tcp(), [](int fd) {
    while (ReadRequest(fd)) SendAll(fd, kOkResponse);
  });
  auto c = HttpConnection::Connect(server.endpoint(), kLong);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  EXPECT_FALSE((*c)->Reusable());  // nothing exchanged yet
  for (int i = 0; i < 3; ++i) {
    bool written = false;
    auto r = (*c)->RoundTrip(Request(), kLong, &written);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_TRUE(written);
    EXPECT_EQ(r->status, 200);
    EXPECT_EQ(r->body, "{}");
    EXPECT_TRUE((*c)->Reusable());
  }
}

TEST_P(HttpTransportTest, ServerThatNeverAnswersHitsTheDeadline) {
  OneConnectionServer server(tcp(), [](int fd) {
    if (ReadRequest(fd)) WaitForClientClose(fd);
  });
  auto c = HttpConnection::Connect(server.endpoint(), kLong);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  bool written = false;
  auto r = (*c)->RoundTrip(Request(), milliseconds(200), &written);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "reading the response: timed out after 200 ms");
  EXPECT_TRUE(written);
  EXPECT_FALSE((*c)->Reusable());
  // The connection is closed: the server sees its end, and the script ends.
}

TEST_P(HttpTransportTest, ServerThatNeverReadsHitsTheDeadlineWhileSending) {
  // The server reads nothing until the test is over (the guard, destroyed
  // before the server, lets it go).
  auto release = std::make_shared<std::promise<void>>();
  OneConnectionServer server(tcp(), [released = release->get_future().share()](int) {
    released.wait();
  });
  struct Release {
    std::shared_ptr<std::promise<void>> promise;
    ~Release() { promise->set_value(); }
  } guard{release};
  auto c = HttpConnection::Connect(server.endpoint(), kLong);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  // Far more than the socket buffers on both sides hold.
  bool written = true;
  auto r = (*c)->RoundTrip(Request(std::string(64 << 20, 'a')), milliseconds(200), &written);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "sending the request: timed out after 200 ms");
  EXPECT_FALSE(written);  // never all of it: safe to send again
  EXPECT_FALSE((*c)->Reusable());
}

TEST_P(HttpTransportTest, ServerThatClosesMidResponse) {
  OneConnectionServer server(tcp(), [](int fd) {
    if (!ReadRequest(fd)) return;
    SendAll(fd, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789");
    ::shutdown(fd, SHUT_RDWR);
  });
  auto c = HttpConnection::Connect(server.endpoint(), kLong);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  bool written = false;
  auto r = (*c)->RoundTrip(Request(), kLong, &written);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "reading the response: partial message");
  EXPECT_TRUE(written);
  EXPECT_FALSE((*c)->Reusable());
}

TEST_P(HttpTransportTest, ServerThatClosesBeforeAnswering) {
  OneConnectionServer server(tcp(), [](int fd) {
    if (ReadRequest(fd)) ::shutdown(fd, SHUT_RDWR);
  });
  auto c = HttpConnection::Connect(server.endpoint(), kLong);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  bool written = false;
  auto r = (*c)->RoundTrip(Request(), kLong, &written);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "reading the response: the server closed the connection");
  EXPECT_TRUE(written);
}

TEST_P(HttpTransportTest, PooledConnectionClosedWhileIdleIsNotReused) {
  std::promise<void> closed;
  OneConnectionServer server(tcp(), [&closed](int fd) {
    if (!ReadRequest(fd)) return;
    SendAll(fd, kOkResponse);  // keep-alive, and no warning of the close
    ::shutdown(fd, SHUT_RDWR);
    closed.set_value();
  });
  auto c = HttpConnection::Connect(server.endpoint(), kLong);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  bool written = false;
  ASSERT_TRUE((*c)->RoundTrip(Request(), kLong, &written).ok());
  ASSERT_EQ(closed.get_future().wait_for(kLong), std::future_status::ready);
  // Over a Unix socket the close is visible when shutdown() returns; over
  // TCP once the FIN has been processed, which on loopback is almost
  // always at once. Wait for that event (bounded), not for a time.
  const auto give_up = std::chrono::steady_clock::now() + kLong;
  bool reusable = true;
  while ((reusable = (*c)->Reusable()) && std::chrono::steady_clock::now() < give_up) {
    std::this_thread::yield();
  }
  EXPECT_FALSE(reusable);
  // Once found closed, it stays closed; a request on it fails unsent.
  EXPECT_FALSE((*c)->Reusable());
  auto r = (*c)->RoundTrip(Request(), kLong, &written);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "the connection is closed");
  EXPECT_FALSE(written);
}

TEST_P(HttpTransportTest, BytesPastTheResponseEndReuse) {
  OneConnectionServer server(tcp(), [](int fd) {
    if (!ReadRequest(fd)) return;
    SendAll(fd, kOkResponse + kOkResponse);  // two answers to one request
    WaitForClientClose(fd);
  });
  auto c = HttpConnection::Connect(server.endpoint(), kLong);
  ASSERT_TRUE(c.ok()) << c.status().ToString();
  bool written = false;
  auto r = (*c)->RoundTrip(Request(), kLong, &written);
  // Whether the second answer arrived with the first or after it, the
  // connection is not used again.
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(r->body, "{}");
  EXPECT_FALSE((*c)->Reusable());
}

TEST(HttpTransportTcpTest, ConnectToAPortNobodyListensOnIsRefused) {
  // A port bound but not listening refuses connections.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);
  socklen_t len = sizeof(addr);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  Endpoint ep;
  ep.kind = Endpoint::kTcp;
  ep.host = "127.0.0.1";
  ep.port = ntohs(addr.sin_port);
  auto c = HttpConnection::Connect(ep, kLong);
  ::close(fd);
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(c.status().message(), "Connection refused");
}

}  // namespace
}  // namespace envelope::kms
