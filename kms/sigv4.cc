#include "kms/sigv4.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <optional>

#include "core/base/ascii.h"
#include "core/base/coding.h"
#include "core/crypto/hash.h"

namespace envelope::kms {

namespace {

constexpr std::string_view kAuthorizationHeader = "authorization";
constexpr std::string_view kAmzDateHeader = "x-amz-date";
constexpr std::string_view kSecurityTokenHeader = "x-amz-security-token";
constexpr std::string_view kContentSha256Header = "x-amz-content-sha256";
constexpr std::string_view kHostHeader = "host";
constexpr std::string_view kRequiredSignedHeaders[] = {
    "content-type", kHostHeader, kAmzDateHeader, "x-amz-target"};
constexpr size_t kScopeDateSizeInChars = 8;  // YYYYMMDD
constexpr size_t kSignatureSizeInHexChars = 2 * crypto::kSha256SizeInBytes;

using ascii::EqualsIgnoreCase;
using ascii::IsAllDigits;
using ascii::IsDigit;

// The ASCII whitespace botocore's str.split() collapses in header values.
bool IsSpace(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\v' || c == '\f' ||
         c == '\r';
}

std::string_view TrimSpaces(std::string_view s) {
  while (!s.empty() && IsSpace(s.front())) s.remove_prefix(1);
  while (!s.empty() && IsSpace(s.back())) s.remove_suffix(1);
  return s;
}

// RFC 9110 tchar: the characters a header name may hold. Anything else
// (';', ':', spaces) would make SignedHeaders ambiguous.
bool IsTokenChar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c)) {
    return true;
  }
  return c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool IsToken(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), IsTokenChar);
}

// An access key id, region or service: visible ASCII without the '/' that
// separates scope parts or the ',' that separates Authorization components.
bool IsScopeComponent(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return c > ' ' && c < 0x7f && c != '/' && c != ',';
  });
}

std::vector<std::string_view> Split(std::string_view s, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  while (true) {
    size_t end = s.find(sep, start);
    if (end == std::string_view::npos) {
      parts.push_back(s.substr(start));
      return parts;
    }
    parts.push_back(s.substr(start, end - start));
    start = end + 1;
  }
}

// Percent-encodes every byte except RFC 3986 unreserved characters, with
// upper-case hex as SigV4 requires.
void AppendUriEncoded(std::string_view s, std::string* out) {
  static constexpr char kHexDigits[] = "0123456789ABCDEF";
  for (char c : s) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || IsDigit(c) ||
        c == '-' || c == '_' || c == '.' || c == '~') {
      out->push_back(c);
    } else {
      auto b = static_cast<uint8_t>(c);
      out->push_back('%');
      out->push_back(kHexDigits[b >> 4]);
      out->push_back(kHexDigits[b & 0xf]);
    }
  }
}

std::string UriEncode(std::string_view s) {
  std::string out;
  AppendUriEncoded(s, &out);
  return out;
}

int HexDigitValue(char c) {
  if (IsDigit(c)) return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string PercentDecode(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '%' && i + 2 < s.size()) {
      int hi = HexDigitValue(s[i + 1]);
      int lo = HexDigitValue(s[i + 2]);
      if (hi >= 0 && lo >= 0) {
        out.push_back(static_cast<char>((hi << 4) | lo));
        i += 2;
        continue;
      }
    }
    out.push_back(s[i]);
  }
  return out;
}

// Header values of `lower_name` (compared case-insensitively), in order.
std::vector<std::string_view> HeaderValues(const HttpRequestParts& r,
                                           std::string_view lower_name) {
  std::vector<std::string_view> values;
  for (const auto& [name, value] : r.headers) {
    if (EqualsIgnoreCase(name, lower_name)) values.push_back(value);
  }
  return values;
}

// SigV4's Trimall: leading and trailing whitespace dropped, inner runs
// collapsed to one space, quoted strings included (the suite's
// get-header-value-trim turns "a   b   c" into "a b c").
void AppendTrimmedValue(std::string_view value, std::string* out) {
  bool space_pending = false;
  for (char c : TrimSpaces(value)) {
    if (IsSpace(c)) {
      space_pending = true;
      continue;
    }
    if (space_pending) out->push_back(' ');
    space_pending = false;
    out->push_back(c);
  }
}

