// AWS credentials and region as the AWS CLI finds them: the environment,
// the shared credentials file, the config file, with a temporary HOME and
// files (the developer's own ~/.aws is never read), and the file syntax.
#include "kms/aws_config.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "tests/unit/scoped_environment.h"

namespace envelope::kms {
namespace {

std::string SecretText(const Credentials& c) {
  return std::string(c.secret_access_key.view().begin(), c.secret_access_key.view().end());
}

// Every variable the functions read is unset, and restored afterwards; HOME
// is a fresh temporary directory.
class AwsConfigTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_FALSE(home_.empty()); }

  envelope::testing::ScopedEnvironment env_{
      "HOME",          "AWS_ACCESS_KEY_ID",   "AWS_SECRET_ACCESS_KEY",
      "AWS_SESSION_TOKEN", "AWS_PROFILE",     "AWS_SHARED_CREDENTIALS_FILE",
      "AWS_CONFIG_FILE", "AWS_REGION",        "AWS_DEFAULT_REGION"};
  const std::string home_ = env_.home();

  // Writes HOME/`relative`, making its directory.
  std::string Write(const std::string& relative, const std::string& text) {
    const std::filesystem::path path = std::filesystem::path(home_) / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
    return path.string();
  }

  StatusOr<Credentials> MustResolve() {
    auto creds = ResolveAwsCredentials();
    if (!creds.ok()) return creds.status();
    if (!creds->has_value()) return Status::NotFound("no credentials");
    return std::move(**creds);
  }
};

TEST_F(AwsConfigTest, NoCredentialsAnywhere) {
  auto creds = ResolveAwsCredentials();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_FALSE(creds->has_value());
  // Files without the default profile are no different.
  Write(".aws/credentials", "[other]\naws_access_key_id = AKIDOTHER\n"
                            "aws_secret_access_key = other\n");
  Write(".aws/config", "[profile other]\nregion = eu-west-1\n");
  creds = ResolveAwsCredentials();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_FALSE(creds->has_value());
}

TEST_F(AwsConfigTest, DefaultProfileOfTheCredentialsFile) {
  Write(".aws/credentials",
        "# made by aws configure\n"
        "[default]\n"
        "aws_access_key_id = AKIDEXAMPLE\n"
        "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY\n"
        "aws_session_token = IQoJb3JpZ2luX2VjEXAMPLE\n");
  auto creds = MustResolve();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->access_key_id, "AKIDEXAMPLE");
  EXPECT_EQ(SecretText(*creds), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
  EXPECT_TRUE(creds->secret_access_key.in_secure_heap());
  EXPECT_EQ(creds->session_token, "IQoJb3JpZ2luX2VjEXAMPLE");
}

TEST_F(AwsConfigTest, EnvironmentWinsOverFiles) {
  Write(".aws/credentials",
        "[default]\naws_access_key_id = AKIDFILE\naws_secret_access_key = file\n");
  ::setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "env", 1);
  auto creds = MustResolve();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->access_key_id, "AKIDENV");
  EXPECT_EQ(SecretText(*creds), "env");
  // Half an environment pair is an error, not a fall-through to the file.
  ::unsetenv("AWS_SECRET_ACCESS_KEY");
  EXPECT_EQ(ResolveAwsCredentials().status().code(), StatusCode::kInvalidArgument);
}

TEST_F(AwsConfigTest, NamedProfileFromTheCredentialsFile) {
  Write(".aws/credentials",
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = d\n"
        "[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = dev-secret\n");
  ::setenv("AWS_PROFILE", "dev", 1);
  auto creds = MustResolve();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->access_key_id, "AKIDDEV");
  EXPECT_EQ(SecretText(*creds), "dev-secret");
  EXPECT_EQ(creds->session_token, "");
}

TEST_F(AwsConfigTest, ProfileFromTheConfigFile) {
  Write(".aws/config",
        "[default]\naws_access_key_id = AKIDCONFIGDEFAULT\naws_secret_access_key = cd\n"
        "[profile dev]\naws_access_key_id = AKIDCONFIGDEV\naws_secret_access_key = cdev\n"
        // In the config file a bare [NAME] is not the profile NAME.
        "[ops]\naws_access_key_id = AKIDWRONG\naws_secret_access_key = wrong\n");
  auto creds = MustResolve();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->access_key_id, "AKIDCONFIGDEFAULT");

  ::setenv("AWS_PROFILE", "dev", 1);
  creds = MustResolve();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->access_key_id, "AKIDCONFIGDEV");
  EXPECT_EQ(SecretText(*creds), "cdev");

  ::setenv("AWS_PROFILE", "ops", 1);
  EXPECT_EQ(ResolveAwsCredentials().status().code(), StatusCode::kNotFound);
}

