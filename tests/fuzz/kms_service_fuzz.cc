// Fuzzes the key service's whole request path: KmsService::Handle with a
// real LMDB store and audit log in a temporary directory ($TMPDIR), as the
// daemon calls it after the transport has read a request.
//
// Input: one principal byte ('r' root, 'u' uid 1000, 'k' an access key;
// anything else is root), the X-Amz-Target up to the first '\n', then the
// JSON body. In the body "@KEY@" becomes the id of a key made at start-up
// (also reachable as alias/fuzz) and "@BLOB@" a ciphertext blob sealed under
// it with the context {"app": "fuzz"}, so that seeds reach Decrypt and
// ReEncrypt past the key lookup. Invariants: Handle never throws, and every
// response is a JSON object (errors with "__type" and status >= 400).
#include <stdlib.h>

#include <cstdlib>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "keyservice/audit_log.h"
#include "keyservice/key_store.h"
#include "keyservice/kms_service.h"
#include "tests/fuzz/fuzz_util.h"

namespace envelope::keyservice {
namespace {

using json = nlohmann::json;

struct Fixture {
  std::string dir;
  std::unique_ptr<KeyStore> store;
  std::unique_ptr<AuditLog> audit;
  std::unique_ptr<KmsService> service;
  Principal root, user, access_key;
  std::string key_id;
  std::string blob;
};

Fixture* g_fixture = nullptr;

void RemoveDir() {
  if (g_fixture != nullptr) {
    std::error_code ec;
    std::filesystem::remove_all(g_fixture->dir, ec);
  }
}

json Call(Fixture& f, std::string_view target, const json& body) {
  KmsResponse r = f.service->Handle(f.root, target, body.dump());
  FUZZ_CHECK(r.http_status == 200);
  return json::parse(r.body);
}

Fixture& GetFixture() {
  if (g_fixture != nullptr) return *g_fixture;
  auto* f = new Fixture;
  const char* tmp = std::getenv("TMPDIR");
  std::string templ = std::string(tmp != nullptr ? tmp : "/tmp") + "/envelope-fuzz-XXXXXX";
  FUZZ_CHECK(::mkdtemp(templ.data()) != nullptr);
  f->dir = templ;
  g_fixture = f;
  std::atexit(RemoveDir);

  auto store = KeyStore::Open(f->dir);
  FUZZ_CHECK(store.ok());
  f->store = std::move(*store);
  crypto::SecretBytes root_key = fuzz::Secret(fuzz::FixedKey(0xa0));
  FUZZ_CHECK(f->store->Unlock(root_key).ok());
  std::string recovered;
  auto audit = AuditLog::Open(f->dir + "/audit.log", root_key, &recovered);
  FUZZ_CHECK(audit.ok());
  f->audit = std::move(*audit);
  f->service = std::make_unique<KmsService>(f->store.get(), f->audit.get(), KmsServiceOptions{});

  f->root.uid = 0;
  f->root.user_name = "root";
  f->user.uid = 1000;
  f->user.gid = 1000;
  f->user.user_name = "alice";
  f->user.gids = {1000};
  f->access_key.kind = Principal::Kind::kAccessKey;
  f->access_key.access_key_id = std::string(fuzz::kAccessKeyId);
  f->access_key.access_key_name = "ci";

  json created = Call(*f, "TrentService.CreateKey", json::object());
  f->key_id = created["KeyMetadata"]["KeyId"].get<std::string>();
  Call(*f, "TrentService.CreateAlias", {{"AliasName", "alias/fuzz"}, {"TargetKeyId", f->key_id}});
  json encrypted = Call(*f, "TrentService.Encrypt",
                        {{"KeyId", f->key_id},
                         {"Plaintext", "c2VjcmV0"},
                         {"EncryptionContext", {{"app", "fuzz"}}}});
  f->blob = encrypted["CiphertextBlob"].get<std::string>();
  return *f;
}

void ReplaceAll(std::string* s, std::string_view from, const std::string& to) {
  for (size_t at = s->find(from); at != std::string::npos; at = s->find(from, at + to.size())) {
    s->replace(at, from.size(), to);
  }
}

void Run(std::string_view in) {
  Fixture& f = GetFixture();
  if (in.empty()) return;
  const Principal& who = in[0] == 'u' ? f.user : in[0] == 'k' ? f.access_key : f.root;
  in.remove_prefix(1);
  size_t nl = in.find('\n');
  std::string_view target = in.substr(0, nl);
  std::string body(nl == std::string_view::npos ? std::string_view() : in.substr(nl + 1));
  ReplaceAll(&body, "@KEY@", f.key_id);
  ReplaceAll(&body, "@BLOB@", f.blob);

  KmsResponse r = f.service->Handle(who, target, body);
  json out = json::parse(r.body, nullptr, false);
  FUZZ_CHECK(!out.is_discarded() && out.is_object());
  if (r.http_status == 200) {
    FUZZ_CHECK(!out.contains("__type"));
  } else {
    FUZZ_CHECK(r.http_status >= 400 && r.http_status < 600);
    FUZZ_CHECK(out.contains("__type") && out["__type"].is_string());
  }
}

}  // namespace
}  // namespace envelope::keyservice

// The store, the audit log and OpenSSL's per-thread random generators are
// set up before the first input, so that their one-time allocations are not
// counted against it by libFuzzer's leak check.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  envelope::fuzz::PinOpenSslRandom();
  envelope::keyservice::GetFixture();
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  envelope::keyservice::Run(std::string_view(reinterpret_cast<const char*>(data), size));
  return 0;
}
