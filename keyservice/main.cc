// envelope-keyd: the local key service daemon.
//
//   envelope-keyd --data-dir DIR [--socket PATH]
//                 [--listen ADDR:PORT [--access-keys FILE]
//                  [--tls-cert FILE --tls-key FILE [--client-ca FILE]]]
//                 [--standard-only]
//                 [--root-key-file PATH | --passphrase-fd N | --passphrase-prompt |
//                  --root-key pkcs11:URI (--pin-fd N | --pin-prompt)]
//                 [--hsm-cluster cluster-ID=pkcs11:URI ...]
//                 [--restore BACKUP [--shares-fd N]]
//                 [-f] [--log-file PATH] [connection limits, see --help]
//
// --listen takes an IPv4 address or a bracketed IPv6 one ([::1]:7800);
// plain TCP on loopback addresses only, any address with --tls-cert and
// --tls-key (PEM; the key file the daemon user's own, mode 0600 or
// stricter). --client-ca FILE: mutual TLS, a verified client certificate
// without SigV4 authenticates as "tls:" + its RFC 2253 subject
// ("tls:CN=host-a"). --access-keys is needed for SigV4, i.e. always but
// with --client-ca. --standard-only: a stand-in for AWS KMS in tests (no
// extensions, AWS's response fields only). docs/KEYSERVICE.md has it all.
//
// Without -f it returns once the service is ready (or failed), leaving the
// daemon in the background. SIGTERM or SIGINT shut it down cleanly.
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <vector>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "core/base/fd_io.h"
#include "core/base/process_hygiene.h"
#include "keyservice/access_keys.h"
#include "keyservice/audit_anchor.h"
#include "keyservice/audit_log.h"
#include "keyservice/http_server.h"
#include "keyservice/key_store.h"
#include "keyservice/kms_service.h"
#include "keyservice/restore.h"
#include "keyservice/root_key.h"
#include "keyservice/tls.h"
#include "kms/endpoint.h"

