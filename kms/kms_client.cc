#include "kms/kms_client.h"

#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <random>
#include <thread>
#include <utility>

#include "core/base/base64.h"
#include "kms/operations.h"

namespace envelope::kms {

namespace {

using json = nlohmann::json;
using std::chrono::milliseconds;

constexpr char kContentType[] = "application/x-amz-json-1.1";
constexpr size_t kMaxIdleConnections = 8;
constexpr milliseconds kMaxBackoff{10000};
constexpr std::string_view kPlaintextField = "Plaintext";

// Whether the request or the response body of `target` carries plaintext
// or a secret (kms/operations.h): such a body is wiped once used. An
// operation the table does not know is wiped both ways.
bool RequestCarriesPlaintext(std::string_view target) {
  const Operation* op = FindOperation(target);
  return op == nullptr || op->request_sensitive();
}

bool ResponseCarriesPlaintext(std::string_view target) {
  const Operation* op = FindOperation(target);
  return op == nullptr || op->response_sensitive();
}

void CleanseString(std::string* s) {
  crypto::Cleanse({reinterpret_cast<uint8_t*>(s->data()), s->size()});
}

// Wipes a JSON string member on every path out of a scope.
class ScopedCleanseMember {
 public:
  ScopedCleanseMember(json* object, std::string_view name)
      : object_(object), name_(name) {}
  ScopedCleanseMember(const ScopedCleanseMember&) = delete;
  ScopedCleanseMember& operator=(const ScopedCleanseMember&) = delete;
  ~ScopedCleanseMember() {
    if (!object_->is_object()) return;
    auto it = object_->find(name_);
    if (it != object_->end() && it->is_string()) {
      CleanseString(&it->get_ref<std::string&>());
    }
  }

 private:
  json* object_;
  std::string_view name_;
};

// The same for that member of every object in an array.
class ScopedCleanseEach {
 public:
  ScopedCleanseEach(json* array, std::string_view name) : array_(array), name_(name) {}
  ScopedCleanseEach(const ScopedCleanseEach&) = delete;
  ScopedCleanseEach& operator=(const ScopedCleanseEach&) = delete;
  ~ScopedCleanseEach() {
    for (json& item : *array_) ScopedCleanseMember wipe(&item, name_);
  }

 private:
  json* array_;
  std::string_view name_;
};

bool IsBase64Char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
         (c >= '0' && c <= '9') || c == '+' || c == '/' || c == '=';
}

// Strict standard base64 (core/base/base64.h) straight into the secure
// heap, so decoded plaintext never sits in an ordinary buffer.
StatusOr<crypto::SecretBytes> DecodeBase64Secret(std::string_view text) {
  const long size = Base64DecodedSize(text);
  if (size < 0) return Status::InvalidArgument("not valid base64");
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes out,
                            crypto::SecretBytes::Zeroed(static_cast<size_t>(size)));
  if (!Base64DecodeInto(text, out.mutable_view())) {
    return Status::InvalidArgument("not valid base64");
  }
  return out;
}

// The request body. A "Plaintext" member that is a base64 string goes
// first, copied once into a buffer reserved at its final size: letting
// dump() grow a string would leave partial copies of it in freed memory.
StatusOr<std::string> SerializeRequest(const json& request) {
  if (!request.is_object()) {
    return Status::InvalidArgument("a KMS request must be a JSON object");
  }
  try {
    auto it = request.find(kPlaintextField);
    if (it == request.end() || !it->is_string()) return request.dump();
    const std::string& plaintext = it->get_ref<const std::string&>();
    if (!std::all_of(plaintext.begin(), plaintext.end(), IsBase64Char)) {
      return request.dump();
    }
    // Copy every member but the plaintext (a whole copy would duplicate
    // it, and erasing it would free that copy unwiped).
    json rest = json::object();
    for (const auto& [name, value] : request.items()) {
      if (name != kPlaintextField) rest[name] = value;
    }
    const std::string tail = rest.dump();  // "{}" or "{...}"
    const std::string head =
        "{\"" + std::string(kPlaintextField) + "\":\"";
    std::string body;
    body.reserve(head.size() + plaintext.size() + 2 + tail.size());
    body += head;
    body += plaintext;
    body += '"';
    body += tail.size() > 2 ? "," + tail.substr(1) : std::string("}");
    return body;
  } catch (const json::exception& e) {
    // dump() throws on strings that are not UTF-8.
    return Status::InvalidArgument(std::string("cannot serialise request: ") +
                                   e.what());
  }
}

