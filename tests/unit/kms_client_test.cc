// KmsClient without envelope-keyd: the response-to-Status mapping, the
// retry classification, connection failures, and whole exchanges against a
// scripted in-process HTTP server (retries, keep-alive, timeouts, SigV4 over
// TCP, the typed helpers' encoding).
#include "kms/kms_client.h"

#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "core/base/base64.h"
#include "core/base/coding.h"

namespace envelope::kms {
namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;
using std::chrono::steady_clock;

constexpr char kEndpointName[] = "unix:/run/envelope-keyd/kms.sock";

// --- StatusFromKmsResponse and KmsErrorType. ---

TEST(StatusFromKmsResponseTest, NotFoundBody) {
  const std::string body =
      R"({"__type":"NotFoundException","message":"Key 'arn:aws:kms:local:)"
      R"(000000000000:key/0b5d2d7e-0000-4000-8000-000000000000' does not exist"})";
  Status s = StatusFromKmsResponse(400, body, kEndpointName);
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_EQ(s.message(),
            "NotFoundException: Key 'arn:aws:kms:local:000000000000:key/"
            "0b5d2d7e-0000-4000-8000-000000000000' does not exist");
  EXPECT_EQ(KmsErrorType(s), "NotFoundException");
}

TEST(StatusFromKmsResponseTest, EveryMappedType) {
  struct Case {
    const char* type;
    int http_status;
    StatusCode code;
  };
  for (const Case& c : {
           Case{"NotFoundException", 400, StatusCode::kNotFound},
           Case{"AccessDeniedException", 400, StatusCode::kPermissionDenied},
           Case{"AlreadyExistsException", 400, StatusCode::kAlreadyExists},
           Case{"InvalidCiphertextException", 400, StatusCode::kCorruption},
           Case{"IncorrectKeyException", 400, StatusCode::kCorruption},
           Case{"DisabledException", 400, StatusCode::kFailedPrecondition},
           Case{"KMSInvalidStateException", 400,
                StatusCode::kFailedPrecondition},
           Case{"ThrottlingException", 400, StatusCode::kUnavailable},
           Case{"KMSInternalException", 500, StatusCode::kUnavailable},
           Case{"SomethingNewException", 503, StatusCode::kUnavailable},
           Case{"ValidationException", 400, StatusCode::kInvalidArgument},
           Case{"SerializationException", 400, StatusCode::kInvalidArgument},
           Case{"UnknownOperationException", 400,
                StatusCode::kInvalidArgument},
           Case{"MalformedPolicyDocumentException", 400,
                StatusCode::kInvalidArgument},
       }) {
    json body = {{"__type", c.type}, {"message", "details"}};
    Status s = StatusFromKmsResponse(c.http_status, body.dump(), kEndpointName);
    EXPECT_EQ(s.code(), c.code) << c.type;
    EXPECT_EQ(s.message(), std::string(c.type) + ": details");
    EXPECT_EQ(KmsErrorType(s), c.type);
  }
}

TEST(StatusFromKmsResponseTest, SuccessIsOk) {
  EXPECT_TRUE(StatusFromKmsResponse(200, "{}", kEndpointName).ok());
  EXPECT_TRUE(StatusFromKmsResponse(200, "", kEndpointName).ok());
}

TEST(StatusFromKmsResponseTest, QualifiedTypeAndCapitalMessage) {
  Status s = StatusFromKmsResponse(
      400,
      R"({"__type":"com.amazon.coral.service#ThrottlingException",)"
      R"("Message":"Rate exceeded"})",
      kEndpointName);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(), "ThrottlingException: Rate exceeded");
  EXPECT_EQ(KmsErrorType(s), "ThrottlingException");
}

TEST(StatusFromKmsResponseTest, TypeWithoutMessage) {
  Status s = StatusFromKmsResponse(400, R"({"__type":"DisabledException"})",
                                   kEndpointName);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(s.message(), "DisabledException");
  EXPECT_EQ(KmsErrorType(s), "DisabledException");
}

TEST(StatusFromKmsResponseTest, UntypedErrorsNameTheEndpoint) {
  Status s = StatusFromKmsResponse(502, "<html>Bad Gateway</html>",
                                   kEndpointName);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_EQ(s.message(),
            "the key service at unix:/run/envelope-keyd/kms.sock answered "
            "HTTP 502");
  EXPECT_EQ(KmsErrorType(s), "");

  s = StatusFromKmsResponse(404, "not json", kEndpointName);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_NE(s.message().find("HTTP 404"), std::string::npos);
  EXPECT_EQ(KmsErrorType(s), "");

  // A type that is not an identifier is not trusted as one.
  s = StatusFromKmsResponse(400, R"({"__type":"Not Found: x"})", kEndpointName);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(KmsErrorType(s), "");
}