namespace {

using envelope::Status;
using envelope::StatusOr;
namespace ks = envelope::keyservice;
namespace crypto = envelope::crypto;

struct Flags {
  std::string data_dir;
  std::string socket_path;
  std::string listen;
  std::string access_keys;
  std::string tls_cert;
  std::string tls_key;
  std::string client_ca;
  bool standard_only = false;
  std::string root_key_file;
  int passphrase_fd = -1;
  bool passphrase_prompt = false;
  std::string root_key_uri;  // pkcs11:...
  std::string restore;       // a backup file to restore first
  int shares_fd = -1;
  int pin_fd = -1;
  bool pin_prompt = false;
  std::vector<std::string> hsm_clusters;  // ID=pkcs11:URI
  bool foreground = false;
  std::string log_file;
  std::string region = "local";
  std::string peers_file;
  std::vector<std::string> replication_principals;
  double key_pair_burst = 10;
  double key_pairs_per_second = 2;
  std::string account = "000000000000";
  int64_t clock_offset_seconds = 0;
  int scheduler_interval_seconds = 60;
  int secure_heap_mib = 4;
  size_t max_keys_per_principal = 1000;
  size_t max_key_versions_per_principal = 10000;
  unsigned secure_heap_reserve_percent = 25;
  bool audit_accept_truncation = false;
  size_t max_connections = 1024;
  size_t max_connections_per_peer = 128;
  int header_timeout_seconds = 10;
  int idle_timeout_seconds = 60;
  int body_timeout_seconds = 30;
};

// Tells the parent of a backgrounded daemon how start-up went.
class ReadyPipe {
 public:
  void Notify(const std::string& error) {
    if (fd_ < 0) return;
    std::string msg = error.empty() ? "ok" : error;
    (void)!::write(fd_, msg.data(), msg.size());
    ::close(fd_);
    fd_ = -1;
  }
  int fd_ = -1;
};

int Fail(ReadyPipe* ready, const std::string& msg) {
  spdlog::critical("{}", msg);
  ready->Notify(msg);
  return 1;
}

// Where a key-file data directory keeps its root key.
std::string DefaultKeyFilePath(const Flags& f) {
  return f.root_key_file.empty() ? f.data_dir + "/root.key" : f.root_key_file;
}

// The root key file of a key-file data directory ("" for a passphrase or
// a token).
std::string KeyFilePath(const Flags& f) {
  if (!f.root_key_uri.empty() || f.passphrase_fd >= 0 || f.passphrase_prompt) return "";
  return DefaultKeyFilePath(f);
}

StatusOr<crypto::SecretBytes> LoadRootKey(const Flags& f, ks::KeyStore* store) {
  const bool on_token = !f.root_key_uri.empty();
  const bool passphrase = f.passphrase_fd >= 0 || f.passphrase_prompt;
  const std::string asked = ks::RootKeyKindName(on_token     ? ks::RootKeyKind::kToken
                                                : passphrase ? ks::RootKeyKind::kPassphrase
                                                             : ks::RootKeyKind::kKeyFile);
  // The data directory remembers which kind of root key it was made with.
  ENVELOPE_ASSIGN_OR_RETURN(std::string mode,
                            store->GetOrCreateMeta(ks::kRootKeyModeMeta, [&] { return asked; }));
  if (mode != asked) {
    return Status::FailedPrecondition("this data directory was set up with a " + mode +
                                      " root key; start envelope-keyd the same way");
  }
  if (on_token) {
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes pin,
                              ks::ReadPassphrase(f.pin_fd, "PKCS#11 token PIN: ", "PIN"));
    ENVELOPE_ASSIGN_OR_RETURN(std::unique_ptr<ks::Pkcs11Token> token,
                              ks::Pkcs11Token::Open(f.root_key_uri, pin));
    ENVELOPE_ASSIGN_OR_RETURN(std::optional<std::string> sealed,
                              store->GetMeta(ks::kSealedRootKeyMeta));
    if (!sealed) {
      // A store that was ever unlocked has its check value: its root key
      // cannot be made again, only lost.
      ENVELOPE_ASSIGN_OR_RETURN(std::optional<std::string> check, store->GetMeta("root-check"));
      if (check) {
        return Status::Corruption(
            "this data directory has no sealed root key, though it was set up with one");
      }
    }
    std::string new_sealed;
    bool generated = false;
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes root,
                              ks::RootKeyFromToken(token.get(), sealed, &new_sealed, &generated));
    if (!sealed) {
      ENVELOPE_RETURN_IF_ERROR(store->PutMeta(ks::kSealedRootKeyMeta, new_sealed));
      if (generated) spdlog::info("generated a new AES-256 key on the {}", token->description());
      spdlog::info("made a new root key, sealed by the {}", token->description());
    } else {
      spdlog::info("root key opened by the {}", token->description());
    }
    return root;
  }
  if (passphrase) {
    ENVELOPE_ASSIGN_OR_RETURN(std::string fresh, ks::NewPassphraseSalt());
    ENVELOPE_ASSIGN_OR_RETURN(std::string salt,
                              store->GetOrCreateMeta(ks::kScryptSaltMeta, [&] { return fresh; }));
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes pass,
                              ks::ReadPassphrase(f.passphrase_fd, "envelope-keyd passphrase: "));
    return ks::RootKeyFromPassphrase(pass, salt);
  }
  const std::string path = DefaultKeyFilePath(f);
  ENVELOPE_RETURN_IF_ERROR(ks::TakeCommittedKeyFile(path));
  bool created = false;
  ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes key, ks::LoadOrCreateRootKeyFile(path, &created));
  if (created) spdlog::info("created a new root key file {}", path);
  return key;
}