// Reads a string member; false if absent or not a string.
bool GetString(const json& object, std::string_view name, std::string* out) {
  if (!object.is_object()) return false;
  auto it = object.find(name);
  if (it == object.end() || !it->is_string()) return false;
  *out = it->get<std::string>();
  return true;
}

json ContextJson(const EncryptionContextMap& context) {
  json out = json::object();
  for (const auto& [k, v] : context) out[k] = v;
  return out;
}

// A successful response that lacks what the protocol promises.
Status Malformed(std::string_view endpoint_name, std::string_view what) {
  return Status::Unavailable("malformed response from the key service at " +
                             std::string(endpoint_name) + ": " +
                             std::string(what));
}

StatusOr<Bytes> GetBlob(const json& response, std::string_view name,
                        std::string_view endpoint_name) {
  std::string text;
  Bytes out;
  if (!GetString(response, name, &text) || !Base64Decode(text, &out)) {
    return Malformed(endpoint_name,
                     "no valid base64 " + std::string(name) + " field");
  }
  return out;
}

// Decodes the "Plaintext" member into SecretBytes; the member is wiped by
// the caller's ScopedCleanseMember either way.
StatusOr<crypto::SecretBytes> GetSecret(const json& response,
                                        std::string_view endpoint_name) {
  auto it = response.find(kPlaintextField);
  if (it == response.end() || !it->is_string()) {
    return Malformed(endpoint_name, "no Plaintext field");
  }
  auto secret = DecodeBase64Secret(it->get_ref<const std::string&>());
  if (!secret.ok() &&
      secret.status().code() == StatusCode::kInvalidArgument) {
    return Malformed(endpoint_name, "Plaintext is not valid base64");
  }
  return secret;
}

// The Plaintext and CiphertextBlob of one data key in `object` (a
// GenerateDataKey response, or one item of GenerateDataKeys's DataKeys); the
// Plaintext member is wiped by the caller either way.
StatusOr<DataKey> GetDataKey(const json& object, size_t number_of_bytes,
                             std::string_view endpoint_name) {
  DataKey key;
  ENVELOPE_ASSIGN_OR_RETURN(key.plaintext, GetSecret(object, endpoint_name));
  if (key.plaintext.size() != number_of_bytes) {
    return Malformed(endpoint_name, "the data key has the wrong size");
  }
  ENVELOPE_ASSIGN_OR_RETURN(key.ciphertext_blob,
                            GetBlob(object, "CiphertextBlob", endpoint_name));
  return key;
}

}  // namespace

StatusOr<std::unique_ptr<KmsClient>> KmsClient::New(Options options) {
  const bool signed_requests = options.endpoint.kind != Endpoint::kUnix;
  if (signed_requests && !options.credentials.has_value()) {
    return Status::InvalidArgument(
        "the key service at " + options.endpoint.ToString() +
        " requires SigV4 credentials: set AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY, or give them in an AWS profile");
  }
  if (signed_requests && options.region.empty()) {
    return Status::InvalidArgument("the signing region is empty");
  }
  if (options.max_retries < 0) {
    return Status::InvalidArgument("max_retries must not be negative");
  }
  if (options.connect_timeout.count() <= 0 ||
      options.request_timeout.count() <= 0 ||
      options.backoff_base.count() < 0) {
    return Status::InvalidArgument("timeouts must be positive");
  }
  return std::unique_ptr<KmsClient>(new KmsClient(std::move(options)));
}