TEST(KmsErrorTypeTest, OnlyAwsTypes) {
  EXPECT_EQ(KmsErrorType(Status::Ok()), "");
  EXPECT_EQ(KmsErrorType(Status::Unavailable(
                "cannot reach the key service at unix:/x: Connection refused")),
            "");
  EXPECT_EQ(KmsErrorType(Status::InvalidArgument("Exception: x")), "");
  EXPECT_EQ(KmsErrorType(Status::InvalidArgument("bad: x")), "");
  EXPECT_EQ(KmsErrorType(Status::NotFound("NotFoundException: x: y")),
            "NotFoundException");
}

// --- Retry classification. ---

TEST(RetryClassificationTest, Idempotency) {
  for (const char* op :
       {"TrentService.DescribeKey", "TrentService.ListKeys",
        "TrentService.ListAliases", "TrentService.Encrypt",
        "TrentService.Decrypt", "TrentService.ReEncrypt",
        "TrentService.GenerateDataKey", "TrentService.GenerateRandom",
        "TrentService.ListKeyRotations", "TrentService.GetKeyPolicy",
        "TrentService.GetKeyRotationStatus", "EnvelopeKeyService.GenerateDataKeys",
        "EnvelopeKeyService.VerifyAudit",
        "EnvelopeKeyService.TailAudit"}) {
    EXPECT_TRUE(IsIdempotentOperation(op)) << op;
  }
  for (const char* op :
       {"TrentService.CreateKey", "TrentService.CreateAlias",
        "TrentService.UpdateAlias", "TrentService.DeleteAlias",
        "TrentService.ScheduleKeyDeletion", "TrentService.CancelKeyDeletion",
        "TrentService.RotateKeyOnDemand", "TrentService.PutKeyPolicy",
        "TrentService.TagResource", "TrentService.UntagResource",
        "TrentService.EnableKey", "TrentService.DisableKey",
        "TrentService.EnableKeyRotation", "TrentService.DisableKeyRotation",
        "EnvelopeKeyService.RetireKeyVersions",
        // Unknown operations are not assumed safe to repeat.
        "TrentService.SomethingNew", "DescribeKey", ""}) {
    EXPECT_FALSE(IsIdempotentOperation(op)) << op;
  }
}

TEST(RetryClassificationTest, ShouldRetry) {
  const Status unavailable = Status::Unavailable("x");
  // Never sent: always safe.
  EXPECT_TRUE(ShouldRetry("TrentService.CreateKey", unavailable, false));
  EXPECT_TRUE(ShouldRetry("TrentService.DescribeKey", unavailable, false));
  // Sent: only idempotent operations.
  EXPECT_FALSE(ShouldRetry("TrentService.CreateKey", unavailable, true));
  EXPECT_FALSE(
      ShouldRetry("EnvelopeKeyService.RetireKeyVersions", unavailable, true));
  EXPECT_TRUE(ShouldRetry("TrentService.Decrypt", unavailable, true));
  // Throttling and internal errors arrive as kUnavailable responses.
  Status throttled = StatusFromKmsResponse(
      400, R"({"__type":"ThrottlingException","message":"slow down"})", "");
  EXPECT_TRUE(ShouldRetry("TrentService.GenerateDataKey", throttled, true));
  EXPECT_FALSE(ShouldRetry("TrentService.RotateKeyOnDemand", throttled, true));
  // Other errors are answers, not failures.
  for (const Status& s :
       {Status::NotFound("NotFoundException: x"),
        Status::InvalidArgument("ValidationException: x"),
        Status::ResourceExhausted("too big"), Status::Corruption("x")}) {
    EXPECT_FALSE(ShouldRetry("TrentService.DescribeKey", s, true));
    EXPECT_FALSE(ShouldRetry("TrentService.DescribeKey", s, false));
  }
}

// --- Options. ---

