#include "fs/share_command.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>
#include <filesystem>

#include "core/base/ascii.h"
#include "core/crypto/secret_bytes.h"
#include "fs/command_failure.h"
#include "fs/share.h"
#include "kms/connect.h"
#include "kms/grant_client.h"
#include "kms/keyd_key_service.h"

namespace envelope::fs {

namespace {

// The grant's Name: sharing the same file with the same principal twice
// (same expiry) answers the same grant.
constexpr char kGrantName[] = "envelopefs-share";

StatusOr<kms::ConnectOptions> ConnectOptionsOf(const OpenOptions& open) {
  kms::ConnectOptions c;
  c.endpoint = open.endpoint;
  c.ca_file = open.ca_file;
  if (!open.kms_api.empty()) {
    ENVELOPE_ASSIGN_OR_RETURN(c.api, kms::ParseKmsApi(open.kms_api));
  }
  return c;
}

StatusOr<std::unique_ptr<kms::StandardKms>> ConnectGrants(const OpenOptions& open) {
  ENVELOPE_ASSIGN_OR_RETURN(kms::ConnectOptions c, ConnectOptionsOf(open));
  return kms::ConnectKms(c);
}

StatusOr<std::unique_ptr<Volume>> OpenForSharing(const std::string& cipherdir,
                                                 const OpenOptions& open) {
  std::error_code ec;
  const std::string absolute = std::filesystem::canonical(cipherdir, ec).string();
  if (ec) return Status::NotFound(cipherdir + ": " + ec.message());
  auto volume = Volume::Open(absolute, open);
  if (volume.ok()) {
    for (const std::string& w : (*volume)->warnings()) {
      std::fprintf(stderr, "envelopefs: warning: %s\n", w.c_str());
    }
  }
  return volume;
}

// What share and unshare both start with: the volume opened, the file
// found (and checked to open), the key service's grant client.
struct Sharing {
  std::unique_ptr<Volume> volume;
  SharedFile file;
  std::unique_ptr<kms::StandardKms> service;
};

StatusOr<Sharing> OpenSharing(const std::string& cipherdir, const OpenOptions& open,
                              const std::string& path) {
  ENVELOPE_RETURN_IF_ERROR(crypto::InitSecureHeap().status());
  Sharing s;
  ENVELOPE_ASSIGN_OR_RETURN(s.volume, OpenForSharing(cipherdir, open));
  ENVELOPE_ASSIGN_OR_RETURN(s.file, FindSharedFile(*s.volume, path));
  ENVELOPE_ASSIGN_OR_RETURN(s.service, ConnectGrants(open));
  return s;
}

std::string Date(int64_t epoch) {
  std::time_t t = epoch;
  char text[64];
  std::strftime(text, sizeof(text), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return text;
}

}  // namespace

StatusOr<int64_t> ParseUntil(const std::string& text, int64_t now) {
  auto bad = [&] {
    return Status::InvalidArgument("--until '" + text +
                                   "': give +30m, +12h, +7d, epoch seconds, YYYY-MM-DD or "
                                   "YYYY-MM-DDTHH:MM:SSZ (UTC)");
  };
  int64_t at = 0;
  if (!text.empty() && text[0] == '+') {
    const std::string digits = text.substr(1, text.size() > 1 ? text.size() - 2 : 0);
    if (digits.empty() || digits.size() > 9 || !ascii::IsAllDigits(digits)) return bad();
    const int64_t n = std::stoll(digits);
    switch (text.back()) {
      case 's': at = now + n; break;
      case 'm': at = now + n * 60; break;
      case 'h': at = now + n * 3600; break;
      case 'd': at = now + n * 86400; break;
      default: return bad();
    }
  } else if (!text.empty() && text.size() <= 12 && ascii::IsAllDigits(text)) {
    at = std::stoll(text);
  } else {
    std::tm tm{};
    const char* end = ::strptime(text.c_str(), "%Y-%m-%dT%H:%M:%SZ", &tm);
    if (end == nullptr || *end != '\0') {
      tm = std::tm{};
      end = ::strptime(text.c_str(), "%Y-%m-%d", &tm);
      if (end == nullptr || *end != '\0') return bad();
    }
    at = ::timegm(&tm);
  }
  if (at <= now) return Status::InvalidArgument("--until '" + text + "' is not in the future");
  return at;
}

int ShareCommand(const std::string& cipherdir, const OpenOptions& open, const ShareFlags& flags) {
  int64_t expiry = 0;
  if (!flags.until.empty()) {
    auto at = ParseUntil(flags.until, std::time(nullptr));
    if (!at.ok()) return Fail(at.status());
    expiry = *at;
  }
  auto sharing = OpenSharing(cipherdir, open, flags.path);
  if (!sharing.ok()) return Fail(sharing.status());
  const SharedFile* file = &sharing->file;
  const auto& volume = sharing->volume;
  const auto& service = sharing->service;
  const bool keyd = dynamic_cast<kms::KeydKeyService*>(service.get()) != nullptr;
  kms::GrantSpec spec{file->key_arn, flags.with, {"Decrypt"}, file->context, kGrantName, expiry};
  auto grant = kms::CreateGrant(service->client(), spec, keyd);
  if (!grant.ok()) return Fail(grant.status().WithContext("creating the grant"));
  std::printf("shared %s with %s%s (grant %s)\n", file->plaintext_path.c_str(),
              flags.with.c_str(), expiry != 0 ? (" until " + Date(expiry)).c_str() : "",
              grant->c_str());
  std::printf("%s can read it, and nothing else of the volume, with:\n", flags.with.c_str());
  std::printf("  envelopefs cat --key %s %s/%s\n", file->key_arn.c_str(),
              volume->cipherdir().c_str(), file->backing_path.c_str());
  std::printf("(with --kms ENDPOINT if their key service is not the default); "
              "'envelopefs unshare' revokes it\n");
  return 0;
}

int UnshareCommand(const std::string& cipherdir, const OpenOptions& open,
                   const ShareFlags& flags) {
  auto sharing = OpenSharing(cipherdir, open, flags.path);
  if (!sharing.ok()) return Fail(sharing.status());
  const SharedFile* file = &sharing->file;
  kms::KmsClient& client = sharing->service->client();
  auto grants = kms::GrantsFor(client, file->key_arn, file->context, flags.with);
  if (!grants.ok()) return Fail(grants.status().WithContext("listing the key's grants"));
  for (const kms::GrantInfo& g : *grants) {
    Status s = kms::RevokeGrant(client, file->key_arn, g.grant_id);
    if (!s.ok()) return Fail(s.WithContext("revoking grant " + g.grant_id));
    std::printf("revoked grant %s (%s)\n", g.grant_id.c_str(), g.grantee.c_str());
  }
  std::printf("%s: %zu grant%s revoked\n", file->plaintext_path.c_str(), grants->size(),
              grants->size() == 1 ? "" : "s");
  return 0;
}

int CatCommand(const std::string& backing_file, const std::string& key,
               const OpenOptions& open) {
  auto heap = crypto::InitSecureHeap();
  if (!heap.ok()) return Fail(heap.status());
  auto c = ConnectOptionsOf(open);
  if (!c.ok()) return Fail(c.status());
  auto service = kms::ConnectKeyService(*c);
  if (!service.ok()) return Fail(service.status());
  Status s = CatFile(backing_file, key, service->get(), STDOUT_FILENO);
  if (!s.ok()) return Fail(s);
  return 0;
}

}  // namespace envelope::fs
