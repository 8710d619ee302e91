// Endpoint parsing, the default socket path, the socket directory check,
// and the environment lookups (endpoint precedence, the "aws" form,
// credentials, region).
#include "kms/endpoint.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ios>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/scoped_environment.h"

namespace envelope::kms {
namespace {

TEST(ParseEndpointTest, AcceptsUnixSocketPath) {
  auto ep = ParseEndpoint("unix:/run/envelope-keyd/kms.sock");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->kind, Endpoint::kUnix);
  EXPECT_EQ(ep->socket_path, "/run/envelope-keyd/kms.sock");
  EXPECT_EQ(ep->ToString(), "unix:/run/envelope-keyd/kms.sock");
  EXPECT_EQ(ep->HostHeader(), "localhost");
}

TEST(ParseEndpointTest, AcceptsLoopbackHttp) {
  struct Case {
    const char* text;
    const char* host;
    uint16_t port;
    const char* written;
  };
  for (const Case& c : {
           Case{"http://127.0.0.1:7878", "127.0.0.1", 7878,
                "http://127.0.0.1:7878"},
           Case{"http://127.0.0.1:7878/", "127.0.0.1", 7878,
                "http://127.0.0.1:7878"},
           Case{"http://127.10.20.30:1", "127.10.20.30", 1,
                "http://127.10.20.30:1"},
           Case{"http://localhost:65535", "localhost", 65535,
                "http://localhost:65535"},
           Case{"HTTP://LocalHost:80", "localhost", 80, "http://localhost:80"},
           Case{"http://[::1]:7878", "::1", 7878, "http://[::1]:7878"},
       }) {
    auto ep = ParseEndpoint(c.text);
    ASSERT_TRUE(ep.ok()) << c.text << ": " << ep.status().ToString();
    EXPECT_EQ(ep->kind, Endpoint::kTcp) << c.text;
    EXPECT_EQ(ep->host, c.host) << c.text;
    EXPECT_EQ(ep->port, c.port) << c.text;
    EXPECT_EQ(ep->ToString(), c.written) << c.text;
    // The written form parses back to the same endpoint.
    auto again = ParseEndpoint(ep->ToString());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *ep);
  }
}