std::string JoinSignedHeaders(const std::vector<std::string>& names) {
  std::string out;
  for (const std::string& name : names) {
    if (!out.empty()) out.push_back(';');
    out += name;
  }
  return out;
}

std::string CredentialScope(std::string_view date, std::string_view region,
                            std::string_view service) {
  std::string scope(date);
  scope += '/';
  scope += region;
  scope += '/';
  scope += service;
  scope += '/';
  scope += kSigV4ScopeTerminator;
  return scope;
}

// hex(HMAC-SHA256(signing key, string to sign)).
std::string SignatureHex(const crypto::SecretBytes& signing_key,
                         std::string_view amz_date, std::string_view scope,
                         std::string_view canonical_request) {
  return HexEncode(crypto::HmacSha256(
      signing_key.view(),
      AsBytes(StringToSign(amz_date, scope, canonical_request))));
}

Status Malformed(std::string_view why) {
  return Status::PermissionDenied("malformed authentication: " +
                                  std::string(why));
}

}  // namespace

std::string AmzDate(std::chrono::system_clock::time_point t) {
  using namespace std::chrono;
  const auto secs = floor<seconds>(t);
  const auto day = floor<days>(secs);
  const year_month_day ymd(day);
  const hh_mm_ss hms(secs - day);
  // Large enough for any int year, so the compiler can prove no truncation.
  char buf[64];
  std::snprintf(
      buf, sizeof(buf), "%04d%02u%02uT%02d%02d%02dZ",
      static_cast<int>(ymd.year()), static_cast<unsigned>(ymd.month()),
      static_cast<unsigned>(ymd.day()), static_cast<int>(hms.hours().count()),
      static_cast<int>(hms.minutes().count()),
      static_cast<int>(hms.seconds().count()));
  return buf;
}

StatusOr<std::chrono::system_clock::time_point> ParseAmzDate(
    std::string_view s) {
  using namespace std::chrono;
  if (s.size() != kAmzDateSizeInChars || s[8] != 'T' || s[15] != 'Z' ||
      !IsAllDigits(s.substr(0, 8)) || !IsAllDigits(s.substr(9, 6))) {
    return Status::InvalidArgument("timestamp is not YYYYMMDDTHHMMSSZ");
  }
  auto number = [s](size_t pos, size_t len) {
    int v = 0;
    for (char c : s.substr(pos, len)) v = v * 10 + (c - '0');
    return v;
  };
  const year_month_day ymd{year(number(0, 4)),
                           month(static_cast<unsigned>(number(4, 2))),
                           day(static_cast<unsigned>(number(6, 2)))};
  const int h = number(9, 2), m = number(11, 2), sec = number(13, 2);
  if (!ymd.ok() || h > 23 || m > 59 || sec > 59) {
    return Status::InvalidArgument("timestamp names no valid UTC time");
  }
  // In whole seconds first: system_clock counts nanoseconds in 64 bits, so
  // a four-digit year past 2262 (or before 1677) would overflow it.
  const sys_seconds t = sys_days(ymd) + hours(h) + minutes(m) + seconds(sec);
  if (t < ceil<seconds>(system_clock::time_point::min()) ||
      t > floor<seconds>(system_clock::time_point::max())) {
    return Status::InvalidArgument("timestamp out of the clock's range");
  }
  return time_point_cast<system_clock::duration>(t);
}

std::string CanonicalUri(std::string_view raw_path) {
  // RFC 3986 5.2.4 dot-segment removal plus dropping empty segments, as in
  // botocore.utils.remove_dot_segments; AWS normalises the same way for
  // every service but S3.
  std::vector<std::string_view> segments;
  for (std::string_view segment : Split(raw_path, '/')) {
    if (segment.empty() || segment == ".") continue;
    if (segment == "..") {
      if (!segments.empty()) segments.pop_back();
      continue;
    }
    segments.push_back(segment);
  }
  std::string out = "/";
  for (size_t i = 0; i < segments.size(); ++i) {
    if (i > 0) out.push_back('/');
    AppendUriEncoded(segments[i], &out);
  }
  if (!segments.empty() && raw_path.ends_with('/')) out.push_back('/');
  return out;
}

