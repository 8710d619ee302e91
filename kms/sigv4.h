// AWS Signature Version 4 (SigV4): request signing for the KMS client and
// request verification for the key service's loopback TCP endpoint.
//
// The algorithm is AWS's "Create a signed AWS API request" (header-based
// authentication, AWS4-HMAC-SHA256). Canonicalisation follows AWS's rules for
// services other than S3, as botocore implements them and as AWS's published
// test suite (aws-sig-v4-test-suite, 2015-08-30) checks them:
//
//   canonical request = method '\n' canonical URI '\n' canonical query '\n'
//                       canonical headers '\n' signed headers '\n'
//                       hex(SHA-256(body))
//   string to sign    = "AWS4-HMAC-SHA256" '\n' amz date '\n' scope '\n'
//                       hex(SHA-256(canonical request))
//   scope             = YYYYMMDD '/' region '/' service '/' "aws4_request"
//   signing key       = HMAC chain "AWS4" + secret -> date -> region ->
//                       service -> "aws4_request"
//   signature         = hex(HMAC-SHA256(signing key, string to sign))
//
// Secrets stay in crypto::SecretBytes (the signing key too); signatures are
// not secret. Nothing here logs.
//
// Thread safety: every function is reentrant and keeps no state between
// calls. VerifyRequest calls `lookup` on the calling thread.
#ifndef ENVELOPE_KMS_SIGV4_H_
#define ENVELOPE_KMS_SIGV4_H_

#include <chrono>
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "core/base/status.h"
#include "core/crypto/secret_bytes.h"

