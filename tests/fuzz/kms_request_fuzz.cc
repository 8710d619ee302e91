// Fuzzes the KMS request parser: the JSON body as the key service parses
// it, then every typed accessor of KmsRequest on every field name the
// operations use. Invariants: nothing throws, and every error message and
// every parsed value can be written back as JSON (the service echoes them).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "keyservice/kms_request.h"
#include "tests/fuzz/fuzz_util.h"

namespace envelope::keyservice {
namespace {

using json = nlohmann::json;

constexpr const char* kFields[] = {
    "KeyId", "Plaintext", "CiphertextBlob", "EncryptionContext",
    "DestinationKeyId", "SourceKeyId", "SourceEncryptionContext",
    "DestinationEncryptionContext", "EncryptionContexts", "GrantTokens",
    "NumberOfBytes", "KeySpec", "Description", "Tags", "TagKeys", "AliasName",
    "TargetKeyId", "Limit", "Marker", "PendingWindowInDays", "Policy",
    "PolicyName", "BypassPolicyLockoutSafetyCheck", "KeyVersions", "Count",
    "TagKey", "TagValue", ""};

void Dump(const std::optional<KmsError>& e) {
  if (!e) return;
  FUZZ_CHECK(e->type == "ValidationException" || e->type == "SerializationException");
  (void)json{{"__type", e->type}, {"message", e->message}}.dump();
}

void Run(std::string_view body) {
  json parsed = json::parse(body, nullptr, false);
  if (parsed.is_discarded() || !parsed.is_object()) return;
  KmsRequest req(parsed);
  for (const char* name : kFields) {
    (void)req.Has(name);
    for (bool required : {false, true}) {
      std::string s;
      Dump(req.String(name, required, &s));
      (void)json(s).dump();
      int64_t i = 0;
      Dump(req.Int(name, required, &i));
      Bytes blob;
      Dump(req.Blob(name, required, &blob));
      std::vector<std::string> list;
      Dump(req.StringList(name, required, &list));
      (void)json(list).dump();
      std::vector<std::pair<std::string, std::string>> tags;
      Dump(req.Tags(name, required, &tags));
      (void)json(tags).dump();
    }
    bool b = false;
    Dump(req.Bool(name, &b));
    EncryptionContext context;
    Dump(req.Context(name, &context));
    (void)json(context).dump();
    (void)EncodeContext(context);
    std::vector<EncryptionContext> contexts;
    for (size_t max : {size_t{1}, size_t{256}}) {
      auto e = req.ContextList(name, max, &contexts);
      Dump(e);
      if (!e) FUZZ_CHECK(!contexts.empty() && contexts.size() <= max);
    }
  }
}

}  // namespace
}  // namespace envelope::keyservice

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  envelope::keyservice::Run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