std::string CanonicalQueryString(std::string_view raw_query) {
  if (raw_query.empty()) return "";
  std::vector<std::pair<std::string, std::string>> params;
  for (std::string_view param : Split(raw_query, '&')) {
    size_t eq = param.find('=');
    std::string_view name = param.substr(0, eq);
    std::string_view value = eq == std::string_view::npos
                                 ? std::string_view()
                                 : param.substr(eq + 1);
    params.emplace_back(UriEncode(PercentDecode(name)),
                        UriEncode(PercentDecode(value)));
  }
  std::sort(params.begin(), params.end());
  std::string out;
  for (const auto& [name, value] : params) {
    if (!out.empty()) out.push_back('&');
    out += name;
    out.push_back('=');
    out += value;
  }
  return out;
}

std::string CanonicalRequest(const HttpRequestParts& r,
                             const std::vector<std::string>& signed_headers,
                             std::string_view payload_hash_hex) {
  std::string out = r.method;
  out.push_back('\n');
  out += CanonicalUri(r.path);
  out.push_back('\n');
  out += CanonicalQueryString(r.query);
  out.push_back('\n');
  for (const std::string& name : signed_headers) {
    out += name;
    out.push_back(':');
    bool first = true;
    for (std::string_view value : HeaderValues(r, name)) {
      if (!first) out.push_back(',');
      first = false;
      AppendTrimmedValue(value, &out);
    }
    out.push_back('\n');
  }
  out.push_back('\n');
  out += JoinSignedHeaders(signed_headers);
  out.push_back('\n');
  out += payload_hash_hex;
  return out;
}

std::string StringToSign(std::string_view amz_date,
                         std::string_view credential_scope,
                         std::string_view canonical_request) {
  std::string out(kSigV4Algorithm);
  out.push_back('\n');
  out += amz_date;
  out.push_back('\n');
  out += credential_scope;
  out.push_back('\n');
  out += HexEncode(crypto::Sha256(AsBytes(canonical_request)));
  return out;
}

namespace {

// Derived signing keys by (secret, scope), as the AWS SDKs keep them: a key
// is good for a whole day's scope, and deriving it is four HMACs, which
// were a tenth of the key service's CPU per signed request. The values are
// key material and live in the secure heap; the secret appears in the map
// key only as its SHA-256 (of a high-entropy secret). Bounded: when full it
// is emptied, so no sequence of scopes a client chooses can grow it.
class SigningKeyCache {
 public:
  using Key = std::shared_ptr<const crypto::SecretBytes>;

  static SigningKeyCache& Instance() {
    static SigningKeyCache* const cache = new SigningKeyCache;  // never destroyed
    return *cache;
  }

  static std::string KeyFor(const crypto::SecretBytes& secret, std::string_view date,
                            std::string_view region, std::string_view service) {
    std::string key = HexEncode(crypto::Sha256(secret.view()));
    for (std::string_view part : {date, region, service}) {
      key.push_back('/');
      key.append(part);
    }
    return key;
  }

  // Shared, not copied: a copy is a secure-heap allocation, and that heap
  // has one lock for the whole process.
  Key Find(const std::string& key) {
    std::lock_guard lock(mu_);
    auto it = keys_.find(key);
    return it == keys_.end() ? nullptr : it->second;
  }

  void Insert(std::string key, Key value) {
    std::lock_guard lock(mu_);
    if (keys_.size() >= kMaxEntries) keys_.clear();
    keys_.insert_or_assign(std::move(key), std::move(value));
  }