TEST(KmsClientTest, TcpNeedsCredentials) {
  KmsClient::Options o;
  o.endpoint = *ParseEndpoint("http://127.0.0.1:7878");
  auto client = KmsClient::New(std::move(o));
  ASSERT_FALSE(client.ok());
  EXPECT_EQ(client.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(client.status().message().find("AWS_ACCESS_KEY_ID"),
            std::string::npos);
}

TEST(KmsClientTest, RejectsNegativeRetries) {
  KmsClient::Options o;
  o.endpoint = *ParseEndpoint("unix:/tmp/x.sock");
  o.max_retries = -1;
  EXPECT_FALSE(KmsClient::New(std::move(o)).ok());
}

// A private temporary directory, removed with what is left in it.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/kms-client-test-XXXXXX";
    if (::mkdtemp(tmpl) != nullptr) path_ = tmpl;
  }
  ~TempDir() {
    if (!path_.empty()) {
      (void)std::system(("rm -rf '" + path_ + "'").c_str());
    }
  }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

KmsClient::Options FastOptions(const Endpoint& endpoint) {
  KmsClient::Options o;
  o.endpoint = endpoint;
  o.connect_timeout = milliseconds(1000);
  o.request_timeout = milliseconds(2000);
  o.max_retries = 3;
  o.backoff_base = milliseconds(1);
  return o;
}

std::unique_ptr<KmsClient> MakeClient(KmsClient::Options o) {
  auto client = KmsClient::New(std::move(o));
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? std::move(*client) : nullptr;
}

TEST(KmsClientTest, MissingSocketIsUnavailableNamingTheEndpoint) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  Endpoint ep;
  ep.kind = Endpoint::kUnix;
  ep.socket_path = dir.path() + "/missing.sock";
  auto client = MakeClient(FastOptions(ep));
  ASSERT_NE(client, nullptr);

  const auto start = steady_clock::now();
  auto r = client->Call("TrentService.CreateKey", json::object());
  const auto elapsed = steady_clock::now() - start;
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(),
            "cannot reach the key service at unix:" + ep.socket_path +
                ": No such file or directory");
  EXPECT_EQ(KmsErrorType(r.status()), "");
  // Three retries with a 1 ms base sleep at most 1 + 2 + 4 ms; the bound
  // leaves room for a loaded machine and still catches a backoff of seconds.
  EXPECT_LT(elapsed, milliseconds(2000));
}