TEST(ParseEndpointTest, RejectsWithAReason) {
  struct Case {
    std::string text;
    const char* reason;  // a fragment the message must contain
  };
  for (const Case& c : {
           Case{"", "expected unix:"},
           Case{"/run/kms.sock", "expected unix:"},
           Case{"tcp://127.0.0.1:1", "expected unix:"},
           Case{"unix:", "absolute"},
           Case{"unix:run/kms.sock", "absolute"},
           Case{"unix:/" + std::string(200, 'a'), "longer than 107"},
           Case{"http://10.0.0.1:7878", "non-loopback"},
           Case{"http://10.0.0.1:7878", "over https://HOST"},
           Case{"http://kms.eu-west-1.amazonaws.com:443", "over plain http"},
           Case{"http://example.com:7878", "non-loopback"},
           Case{"http://0.0.0.0:7878", "non-loopback"},
           Case{"http://127.0.0.01:7878", "non-loopback"},  // octal-looking
           Case{"http://127.0.0:7878", "non-loopback"},
           Case{"http://127.0.0.1.5:7878", "non-loopback"},
           Case{"http://[::2]:7878", "non-loopback"},
           Case{"http://[::1]", "port is required"},
           Case{"http://[::1:7878", "unterminated"},
           Case{"http://127.0.0.1", "port is required"},
           Case{"http://127.0.0.1:", "1 to 65535"},
           Case{"http://127.0.0.1:0", "1 to 65535"},
           Case{"http://127.0.0.1:65536", "1 to 65535"},
           Case{"http://127.0.0.1:08", "1 to 65535"},
           Case{"http://127.0.0.1:7a", "1 to 65535"},
           Case{"http://127.0.0.1:7878/kms", "path or query"},
           Case{"http://127.0.0.1:7878?x=1", "path or query"},
           Case{"http://user:pw@127.0.0.1:7878", "credentials in the URL"},
       }) {
    auto ep = ParseEndpoint(c.text);
    ASSERT_FALSE(ep.ok()) << c.text;
    EXPECT_EQ(ep.status().code(), StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(ep.status().message().find(c.reason), std::string::npos)
        << c.text << " -> " << ep.status().message();
  }
}

TEST(ParseEndpointTest, AcceptsHttpsToAnyHost) {
  struct Case {
    const char* text;
    const char* host;
    uint16_t port;
    const char* written;
    const char* host_header;
  };
  for (const Case& c : {
           Case{"https://kms.example.com", "kms.example.com", 443,
                "https://kms.example.com", "kms.example.com"},
           Case{"https://kms.example.com/", "kms.example.com", 443,
                "https://kms.example.com", "kms.example.com"},
           Case{"HTTPS://KMS.Example.COM:443", "kms.example.com", 443,
                "https://kms.example.com", "kms.example.com"},
           Case{"https://kms.example.com:8443", "kms.example.com", 8443,
                "https://kms.example.com:8443", "kms.example.com:8443"},
           Case{"https://localhost:7443", "localhost", 7443,
                "https://localhost:7443", "localhost:7443"},
           Case{"https://keys-1.internal", "keys-1.internal", 443,
                "https://keys-1.internal", "keys-1.internal"},
           Case{"https://10.1.2.3", "10.1.2.3", 443, "https://10.1.2.3",
                "10.1.2.3"},
           Case{"https://127.0.0.1:7878", "127.0.0.1", 7878,
                "https://127.0.0.1:7878", "127.0.0.1:7878"},
           Case{"https://[2001:DB8::1]", "2001:db8::1", 443,
                "https://[2001:db8::1]", "[2001:db8::1]"},
           Case{"https://[::1]:7443/", "::1", 7443, "https://[::1]:7443",
                "[::1]:7443"},
       }) {
    auto ep = ParseEndpoint(c.text);
    ASSERT_TRUE(ep.ok()) << c.text << ": " << ep.status().ToString();
    EXPECT_EQ(ep->kind, Endpoint::kHttps) << c.text;
    EXPECT_EQ(ep->host, c.host) << c.text;
    EXPECT_EQ(ep->port, c.port) << c.text;
    EXPECT_EQ(ep->ToString(), c.written) << c.text;
    EXPECT_EQ(ep->HostHeader(), c.host_header) << c.text;
    EXPECT_FALSE(ep->aws) << c.text;
    EXPECT_EQ(ep->region, "") << c.text;
    EXPECT_FALSE(IsAwsEndpoint(*ep)) << c.text;
    auto again = ParseEndpoint(ep->ToString());
    ASSERT_TRUE(again.ok());
    EXPECT_EQ(*again, *ep);
  }
}

TEST(ParseEndpointTest, RejectsMalformedHttps) {
  struct Case {
    std::string text;
    const char* reason;
  };
  for (const Case& c : {
           Case{"https://", "host is missing"},
           Case{"https://:443", "host is missing"},
           Case{"https://kms.example.com:", "1 to 65535"},
           Case{"https://kms.example.com:0", "1 to 65535"},
           Case{"https://kms.example.com:65536", "1 to 65535"},
           Case{"https://kms.example.com:0443", "1 to 65535"},
           Case{"https://kms.example.com/kms", "path or query"},
           Case{"https://kms.example.com?x", "path or query"},
           Case{"https://kms.example.com#x", "path or query"},
           Case{"https://key:secret@kms.example.com", "credentials in the URL"},
           Case{"https://kms_1.example.com", "not a host name"},
           Case{"https://-kms.example.com", "not a host name"},
           Case{"https://kms-.example.com", "not a host name"},
           Case{"https://kms..example.com", "not a host name"},
           Case{"https://kms.example.com.", "not a host name"},
           Case{"https://" + std::string(64, 'a') + ".example", "not a host name"},
           Case{"https://" + std::string(4 * 63 + 3, 'a'), "not a host name"},
           Case{"https://kms example.com", "not a host name"},
           // What inet_aton reads as IPv4 but nobody should write.
           Case{"https://127.1", "dotted-quad"},
           Case{"https://10.0.0.01", "dotted-quad"},
           Case{"https://256.1.1.1", "dotted-quad"},
           Case{"https://0x7f.0.0.1", "dotted-quad"},
           Case{"https://1.2.3.4.5", "dotted-quad"},
           Case{"https://[::g]", "not an IPv6 address"},
           Case{"https://[fe80::1%eth0]", "not an IPv6 address"},
           Case{"https://[::1", "unterminated"},
           Case{"https://[::1]x", "':PORT'"},
       }) {
    auto ep = ParseEndpoint(c.text);
    ASSERT_FALSE(ep.ok()) << c.text;
    EXPECT_EQ(ep.status().code(), StatusCode::kInvalidArgument) << c.text;
    EXPECT_NE(ep.status().message().find(c.reason), std::string::npos)
        << c.text << " -> " << ep.status().message();
  }
}

TEST(ParseEndpointTest, AwsRegionShorthand) {
  auto ep = ParseEndpoint("aws:eu-west-1");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->kind, Endpoint::kHttps);
  EXPECT_EQ(ep->host, "kms.eu-west-1.amazonaws.com");
  EXPECT_EQ(ep->port, 443);
  EXPECT_EQ(ep->ToString(), "https://kms.eu-west-1.amazonaws.com");
  EXPECT_EQ(ep->HostHeader(), "kms.eu-west-1.amazonaws.com");
  EXPECT_TRUE(ep->aws);
  EXPECT_EQ(ep->region, "eu-west-1");
  EXPECT_TRUE(IsAwsEndpoint(*ep));
  // The URL it stands for is the same server, and names the same region.
  auto url = ParseEndpoint(ep->ToString());
  ASSERT_TRUE(url.ok());
  EXPECT_EQ(*url, *ep);
  EXPECT_EQ(url->region, "eu-west-1");

  ep = ParseEndpoint("aws:cn-north-1");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->host, "kms.cn-north-1.amazonaws.com.cn");
  EXPECT_EQ(ep->region, "cn-north-1");
  EXPECT_TRUE(IsAwsEndpoint(*ep));

  ep = ParseEndpoint("AWS:us-gov-west-1");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->host, "kms.us-gov-west-1.amazonaws.com");
}

