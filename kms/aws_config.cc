#include "kms/aws_config.h"

#include <fcntl.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <vector>

#include "core/base/ascii.h"
#include "core/base/coding.h"
#include "core/base/fd_io.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::kms {

namespace {

constexpr char kDefaultProfile[] = "default";
constexpr char kAccessKeyIdKey[] = "aws_access_key_id";
constexpr char kSecretAccessKeyKey[] = "aws_secret_access_key";
constexpr char kSessionTokenKey[] = "aws_session_token";
constexpr char kRegionKey[] = "region";
constexpr std::string_view kProfilePrefix = "profile";
// getpwuid_r's buffer when sysconf gives no size.
constexpr size_t kPasswdBufferInBytes = 16384;

// Keys of a profile whose credentials come from elsewhere. The AWS CLI
// tries these before the static keys of the credentials file (botocore's
// chain: assume-role, web identity and SSO come first), so a profile that
// has one of them must not be read as its static keys.
constexpr std::array<std::string_view, 5> kCredentialSourcesBeforeFiles = {
    "role_arn", "web_identity_token_file", "sso_session", "sso_start_url",
    "sso_account_id"};
// credential_process comes after the credentials file and before the
// config file.
constexpr std::string_view kCredentialProcessKey = "credential_process";

constexpr char kBlanks[] = " \t\r\f\v";

std::string_view Trim(std::string_view s) {
  const size_t begin = s.find_first_not_of(kBlanks);
  if (begin == std::string_view::npos) return {};
  const size_t end = s.find_last_not_of(kBlanks);
  return s.substr(begin, end - begin + 1);
}

Status SyntaxError(std::string_view file_name, size_t line, std::string_view why) {
  return Status::InvalidArgument(std::string(file_name) + " line " +
                                 std::to_string(line) + ": " + std::string(why));
}

std::optional<std::string> HomeDirectory() {
  if (const char* home = GetNonEmptyEnv("HOME")) return std::string(home);
  const long suggested = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buffer(suggested > 0 ? static_cast<size_t>(suggested)
                                         : kPasswdBufferInBytes);
  passwd pw{};
  passwd* found = nullptr;
  if (::getpwuid_r(::geteuid(), &pw, buffer.data(), buffer.size(), &found) != 0 ||
      found == nullptr || pw.pw_dir == nullptr || pw.pw_dir[0] == '\0') {
    return std::nullopt;
  }
  return std::string(pw.pw_dir);
}

// Where one of the two files is: $`variable` ("~" and "~/..." expanded, as
// the AWS CLI does), else ~/.aws/`name`. std::nullopt when that needs a home
// directory and there is none.
std::optional<std::string> AwsFilePath(const char* variable, const char* name) {
  std::string path = std::string("~/.aws/") + name;
  if (const char* value = GetNonEmptyEnv(variable)) path = value;
  if (path == "~" || path.rfind("~/", 0) == 0) {
    std::optional<std::string> home = HomeDirectory();
    if (!home) return std::nullopt;
    path = *home + path.substr(1);
  }
  return path;
}

// The text of a file that may hold secrets, wiped when it goes: the whole
// capacity, so that bytes past a shrunken size are wiped too.
class WipedText {
 public:
  WipedText() = default;
  WipedText(const WipedText&) = delete;
  WipedText& operator=(const WipedText&) = delete;
  ~WipedText() {
    text_.resize(text_.capacity());
    crypto::Cleanse({reinterpret_cast<uint8_t*>(text_.data()), text_.size()});
  }
  std::string& text() { return text_; }
  std::string_view view() const { return text_; }