TEST(KmsClientTest, SocketWithoutListenerIsConnectionRefused) {
  TempDir dir;
  ASSERT_FALSE(dir.path().empty());
  const std::string path = dir.path() + "/bound.sock";
  // Bound but never listening: connect() fails with ECONNREFUSED.
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof(addr.sun_path) - 1);
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)), 0);

  auto client = MakeClient(FastOptions(*ParseEndpoint("unix:" + path)));
  ASSERT_NE(client, nullptr);
  auto r = client->Call("TrentService.DescribeKey", {{"KeyId", "k"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message(), "cannot reach the key service at unix:" +
                                      path + ": Connection refused");
  ::close(fd);
}

// --- Whole exchanges against a scripted server. ---

// A scripted HTTP/1.1 server standing in for envelope-keyd, on a Unix
// socket or 127.0.0.1: it records each request and answers with what the
// test's responder says. Each connection is served by its own thread.
class FakeServer {
 public:
  struct Request {
    std::string method;
    std::string path;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;

    std::string Header(std::string_view name) const {
      for (const auto& [n, v] : headers) {
        if (n.size() == name.size() &&
            ::strncasecmp(n.data(), name.data(), n.size()) == 0) {
          return v;
        }
      }
      return "";
    }
  };
  struct Reply {
    int status = 200;
    std::string body = "{}";
    bool close_after = false;  // close the connection after the reply
    bool drop = false;         // close the connection instead of replying
    bool hang = false;         // never reply
    std::string raw;           // if non-empty, sent instead of a response
  };
  // `index` counts requests from 0 across connections.
  using Responder = std::function<Reply(const Request& request, int index)>;

  FakeServer(bool tcp, Responder responder) : responder_(std::move(responder)) {
    if (tcp) {
      listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
      sockaddr_in addr{};
      addr.sin_family = AF_INET;
      addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      addr.sin_port = 0;
      EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr),
                       sizeof(addr)),
                0);
      socklen_t len = sizeof(addr);
      ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len);
      endpoint_.kind = Endpoint::kTcp;
      endpoint_.host = "127.0.0.1";
      endpoint_.port = ntohs(addr.sin_port);
    } else {
      listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      endpoint_.kind = Endpoint::kUnix;
      endpoint_.socket_path = dir_.path() + "/kms.sock";
      std::strncpy(addr.sun_path, endpoint_.socket_path.c_str(),
                   sizeof(addr.sun_path) - 1);
      EXPECT_EQ(::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr),
                       sizeof(addr)),
                0);
    }
    EXPECT_EQ(::listen(listen_fd_, 16), 0);
    accept_thread_ = std::thread([this] { AcceptLoop(); });
  }

  ~FakeServer() {
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    accept_thread_.join();
    ::close(listen_fd_);
    std::vector<std::thread> threads;
    {
      std::lock_guard<std::mutex> lock(mu_);
      for (int fd : connection_fds_) ::shutdown(fd, SHUT_RDWR);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
    for (int fd : connection_fds_) ::close(fd);
  }

  const Endpoint& endpoint() const { return endpoint_; }
  int requests() const { return requests_.load(); }
  int connections() {
    std::lock_guard<std::mutex> lock(mu_);
    return static_cast<int>(connection_fds_.size());
  }
  std::vector<Request> received() {
    std::lock_guard<std::mutex> lock(mu_);
    return received_;
  }
  // Blocks until `n` connections were shut down after a reply (close_after).
  void WaitForShutDowns(int n) {
    std::unique_lock<std::mutex> lock(mu_);
    shut_down_cv_.wait(lock, [&] { return shut_down_ >= n; });
  }

 private:
  void AcceptLoop() {
    while (true) {
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) return;
      std::lock_guard<std::mutex> lock(mu_);
      connection_fds_.push_back(fd);
      threads_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  static bool ReadMore(int fd, std::string* buf) {
    char chunk[65536];
    ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
    if (n <= 0) return false;
    buf->append(chunk, static_cast<size_t>(n));
    return true;
  }

  void Serve(int fd) {
    std::string buf;
    while (true) {
      size_t end;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        if (!ReadMore(fd, &buf)) return;
      }
      Request r;
      size_t content_length = 0;
      size_t line_end = buf.find("\r\n");
      std::string first = buf.substr(0, line_end);
      r.method = first.substr(0, first.find(' '));
      r.path = first.substr(first.find(' ') + 1);
      r.path = r.path.substr(0, r.path.find(' '));
      size_t pos = line_end + 2;
      while (pos < end) {
        size_t eol = buf.find("\r\n", pos);
        std::string line = buf.substr(pos, eol - pos);
        size_t colon = line.find(':');
        std::string value = line.substr(colon + 1);
        while (!value.empty() && value.front() == ' ') value.erase(0, 1);
        r.headers.emplace_back(line.substr(0, colon), value);
        pos = eol + 2;
      }
      if (!r.Header("Content-Length").empty()) {
        content_length = std::stoul(r.Header("Content-Length"));
      }
      while (buf.size() < end + 4 + content_length) {
        if (!ReadMore(fd, &buf)) return;
      }
      r.body = buf.substr(end + 4, content_length);
      buf.erase(0, end + 4 + content_length);

      const int index = requests_.fetch_add(1);
      {
        std::lock_guard<std::mutex> lock(mu_);
        received_.push_back(r);
      }
      Reply reply = responder_(r, index);
      if (reply.drop) {
        ::shutdown(fd, SHUT_RDWR);
        return;
      }
      if (reply.hang) continue;
      std::string out = !reply.raw.empty() ? reply.raw :
                        "HTTP/1.1 " + std::to_string(reply.status) +
                        " X\r\nContent-Type: application/x-amz-json-1.1\r\n"
                        "Content-Length: " +
                        std::to_string(reply.body.size()) + "\r\n\r\n" +
                        reply.body;
      size_t sent = 0;
      while (sent < out.size()) {
        ssize_t n = ::send(fd, out.data() + sent, out.size() - sent,
                           MSG_NOSIGNAL);
        if (n <= 0) return;
        sent += static_cast<size_t>(n);
      }
      if (reply.close_after) {
        ::shutdown(fd, SHUT_RDWR);
        {
          std::lock_guard<std::mutex> lock(mu_);
          ++shut_down_;
        }
        shut_down_cv_.notify_all();
        return;
      }
    }
  }

  TempDir dir_;
  Responder responder_;
  Endpoint endpoint_;
  int listen_fd_ = -1;
  std::thread accept_thread_;
  std::atomic<int> requests_{0};
  std::mutex mu_;
  std::vector<int> connection_fds_;  // guarded by mu_
  std::vector<std::thread> threads_;  // guarded by mu_
  std::vector<Request> received_;     // guarded by mu_
  int shut_down_ = 0;                 // guarded by mu_
  std::condition_variable shut_down_cv_;
};

FakeServer::Reply Ok(const json& body) {
  FakeServer::Reply reply;
  reply.body = body.dump();
  return reply;
}

FakeServer::Reply Error(int status, const char* type) {
  FakeServer::Reply reply;
  reply.status = status;
  reply.body = json{{"__type", type}, {"message", "scripted"}}.dump();
  return reply;
}