KmsClient::KmsClient(Options options)
    : options_(std::move(options)),
      endpoint_name_(options_.endpoint.ToString()) {}

KmsClient::~KmsClient() = default;

StatusOr<nlohmann::json> KmsClient::Call(std::string_view target,
                                         const nlohmann::json& request) {
  ENVELOPE_ASSIGN_OR_RETURN(std::string body, SerializeRequest(request));
  return Send(target, std::move(body));
}

Status KmsClient::CallEachPage(std::string_view target, nlohmann::json request,
                               const std::function<void(nlohmann::json& page)>& on_page) {
  std::string previous;
  while (true) {
    ENVELOPE_ASSIGN_OR_RETURN(nlohmann::json page, Call(target, request));
    auto truncated = page.find("Truncated");
    auto marker = page.find("NextMarker");
    const bool more = truncated != page.end() && truncated->is_boolean() &&
                      truncated->get<bool>() && marker != page.end() && marker->is_string() &&
                      marker->get<std::string>() != previous;
    if (more) previous = marker->get<std::string>();
    on_page(page);
    if (!more) return Status::Ok();
    request["Marker"] = previous;
  }
}

Status KmsClient::SignInto(std::string_view target,
                           HttpRequest* request) const {
  request->headers = {{"Host", options_.endpoint.HostHeader()},
                      {"Content-Type", kContentType},
                      {"X-Amz-Target", std::string(target)}};
  if (options_.endpoint.kind == Endpoint::kUnix) return Status::Ok();
  // Signed afresh for every attempt: X-Amz-Date must be current, since the
  // service refuses requests outside its clock-skew window.
  HttpRequestParts parts;
  parts.method = "POST";
  parts.path = request->target;
  parts.headers = std::move(request->headers);
  parts.body = std::move(request->body);  // moved, not copied: may be secret
  Status s = SignRequest(*options_.credentials, options_.region,
                         kKmsSigningService,
                         AmzDate(std::chrono::system_clock::now()), &parts);
  request->headers = std::move(parts.headers);
  request->body = std::move(parts.body);
  return s;
}

StatusOr<nlohmann::json> KmsClient::Send(std::string_view target,
                                         std::string body) {
  HttpRequest request;
  request.target = "/";
  request.body = std::move(body);
  struct WipeRequest {
    HttpRequest& r;
    bool enabled;
    ~WipeRequest() {
      if (enabled) CleanseString(&r.body);
    }
  } wipe_request{request, RequestCarriesPlaintext(target)};

  Status last;
  for (int attempt = 0; attempt <= options_.max_retries; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(Backoff(attempt - 1));

    bool written = false;
    ENVELOPE_RETURN_IF_ERROR(SignInto(target, &request));
    auto connection = Acquire();
    if (!connection.ok()) {
      last = connection.status().code() == StatusCode::kUnavailable
                 ? Status::Unavailable("cannot reach the key service at " +
                                       endpoint_name_ + ": " +
                                       connection.status().message())
                 : connection.status();
      if (ShouldRetry(target, last, written)) continue;
      return last;
    }
    auto response = (*connection)->RoundTrip(
        request, options_.request_timeout, &written);
    if (!response.ok()) {
      const Status& s = response.status();
      last = s.code() != StatusCode::kUnavailable ? s
             : written ? Status::Unavailable(
                             "lost the connection to the key service at " +
                             endpoint_name_ + ": " + s.message())
                       : Status::Unavailable(
                             "cannot reach the key service at " +
                             endpoint_name_ + ": " + s.message());
      if (ShouldRetry(target, last, written)) continue;
      return last;
    }
    Release(std::move(*connection));

    HttpResponse& r = *response;
    struct WipeResponse {
      std::string& body;
      bool enabled;
      ~WipeResponse() {
        if (enabled) CleanseString(&body);
      }
    } wipe_response{r.body, ResponseCarriesPlaintext(target)};
    last = StatusFromKmsResponse(r.status, r.body, endpoint_name_);
    if (last.ok()) {
      json parsed = json::parse(r.body, nullptr, false);
      if (parsed.is_discarded() || !parsed.is_object()) {
        return Malformed(endpoint_name_, "the body is not a JSON object");
      }
      return parsed;
    }
    if (!ShouldRetry(target, last, written)) return last;
  }
  return last;
}