 private:
  std::string text_;
};

// One AWS config or credentials file, read and parsed; a missing file is
// an empty one.
class AwsFile {
 public:
  // `path`: std::nullopt if there is no home directory to find it in;
  // `shown` names the file in messages then.
  Status Load(const std::optional<std::string>& path, std::string shown) {
    name_ = path.value_or(std::move(shown));
    if (!path) return Status::Ok();
    UniqueFd fd(::open(path->c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
    if (!fd.valid()) {
      if (errno == ENOENT || errno == ENOTDIR) return Status::Ok();
      return Status::FromErrno("opening " + name_);
    }
    struct stat st {};
    if (::fstat(fd.get(), &st) != 0) return Status::FromErrno("fstat " + name_);
    // Not a FIFO or a device: reading one could block or never end.
    if (!S_ISREG(st.st_mode)) {
      return Status::InvalidArgument(name_ + " is not a regular file");
    }
    const size_t size = static_cast<size_t>(st.st_size);
    if (size > kMaxAwsConfigFileInBytes) {
      return Status::InvalidArgument(name_ + " is larger than " +
                                     std::to_string(kMaxAwsConfigFileInBytes) +
                                     " bytes");
    }
    // Allocated once, one byte more than fstat said, so that a file that
    // grew meanwhile is noticed and the buffer never reallocates (which
    // would leave an unwiped copy behind).
    std::string& text = text_.text();
    text.resize(size + 1);
    ENVELOPE_ASSIGN_OR_RETURN(
        size_t n, PreadFull(fd.get(),
                            MutableByteView(reinterpret_cast<uint8_t*>(text.data()),
                                            text.size()),
                            0));
    if (n > size) {
      return Status::FailedPrecondition(name_ + " changed while it was read");
    }
    text.resize(n);
    ENVELOPE_ASSIGN_OR_RETURN(ini_, ParseAwsIniFile(text_.view(), name_));
    return Status::Ok();
  }

  const AwsIniFile::Section* Find(std::string_view name) const {
    auto it = ini_.sections.find(name);
    return it == ini_.sections.end() ? nullptr : &it->second;
  }

  // The config file's section for `profile`: [profile NAME] (any blanks
  // between the words, as botocore splits them), and for "default" also
  // [default].
  const AwsIniFile::Section* FindConfigProfile(std::string_view profile) const {
    for (const auto& [name, section] : ini_.sections) {
      std::string_view header = name;
      if (header.substr(0, kProfilePrefix.size()) != kProfilePrefix) continue;
      std::string_view rest = header.substr(kProfilePrefix.size());
      if (rest.empty() || (rest.front() != ' ' && rest.front() != '\t')) continue;
      if (Trim(rest) == profile) return &section;
    }
    return profile == kDefaultProfile ? Find(kDefaultProfile) : nullptr;
  }

  const std::string& name() const { return name_; }

 private:
  std::string name_;
  WipedText text_;  // declared before ini_, which points into it
  AwsIniFile ini_;
};

std::string_view Get(const AwsIniFile::Section& section, std::string_view key) {
  auto it = section.find(key);
  return it == section.end() ? std::string_view() : it->second;
}

struct Profile {
  std::string name;
  bool named_by_environment = false;
};

Profile CurrentProfile() {
  if (const char* name = GetNonEmptyEnv("AWS_PROFILE")) return {name, true};
  return {kDefaultProfile, false};
}

std::string Describe(const Profile& profile, const AwsFile& file) {
  return "the AWS profile '" + profile.name + "' in " + file.name();
}

// The static keys of one profile section: std::nullopt if it has neither.
StatusOr<std::optional<Credentials>> StaticCredentials(
    const AwsIniFile::Section& section, const Profile& profile, const AwsFile& file) {
  const std::string_view id = Get(section, kAccessKeyIdKey);
  const std::string_view secret = Get(section, kSecretAccessKeyKey);
  if (id.empty() && secret.empty()) return std::optional<Credentials>();
  if (id.empty() || secret.empty()) {
    return Status::InvalidArgument(
        Describe(profile, file) + " has " +
        (id.empty() ? kSecretAccessKeyKey : kAccessKeyIdKey) + " but no " +
        (id.empty() ? kAccessKeyIdKey : kSecretAccessKeyKey));
  }
  Credentials creds;
  creds.access_key_id = std::string(id);
  ENVELOPE_ASSIGN_OR_RETURN(creds.secret_access_key,
                            crypto::SecretBytes::CopyOf(AsBytes(secret)));
  creds.session_token = std::string(Get(section, kSessionTokenKey));
  return std::optional<Credentials>(std::move(creds));
}

Status Unsupported(const Profile& profile, const AwsFile& file, std::string_view key) {
  return Status::Unimplemented(
      Describe(profile, file) + " gets its credentials through " + std::string(key) +
      ", which envelopefs does not support; give access keys instead (e.g. "
      "export the variables that `aws configure export-credentials --format env` "
      "prints)");
}

}  // namespace

const char* GetNonEmptyEnv(const char* name) {
  const char* v = std::getenv(name);
  return (v != nullptr && v[0] != '\0') ? v : nullptr;
}

bool IsValidAwsRegion(std::string_view region) {
  constexpr size_t kMaxRegionInChars = 63;
  if (region.empty() || region.size() > kMaxRegionInChars) return false;
  if (region.front() < 'a' || region.front() > 'z' || region.back() == '-') {
    return false;
  }
  return std::all_of(region.begin(), region.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || ascii::IsDigit(c) || c == '-';
  });
}

StatusOr<AwsIniFile> ParseAwsIniFile(std::string_view text, std::string_view file_name) {
  AwsIniFile out;
  AwsIniFile::Section* section = nullptr;
  // The indentation of the last key line of this section (npos: none yet):
  // a line indented deeper continues it (configparser's rule).
  size_t key_indent = std::string_view::npos;
  size_t number = 0;
  while (!text.empty()) {
    const size_t newline = text.find('\n');
    const std::string_view line = text.substr(0, newline);
    text.remove_prefix(newline == std::string_view::npos ? text.size() : newline + 1);
    ++number;
    const size_t indent = line.find_first_not_of(kBlanks);
    if (indent == std::string_view::npos) continue;
    const std::string_view content = Trim(line);
    if (content.front() == '#' || content.front() == ';') continue;
    if (key_indent != std::string_view::npos && indent > key_indent) continue;
    if (content.front() == '[') {
      // configparser's "\[(?P<header>.+)\]": up to the last ']'.
      const size_t close = content.rfind(']');
      const std::string_view name = close == std::string_view::npos
                                        ? std::string_view()
                                        : Trim(content.substr(1, close - 1));
      if (name.empty()) return SyntaxError(file_name, number, "malformed [section] header");
      auto [it, added] = out.sections.try_emplace(std::string(name));
      if (!added) {
        return SyntaxError(file_name, number,
                           "section [" + std::string(name) + "] appears twice");
      }
      section = &it->second;
      key_indent = std::string_view::npos;
      continue;
    }
    const size_t delimiter = content.find_first_of("=:");
    if (delimiter == std::string_view::npos) {
      return SyntaxError(file_name, number,
                         "expected 'key = value', a [section] or a comment");
    }
    const std::string key = ascii::ToLower(Trim(content.substr(0, delimiter)));
    if (key.empty()) return SyntaxError(file_name, number, "a setting without a name");
    if (section == nullptr) {
      return SyntaxError(file_name, number, "a setting before the first [section]");
    }
    if (!section->try_emplace(key, Trim(content.substr(delimiter + 1))).second) {
      return SyntaxError(file_name, number, "'" + key + "' appears twice in its section");
    }
    key_indent = indent;
  }
  return out;
}

StatusOr<std::optional<Credentials>> ResolveAwsCredentials() {
  ENVELOPE_ASSIGN_OR_RETURN(std::optional<Credentials> from_environment,
                            CredentialsFromEnvironment());
  if (from_environment) return from_environment;

  const Profile profile = CurrentProfile();
  AwsFile credentials_file, config_file;
  ENVELOPE_RETURN_IF_ERROR(credentials_file.Load(
      AwsFilePath("AWS_SHARED_CREDENTIALS_FILE", "credentials"), "~/.aws/credentials"));
  ENVELOPE_RETURN_IF_ERROR(
      config_file.Load(AwsFilePath("AWS_CONFIG_FILE", "config"), "~/.aws/config"));
  const AwsIniFile::Section* in_credentials = credentials_file.Find(profile.name);
  const AwsIniFile::Section* in_config = config_file.FindConfigProfile(profile.name);
  const std::array<std::pair<const AwsIniFile::Section*, const AwsFile*>, 2> sources = {
      std::pair{in_credentials, &credentials_file}, std::pair{in_config, &config_file}};

  for (const auto& [section, file] : sources) {
    if (section == nullptr) continue;
    for (std::string_view key : kCredentialSourcesBeforeFiles) {
      if (section->count(key) != 0) return Unsupported(profile, *file, key);
    }
  }
  if (in_credentials != nullptr) {
    ENVELOPE_ASSIGN_OR_RETURN(std::optional<Credentials> creds,
                              StaticCredentials(*in_credentials, profile, credentials_file));
    if (creds) return creds;
  }
  for (const auto& [section, file] : sources) {
    if (section != nullptr && section->count(kCredentialProcessKey) != 0) {
      return Unsupported(profile, *file, kCredentialProcessKey);
    }
  }
  if (in_config != nullptr) {
    ENVELOPE_ASSIGN_OR_RETURN(std::optional<Credentials> creds,
                              StaticCredentials(*in_config, profile, config_file));
    if (creds) return creds;
  }
  if (profile.named_by_environment && in_credentials == nullptr && in_config == nullptr) {
    return Status::NotFound("the AWS profile '" + profile.name +
                            "' (from AWS_PROFILE) is in neither " + credentials_file.name() +
                            " nor " + config_file.name());
  }
  return std::optional<Credentials>();
}

StatusOr<std::string> ResolveAwsRegion() {
  for (const char* variable : {"AWS_REGION", "AWS_DEFAULT_REGION"}) {
    const char* region = GetNonEmptyEnv(variable);
    if (region == nullptr) continue;
    if (!IsValidAwsRegion(region)) {
      return Status::InvalidArgument(std::string("$") + variable + " '" + region +
                                     "' is not an AWS region name");
    }
    return std::string(region);
  }
  const Profile profile = CurrentProfile();
  AwsFile config_file;
  ENVELOPE_RETURN_IF_ERROR(
      config_file.Load(AwsFilePath("AWS_CONFIG_FILE", "config"), "~/.aws/config"));
  if (const AwsIniFile::Section* section = config_file.FindConfigProfile(profile.name)) {
    const std::string_view region = Get(*section, kRegionKey);
    if (!region.empty()) {
      if (!IsValidAwsRegion(region)) {
        return Status::InvalidArgument("the region '" + std::string(region) + "' of " +
                                       Describe(profile, config_file) +
                                       " is not an AWS region name");
      }
      return std::string(region);
    }
  }
  return std::string(kDefaultRegion);
}

StatusOr<std::string> AwsSigningRegion(const Endpoint& endpoint) {
  if (!endpoint.region.empty()) return endpoint.region;
  return ResolveAwsRegion();
}

}  // namespace envelope::kms
