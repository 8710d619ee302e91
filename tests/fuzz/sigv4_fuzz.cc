// Fuzzes SigV4 as the key service's TCP endpoint uses it: the input is a
// request written as text,
//
//   METHOD PATH[?QUERY]
//   Name: value        (one header per line, until an empty line)
//
//   body
//
// and goes through ParseAuthorization (each Authorization header), the
// canonical URI and query, ParseAmzDate, and VerifyRequest with a fixed
// access key at the seeds' signing time. Invariants: the parsed
// Authorization has the documented shape; canonical forms are fixed points;
// a date that parses formats back to itself; a verified request names the
// fixed access key; and a request the client signs (SignRequest) verifies.
#include <algorithm>
#include <cctype>
#include <string>

#include "kms/sigv4.h"
#include "tests/fuzz/fuzz_util.h"

namespace envelope::kms {
namespace {

bool IEquals(std::string_view a, std::string_view b) {
  return a.size() == b.size() &&
         std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

size_t Count(const HttpRequestParts& r, std::string_view name) {
  return std::count_if(r.headers.begin(), r.headers.end(),
                       [&](const auto& h) { return IEquals(h.first, name); });
}

HttpRequestParts ParseRequestText(std::string_view in) {
  HttpRequestParts r;
  auto next_line = [&in]() {
    size_t nl = in.find('\n');
    std::string_view line = in.substr(0, nl);
    in = nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1);
    return line;
  };
  std::string_view first = next_line();
  size_t sp = first.find(' ');
  r.method = std::string(first.substr(0, sp));
  std::string_view target = sp == std::string_view::npos ? "" : first.substr(sp + 1);
  size_t q = target.find('?');
  r.path = std::string(target.substr(0, q));
  if (q != std::string_view::npos) r.query = std::string(target.substr(q + 1));
  while (!in.empty()) {
    std::string_view line = next_line();
    if (line.empty()) break;
    size_t colon = line.find(':');
    std::string_view value = colon == std::string_view::npos ? "" : line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
    r.headers.emplace_back(std::string(line.substr(0, colon)), std::string(value));
  }
  r.body = std::string(in);
  return r;
}

bool IsLowerHex(std::string_view s) {
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

void CheckAuthorization(std::string_view value) {
  auto a = ParseAuthorization(value);
  if (!a.ok()) return;
  FUZZ_CHECK(!a->access_key_id.empty() && !a->region.empty() && !a->service.empty());
  FUZZ_CHECK(a->date.size() == 8 &&
             std::all_of(a->date.begin(), a->date.end(), [](char c) { return c >= '0' && c <= '9'; }));
  FUZZ_CHECK(a->signature_hex.size() == 64 && IsLowerHex(a->signature_hex));
  FUZZ_CHECK(!a->signed_headers.empty());
  for (size_t i = 0; i < a->signed_headers.size(); ++i) {
    const std::string& h = a->signed_headers[i];
    FUZZ_CHECK(!h.empty());
    FUZZ_CHECK(std::none_of(h.begin(), h.end(), [](char c) { return c >= 'A' && c <= 'Z'; }));
    if (i > 0) FUZZ_CHECK(a->signed_headers[i - 1] < h);
  }
}

void Run(std::string_view in) {
  static const crypto::SecretBytes* secret =
      new crypto::SecretBytes(fuzz::Secret(AsBytes(fuzz::kSecretAccessKey)));
  static const auto now = *ParseAmzDate(fuzz::kSigV4Date);

  HttpRequestParts r = ParseRequestText(in);
  for (const auto& [name, value] : r.headers) {
    if (IEquals(name, "authorization")) CheckAuthorization(value);
    if (IEquals(name, "x-amz-date")) {
      auto t = ParseAmzDate(value);
      if (t.ok()) FUZZ_CHECK(AmzDate(*t) == value);
    }
  }
  std::string uri = CanonicalUri(r.path);
  FUZZ_CHECK(!uri.empty() && uri[0] == '/');
  FUZZ_CHECK(CanonicalUri(uri).size() >= uri.size());
  std::string query = CanonicalQueryString(r.query);
  FUZZ_CHECK(CanonicalQueryString(query) == query);

  SecretLookup lookup = [](std::string_view id) -> const crypto::SecretBytes* {
    return id == fuzz::kAccessKeyId ? secret : nullptr;
  };
  auto verified = VerifyRequest(r, lookup, "kms", now, std::chrono::minutes(5));
  if (verified.ok()) {
    FUZZ_CHECK(*verified == fuzz::kAccessKeyId);
  } else {
    FUZZ_CHECK(verified.status().code() == StatusCode::kPermissionDenied ||
               verified.status().code() == StatusCode::kResourceExhausted);
  }

  // What the client signs, the server accepts. X-Amz-Content-Sha256 is
  // dropped first (the signer leaves a wrong one in place); the request
  // must name its host, target and content type once, as every KMS client's
  // does.
  HttpRequestParts s = r;
  std::erase_if(s.headers, [](const auto& h) { return IEquals(h.first, "x-amz-content-sha256"); });
  Credentials creds;
  creds.access_key_id = std::string(fuzz::kAccessKeyId);
  creds.secret_access_key = fuzz::Secret(AsBytes(fuzz::kSecretAccessKey));
  if (!SignRequest(creds, "local", "kms", fuzz::kSigV4Date, &s).ok()) return;
  if (Count(s, "host") != 1 || Count(s, "x-amz-target") != 1 || Count(s, "content-type") != 1) {
    return;
  }
  auto round_trip = VerifyRequest(s, lookup, "kms", now, std::chrono::minutes(5));
  if (!round_trip.ok()) {
    std::fprintf(stderr, "signed request refused: %s\n", round_trip.status().message().c_str());
  }
  FUZZ_CHECK(round_trip.ok());
}

}  // namespace
}  // namespace envelope::kms

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  envelope::kms::Run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