StatusOr<std::unique_ptr<HttpConnection>> KmsClient::Acquire() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!idle_.empty()) {
      std::unique_ptr<HttpConnection> c = std::move(idle_.back());
      idle_.pop_back();
      if (c->Reusable()) return c;
    }
  }
  TlsOptions tls;
  tls.ca_file = options_.ca_file;
  return HttpConnection::Connect(options_.endpoint, options_.connect_timeout, tls);
}

void KmsClient::Release(std::unique_ptr<HttpConnection> connection) {
  if (!connection->Reusable()) return;
  std::lock_guard<std::mutex> lock(mu_);
  if (idle_.size() < kMaxIdleConnections) idle_.push_back(std::move(connection));
}

milliseconds KmsClient::Backoff(int retry) const {
  // Full jitter (AWS Architecture Blog, "Exponential Backoff and Jitter"):
  // uniform in [0, min(cap, base * 2^retry)], so clients that failed
  // together do not retry together.
  const int64_t base = options_.backoff_base.count();
  int64_t ceiling = kMaxBackoff.count();
  if (retry < 30 && base <= (kMaxBackoff.count() >> retry)) {
    ceiling = base << retry;
  }
  if (ceiling <= 0) return milliseconds(0);
  thread_local std::minstd_rand rng{std::random_device{}()};
  std::uniform_int_distribution<int64_t> pick(0, ceiling);
  return milliseconds(pick(rng));
}

StatusOr<DataKey> KmsClient::GenerateDataKey(
    const std::string& key_id, const EncryptionContextMap& context,
    size_t number_of_bytes) {
  json request = {{"KeyId", key_id}, {"NumberOfBytes", number_of_bytes}};
  if (!context.empty()) request["EncryptionContext"] = ContextJson(context);
  ENVELOPE_ASSIGN_OR_RETURN(json response,
                            Call("TrentService.GenerateDataKey", request));
  ScopedCleanseMember wipe(&response, kPlaintextField);
  ENVELOPE_ASSIGN_OR_RETURN(DataKey key, GetDataKey(response, number_of_bytes, endpoint_name_));
  GetString(response, "KeyId", &key.key_arn);
  return key;
}

StatusOr<std::vector<DataKey>> KmsClient::GenerateDataKeys(
    const std::string& key_id, const std::vector<EncryptionContextMap>& contexts,
    size_t number_of_bytes) {
  if (contexts.empty() || contexts.size() > kMaxDataKeysPerRequest) {
    return Status::InvalidArgument("GenerateDataKeys takes 1 to " +
                                   std::to_string(kMaxDataKeysPerRequest) + " contexts");
  }
  json list = json::array();
  for (const auto& context : contexts) list.push_back(ContextJson(context));
  json request = {{"KeyId", key_id},
                  {"NumberOfBytes", number_of_bytes},
                  {"EncryptionContexts", std::move(list)}};
  ENVELOPE_ASSIGN_OR_RETURN(
      json response,
      Call(std::string(kExtensionServicePrefix) + "GenerateDataKeys", request));
  auto items = response.find("DataKeys");
  if (items == response.end() || !items->is_array()) {
    return Malformed(endpoint_name_, "no DataKeys array");
  }
  ScopedCleanseEach wipe(&*items, kPlaintextField);
  if (items->size() != contexts.size()) {
    return Malformed(endpoint_name_, "DataKeys does not have one key per context");
  }
  std::string key_arn;
  GetString(response, "KeyId", &key_arn);
  std::vector<DataKey> keys;
  keys.reserve(contexts.size());
  for (const json& item : *items) {
    ENVELOPE_ASSIGN_OR_RETURN(DataKey key, GetDataKey(item, number_of_bytes, endpoint_name_));
    key.key_arn = key_arn;
    keys.push_back(std::move(key));
  }
  return keys;
}