int Run(const Flags& f, ReadyPipe* ready) {
  auto heap = crypto::InitSecureHeap(size_t(f.secure_heap_mib) << 20);
  if (!heap.ok()) return Fail(ready, heap.status().ToString());
  if (*heap == crypto::SecureHeapState::kUnlocked) {
    spdlog::warn("could not mlock the secure heap (RLIMIT_MEMLOCK): keys may be swapped out");
  }
  std::error_code ec;
  std::filesystem::create_directories(f.data_dir, ec);
  ::chmod(f.data_dir.c_str(), 0700);

  // One daemon per data directory.
  envelope::UniqueFd lock(::open((f.data_dir + "/LOCK").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  if (!lock.valid() || ::flock(lock.get(), LOCK_EX | LOCK_NB) != 0) {
    return Fail(ready, "another envelope-keyd is already running on " + f.data_dir);
  }

  bool restored = false;
  if (!f.restore.empty()) {
    ks::RestoreOptions restore;
    restore.backup_path = f.restore;
    restore.data_dir = f.data_dir;
    restore.root_key_path = f.root_key_file.empty() ? f.data_dir + "/root.key" : f.root_key_file;
    restore.shares_fd = f.shares_fd;
    auto done = ks::RestoreBackup(restore);
    if (!done.ok()) return Fail(ready, done.status().ToString());
    spdlog::info("{}", *done);
    restored = true;
  }

  auto store = ks::KeyStore::Open(f.data_dir);
  if (!store.ok()) return Fail(ready, store.status().ToString());
  auto root = LoadRootKey(f, store->get());
  if (!root.ok()) return Fail(ready, root.status().ToString());
  Status s = (*store)->Unlock(*root);
  const std::string root_key_file = KeyFilePath(f);
  if (!root_key_file.empty()) s = ks::FinishKeyFileRotation(root_key_file, store->get(), &*root, s);
  if (!s.ok()) return Fail(ready, s.ToString());
  // Only the data directory's own root.key: a --root-key-file given with
  // another kind may be some other directory's key.
  if (root_key_file.empty()) ks::RemoveLeftoverKeyFiles(f.data_dir + "/root.key", store->get());
  for (const ks::AliasEntry& a : (*store)->AllAliases()) {
    if (a.owner.empty()) {
      spdlog::warn("{} predates per-user aliases and resolves for nobody: recreate it", a.name);
    }
  }

  // The audit MAC key is kept in the store (it was derived from the first
  // root key), so that the chain outlives a root-key rotation.
  auto mac_key = (*store)->KeptSecret("audit-mac-key",
                                      [&] { return ks::AuditLog::DeriveMacKey(*root); });
  if (!mac_key.ok()) return Fail(ready, mac_key.status().ToString());
  std::string recovered;
  auto audit = ks::AuditLog::OpenWithMacKey(f.data_dir + "/audit.log", std::move(*mac_key),
                                            &recovered);
  if (!audit.ok()) return Fail(ready, audit.status().ToString());
  if (!recovered.empty()) spdlog::warn("{}", recovered);
  std::string accepted;
  // A restored store keeps its audit anchor, but the log is not in the
  // backup: the new log starts by recording that.
  s = ks::CheckAuditAnchorAtStart(store->get(), audit->get(), f.audit_accept_truncation || restored,
                                  &accepted);
  if (!s.ok()) return Fail(ready, s.ToString());
  if (!accepted.empty()) spdlog::critical("{}", accepted);

  std::unique_ptr<ks::AccessKeys> access_keys;
  std::unique_ptr<ks::TlsContext> tls;
  std::string tcp_host;
  uint16_t tcp_port = 0;
  if (!f.listen.empty()) {
    auto listen = ks::ParseListenAddress(f.listen);
    if (!listen.ok()) return Fail(ready, listen.status().message());
    tcp_host = listen->host;
    tcp_port = listen->port;
    if (!f.tls_cert.empty()) {
      ks::TlsOptions tls_options;
      tls_options.cert_file = f.tls_cert;
      tls_options.key_file = f.tls_key;
      tls_options.client_ca_file = f.client_ca;
      auto context = ks::TlsContext::New(tls_options);
      if (!context.ok()) return Fail(ready, context.status().ToString());
      tls = std::move(*context);
    }
    if (!f.access_keys.empty()) {
      auto keys = ks::AccessKeys::Load(f.access_keys);
      if (!keys.ok()) return Fail(ready, keys.status().ToString());
      access_keys = std::move(*keys);
    }
  }

  ks::KmsServiceOptions options;
  options.region = f.region;
  options.peers_file = f.peers_file;
  options.key_pair_burst = f.key_pair_burst;
  options.key_pairs_per_second = f.key_pairs_per_second;
  options.replication_principals = f.replication_principals;
  options.account = f.account;
  options.clock_offset = std::chrono::seconds(f.clock_offset_seconds);
  options.admin_uid = ::getuid();
  options.max_keys_per_principal = f.max_keys_per_principal;
  options.max_key_versions_per_principal = f.max_key_versions_per_principal;
  options.secure_heap_reserve_percent = f.secure_heap_reserve_percent;
  options.standard_only = f.standard_only;
  options.root_key_file = root_key_file;
  options.root_key_uri = f.root_key_uri;
  options.root_key_from_passphrase = f.passphrase_fd >= 0 || f.passphrase_prompt;
  options.default_root_key_file = f.data_dir + "/root.key";
  if (const char* latch = std::getenv("ENVELOPE_TEST_ROTATE_ROOT_LATCH")) {
    options.rotate_root_latch_dir = latch;
  }
  std::map<std::string, std::string> clusters;
  for (const std::string& spec : f.hsm_clusters) {
    const size_t eq = spec.find('=');
    const std::string id = spec.substr(0, eq);
    if (eq == std::string::npos || !ks::CustomKeyStores::ValidClusterId(id) ||
        spec.compare(eq + 1, 7, "pkcs11:") != 0 || clusters.count(id)) {
      return Fail(ready, "--hsm-cluster takes ID=pkcs11:URI, each ID once, an ID being "
                         "cluster- and 11 to 16 lower-case letters, digits or '-': " + spec);
    }
    clusters[id] = spec.substr(eq + 1);
  }
  options.custom_key_stores = std::make_shared<ks::CustomKeyStores>(std::move(clusters));
  ks::KmsService service(store->get(), audit->get(), options);
  // Backup seals the root key beside the store; nothing else needs it.
  service.KeepRootKeyForBackups(std::move(*root));
  // Before the scheduled work: deleting a key in a custom key store
  // destroys its token keys.
  if (Status s = service.StartCustomKeyStores(); !s.ok()) return Fail(ready, s.ToString());
  if (Status s = service.StartKeyUsage(); !s.ok()) return Fail(ready, s.ToString());
  service.MarkReplicasForSync();
  service.RunScheduledWork();  // catch up on rotations and deletions that fell due

  // Start() creates the socket's directory (or checks one that exists).
  std::string socket_path = f.socket_path.empty() ? envelope::kms::DefaultSocketPath() : f.socket_path;
  ks::HttpServerOptions server_options;
  server_options.socket_path = socket_path;
  server_options.tcp_host = tcp_host;
  server_options.tcp_port = tcp_port;
  server_options.tls = tls.get();
  server_options.access_keys = access_keys.get();
  server_options.max_connections = f.max_connections;
  server_options.max_connections_per_peer = f.max_connections_per_peer;
  server_options.header_timeout = std::chrono::seconds(f.header_timeout_seconds);
  server_options.idle_timeout = std::chrono::seconds(f.idle_timeout_seconds);
  server_options.body_timeout = std::chrono::seconds(f.body_timeout_seconds);
  ks::HttpServer server(&service, server_options);
  s = server.Start();
  if (!s.ok()) return Fail(ready, s.ToString());
  std::string tcp_url;
  if (!tcp_host.empty()) {
    tcp_url = std::string(" and ") + (tls ? "https://" : "http://") + ks::UrlHost(tcp_host) +
              ":" + std::to_string(server.tcp_port());
  }
  spdlog::info("envelope-keyd serving unix:{}{} with {} keys", socket_path, tcp_url,
               (*store)->AllKeys().size());
  if (tls) {
    spdlog::info("TLS: {}", tls->requests_client_certificates()
                                ? "client certificates verified against " + f.client_ca +
                                      " authenticate unsigned requests as tls:SUBJECT"
                                : std::string("every request must be SigV4-signed"));
  }
  if (f.standard_only) {
    spdlog::info("standard-only mode: EnvelopeKeyService extensions answer "
                 "UnknownOperationException, answers carry AWS KMS's published fields only");
  }
  ready->Notify("");

  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  for (;;) {
    timespec timeout{f.scheduler_interval_seconds, 0};
    int sig = sigtimedwait(&set, nullptr, &timeout);
    if (sig == SIGTERM || sig == SIGINT) break;
    service.RunScheduledWork();
    Status anchor_status = ks::SaveAuditAnchor(store->get(), audit->get());
    if (!anchor_status.ok()) spdlog::error("saving the audit anchor: {}", anchor_status.ToString());
  }
  spdlog::info("shutting down");
  server.Stop();
  service.FlushKeyUsage();
  Status anchor_status = ks::SaveAuditAnchor(store->get(), audit->get());
  if (!anchor_status.ok()) spdlog::error("saving the audit anchor: {}", anchor_status.ToString());
  return 0;
}

}  // namespace

// A secret in a pipe whose read end stands in for a --*-fd option: the
// daemon reads it from there after it has left the terminal. Secrets are
// at most a few hundred bytes, far below a pipe's capacity.
StatusOr<int> PipeWith(envelope::ByteView secret) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Status::FromErrno("pipe2");
  envelope::UniqueFd write_end(fds[1]);
  size_t done = 0;
  while (done < secret.size()) {
    const ssize_t n = ::write(write_end.get(), secret.data() + done, secret.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(fds[0]);
      return Status::FromErrno("write to a pipe");
    }
    done += static_cast<size_t>(n);
  }
  return fds[0];
}

