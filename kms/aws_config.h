// AWS credentials and region, found where the AWS CLI and SDKs find them:
// the environment, then the shared credentials file, then the config file.
//
// Credentials (ResolveAwsCredentials), the first source that has them:
//   1. AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (+ AWS_SESSION_TOKEN)
//   2. the profile P = $AWS_PROFILE, else "default", in the credentials
//      file ($AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/credentials):
//      section [P]
//   3. P in the config file ($AWS_CONFIG_FILE, else ~/.aws/config):
//      section [profile P]; for "default" also [default]
// with the keys aws_access_key_id, aws_secret_access_key and
// aws_session_token. Other ways of getting credentials (role_arn,
// credential_process, SSO, web identity, instance metadata) are not
// supported.
//
// Region (ResolveAwsRegion): AWS_REGION, else AWS_DEFAULT_REGION, else the
// `region` of P in the config file, else "us-east-1".
//
// "~" is $HOME, else the home directory of the effective uid's passwd
// entry. Empty environment variables count as unset. A missing file is no
// error; an unreadable one is.
//
// File syntax, the part of Python's configparser (which the AWS CLI uses)
// that AWS files need: "[SECTION]" headers; "key = value" or "key: value"
// lines (keys case-insensitive, values trimmed); whole-line comments
// starting with '#' or ';'; lines indented deeper than the key line before
// them continue that key and are skipped, which covers nested settings
// such as
//     s3 =
//       max_concurrent_requests = 20
// Anything else, a key before the first section, and a section or key
// given twice are errors naming the file and line (never the line's text:
// it may hold a secret).
//
// Secrets: a file is read into one buffer allocated at its final size and
// wiped when done; the secret access key is copied from it straight into
// crypto::SecretBytes. Nothing here logs.
//
// Thread safety: these functions read the environment (getenv) and must
// not race with setenv.
#ifndef ENVELOPE_KMS_AWS_CONFIG_H_
#define ENVELOPE_KMS_AWS_CONFIG_H_

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "core/base/status.h"
#include "kms/endpoint.h"
#include "kms/sigv4.h"

namespace envelope::kms {

// getenv, with an empty value counted as unset (as the AWS CLI and SDKs
// count it). Shared by the credential, region and endpoint lookups.
const char* GetNonEmptyEnv(const char* name);

// The largest AWS config or credentials file read; a real one is a few KiB.
inline constexpr size_t kMaxAwsConfigFileInBytes = size_t{1} << 20;

// The access-key credentials of the chain above. std::nullopt if no source
// has any (the caller decides whether that is an error). InvalidArgument
// for half a pair (an id without a secret or the reverse) in the
// environment or a profile; NotFound if $AWS_PROFILE names a profile that
// is in neither file; Unimplemented for a profile that gets its
// credentials in a way not supported here (its keys say which); IoError
// for a file that cannot be read; InvalidArgument for one that cannot be
// parsed. Messages name the variable, profile or file.
StatusOr<std::optional<Credentials>> ResolveAwsCredentials();

// The region of the chain above. InvalidArgument if the value found is not
// a region name (IsValidAwsRegion), naming where it came from; the file
// errors of ResolveAwsCredentials.
StatusOr<std::string> ResolveAwsRegion();

// The region to sign requests to `endpoint` for: endpoint.region if the
// endpoint implies one (aws:REGION, aws, kms.REGION.amazonaws.com), else
// ResolveAwsRegion().
StatusOr<std::string> AwsSigningRegion(const Endpoint& endpoint);

// Lower-case letters, digits and '-', starting with a letter, not ending
// with '-', at most 63 characters (it is a DNS label of the endpoint):
// "us-east-1", "cn-north-1", "us-gov-west-1".
bool IsValidAwsRegion(std::string_view region);

// --- Exposed for tests. ---

// One parsed AWS config or credentials file: section name (as written
// between the brackets, trimmed) -> key (lower-cased) -> value (trimmed).
// Values are views into the text it was parsed from, which must outlive it.
struct AwsIniFile {
  using Section = std::map<std::string, std::string_view, std::less<>>;
  std::map<std::string, Section, std::less<>> sections;
};

// Parses `text` with the syntax above; `file_name` is for messages.
StatusOr<AwsIniFile> ParseAwsIniFile(std::string_view text,
                                     std::string_view file_name);

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_AWS_CONFIG_H_