TEST(ParseEndpointTest, AwsRegionMustBeARegionName) {
  for (const std::string& text : std::vector<std::string>{"aws:", "aws:EU-WEST-1", "aws:eu_west_1", "aws:eu-west-1.", "aws:1eu",
        "aws:eu-west-", "aws:eu-west-1/x", "aws:evil.com/", "aws:eu west",
        "aws:" + std::string(64, 'a')}) {
    auto ep = ParseEndpoint(text);
    ASSERT_FALSE(ep.ok()) << text;
    EXPECT_EQ(ep.status().code(), StatusCode::kInvalidArgument) << text;
    EXPECT_NE(ep.status().message().find("not an AWS region name"),
              std::string::npos)
        << text << " -> " << ep.status().message();
  }
}

TEST(ParseEndpointTest, RegionOfAnAwsHost) {
  struct Case {
    const char* text;
    const char* region;
  };
  for (const Case& c : {
           Case{"https://kms.ap-south-1.amazonaws.com", "ap-south-1"},
           Case{"https://kms-fips.us-east-2.amazonaws.com", "us-east-2"},
           Case{"https://kms.cn-northwest-1.amazonaws.com.cn", "cn-northwest-1"},
           Case{"https://kms.amazonaws.com", ""},
           Case{"https://other.eu-west-1.amazonaws.com", ""},
           Case{"https://kms.eu-west-1.amazonaws.com.example", ""},
       }) {
    auto ep = ParseEndpoint(c.text);
    ASSERT_TRUE(ep.ok()) << c.text << ": " << ep.status().ToString();
    EXPECT_EQ(ep->region, c.region) << c.text;
    EXPECT_FALSE(ep->aws) << c.text;
  }
}