// Without -f the daemon reads its secrets after setsid(), with no terminal:
// the passphrase, the token's PIN and a restore's shares are asked for
// here instead, before it detaches, and handed over in pipes.
Status ReadPromptsBeforeDetaching(Flags* f) {
  if (f->foreground) return Status::Ok();
  if (f->passphrase_prompt && f->passphrase_fd < 0) {
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes pass,
                              ks::ReadPassphrase(-1, "envelope-keyd passphrase: "));
    ENVELOPE_ASSIGN_OR_RETURN(f->passphrase_fd, PipeWith(pass.view()));
  }
  if (!f->root_key_uri.empty() && f->pin_fd < 0) {
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes pin,
                              ks::ReadPassphrase(-1, "PKCS#11 token PIN: ", "PIN"));
    ENVELOPE_ASSIGN_OR_RETURN(f->pin_fd, PipeWith(pin.view()));
  }
  if (!f->restore.empty() && f->shares_fd < 0) {
    size_t size = 0;
    ENVELOPE_ASSIGN_OR_RETURN(crypto::SecretBytes lines,
                              ks::ReadSharesFromTerminal(f->restore, &size));
    ENVELOPE_ASSIGN_OR_RETURN(f->shares_fd, PipeWith(envelope::ByteView(lines.data(), size)));
  }
  return Status::Ok();
}