StatusOr<crypto::SecretBytes> KmsClient::Decrypt(
    ByteView blob, const EncryptionContextMap& context,
    const std::string& key_id) {
  if (key_id.empty()) {
    return Status::InvalidArgument("Decrypt without a KeyId: every unwrap names the key it expects");
  }
  json request = {{"CiphertextBlob", Base64Encode(blob)}, {"KeyId", key_id}};
  if (!context.empty()) request["EncryptionContext"] = ContextJson(context);
  ENVELOPE_ASSIGN_OR_RETURN(json response,
                            Call("TrentService.Decrypt", request));
  ScopedCleanseMember wipe(&response, kPlaintextField);
  return GetSecret(response, endpoint_name_);
}

StatusOr<Bytes> KmsClient::Encrypt(const std::string& key_id,
                                   ByteView plaintext,
                                   const EncryptionContextMap& context) {
  json request = {{"KeyId", key_id}};
  if (!context.empty()) request["EncryptionContext"] = ContextJson(context);
  // Base64Encode reserves its result at the final size; the string is then
  // moved, never copied, into the request, and wiped below.
  request[std::string(kPlaintextField)] = Base64Encode(plaintext);
  ScopedCleanseMember wipe(&request, kPlaintextField);
  ENVELOPE_ASSIGN_OR_RETURN(json response,
                            Call("TrentService.Encrypt", request));
  return GetBlob(response, "CiphertextBlob", endpoint_name_);
}

StatusOr<Bytes> KmsClient::ReEncrypt(
    ByteView blob, const std::string& source_key_id,
    const EncryptionContextMap& source_context,
    const std::string& destination_key_id,
    const EncryptionContextMap& destination_context) {
  if (source_key_id.empty()) {
    return Status::InvalidArgument("ReEncrypt without a SourceKeyId: every unwrap names the key it expects");
  }
  json request = {{"CiphertextBlob", Base64Encode(blob)},
                  {"SourceKeyId", source_key_id},
                  {"DestinationKeyId", destination_key_id}};
  if (!source_context.empty()) {
    request["SourceEncryptionContext"] = ContextJson(source_context);
  }
  if (!destination_context.empty()) {
    request["DestinationEncryptionContext"] =
        ContextJson(destination_context);
  }
  ENVELOPE_ASSIGN_OR_RETURN(json response,
                            Call("TrentService.ReEncrypt", request));
  return GetBlob(response, "CiphertextBlob", endpoint_name_);
}

namespace {

// The length of `s` as nlohmann::json writes it (quotes, escapes; UTF-8
// passed through).
size_t JsonStringSize(std::string_view s) {
  size_t n = 2;
  for (unsigned char c : s) {
    if (c == '"' || c == '\\' || c == '\b' || c == '\f' || c == '\n' || c == '\r' ||
        c == '\t') {
      n += 2;
    } else if (c < 0x20) {
      n += 6;  // \u00XX
    } else {
      n += 1;
    }
  }
  return n;
}

size_t ContextSize(const EncryptionContextMap& context) {
  size_t n = 2;  // {}
  for (const auto& [k, v] : context) n += JsonStringSize(k) + 1 + JsonStringSize(v) + 1;
  return context.empty() ? n : n - 1;  // no comma after the last pair
}

json ReEncryptItemJson(const ReEncryptItem& item) {
  return {{"CiphertextBlob", Base64Encode(item.blob)},
          {"SourceKeyId", item.source_key_id},
          {"SourceEncryptionContext", ContextJson(item.source_context)},
          {"DestinationEncryptionContext", ContextJson(item.destination_context)}};
}

}  // namespace