 private:
  static constexpr size_t kMaxEntries = 64;
  std::mutex mu_;
  std::map<std::string, Key> keys_;  // guarded by mu_
};

StatusOr<crypto::SecretBytes> DeriveSigningKey(const crypto::SecretBytes& secret,
                                               std::string_view date,
                                               std::string_view region,
                                               std::string_view service) {
  // "AWS4" + secret is as secret as the secret: build it in the secure heap.
  constexpr std::string_view kPrefix = "AWS4";
  ENVELOPE_ASSIGN_OR_RETURN(
      crypto::SecretBytes seed,
      crypto::SecretBytes::Zeroed(kPrefix.size() + secret.size()));
  std::memcpy(seed.data(), kPrefix.data(), kPrefix.size());
  if (!secret.empty()) {
    std::memcpy(seed.data() + kPrefix.size(), secret.data(), secret.size());
  }
  // The intermediate keys sit on the stack only for this chain and are wiped
  // before returning; each one alone can sign for its whole scope.
  crypto::Sha256Digest key = crypto::HmacSha256(seed.view(), AsBytes(date));
  for (std::string_view part : {region, service, kSigV4ScopeTerminator}) {
    crypto::Sha256Digest next = crypto::HmacSha256(key, AsBytes(part));
    key = next;
    crypto::Cleanse(next);
  }
  auto signing_key = crypto::SecretBytes::CopyOf(key);
  crypto::Cleanse(key);
  return signing_key;
}


// The cached signing key for the scope, derived on a miss.
StatusOr<SigningKeyCache::Key> SharedSigningKey(const crypto::SecretBytes& secret,
                                                std::string_view date, std::string_view region,
                                                std::string_view service) {
  SigningKeyCache& cache = SigningKeyCache::Instance();
  std::string cache_key = SigningKeyCache::KeyFor(secret, date, region, service);
  if (SigningKeyCache::Key cached = cache.Find(cache_key)) return cached;
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes key, DeriveSigningKey(secret, date, region, service));
  auto shared = std::make_shared<const crypto::SecretBytes>(std::move(key));
  cache.Insert(std::move(cache_key), shared);
  return shared;
}

}  // namespace

StatusOr<crypto::SecretBytes> SigningKey(const crypto::SecretBytes& secret,
                                         std::string_view date,
                                         std::string_view region,
                                         std::string_view service) {
  ENVELOPE_ASSIGN_OR_RETURN(SigningKeyCache::Key key, SharedSigningKey(secret, date, region, service));
  return crypto::SecretBytes::CopyOf(key->view());
}

Status SignRequest(const Credentials& creds, std::string_view region,
                   std::string_view service, std::string_view amz_date,
                   HttpRequestParts* r) {
  if (!IsScopeComponent(creds.access_key_id)) {
    return Status::InvalidArgument("access key id is empty or malformed");
  }
  if (creds.secret_access_key.empty()) {
    return Status::InvalidArgument("secret access key is empty");
  }
  if (!IsScopeComponent(region) || !IsScopeComponent(service)) {
    return Status::InvalidArgument("region or service is empty or malformed");
  }
  ENVELOPE_RETURN_IF_ERROR(ParseAmzDate(amz_date).status());
  const std::string_view date = amz_date.substr(0, kScopeDateSizeInChars);

  // Build the signed header list aside so that *r is untouched on error.
  const bool with_token = !creds.session_token.empty();
  std::vector<std::pair<std::string, std::string>> headers;
  bool has_host = false;
  for (const auto& header : r->headers) {
    const std::string& name = header.first;
    if (!IsToken(name)) {
      return Status::InvalidArgument("header name is not an RFC 9110 token");
    }
    if (EqualsIgnoreCase(name, kAuthorizationHeader) ||
        EqualsIgnoreCase(name, kAmzDateHeader) ||
        (with_token && EqualsIgnoreCase(name, kSecurityTokenHeader))) {
      continue;  // replaced below: a retry must not sign its old values
    }
    has_host = has_host || EqualsIgnoreCase(name, kHostHeader);
    headers.push_back(header);
  }
  if (!has_host) {
    return Status::InvalidArgument("request has no Host header to sign");
  }
  headers.emplace_back("X-Amz-Date", std::string(amz_date));
  if (with_token) {
    headers.emplace_back("X-Amz-Security-Token", creds.session_token);
  }

  std::vector<std::string> signed_headers;
  signed_headers.reserve(headers.size());
  for (const auto& header : headers) {
    signed_headers.push_back(ascii::ToLower(header.first));
  }
  std::sort(signed_headers.begin(), signed_headers.end());
  signed_headers.erase(
      std::unique(signed_headers.begin(), signed_headers.end()),
      signed_headers.end());

  // The last step that can fail; after it *r is changed.
  ENVELOPE_ASSIGN_OR_RETURN(
      SigningKeyCache::Key key,
      SharedSigningKey(creds.secret_access_key, date, region, service));
  r->headers = std::move(headers);
  const std::string scope = CredentialScope(date, region, service);
  const std::string canonical_request = CanonicalRequest(
      *r, signed_headers, HexEncode(crypto::Sha256(AsBytes(r->body))));

  std::string authorization(kSigV4Algorithm);
  authorization += " Credential=";
  authorization += creds.access_key_id;
  authorization += '/';
  authorization += scope;
  authorization += ", SignedHeaders=";
  authorization += JoinSignedHeaders(signed_headers);
  authorization += ", Signature=";
  authorization += SignatureHex(*key, amz_date, scope, canonical_request);
  r->headers.emplace_back("Authorization", std::move(authorization));
  return Status::Ok();
}