TEST(IsAwsEndpointTest, ByFormOrHost) {
  EXPECT_TRUE(IsAwsEndpoint(*ParseEndpoint("https://kms.eu-west-1.amazonaws.com")));
  EXPECT_TRUE(IsAwsEndpoint(*ParseEndpoint("https://vpce-1.kms.eu-west-1.vpce.amazonaws.com")));
  EXPECT_TRUE(IsAwsEndpoint(*ParseEndpoint("https://kms.cn-north-1.amazonaws.com.cn:443")));
  EXPECT_FALSE(IsAwsEndpoint(*ParseEndpoint("https://amazonaws.com")));
  EXPECT_FALSE(IsAwsEndpoint(*ParseEndpoint("https://notamazonaws.com")));
  EXPECT_FALSE(IsAwsEndpoint(*ParseEndpoint("https://kms.amazonaws.com.example")));
  EXPECT_FALSE(IsAwsEndpoint(*ParseEndpoint("https://kms.example.com")));
  EXPECT_FALSE(IsAwsEndpoint(*ParseEndpoint("http://127.0.0.1:7878")));
  EXPECT_FALSE(IsAwsEndpoint(*ParseEndpoint("unix:/run/envelope-keyd/kms.sock")));
  // The form counts whatever the host: "aws" may lead to a local
  // KMS-compatible service (AWS_ENDPOINT_URL).
  Endpoint local = *ParseEndpoint("http://127.0.0.1:4566");
  local.aws = true;
  EXPECT_TRUE(IsAwsEndpoint(local));
}

TEST(ParseEndpointTest, RejectsNulByte) {
  EXPECT_FALSE(ParseEndpoint(std::string("unix:/a\0b", 9)).ok());
}

TEST(DefaultSocketPathTest, RootUsesRun) {
  EXPECT_EQ(DefaultSocketPathFor(0, nullptr), "/run/envelope-keyd/kms.sock");
  // Root ignores XDG_RUNTIME_DIR: a root daemon and root clients must meet
  // whatever their environments say.
  EXPECT_EQ(DefaultSocketPathFor(0, "/run/user/0"),
            "/run/envelope-keyd/kms.sock");
}

TEST(DefaultSocketPathTest, UserPrefersXdgRuntimeDir) {
  EXPECT_EQ(DefaultSocketPathFor(1000, "/run/user/1000"),
            "/run/user/1000/envelope-keyd/kms.sock");
}

TEST(DefaultSocketPathTest, UserFallsBackToTmp) {
  EXPECT_EQ(DefaultSocketPathFor(1000, nullptr),
            "/tmp/envelope-keyd-1000/kms.sock");
  EXPECT_EQ(DefaultSocketPathFor(1000, ""), "/tmp/envelope-keyd-1000/kms.sock");
  EXPECT_EQ(DefaultSocketPathFor(1000, "relative/dir"),
            "/tmp/envelope-keyd-1000/kms.sock");
}

// Saves and restores the variables these tests change, so that the order of
// tests (and the developer's own environment) does not matter; HOME is an
// empty temporary directory, so that the developer's ~/.aws is never read.
class EnvironmentTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(home_.empty()); }

  void WriteAwsConfig(const std::string& text) {
    std::filesystem::create_directory(home_ + "/.aws");
    std::ofstream(home_ + "/.aws/config") << text;
  }

  envelope::testing::ScopedEnvironment env_{
      "ENVELOPE_KMS_ENDPOINT",  "XDG_RUNTIME_DIR",
      "AWS_ACCESS_KEY_ID",      "AWS_SECRET_ACCESS_KEY",
      "AWS_SESSION_TOKEN",      "AWS_REGION",
      "AWS_DEFAULT_REGION",     "AWS_PROFILE",
      "AWS_CONFIG_FILE",        "AWS_SHARED_CREDENTIALS_FILE",
      "AWS_ENDPOINT_URL",       "AWS_ENDPOINT_URL_KMS",
      "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "HOME"};
  const std::string home_ = env_.home();
};

TEST_F(EnvironmentTest, DefaultSocketPathFollowsEuidAndXdg) {
  ::setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
  EXPECT_EQ(DefaultSocketPath(),
            DefaultSocketPathFor(::geteuid(), "/run/user/4242"));
  ::unsetenv("XDG_RUNTIME_DIR");
  EXPECT_EQ(DefaultSocketPath(), DefaultSocketPathFor(::geteuid(), nullptr));
}

TEST_F(EnvironmentTest, ResolveUsesDefaultWhenNothingIsSet) {
  auto ep = ResolveEndpoint("");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->kind, Endpoint::kUnix);
  EXPECT_EQ(ep->socket_path, DefaultSocketPath());
}