TEST_F(AwsConfigTest, CredentialsFileWinsOverConfigFile) {
  Write(".aws/credentials",
        "[dev]\naws_access_key_id = AKIDCREDS\naws_secret_access_key = creds\n");
  Write(".aws/config",
        "[profile dev]\nregion = eu-west-1\n"
        "aws_access_key_id = AKIDCONFIG\naws_secret_access_key = config\n");
  ::setenv("AWS_PROFILE", "dev", 1);
  auto creds = MustResolve();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->access_key_id, "AKIDCREDS");
  EXPECT_EQ(SecretText(*creds), "creds");
}

TEST_F(AwsConfigTest, ProfileWithoutKeysInTheCredentialsFileFallsThrough) {
  Write(".aws/credentials", "[dev]\n# keys live in the config file\n");
  Write(".aws/config",
        "[profile dev]\naws_access_key_id = AKIDCONFIG\naws_secret_access_key = config\n");
  ::setenv("AWS_PROFILE", "dev", 1);
  auto creds = MustResolve();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->access_key_id, "AKIDCONFIG");
}

TEST_F(AwsConfigTest, MissingNamedProfileIsAnErrorNamingIt) {
  Write(".aws/credentials",
        "[default]\naws_access_key_id = AKIDDEFAULT\naws_secret_access_key = d\n");
  ::setenv("AWS_PROFILE", "prod-eu", 1);
  auto creds = ResolveAwsCredentials();
  ASSERT_FALSE(creds.ok());
  EXPECT_EQ(creds.status().code(), StatusCode::kNotFound);
  EXPECT_NE(creds.status().message().find("'prod-eu'"), std::string::npos)
      << creds.status().message();
  EXPECT_NE(creds.status().message().find("AWS_PROFILE"), std::string::npos);
  // The environment's keys need no profile.
  ::setenv("AWS_ACCESS_KEY_ID", "AKIDENV", 1);
  ::setenv("AWS_SECRET_ACCESS_KEY", "env", 1);
  EXPECT_TRUE(ResolveAwsCredentials().ok());
}

TEST_F(AwsConfigTest, HalfAKeyPairInAProfileIsAnError) {
  Write(".aws/credentials", "[default]\naws_access_key_id = AKIDONLY\n");
  auto creds = ResolveAwsCredentials();
  ASSERT_FALSE(creds.ok());
  EXPECT_EQ(creds.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(creds.status().message().find("but no aws_secret_access_key"), std::string::npos)
      << creds.status().message();

  Write(".aws/credentials", "[default]\naws_secret_access_key = lonely-secret\n");
  creds = ResolveAwsCredentials();
  ASSERT_FALSE(creds.ok());
  EXPECT_NE(creds.status().message().find("but no aws_access_key_id"), std::string::npos);
  EXPECT_EQ(creds.status().message().find("lonely-secret"), std::string::npos);
}

TEST_F(AwsConfigTest, FileLocationsFromTheEnvironment) {
  const std::string creds_path = Write("elsewhere/creds",
                                       "[default]\naws_access_key_id = AKIDELSEWHERE\n"
                                       "aws_secret_access_key = e\n");
  Write(".aws/credentials",
        "[default]\naws_access_key_id = AKIDHOME\naws_secret_access_key = h\n");
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", creds_path.c_str(), 1);
  auto creds = MustResolve();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->access_key_id, "AKIDELSEWHERE");

  // "~/" is HOME, as for the AWS CLI.
  Write("cfg/config", "[profile x]\naws_access_key_id = AKIDTILDE\n"
                      "aws_secret_access_key = t\nregion = sa-east-1\n");
  ::setenv("AWS_SHARED_CREDENTIALS_FILE", "~/missing", 1);
  ::setenv("AWS_CONFIG_FILE", "~/cfg/config", 1);
  ::setenv("AWS_PROFILE", "x", 1);
  creds = MustResolve();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->access_key_id, "AKIDTILDE");
  EXPECT_EQ(*ResolveAwsRegion(), "sa-east-1");
}

TEST_F(AwsConfigTest, NestedSettingsAndCommentsAreSkipped) {
  Write(".aws/config",
        "; the AWS CLI's own settings\n"
        "[default]\n"
        "s3 =\n"
        "  max_concurrent_requests = 20\n"
        "  aws_access_key_id = AKIDNESTED\n"
        "\n"
        "  multipart_threshold = 64MB\n"
        "Region = eu-north-1\n"
        "AWS_ACCESS_KEY_ID: AKIDTOP\n"
        "    # an indented comment\n"
        "aws_secret_access_key=top-secret\r\n"
        "cli_pager=\n");
  auto creds = MustResolve();
  ASSERT_TRUE(creds.ok()) << creds.status().ToString();
  EXPECT_EQ(creds->access_key_id, "AKIDTOP");
  EXPECT_EQ(SecretText(*creds), "top-secret");
  EXPECT_EQ(*ResolveAwsRegion(), "eu-north-1");
}