StatusOr<ParsedAuthorization> ParseAuthorization(
    std::string_view header_value) {
  std::string_view v = TrimSpaces(header_value);
  if (!v.starts_with(kSigV4Algorithm) || v.size() == kSigV4Algorithm.size() ||
      v[kSigV4Algorithm.size()] != ' ') {
    return Status::InvalidArgument("Authorization is not AWS4-HMAC-SHA256");
  }
  v.remove_prefix(kSigV4Algorithm.size() + 1);

  std::optional<std::string_view> credential, signed_headers, signature;
  for (std::string_view component : Split(v, ',')) {
    component = TrimSpaces(component);
    size_t eq = component.find('=');
    if (eq == std::string_view::npos) {
      return Status::InvalidArgument("Authorization component has no '='");
    }
    std::string_view key = component.substr(0, eq);
    std::optional<std::string_view>* slot;
    if (key == "Credential") {
      slot = &credential;
    } else if (key == "SignedHeaders") {
      slot = &signed_headers;
    } else if (key == "Signature") {
      slot = &signature;
    } else {
      return Status::InvalidArgument("unknown Authorization component");
    }
    if (slot->has_value()) {
      return Status::InvalidArgument("repeated Authorization component");
    }
    *slot = component.substr(eq + 1);
  }
  if (!credential || !signed_headers || !signature) {
    return Status::InvalidArgument(
        "Authorization lacks Credential, SignedHeaders or Signature");
  }

  ParsedAuthorization out;
  std::vector<std::string_view> scope = Split(*credential, '/');
  if (scope.size() != 5 || !IsScopeComponent(scope[0]) ||
      scope[1].size() != kScopeDateSizeInChars || !IsAllDigits(scope[1]) ||
      !IsScopeComponent(scope[2]) || !IsScopeComponent(scope[3]) ||
      scope[4] != kSigV4ScopeTerminator) {
    return Status::InvalidArgument(
        "Credential is not <id>/YYYYMMDD/<region>/<service>/aws4_request");
  }
  out.access_key_id = scope[0];
  out.date = scope[1];
  out.region = scope[2];
  out.service = scope[3];

  for (std::string_view name : Split(*signed_headers, ';')) {
    if (!IsToken(name) || ascii::ToLower(name) != name) {
      return Status::InvalidArgument(
          "SignedHeaders holds an empty or non-lower-case name");
    }
    if (!out.signed_headers.empty() && out.signed_headers.back() >= name) {
      return Status::InvalidArgument(
          "SignedHeaders is not sorted or repeats a name");
    }
    out.signed_headers.emplace_back(name);
  }

  if (signature->size() != kSignatureSizeInHexChars ||
      !std::all_of(signature->begin(), signature->end(), [](char c) {
        return IsDigit(c) || (c >= 'a' && c <= 'f');
      })) {
    return Status::InvalidArgument("Signature is not 64 lower-case hex digits");
  }
  out.signature_hex = *signature;
  return out;
}