int main(int argc, char** argv) {
  // Before anything holds key material: no core dumps, no ptrace by peers.
  if (envelope::Status s = envelope::HardenProcess(); !s.ok()) {
    std::fprintf(stderr, "envelope-keyd: %s\n", s.ToString().c_str());
    return 1;
  }
  Flags f;
  CLI::App app{"envelope-keyd: a local AWS KMS-compatible key service"};
  app.add_option("--data-dir", f.data_dir, "state directory (LMDB store, audit log, root key)")->required();
  app.add_option("--socket", f.socket_path, "Unix socket path (default: " + envelope::kms::DefaultSocketPath() + ")");
  auto* listen = app.add_option("--listen", f.listen, "also serve TCP on ADDR:PORT (IPv4, or [IPv6]); plain HTTP on loopback only, TLS on any address");
  auto* access_keys = app.add_option("--access-keys", f.access_keys, "access-keys file for SigV4 on --listen (mode 0600)");
  auto* tls_cert = app.add_option("--tls-cert", f.tls_cert, "serve TLS on --listen with this PEM certificate chain");
  auto* tls_key = app.add_option("--tls-key", f.tls_key, "PEM private key of --tls-cert (owned by this user, mode 0600)");
  auto* client_ca = app.add_option("--client-ca", f.client_ca, "mutual TLS: verify client certificates against this PEM CA; a verified one authenticates unsigned requests as tls:SUBJECT");
  tls_cert->needs(listen)->needs(tls_key);
  tls_key->needs(tls_cert);
  client_ca->needs(tls_cert);
  access_keys->needs(listen);
  app.add_flag("--standard-only", f.standard_only, "stand in for AWS KMS in tests: no EnvelopeKeyService extensions, only AWS's response fields");
  auto* key_file = app.add_option("--root-key-file", f.root_key_file, "root key file (default DATA_DIR/root.key, created on first start)");
  auto* pass_fd = app.add_option("--passphrase-fd", f.passphrase_fd, "derive the root key from a passphrase read from this fd");
  auto* prompt = app.add_flag("--passphrase-prompt", f.passphrase_prompt, "derive the root key from a passphrase typed on the terminal");
  auto* uri = app.add_option("--root-key", f.root_key_uri, "keep the root key under an AES key on a PKCS#11 token: an RFC 7512 URI, pkcs11:token=...;object=...?module-path=...")
      ->check([](const std::string& v) { return v.rfind("pkcs11:", 0) == 0 ? std::string() : std::string("--root-key takes a pkcs11: URI (a key file is --root-key-file)"); });
  auto* restore = app.add_option("--restore", f.restore, "first restore this backup (envelopectl backup) into the empty data directory, with a key-file root key");
  auto* shares_fd = app.add_option("--shares-fd", f.shares_fd, "with --restore: read the recovery key's shares from this fd, one per line (default: the terminal)");
  shares_fd->needs(restore);
  restore->excludes(uri)->excludes(pass_fd)->excludes(prompt);
  auto* pin_fd = app.add_option("--pin-fd", f.pin_fd, "read the token's PIN from this fd");
  auto* pin_prompt = app.add_flag("--pin-prompt", f.pin_prompt, "read the token's PIN from the terminal");
  key_file->excludes(pass_fd)->excludes(prompt)->excludes(uri);
  pass_fd->excludes(prompt)->excludes(uri);
  prompt->excludes(uri);
  pin_fd->needs(uri)->excludes(pin_prompt);
  pin_prompt->needs(uri);
  app.add_flag("-f,--foreground", f.foreground, "stay in the foreground, log to stderr");
  app.add_option("--hsm-cluster", f.hsm_clusters, "attach a PKCS#11 token for custom key stores as ID=pkcs11:URI (module and token, no object; ID: cluster-XXXXXXXXXXX), repeatable");
  app.add_option("--log-file", f.log_file, "log file when in the background (default DATA_DIR/keyd.log)");
  app.add_option("--region", f.region, "region part of key ARNs");
  app.add_option("--peers", f.peers_file, "multi-Region keys: the other regions, one per line: REGION https://HOST:PORT ACCESS_KEY_ID SECRET [CA_FILE] (mode 0600; read at each use)");
  app.add_option("--key-pair-burst", f.key_pair_burst, "key pairs one principal may have made on request at once (GenerateDataKeyPair, GetParametersForImport; default 10)")->check(CLI::Range(1, 10000));
  app.add_option("--key-pairs-per-second", f.key_pairs_per_second, "and then per second (default 2; 0: never again, a testing aid)")->check(CLI::Range(0, 10000));
  app.add_option("--replication-principal", f.replication_principals, "multi-Region keys: a principal (key:NAME, tls:SUBJECT) of another region's daemon allowed to push replicas here; repeatable");
  app.add_option("--account", f.account, "account part of key ARNs");
  app.add_option("--clock-offset-seconds", f.clock_offset_seconds, "testing aid: shift the clock used for rotation and deletion schedules");
  app.add_option("--scheduler-interval-seconds", f.scheduler_interval_seconds, "how often to run due rotations and deletions")->check(CLI::Range(1, 3600));
  app.add_option("--secure-heap-mib", f.secure_heap_mib, "size of the locked memory arena for keys")->check(CLI::IsMember({1, 2, 4, 8, 16, 32, 64}));
  app.add_option("--max-keys-per-principal", f.max_keys_per_principal, "keys one user or access key may create (0: no limit)");
  app.add_option("--max-key-versions-per-principal", f.max_key_versions_per_principal, "retained key versions of one user's or access key's keys (0: no limit)");
  app.add_option("--secure-heap-reserve-percent", f.secure_heap_reserve_percent, "share of the secure heap new key material may not take (kept for data-key operations)")->check(CLI::Range(1, 99));
  app.add_flag("--audit-accept-truncation", f.audit_accept_truncation, "start although the audit log does not continue from its saved anchor; records the loss in the log");
  app.add_option("--max-connections", f.max_connections, "open connections in all (default 1024)")->check(CLI::Range(1, 65536));
  app.add_option("--max-connections-per-peer", f.max_connections_per_peer, "open connections per uid (Unix socket) or per address (TCP) (default 128)")->check(CLI::Range(1, 65536));
  app.add_option("--header-timeout-seconds", f.header_timeout_seconds, "time for a new connection to send a request header (default 10)")->check(CLI::Range(1, 3600));
  app.add_option("--idle-timeout-seconds", f.idle_timeout_seconds, "time a kept-alive connection may wait between requests (default 60)")->check(CLI::Range(1, 86400));
  app.add_option("--body-timeout-seconds", f.body_timeout_seconds, "time to receive a request body, and to send a response (default 30)")->check(CLI::Range(1, 3600));
  CLI11_PARSE(app, argc, argv);
  f.data_dir = std::filesystem::absolute(f.data_dir).string();
  // Checks that need no data directory, before forking: the parent prints
  // the refusal.
  if (!f.listen.empty()) {
    auto listen = ks::ParseListenAddress(f.listen);
    if (!listen.ok()) {
      std::fprintf(stderr, "envelope-keyd: %s\n", listen.status().message().c_str());
      return 1;
    }
    if (Status s = ks::CheckListenerTransport(*listen, !f.tls_cert.empty()); !s.ok()) {
      std::fprintf(stderr, "envelope-keyd: %s\n", s.message().c_str());
      return 1;
    }
    if (f.access_keys.empty() && f.client_ca.empty()) {
      std::fprintf(stderr,
                   "envelope-keyd: --listen needs --access-keys FILE (SigV4), or TLS with "
                   "--client-ca FILE (client certificates)\n");
      return 1;
    }
  }

  // What is typed at the terminal is read now, while the daemon still has
  // one (it leaves it with setsid() below).
  if (Status s = ReadPromptsBeforeDetaching(&f); !s.ok()) {
    std::fprintf(stderr, "envelope-keyd: %s\n", s.ToString().c_str());
    return 1;
  }

  // Signals are taken synchronously by the main thread (sigtimedwait), so
  // block them before any thread exists.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  signal(SIGPIPE, SIG_IGN);

  ReadyPipe ready;
  if (!f.foreground) {
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return 1;
    pid_t pid = ::fork();
    if (pid < 0) return 1;
    if (pid > 0) {
      ::close(fds[1]);
      char buf[4096];
      ssize_t n = ::read(fds[0], buf, sizeof(buf));
      std::string msg = n > 0 ? std::string(buf, n) : "the daemon exited during start-up";
      if (msg == "ok") return 0;
      std::fprintf(stderr, "envelope-keyd: %s\n", msg.c_str());
      return 1;
    }
    ::close(fds[0]);
    ready.fd_ = fds[1];
    ::setsid();
    int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
    ::dup2(null, 0);
    ::dup2(null, 1);
    ::dup2(null, 2);
    std::error_code ec;
    std::filesystem::create_directories(f.data_dir, ec);
    std::string log = f.log_file.empty() ? f.data_dir + "/keyd.log" : f.log_file;
    try {
      spdlog::set_default_logger(spdlog::basic_logger_mt("envelope-keyd", log));
    } catch (const spdlog::spdlog_ex& e) {
      ready.Notify(std::string("cannot open log file: ") + e.what());
      return 1;
    }
  } else {
    spdlog::set_default_logger(spdlog::stderr_logger_mt("envelope-keyd"));
  }
  spdlog::flush_on(spdlog::level::info);
  return Run(f, &ready);
}