TEST_F(EnvironmentTest, ResolveUsesEnvironmentOverDefault) {
  ::setenv("ENVELOPE_KMS_ENDPOINT", "http://127.0.0.1:9000", 1);
  auto ep = ResolveEndpoint("");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->ToString(), "http://127.0.0.1:9000");
}

TEST_F(EnvironmentTest, ResolveUsesFlagOverEnvironment) {
  ::setenv("ENVELOPE_KMS_ENDPOINT", "http://127.0.0.1:9000", 1);
  auto ep = ResolveEndpoint("unix:/tmp/x.sock");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->ToString(), "unix:/tmp/x.sock");
}

TEST_F(EnvironmentTest, ResolveIgnoresEmptyEnvironment) {
  ::setenv("ENVELOPE_KMS_ENDPOINT", "", 1);
  auto ep = ResolveEndpoint("");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->socket_path, DefaultSocketPath());
}

TEST_F(EnvironmentTest, ResolveNamesTheEnvironmentVariableInErrors) {
  ::setenv("ENVELOPE_KMS_ENDPOINT", "http://10.0.0.1:9000", 1);
  auto ep = ResolveEndpoint("");
  ASSERT_FALSE(ep.ok());
  EXPECT_EQ(ep.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(ep.status().message().rfind("$ENVELOPE_KMS_ENDPOINT: ", 0), 0u)
      << ep.status().message();
  // A bad flag is reported even when the environment is fine.
  ::setenv("ENVELOPE_KMS_ENDPOINT", "http://127.0.0.1:9000", 1);
  EXPECT_FALSE(ResolveEndpoint("http://192.168.1.1:9000").ok());
}

TEST_F(EnvironmentTest, AwsWithoutConfigurationIsUsEast1) {
  auto ep = ParseEndpoint("aws");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->ToString(), "https://kms.us-east-1.amazonaws.com");
  EXPECT_TRUE(ep->aws);
  EXPECT_EQ(ep->region, "us-east-1");
  EXPECT_TRUE(IsAwsEndpoint(*ep));
}

TEST_F(EnvironmentTest, AwsFollowsTheConfiguredRegion) {
  WriteAwsConfig("[default]\nregion = ap-south-1\n[profile dev]\nregion = cn-north-1\n");
  auto ep = ParseEndpoint("aws");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->ToString(), "https://kms.ap-south-1.amazonaws.com");

  ::setenv("AWS_PROFILE", "dev", 1);
  ep = ParseEndpoint("aws");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->ToString(), "https://kms.cn-north-1.amazonaws.com.cn");
  EXPECT_EQ(ep->region, "cn-north-1");

  ::setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
  EXPECT_EQ(ParseEndpoint("aws")->ToString(), "https://kms.eu-west-1.amazonaws.com");
  ::setenv("AWS_REGION", "eu-central-1", 1);
  EXPECT_EQ(ParseEndpoint("AWS")->ToString(), "https://kms.eu-central-1.amazonaws.com");
}

TEST_F(EnvironmentTest, AwsEndpointUrlVariables) {
  ::setenv("AWS_REGION", "eu-west-1", 1);
  ::setenv("AWS_ENDPOINT_URL", "http://localhost:4566", 1);
  auto ep = ParseEndpoint("aws");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->kind, Endpoint::kTcp);
  EXPECT_EQ(ep->ToString(), "http://localhost:4566");
  EXPECT_TRUE(ep->aws);
  EXPECT_TRUE(IsAwsEndpoint(*ep));
  EXPECT_EQ(ep->region, "eu-west-1");

  // The KMS-specific variable wins over the general one.
  ::setenv("AWS_ENDPOINT_URL_KMS", "https://kms.internal:8443/", 1);
  ep = ParseEndpoint("aws");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->ToString(), "https://kms.internal:8443");
  EXPECT_TRUE(IsAwsEndpoint(*ep));
  EXPECT_EQ(ep->region, "eu-west-1");

  // A regional AWS host names its own region, whatever AWS_REGION says.
  ::setenv("AWS_ENDPOINT_URL_KMS", "https://kms-fips.us-west-2.amazonaws.com", 1);
  EXPECT_EQ(ParseEndpoint("aws")->region, "us-west-2");

  ::setenv("AWS_IGNORE_CONFIGURED_ENDPOINT_URLS", "true", 1);
  EXPECT_EQ(ParseEndpoint("aws")->ToString(), "https://kms.eu-west-1.amazonaws.com");
}