TEST_F(AwsConfigTest, OtherCredentialSourcesAreRefusedNotIgnored) {
  // The AWS CLI would assume the role before looking at static keys: using
  // the keys would silently act as another principal.
  Write(".aws/credentials",
        "[dev]\naws_access_key_id = AKIDDEV\naws_secret_access_key = dev\n");
  Write(".aws/config", "[profile dev]\nrole_arn = arn:aws:iam::123456789012:role/x\n"
                       "source_profile = default\n");
  ::setenv("AWS_PROFILE", "dev", 1);
  auto creds = ResolveAwsCredentials();
  ASSERT_FALSE(creds.ok());
  EXPECT_EQ(creds.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(creds.status().message().find("role_arn"), std::string::npos)
      << creds.status().message();

  // credential_process comes after the credentials file's keys...
  Write(".aws/config", "[profile dev]\ncredential_process = /bin/false\n");
  auto found = MustResolve();
  ASSERT_TRUE(found.ok()) << found.status().ToString();
  EXPECT_EQ(found->access_key_id, "AKIDDEV");
  // ...and before the config file's.
  std::filesystem::remove(home_ + "/.aws/credentials");
  Write(".aws/config", "[profile dev]\ncredential_process = /bin/false\n"
                       "aws_access_key_id = AKIDCONFIG\naws_secret_access_key = c\n");
  creds = ResolveAwsCredentials();
  ASSERT_FALSE(creds.ok());
  EXPECT_EQ(creds.status().code(), StatusCode::kUnimplemented);
  EXPECT_NE(creds.status().message().find("credential_process"), std::string::npos);
}

TEST_F(AwsConfigTest, UnreadableFilesAreErrors) {
  // A directory, and a FIFO (which must not block the reader).
  std::filesystem::create_directories(home_ + "/.aws/credentials");
  auto creds = ResolveAwsCredentials();
  ASSERT_FALSE(creds.ok());
  EXPECT_NE(creds.status().message().find("not a regular file"), std::string::npos)
      << creds.status().message();
  std::filesystem::remove(home_ + "/.aws/credentials");
  ASSERT_EQ(::mkfifo((home_ + "/.aws/credentials").c_str(), 0600), 0);
  creds = ResolveAwsCredentials();
  ASSERT_FALSE(creds.ok());
  EXPECT_NE(creds.status().message().find("not a regular file"), std::string::npos);
}

TEST_F(AwsConfigTest, MalformedFileNamesTheLineNotItsText) {
  const std::string path =
      Write(".aws/credentials", "[default]\naws_access_key_id = AKID\nsecret-without-equals\n");
  auto creds = ResolveAwsCredentials();
  ASSERT_FALSE(creds.ok());
  EXPECT_EQ(creds.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(creds.status().message().rfind(path + " line 3: ", 0), 0u)
      << creds.status().message();
  EXPECT_EQ(creds.status().message().find("secret-without-equals"), std::string::npos);
}

TEST_F(AwsConfigTest, RegionPrecedence) {
  EXPECT_EQ(*ResolveAwsRegion(), "us-east-1");
  Write(".aws/config", "[default]\nregion = eu-west-3\n[profile dev]\nregion = ap-east-1\n");
  EXPECT_EQ(*ResolveAwsRegion(), "eu-west-3");
  ::setenv("AWS_PROFILE", "dev", 1);
  EXPECT_EQ(*ResolveAwsRegion(), "ap-east-1");
  // A profile without a region, or none at all: the default.
  ::setenv("AWS_PROFILE", "nowhere", 1);
  EXPECT_EQ(*ResolveAwsRegion(), "us-east-1");
  ::setenv("AWS_DEFAULT_REGION", "eu-west-1", 1);
  EXPECT_EQ(*ResolveAwsRegion(), "eu-west-1");
  ::setenv("AWS_REGION", "ap-south-1", 1);
  EXPECT_EQ(*ResolveAwsRegion(), "ap-south-1");
  ::setenv("AWS_REGION", "", 1);
  EXPECT_EQ(*ResolveAwsRegion(), "eu-west-1");
}

TEST_F(AwsConfigTest, RegionMustBeARegionName) {
  ::setenv("AWS_REGION", "eu-west-1/../x", 1);
  auto region = ResolveAwsRegion();
  ASSERT_FALSE(region.ok());
  EXPECT_EQ(region.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(region.status().message().find("$AWS_REGION"), std::string::npos);
  ::unsetenv("AWS_REGION");
  Write(".aws/config", "[default]\nregion = Evil.Example\n");
  region = ResolveAwsRegion();
  ASSERT_FALSE(region.ok());
  EXPECT_NE(region.status().message().find("'default'"), std::string::npos)
      << region.status().message();
}

TEST_F(AwsConfigTest, SigningRegionPrefersTheEndpoints) {
  ::setenv("AWS_REGION", "eu-west-1", 1);
  EXPECT_EQ(*AwsSigningRegion(*ParseEndpoint("aws:ap-south-1")), "ap-south-1");
  EXPECT_EQ(*AwsSigningRegion(*ParseEndpoint("https://kms.us-east-2.amazonaws.com")),
            "us-east-2");
  EXPECT_EQ(*AwsSigningRegion(*ParseEndpoint("https://kms.example.com")), "eu-west-1");
  EXPECT_EQ(*AwsSigningRegion(*ParseEndpoint("http://127.0.0.1:7878")), "eu-west-1");
}

TEST(IsValidAwsRegionTest, Names) {
  for (const char* good : {"us-east-1", "eu-west-1", "cn-north-1", "us-gov-west-1",
                           "ap-southeast-4", "local"}) {
    EXPECT_TRUE(IsValidAwsRegion(good)) << good;
  }
  for (const std::string& bad : std::vector<std::string>{"", "US-EAST-1", "1-east", "-east", "east-", "us_east_1",
                                "us.east", "us east", "us/east", std::string(64, 'a')}) {
    EXPECT_FALSE(IsValidAwsRegion(bad)) << bad;
  }
}

// --- The file syntax. ---

TEST(ParseAwsIniFileTest, SectionsKeysAndValues) {
  const std::string text =
      "[default]\n"
      "  Key_One =  value with spaces  \n"
      "key2:v2\n"
      "empty =\n"
      "url = https://a/b?c=d:e\n"
      "[ profile  dev ]\n"
      "region = eu-west-1\n"
      "[header] trailing text is ignored, as by configparser\n"
      "k = v\n";
  auto ini = ParseAwsIniFile(text, "f");
  ASSERT_TRUE(ini.ok()) << ini.status().ToString();
  ASSERT_EQ(ini->sections.size(), 3u);
  const auto& def = ini->sections.at("default");
  EXPECT_EQ(def.at("key_one"), "value with spaces");
  EXPECT_EQ(def.at("key2"), "v2");
  EXPECT_EQ(def.at("empty"), "");
  EXPECT_EQ(def.at("url"), "https://a/b?c=d:e");
  EXPECT_EQ(ini->sections.at("profile  dev").at("region"), "eu-west-1");
  EXPECT_EQ(ini->sections.at("header").at("k"), "v");
}

TEST(ParseAwsIniFileTest, ContinuationLines) {
  const std::string text =
      "[default]\n"
      "s3 =\n"
      "    max_concurrent_requests = 20\n"
      "\n"
      "    max_queue_size = 1000\n"
      "region = eu-west-1\n"
      "[next]\n"
      "    indented_first = 1\n"
      "second = 2\n";
  auto ini = ParseAwsIniFile(text, "f");
  ASSERT_TRUE(ini.ok()) << ini.status().ToString();
  const auto& def = ini->sections.at("default");
  EXPECT_EQ(def.size(), 2u);
  EXPECT_EQ(def.count("max_concurrent_requests"), 0u);
  EXPECT_EQ(def.at("region"), "eu-west-1");
  // The first key of a section may be indented; a line indented no deeper
  // than it is a key of its own.
  const auto& next = ini->sections.at("next");
  EXPECT_EQ(next.at("indented_first"), "1");
  EXPECT_EQ(next.at("second"), "2");
}

TEST(ParseAwsIniFileTest, Errors) {
  struct Case {
    const char* text;
    const char* message;
  };
  for (const Case& c : {
           Case{"key = before any section\n", "f line 1: a setting before the first [section]"},
           Case{"[a]\nb = 1\n[a]\n", "f line 3: section [a] appears twice"},
           Case{"[a]\nb = 1\nB = 2\n", "f line 3: 'b' appears twice in its section"},
           Case{"[a]\njust words\n", "f line 2: expected 'key = value'"},
           Case{"[a]\n= value\n", "f line 2: a setting without a name"},
           Case{"[]\n", "f line 1: malformed [section] header"},
           Case{"[a\n", "f line 1: malformed [section] header"},
       }) {
    auto ini = ParseAwsIniFile(c.text, "f");
    ASSERT_FALSE(ini.ok()) << c.text;
    EXPECT_EQ(ini.status().code(), StatusCode::kInvalidArgument) << c.text;
    EXPECT_EQ(ini.status().message().rfind(c.message, 0), 0u)
        << c.text << " -> " << ini.status().message();
  }
}

}  // namespace
}  // namespace envelope::kms