namespace envelope::kms {

inline constexpr std::string_view kSigV4Algorithm = "AWS4-HMAC-SHA256";
inline constexpr std::string_view kSigV4ScopeTerminator = "aws4_request";
// "YYYYMMDDTHHMMSSZ"
inline constexpr size_t kAmzDateSizeInChars = 16;

// The parts of an HTTP request that SigV4 covers.
struct HttpRequestParts {
  // "POST". Used as given: HTTP methods are case-sensitive.
  std::string method;
  // The request target's path exactly as on the wire, still percent-encoded
  // (e.g. "/a%20b"). A server must pass the undecoded path: SigV4 for non-S3
  // services encodes the wire path once more.
  std::string path;
  std::string query;  // raw query string without '?', may be empty
  // As sent/received: any case, in order; repeated names allowed.
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

// Access-key credentials. The secret is key material: it lives only in
// SecretBytes and is never logged or copied into a std::string.
struct Credentials {
  std::string access_key_id;
  crypto::SecretBytes secret_access_key;
  // Optional; if non-empty, sent and signed as X-Amz-Security-Token.
  std::string session_token;
};

// Formats `t` as the SigV4 timestamp "YYYYMMDDTHHMMSSZ" (UTC), truncating to
// whole seconds.
std::string AmzDate(std::chrono::system_clock::time_point t);

// Parses a "YYYYMMDDTHHMMSSZ" timestamp. InvalidArgument unless the string
// has exactly that shape and names a real calendar date and time of day
// (no leap second).
StatusOr<std::chrono::system_clock::time_point> ParseAmzDate(
    std::string_view amz_date);

// --- Canonicalisation pieces, exposed for tests against AWS's suite. ---

// The canonical URI of a raw (percent-encoded) request path: dot segments
// and empty segments removed as botocore and AWS do ("//a/./b/../c/" ->
// "/a/c/"), a trailing slash kept, then every byte outside A-Za-z0-9-_.~
// encoded as %XX (upper-case hex), '/' kept. Because the input is already
// encoded, "%20" becomes "%2520": this is the double encoding AWS applies
// for non-S3 services. An empty path is "/".
std::string CanonicalUri(std::string_view raw_path);

// The canonical query string of a raw query (without '?'): split on '&',
// each parameter split at its first '='; "a" without '=' becomes "a=". Names
// and values are percent-decoded, then encoded with only A-Za-z0-9-_.~ kept
// (so any client encoding reaches one form), and the pairs sorted by encoded
// name, then encoded value. A '%' not followed by two hex digits is taken
// literally. An empty parameter ("a=1&&b=2") becomes "=", as in botocore.
std::string CanonicalQueryString(std::string_view raw_query);

// The SigV4 canonical request of `r`. `signed_headers` are the lower-case
// header names to cover, sorted; each becomes "name:value" with the values of
// every header of that name (compared case-insensitively) trimmed, runs of
// whitespace collapsed to one space, and joined with ',' in request order.
// A signed name that `r` lacks yields "name:" (VerifyRequest rejects that
// case before it gets here).
std::string CanonicalRequest(const HttpRequestParts& r,
                             const std::vector<std::string>& signed_headers,
                             std::string_view payload_hash_hex);

std::string StringToSign(std::string_view amz_date,
                         std::string_view credential_scope,
                         std::string_view canonical_request);

// The SigV4 signing key for `date` (YYYYMMDD), `region` and `service`.
// Fails only if the secure heap is exhausted.
StatusOr<crypto::SecretBytes> SigningKey(const crypto::SecretBytes& secret,
                                         std::string_view date,
                                         std::string_view region,
                                         std::string_view service);

// --- Client side. ---

// Signs `*r` in place: removes any Authorization header, sets X-Amz-Date to
// `amz_date` (replacing any), sets X-Amz-Security-Token (replacing any) if
// `creds.session_token` is non-empty, and appends
//   Authorization: AWS4-HMAC-SHA256 Credential=<id>/<scope>,
//                  SignedHeaders=<names>, Signature=<hex>
// Every header then present is signed (lower-cased names, sorted), so the
// caller adds all headers it will send (Host included) before signing and
// changes none afterwards.
// Errors (InvalidArgument, `*r` unchanged): no Host header, a header name
// that is not an RFC 9110 token, an empty or malformed access key id, region
// or service, an empty secret, `amz_date` not "YYYYMMDDTHHMMSSZ".
// REQUIRES: r != nullptr
Status SignRequest(const Credentials& creds, std::string_view region,
                   std::string_view service, std::string_view amz_date,
                   HttpRequestParts* r);

// --- Server side. ---

// "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/kms/aws4_request,
//  SignedHeaders=a;b, Signature=hex", parsed.
struct ParsedAuthorization {
  std::string access_key_id;
  std::string date;  // YYYYMMDD, from the credential scope
  std::string region;
  std::string service;
  std::vector<std::string> signed_headers;  // lower-case, strictly ascending
  std::string signature_hex;                // 64 lower-case hex digits
};

// Parses an Authorization header value. The three components may come in
// any order, separated by ',' with optional spaces, each exactly once.
// InvalidArgument (never a crash, whatever the input) unless: the algorithm
// is AWS4-HMAC-SHA256; the credential has five non-empty '/'-separated parts
// ending in aws4_request with an 8-digit date; the signed headers are
// non-empty lower-case tokens in strictly ascending order; the signature is
// 64 lower-case hex digits.
StatusOr<ParsedAuthorization> ParseAuthorization(std::string_view header_value);

// Returns the secret for an access key id, or nullptr if the id is unknown.
// The pointee must stay valid until VerifyRequest returns.
using SecretLookup =
    std::function<const crypto::SecretBytes*(std::string_view access_key_id)>;

// Verifies a SigV4-signed request and returns its access key id.
//
// Accepts the request only if: exactly one Authorization header parses (see
// ParseAuthorization); the scope's service is `expected_service`; the signed
// headers include content-type, host, x-amz-date and x-amz-target (the
// JSON protocol's operation and encoding, so a captured request cannot be
// replayed as another operation) and each signed header is present in the
// request; exactly one X-Amz-Date is present, well-formed and within
// `max_skew` of `now` either way; the scope date is the date of X-Amz-Date;
// X-Amz-Content-Sha256, if present, is the hex SHA-256 of the body; `lookup`
// knows the access key; and the signature matches (compared in constant
// time). The region is covered by the signature but not checked: a local
// service answers to whatever region the client is configured for. An
// X-Amz-Security-Token is not validated, the service issuing no session
// credentials; like any header it is covered only if the client signed it.
//
// The Host header's value is covered by the signature but not compared with
// anything here: the server checks it against its own listener.
//
// Every rejection is PermissionDenied, with a message that starts with one of
//   "missing authentication"   no Authorization header
//   "malformed authentication" bad header, scope, or signed-header set
//   "unknown access key"       lookup returned nullptr
//   "stale request"            X-Amz-Date outside max_skew of now
//   "signature mismatch"       wrong signature or X-Amz-Content-Sha256
// Messages never include secrets, signatures or values an attacker chose.
// ResourceExhausted means the secure heap had no room for the signing key.
// `lookup` is called at most once, after all checks that need no secret.
StatusOr<std::string> VerifyRequest(const HttpRequestParts& r,
                                    const SecretLookup& lookup,
                                    std::string_view expected_service,
                                    std::chrono::system_clock::time_point now,
                                    std::chrono::seconds max_skew);

}  // namespace envelope::kms

#endif  // ENVELOPE_KMS_SIGV4_H_