TEST_F(EnvironmentTest, AwsVariablesMatterOnlyForTheAwsForm) {
  ::setenv("AWS_ENDPOINT_URL_KMS", "https://kms.internal", 1);
  ::setenv("AWS_REGION", "eu-west-1", 1);
  auto ep = ResolveEndpoint("");
  ASSERT_TRUE(ep.ok()) << ep.status().ToString();
  EXPECT_EQ(ep->kind, Endpoint::kUnix);
  EXPECT_EQ(ep->socket_path, DefaultSocketPath());
  EXPECT_EQ(ParseEndpoint("aws:ap-south-1")->ToString(),
            "https://kms.ap-south-1.amazonaws.com");
  ::setenv("ENVELOPE_KMS_ENDPOINT", "aws", 1);
  EXPECT_EQ(ResolveEndpoint("")->ToString(), "https://kms.internal");
}

TEST_F(EnvironmentTest, AwsNamesTheBadVariable) {
  for (const char* name : {"AWS_ENDPOINT_URL_KMS", "AWS_ENDPOINT_URL"}) {
    for (const char* url : {"http://10.0.0.1:4566", "kms.example.com", "unix:/x.sock",
                            "https://kms.example.com/prefix"}) {
      ::setenv(name, url, 1);
      auto ep = ParseEndpoint("aws");
      ASSERT_FALSE(ep.ok()) << name << "=" << url;
      EXPECT_EQ(ep.status().code(), StatusCode::kInvalidArgument);
      EXPECT_EQ(ep.status().message().rfind(std::string("$") + name + ": ", 0), 0u)
          << ep.status().message();
      ::unsetenv(name);
    }
  }
  ::setenv("AWS_REGION", "not a region", 1);
  auto ep = ParseEndpoint("aws");
  ASSERT_FALSE(ep.ok());
  EXPECT_NE(ep.status().message().find("$AWS_REGION"), std::string::npos)
      << ep.status().message();
}

TEST_F(EnvironmentTest, NoCredentials) {
  auto creds = CredentialsFromEnvironment();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_FALSE(creds->has_value());
}

TEST_F(EnvironmentTest, CredentialsFromEnvironment) {
  ::setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
           1);
  auto creds = CredentialsFromEnvironment();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  ASSERT_TRUE(creds->has_value());
  const Credentials& c = **creds;
  EXPECT_EQ(c.access_key_id, "AKIDEXAMPLE");
  EXPECT_TRUE(c.secret_access_key.in_secure_heap());
  EXPECT_EQ(std::string(c.secret_access_key.view().begin(),
                        c.secret_access_key.view().end()),
            "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
  EXPECT_EQ(c.session_token, "");

  ::setenv("AWS_SESSION_TOKEN", "token", 1);
  creds = CredentialsFromEnvironment();
  ASSERT_TRUE(creds.ok());
  EXPECT_EQ((*creds)->session_token, "token");
}

TEST_F(EnvironmentTest, HalfCredentialsAreAnError) {
  ::setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE", 1);
  auto creds = CredentialsFromEnvironment();
  ASSERT_FALSE(creds.ok());
  EXPECT_NE(creds.status().message().find("AWS_SECRET_ACCESS_KEY"),
            std::string::npos);

  ::unsetenv("AWS_ACCESS_KEY_ID");
  ::setenv("AWS_SECRET_ACCESS_KEY", "secret", 1);
  creds = CredentialsFromEnvironment();
  ASSERT_FALSE(creds.ok());
  EXPECT_NE(creds.status().message().find("but AWS_ACCESS_KEY_ID is not"),
            std::string::npos)
      << creds.status().message();
}