StatusOr<std::string> VerifyRequest(const HttpRequestParts& r,
                                    const SecretLookup& lookup,
                                    std::string_view expected_service,
                                    std::chrono::system_clock::time_point now,
                                    std::chrono::seconds max_skew) {
  std::vector<std::string_view> authorization =
      HeaderValues(r, kAuthorizationHeader);
  if (authorization.empty()) {
    return Status::PermissionDenied(
        "missing authentication: no Authorization header");
  }
  if (authorization.size() > 1) {
    return Malformed("more than one Authorization header");
  }
  auto parsed = ParseAuthorization(authorization.front());
  if (!parsed.ok()) return Malformed(parsed.status().message());
  const ParsedAuthorization& auth = *parsed;

  if (auth.service != expected_service) {
    return Malformed("credential scope is for another service");
  }
  // Without host a request could be replayed to another endpoint; without
  // x-amz-date, with another timestamp; without x-amz-target, as another
  // operation (the JSON protocol names the operation only there); without
  // content-type, in another encoding. AWS's SDKs and CLI sign all four.
  for (std::string_view required : kRequiredSignedHeaders) {
    if (!std::binary_search(auth.signed_headers.begin(),
                            auth.signed_headers.end(), required)) {
      return Malformed(
          "SignedHeaders must include content-type, host, x-amz-date and "
          "x-amz-target");
    }
  }
  for (const std::string& name : auth.signed_headers) {
    if (HeaderValues(r, name).empty()) {
      return Malformed("a signed header is missing from the request");
    }
  }

  std::vector<std::string_view> dates = HeaderValues(r, kAmzDateHeader);
  if (dates.size() != 1) return Malformed("expected one X-Amz-Date header");
  // The signature covers the canonical (trimmed) value, so check that one.
  std::string amz_date;
  AppendTrimmedValue(dates.front(), &amz_date);
  auto signed_at = ParseAmzDate(amz_date);
  if (!signed_at.ok()) return Malformed("X-Amz-Date is not YYYYMMDDTHHMMSSZ");
  const auto skew = now - *signed_at;
  if (skew > max_skew || skew < -max_skew) {
    return Status::PermissionDenied("stale request: X-Amz-Date is more than " +
                                    std::to_string(max_skew.count()) +
                                    " s from the server's clock");
  }
  if (std::string_view(amz_date).substr(0, kScopeDateSizeInChars) !=
      auth.date) {
    return Malformed("credential scope date is not the date of X-Amz-Date");
  }

  const std::string payload_hash = HexEncode(crypto::Sha256(AsBytes(r.body)));
  std::vector<std::string_view> content_hashes =
      HeaderValues(r, kContentSha256Header);
  if (content_hashes.size() > 1) {
    return Malformed("more than one X-Amz-Content-Sha256 header");
  }
  // botocore signs this header's value in place of the body hash; requiring
  // it to be the real hash rejects UNSIGNED-PAYLOAD and keeps the body
  // covered by the signature.
  if (!content_hashes.empty() &&
      TrimSpaces(content_hashes.front()) != payload_hash) {
    return Status::PermissionDenied(
        "signature mismatch: X-Amz-Content-Sha256 is not the body's SHA-256");
  }

  const crypto::SecretBytes* secret = lookup(auth.access_key_id);
  if (secret == nullptr) {
    return Status::PermissionDenied("unknown access key id");
  }
  ENVELOPE_ASSIGN_OR_RETURN(
      SigningKeyCache::Key key,
      SharedSigningKey(*secret, auth.date, auth.region, auth.service));
  const std::string expected = SignatureHex(
      *key, amz_date, CredentialScope(auth.date, auth.region, auth.service),
      CanonicalRequest(r, auth.signed_headers, payload_hash));
  if (!crypto::ConstantTimeEquals(AsBytes(expected),
                                  AsBytes(auth.signature_hex))) {
    return Status::PermissionDenied(
        "signature mismatch: the request signature does not match");
  }
  return auth.access_key_id;
}

}  // namespace envelope::kms