TEST(KmsClientExchangeTest, SendsTheKmsJsonProtocol) {
  FakeServer server(false, [](const FakeServer::Request&, int) {
    return Ok({{"KeyMetadata", {{"KeyId", "k1"}}}});
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  auto r = client->Call("TrentService.DescribeKey", {{"KeyId", "alias/a"}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["KeyMetadata"]["KeyId"], "k1");

  auto received = server.received();
  ASSERT_EQ(received.size(), 1u);
  const FakeServer::Request& req = received[0];
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.path, "/");
  EXPECT_EQ(req.Header("Host"), "localhost");
  EXPECT_EQ(req.Header("Content-Type"), "application/x-amz-json-1.1");
  EXPECT_EQ(req.Header("X-Amz-Target"), "TrentService.DescribeKey");
  EXPECT_EQ(req.Header("Authorization"), "");  // the Unix socket is unsigned
  EXPECT_EQ(json::parse(req.body), json({{"KeyId", "alias/a"}}));
}

TEST(KmsClientExchangeTest, ReusesOneKeepAliveConnection) {
  FakeServer server(false, [](const FakeServer::Request&, int) {
    return Ok(json::object());
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  for (int i = 0; i < 5; ++i) {
    ASSERT_TRUE(client->Call("TrentService.ListKeys", json::object()).ok());
  }
  EXPECT_EQ(server.requests(), 5);
  EXPECT_EQ(server.connections(), 1);
}

TEST(KmsClientExchangeTest, RetriesIdempotentOperationOnInternalError) {
  FakeServer server(false, [](const FakeServer::Request&, int index) {
    if (index < 2) return Error(500, "KMSInternalException");
    return Ok({{"Keys", json::array()}});
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  auto r = client->Call("TrentService.ListKeys", json::object());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(server.requests(), 3);
}

TEST(KmsClientExchangeTest, GivesUpAfterMaxRetries) {
  FakeServer server(false, [](const FakeServer::Request&, int) {
    return Error(400, "ThrottlingException");
  });
  auto options = FastOptions(server.endpoint());
  options.max_retries = 2;
  auto client = MakeClient(std::move(options));
  auto r = client->Call("TrentService.Decrypt", json::object());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(KmsErrorType(r.status()), "ThrottlingException");
  EXPECT_EQ(server.requests(), 3);
}

TEST(KmsClientExchangeTest, DoesNotResendNonIdempotentOperation) {
  FakeServer server(false, [](const FakeServer::Request&, int) {
    return Error(500, "KMSInternalException");
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  auto r = client->Call("TrentService.CreateKey", json::object());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(KmsErrorType(r.status()), "KMSInternalException");
  EXPECT_EQ(server.requests(), 1);
}

TEST(KmsClientExchangeTest, ErrorAnswersAreNotRetried) {
  FakeServer server(false, [](const FakeServer::Request&, int) {
    return Error(400, "NotFoundException");
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  auto r = client->Call("TrentService.DescribeKey", {{"KeyId", "x"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(r.status().message(), "NotFoundException: scripted");
  EXPECT_EQ(server.requests(), 1);
}

TEST(KmsClientExchangeTest, LostConnectionAfterSending) {
  FakeServer server(false, [](const FakeServer::Request&, int) {
    FakeServer::Reply reply;
    reply.drop = true;
    return reply;
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  // Idempotent: resent after each loss.
  auto r = client->Call("TrentService.DescribeKey", {{"KeyId", "x"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(r.status().message().rfind(
                "lost the connection to the key service at " +
                    server.endpoint().ToString() + ": ",
                0),
            0u)
      << r.status().message();
  EXPECT_EQ(server.requests(), 4);
  // Not idempotent: the service may have acted on it, so sent once only.
  r = client->Call("TrentService.RotateKeyOnDemand", {{"KeyId", "x"}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(server.requests(), 5);
}

TEST(KmsClientExchangeTest, StaleIdleConnectionIsReplacedBeforeSending) {
  FakeServer server(false, [](const FakeServer::Request&, int index) {
    FakeServer::Reply reply = Ok({{"KeyMetadata", {{"KeyId", "k"}}}});
    // The first connection is closed by the server once idle, without a
    // "Connection: close" to warn the client.
    reply.close_after = index == 0;
    return reply;
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  ASSERT_TRUE(client->Call("TrentService.DescribeKey", {{"KeyId", "k"}}).ok());
  server.WaitForShutDowns(1);  // the server has hung up: the connection is stale
  // A non-idempotent call must not be lost to the stale connection.
  auto r = client->Call("TrentService.CreateKey", json::object());
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ(server.requests(), 2);
  EXPECT_EQ(server.connections(), 2);
}

TEST(KmsClientExchangeTest, RequestTimeout) {
  FakeServer server(false, [](const FakeServer::Request&, int) {
    FakeServer::Reply reply;
    reply.hang = true;
    return reply;
  });
  auto options = FastOptions(server.endpoint());
  options.request_timeout = milliseconds(200);
  options.max_retries = 0;
  auto client = MakeClient(std::move(options));
  const auto start = steady_clock::now();
  auto r = client->Call("TrentService.ListKeys", json::object());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(r.status().message().find("timed out after 200 ms"),
            std::string::npos)
      << r.status().message();
  EXPECT_LT(steady_clock::now() - start, milliseconds(2000));
}

TEST(KmsClientExchangeTest, ResponseBodyLimit) {
  FakeServer server(false, [](const FakeServer::Request&, int) {
    return Ok({{"Padding", std::string(kMaxHttpResponseBodyInBytes, 'a')}});
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  auto r = client->Call("TrentService.ListKeys", json::object());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(server.requests(), 1);
}

// Chunked framing, as a proxy or another server might send it.
std::string Chunked(const std::string& body) {
  std::string out = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (size_t pos = 0; pos < body.size(); pos += 100000) {
    std::string chunk = body.substr(pos, 100000);
    char size[32];
    std::snprintf(size, sizeof(size), "%zx\r\n", chunk.size());
    out += size + chunk + "\r\n";
  }
  return out + "0\r\n\r\n";
}

TEST(KmsClientExchangeTest, ChunkedResponses) {
  FakeServer server(false, [](const FakeServer::Request& r, int) {
    FakeServer::Reply reply;
    const size_t size = json::parse(r.body)["Size"].get<size_t>();
    reply.raw = Chunked(json{{"Padding", std::string(size, 'a')}}.dump());
    return reply;
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  auto r = client->Call("TrentService.ListKeys", {{"Size", 300000}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_EQ((*r)["Padding"].get<std::string>().size(), 300000u);
  r = client->Call("TrentService.ListKeys",
                   {{"Size", kMaxHttpResponseBodyInBytes}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(server.requests(), 2);
  EXPECT_EQ(server.connections(), 1);  // kept alive after the first
}

TEST(KmsClientExchangeTest, SignsEveryRequestOverTcp) {
  auto secret = crypto::SecretBytes::CopyOf(AsBytes("test-secret"));
  ASSERT_TRUE(secret.ok());
  FakeServer server(true, [&secret](const FakeServer::Request& r, int) {
    HttpRequestParts parts{r.method, r.path, "", r.headers, r.body};
    auto id = VerifyRequest(
        parts,
        [&secret](std::string_view key_id) -> const crypto::SecretBytes* {
          return key_id == "AKIDTEST" ? &*secret : nullptr;
        },
        "kms", std::chrono::system_clock::now(), std::chrono::minutes(5));
    if (!id.ok()) return Error(400, "AccessDeniedException");
    return Ok({{"Caller", *id}, {"Host", r.Header("Host")}});
  });
  auto options = FastOptions(server.endpoint());
  Credentials creds;
  creds.access_key_id = "AKIDTEST";
  creds.secret_access_key = std::move(*crypto::SecretBytes::CopyOf(
      AsBytes("test-secret")));
  options.credentials = std::move(creds);
  options.region = "eu-west-1";
  auto client = MakeClient(std::move(options));
  for (int i = 0; i < 2; ++i) {
    auto r = client->Call("TrentService.ListKeys", json::object());
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    EXPECT_EQ((*r)["Caller"], "AKIDTEST");
    EXPECT_EQ((*r)["Host"], server.endpoint().HostHeader());
  }
  auto received = server.received();
  ASSERT_EQ(received.size(), 2u);
  EXPECT_NE(received[0].Header("Authorization").find("/eu-west-1/kms/"),
            std::string::npos);
}

TEST(KmsClientExchangeTest, DecryptIntoSecretBytes) {
  Bytes plaintext(32);
  for (size_t i = 0; i < plaintext.size(); ++i) {
    plaintext[i] = static_cast<uint8_t>(i * 7);
  }
  FakeServer server(false, [&](const FakeServer::Request&, int) {
    return Ok({{"KeyId", "arn:k"},
               {"Plaintext", Base64Encode(plaintext)},
               {"EncryptionAlgorithm", "SYMMETRIC_DEFAULT"}});
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  const Bytes blob = {1, 2, 3, 4, 5};
  auto key = client->Decrypt(blob, {{"path", "/a"}}, "alias/fs");
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_TRUE(key->in_secure_heap());
  EXPECT_EQ(Bytes(key->view().begin(), key->view().end()), plaintext);

  json sent = json::parse(server.received()[0].body);
  EXPECT_EQ(sent["CiphertextBlob"], Base64Encode(blob));
  EXPECT_EQ(sent["EncryptionContext"], json({{"path", "/a"}}));
  EXPECT_EQ(sent["KeyId"], "alias/fs");
  EXPECT_EQ(server.received()[0].Header("X-Amz-Target"),
            "TrentService.Decrypt");
}

TEST(KmsClientExchangeTest, MalformedPlaintextIsRefused) {
  FakeServer server(false, [](const FakeServer::Request&, int) {
    return Ok({{"Plaintext", "AAE"}});  // not a multiple of 4
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  auto key = client->Decrypt(Bytes{1}, {}, "alias/fs");
  ASSERT_FALSE(key.ok());
  EXPECT_EQ(key.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(key.status().message().find("malformed response"),
            std::string::npos);
}

TEST(KmsClientExchangeTest, GenerateDataKey) {
  const Bytes dek(32, 0xab);
  const Bytes wrapped = {9, 8, 7};
  FakeServer server(false, [&](const FakeServer::Request&, int) {
    return Ok({{"KeyId", "arn:aws:kms:local:000000000000:key/k"},
               {"Plaintext", Base64Encode(dek)},
               {"CiphertextBlob", Base64Encode(wrapped)}});
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  auto key = client->GenerateDataKey("alias/fs", {{"file", "1"}});
  ASSERT_TRUE(key.ok()) << key.status().ToString();
  EXPECT_EQ(Bytes(key->plaintext.view().begin(), key->plaintext.view().end()),
            dek);
  EXPECT_EQ(key->ciphertext_blob, wrapped);
  EXPECT_EQ(key->key_arn, "arn:aws:kms:local:000000000000:key/k");
  json sent = json::parse(server.received()[0].body);
  EXPECT_EQ(sent["NumberOfBytes"], 32);
  EXPECT_EQ(sent["KeyId"], "alias/fs");

  // A data key of the wrong size is refused.
  EXPECT_FALSE(client->GenerateDataKey("alias/fs", {}, 16).ok());
}

TEST(KmsClientExchangeTest, EncryptAndReEncrypt) {
  FakeServer server(false, [](const FakeServer::Request&, int) {
    return Ok({{"CiphertextBlob", Base64Encode(Bytes{42, 43})}});
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  const Bytes secret = {'s', 'e', 'c', 'r', 'e', 't'};
  auto blob = client->Encrypt("alias/fs", secret, {{"a", "b"}});
  ASSERT_TRUE(blob.ok()) << blob.status().ToString();
  EXPECT_EQ(*blob, (Bytes{42, 43}));
  json sent = json::parse(server.received()[0].body);
  EXPECT_EQ(sent, json({{"KeyId", "alias/fs"},
                        {"Plaintext", Base64Encode(secret)},
                        {"EncryptionContext", {{"a", "b"}}}}));
  // Without other members the spliced body is still one JSON object.
  auto plain = client->Call("TrentService.Encrypt", {{"Plaintext", "AAAA"}});
  ASSERT_TRUE(plain.ok());
  EXPECT_EQ(json::parse(server.received()[1].body),
            json({{"Plaintext", "AAAA"}}));

  auto re = client->ReEncrypt(Bytes{1}, "alias/old", {{"a", "b"}}, "alias/new", {});
  ASSERT_TRUE(re.ok()) << re.status().ToString();
  sent = json::parse(server.received()[2].body);
  EXPECT_EQ(sent, json({{"CiphertextBlob", Base64Encode(Bytes{1})},
                        {"SourceKeyId", "alias/old"},
                        {"SourceEncryptionContext", {{"a", "b"}}},
                        {"DestinationKeyId", "alias/new"}}));
}

// ReEncryptBatch: one request for every item, one result per item (an
// item's error as a Status like ReEncrypt's), and a body exactly as long as
// ReEncryptBatchBodySize and ReEncryptBatchItemSize say (the client fills
// requests up to the service's body limit by them).
TEST(KmsClientExchangeTest, ReEncryptBatch) {
  FakeServer server(false, [](const FakeServer::Request&, int) {
    return Ok({{"KeyId", "arn:dest"},
               {"Results", json::array({{{"CiphertextBlob", Base64Encode(Bytes{7})},
                                         {"SourceKeyId", "arn:a"}},
                                        {{"ErrorType", "IncorrectKeyException"},
                                         {"ErrorMessage", "not under its pin"}}})}});
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  const Bytes one = {1, 2, 3}, two(100, 0xee);
  std::vector<ReEncryptItem> items = {
      {one, "alias/a", {{"file", "1"}, {"volume", "v\"q\\\n\x01"}}, {{"file", "1"}}},
      {two, "k2", {}, {{"x", "y"}}}};
  auto results = client->ReEncryptBatch(items, "alias/dest");
  ASSERT_TRUE(results.ok()) << results.status().ToString();
  ASSERT_EQ(results->size(), 2u);
  ASSERT_TRUE((*results)[0].ok());
  EXPECT_EQ(*(*results)[0], (Bytes{7}));
  EXPECT_EQ(KmsErrorType((*results)[1].status()), "IncorrectKeyException");
  EXPECT_EQ((*results)[1].status().code(), StatusCode::kCorruption);

  const auto received = server.received();
  const FakeServer::Request& req = received[0];
  EXPECT_EQ(req.Header("X-Amz-Target"), "EnvelopeKeyService.ReEncryptBatch");
  json sent = json::parse(req.body);
  EXPECT_EQ(sent["DestinationKeyId"], "alias/dest");
  ASSERT_EQ(sent["Items"].size(), 2u);
  EXPECT_EQ(sent["Items"][0]["SourceKeyId"], "alias/a");
  EXPECT_EQ(sent["Items"][1]["CiphertextBlob"], Base64Encode(two));
  // The items' sizes each count a comma: one more than the body has.
  EXPECT_EQ(req.body.size() + 1, ReEncryptBatchBodySize("alias/dest") +
                                     ReEncryptBatchItemSize(items[0]) +
                                     ReEncryptBatchItemSize(items[1]));

  // No pin, nothing sent; nor for an empty or oversized batch.
  items[1].source_key_id.clear();
  EXPECT_EQ(client->ReEncryptBatch(items, "d").status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(client->ReEncryptBatch({}, "d").ok());
  EXPECT_EQ(server.requests(), 1);
}

// Every unwrap names the key it expects: without one nothing is sent.
TEST(KmsClientExchangeTest, UnwrapWithoutKeyIdIsRefused) {
  FakeServer server(false, [](const FakeServer::Request&, int) { return Ok({}); });
  auto client = MakeClient(FastOptions(server.endpoint()));
  auto key = client->Decrypt(Bytes{1}, {}, "");
  EXPECT_EQ(key.status().code(), StatusCode::kInvalidArgument);
  auto re = client->ReEncrypt(Bytes{1}, "", {}, "alias/new", {});
  EXPECT_EQ(re.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(server.received().empty());
}

TEST(KmsClientForeignKeyCreatorTest, OnlyAnotherKnownPrincipalCounts) {
  Endpoint unix_ep;
  unix_ep.kind = Endpoint::kUnix;
  Endpoint tcp_ep;
  tcp_ep.kind = Endpoint::kTcp;
  const std::string self = "uid:" + std::to_string(::geteuid());
  EXPECT_EQ(ForeignKeyCreator(json::object(), unix_ep), "");  // AWS: no field
  EXPECT_EQ(ForeignKeyCreator({{"Creator", "user:root"}}, unix_ep), "");
  EXPECT_EQ(ForeignKeyCreator({{"Creator", self}}, unix_ep), "");
  EXPECT_EQ(ForeignKeyCreator({{"Creator", "uid:4242424"}}, unix_ep), "uid:4242424");
  EXPECT_EQ(ForeignKeyCreator({{"Creator", "uid:4242424"}}, tcp_ep), "");  // self unknown
}

TEST(KmsClientExchangeTest, ConcurrentCallsUseSeparateConnections) {
  FakeServer server(false, [](const FakeServer::Request& r, int) {
    return Ok(json::parse(r.body));  // echo
  });
  auto client = MakeClient(FastOptions(server.endpoint()));
  constexpr int kThreads = 8, kCallsPerThread = 25;
  std::atomic<int> failures{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kCallsPerThread; ++i) {
        json request = {{"KeyId", std::to_string(t) + "/" + std::to_string(i)}};
        auto r = client->Call("TrentService.DescribeKey", request);
        if (!r.ok() || *r != request) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(server.requests(), kThreads * kCallsPerThread);
  EXPECT_LE(server.connections(), kThreads);
}

}  // namespace
}  // namespace envelope::kms