TEST_F(EnvironmentTest, RegionPrecedence) {
  EXPECT_EQ(RegionFromEnvironment(), "us-east-1");
  ::setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
  EXPECT_EQ(RegionFromEnvironment(), "eu-west-1");
  ::setenv("AWS_REGION", "ap-south-1", 1);
  EXPECT_EQ(RegionFromEnvironment(), "ap-south-1");
  ::setenv("AWS_REGION", "", 1);
  EXPECT_EQ(RegionFromEnvironment(), "eu-west-1");
}


// CheckSocketDirectory: who may own the directory of a socket a client
// trusts. Tests run as root, so they can hand a directory to another uid.
class SocketDirectoryTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/endpoint-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    socket_ = dir_ + "/kms.sock";
  }
  void TearDown() override { ::rmdir(dir_.c_str()); }

  std::string dir_;
  std::string socket_;
};

TEST_F(SocketDirectoryTest, AcceptsOwnPrivateOrSharedReadOnlyDirectory) {
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  EXPECT_TRUE(CheckSocketDirectory(socket_, ::geteuid()).ok());
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  EXPECT_TRUE(CheckSocketDirectory(socket_, ::geteuid()).ok());
}

TEST_F(SocketDirectoryTest, AcceptsRootOwnedDirectoryForAnyUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to own the directory";
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  EXPECT_TRUE(CheckSocketDirectory(socket_, 4242).ok());
}

TEST_F(SocketDirectoryTest, RefusesDirectoryOfAnotherUser) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown";
  ASSERT_EQ(::chown(dir_.c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  Status s = CheckSocketDirectory(socket_, 4242);
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(s.message().find("belongs to uid 65534"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find(socket_), std::string::npos) << s.ToString();
  // The owner itself may use it.
  EXPECT_TRUE(CheckSocketDirectory(socket_, 65534).ok());
}

TEST_F(SocketDirectoryTest, RefusesGroupOrWorldWritableDirectory) {
  for (mode_t mode : {0770, 0707, 01777}) {
    ASSERT_EQ(::chmod(dir_.c_str(), mode), 0);
    Status s = CheckSocketDirectory(socket_, ::geteuid());
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << std::oct << mode;
    EXPECT_NE(s.message().find("writable by group or others"), std::string::npos)
        << s.ToString();
  }
}

TEST_F(SocketDirectoryTest, RefusesSymlinkedDirectory) {
  const std::string link = dir_ + "-link";
  ASSERT_EQ(::symlink(dir_.c_str(), link.c_str()), 0);
  Status s = CheckSocketDirectory(link + "/kms.sock", ::geteuid());
  ::unlink(link.c_str());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
}

TEST_F(SocketDirectoryTest, RefusesDirectoryUnderAReplaceableDirectory) {
  // The socket's own directory is fine, but one above it is writable by
  // others: they could rename it away and put their own in its place.
  const std::string sub = dir_ + "/sub";
  ASSERT_EQ(::mkdir(sub.c_str(), 0700), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0777), 0);
  Status s = CheckSocketDirectory(sub + "/kms.sock", ::geteuid());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_NE(s.message().find(dir_ + " is writable by group or others and not sticky"),
            std::string::npos)
      << s.ToString();
  // Sticky, like /tmp above /tmp/envelope-keyd-UID: accepted.
  ASSERT_EQ(::chmod(dir_.c_str(), 01777), 0);
  EXPECT_TRUE(CheckSocketDirectory(sub + "/kms.sock", ::geteuid()).ok());
  ::rmdir(sub.c_str());
}

TEST_F(SocketDirectoryTest, DefaultSocketDirectoriesPass) {
  // The shapes of DefaultSocketPathFor: a root-owned 0755 directory under
  // root's, and a private directory of the user under sticky /tmp.
  ASSERT_EQ(::chmod(dir_.c_str(), 0755), 0);
  EXPECT_TRUE(CheckSocketDirectory(socket_, ::geteuid()).ok());
  if (::geteuid() != 0) return;
  ASSERT_EQ(::chown(dir_.c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chmod(dir_.c_str(), 0700), 0);
  EXPECT_TRUE(CheckSocketDirectory(socket_, 65534).ok());
}

TEST_F(SocketDirectoryTest, MissingDirectoryIsUnavailable) {
  Status s = CheckSocketDirectory(dir_ + "/missing/kms.sock", ::geteuid());
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
}

}  // namespace
}  // namespace envelope::kms