size_t ReEncryptBatchItemSize(const ReEncryptItem& item) {
  // {"CiphertextBlob":B,"DestinationEncryptionContext":C,"SourceEncryptionContext":C,
  //  "SourceKeyId":S} (nlohmann::json sorts members), and a comma.
  constexpr size_t kFixed = sizeof(R"({"CiphertextBlob":,"DestinationEncryptionContext":,)"
                                   R"("SourceEncryptionContext":,"SourceKeyId":})") - 1 + 1;
  return kFixed + 2 + (item.blob.size() + 2) / 3 * 4 + ContextSize(item.destination_context) +
         ContextSize(item.source_context) + JsonStringSize(item.source_key_id);
}

size_t ReEncryptBatchBodySize(const std::string& destination_key_id) {
  // {"DestinationKeyId":D,"Items":[...]}
  return sizeof(R"({"DestinationKeyId":,"Items":[]})") - 1 + JsonStringSize(destination_key_id);
}

StatusOr<std::vector<StatusOr<Bytes>>> KmsClient::ReEncryptBatch(
    std::span<const ReEncryptItem> items, const std::string& destination_key_id) {
  if (items.empty() || items.size() > kMaxReEncryptsPerRequest) {
    return Status::InvalidArgument("ReEncryptBatch takes 1 to " +
                                   std::to_string(kMaxReEncryptsPerRequest) + " items");
  }
  json list = json::array();
  for (const ReEncryptItem& item : items) {
    if (item.source_key_id.empty()) {
      return Status::InvalidArgument(
          "ReEncryptBatch item without a SourceKeyId: every unwrap names the key it expects");
    }
    list.push_back(ReEncryptItemJson(item));
  }
  json request = {{"DestinationKeyId", destination_key_id}, {"Items", std::move(list)}};
  ENVELOPE_ASSIGN_OR_RETURN(
      json response, Call(std::string(kExtensionServicePrefix) + "ReEncryptBatch", request));
  auto results = response.find("Results");
  if (results == response.end() || !results->is_array() || results->size() != items.size()) {
    return Malformed(endpoint_name_, "ReEncryptBatch: no Results array with one result per item");
  }
  std::vector<StatusOr<Bytes>> out;
  out.reserve(items.size());
  for (const json& result : *results) {
    std::string type, message;
    if (GetString(result, "ErrorType", &type)) {
      GetString(result, "ErrorMessage", &message);
      out.push_back(StatusFromKmsError(type, message));
      continue;
    }
    auto blob = GetBlob(result, "CiphertextBlob", endpoint_name_);
    if (!blob.ok()) return blob.status();
    out.push_back(std::move(*blob));
  }
  return out;
}

void KmsClient::CloseIdleConnections() {
  std::vector<std::unique_ptr<HttpConnection>> idle;
  {
    std::lock_guard lock(mu_);
    idle.swap(idle_);
  }
}

std::string ForeignKeyCreator(const json& key_metadata, const Endpoint& endpoint) {
  if (!key_metadata.is_object()) return "";
  auto it = key_metadata.find("Creator");
  if (it == key_metadata.end() || !it->is_string()) return "";
  const std::string creator = it->get<std::string>();
  if (creator.empty() || creator == "user:root" || creator == "uid:0") return "";
  if (endpoint.kind != Endpoint::kUnix) return "";
  const uid_t uid = ::geteuid();
  if (creator == "uid:" + std::to_string(uid)) return "";
  struct passwd pw;
  struct passwd* found = nullptr;
  char buf[4096];
  if (::getpwuid_r(uid, &pw, buf, sizeof(buf), &found) == 0 && found != nullptr &&
      creator == std::string("user:") + found->pw_name) {
    return "";
  }
  // envelope-keyd records Unix creators as uid:N; name the user too.
  if (creator.rfind("uid:", 0) == 0) {
    char* end = nullptr;
    const unsigned long n = std::strtoul(creator.c_str() + 4, &end, 10);
    if (end != nullptr && *end == '\0' &&
        ::getpwuid_r(static_cast<uid_t>(n), &pw, buf, sizeof(buf), &found) == 0 &&
        found != nullptr) {
      return std::string("user:") + found->pw_name + " (" + creator + ")";
    }
  }
  return creator;
}

}  // namespace envelope::kms
