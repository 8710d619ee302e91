// envelopefs: create, inspect and mount encrypted volumes.
//
//   envelopefs init CIPHERDIR --key KEYID [--kms ENDPOINT] [--dek-in header|xattr] [--chunk-size N]
//   envelopefs info CIPHERDIR [--key KEYID]... [--kms ENDPOINT]
//   envelopefs mount CIPHERDIR MOUNTPOINT [-f] [-d] [-o OPTIONS] [--key KEYID]... [--kms ENDPOINT]
//   envelopefs rotate CIPHERDIR [--key KEYID]... [--to-key KEYID] [--threads N] [--json]
//   envelopefs fsck CIPHERDIR [--key KEYID]... [--deep] [--threads N] [--json]
//   envelopefs rekey CIPHERDIR [--key KEYID]... [--files PATH...] [--threads N]
//   envelopefs CIPHERDIR MOUNTPOINT -o OPTIONS   (as mount.fuse3 calls it: fstab,
//                                                 mount -t fuse.envelopefs)
//
// Every command also takes --kms-api auto|envelope|standard (which API to
// speak, kms/connect.h) and --ca-file PEM (an https endpoint's CA).
//
// Mount options of our own: kms=ENDPOINT, key=KEYID (may repeat), kms_api=API,
// ca_file=PEM, log=PATH. Everything
// else (allow_other, ro, ...) goes to the kernel and libfuse.
// sharedstorage: other mounts (other hosts) change the same cipherdir at the same
// time; no kernel caches, per-request file locks, no hard links (docs/SHARED_STORAGE.md).
// writeback_cache: the kernel's writeback cache (docs/ARCHITECTURE.md, "Caches");
// refused with sharedstorage.
//
// Trust (docs/FORMAT.md §8.1): the key service is --kms / kms=, else
// $ENVELOPE_KMS_ENDPOINT, else the default socket, never the endpoint the
// volume config records. --key / key= pins the master keys the volume key
// and every file key must be under; without a pin the config's own key is
// trusted only if nobody but the caller and root can change the config.
//
// Exit status: 0 success; 1 failure (rotate, rekey: some file not done;
// fsck: damage found); 2 usage error, or fsck could not check (e.g. the key
// service is unreachable).
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/vfs.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <sstream>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/syslog_sink.h>
#include <spdlog/spdlog.h>

#include "core/base/coding.h"
#include "core/base/private_dir.h"
#include "core/base/process_hygiene.h"
#include "core/crypto/secret_bytes.h"
#include "fs/command_failure.h"
#include "fs/fsck.h"
#include "fs/fuse_fs.h"
#include "fs/progress.h"
#include "fs/mount_table.h"
#include "fs/rekey.h"
#include "fs/share_command.h"
#include "fs/rotate.h"
#include "fs/volume.h"
#include "kms/connect.h"

#include <nlohmann/json.hpp>

namespace {

namespace efs = envelope::fs;
using envelope::Status;

using efs::Fail;

std::string Absolute(const std::string& p) {
  char buf[PATH_MAX];
  if (::realpath(p.c_str(), buf) != nullptr) return buf;
  return p;
}

// The cipherdir is private to whoever mounts it (and root): other users who
// could enter it could plant symlinks and FIFOs among the backing objects
// they own. A directory someone else owns is refused: its owner could
// reopen it at any time.
Status MakeCipherdirPrivate(const std::string& cipherdir, bool must_exist) {
  struct stat st;
  if (::stat(cipherdir.c_str(), &st) != 0) {
    if (errno == ENOENT && !must_exist) return Status::Ok();
    return Status::FromErrno("stat " + cipherdir);
  }
  if (!S_ISDIR(st.st_mode)) return Status::InvalidArgument(cipherdir + " is not a directory");
  if (st.st_uid != ::geteuid()) {
    return Status::PermissionDenied(cipherdir + " belongs to uid " + std::to_string(st.st_uid) +
                                    ", not to the user creating the volume");
  }
  if (::chmod(cipherdir.c_str(), 0700) != 0) return Status::FromErrno("chmod " + cipherdir);
  return Status::Ok();
}

int Init(const std::string& cipherdir, const efs::InitOptions& options) {
  Status s = MakeCipherdirPrivate(cipherdir, /*must_exist=*/false);
  if (!s.ok()) return Fail(s);
  envelope::kms::ConnectOptions connect;
  connect.endpoint = options.kms_endpoint;
  auto api = envelope::kms::ParseKmsApi(options.kms_api);
  if (!api.ok()) return Fail(api.status());
  connect.api = *api;
  connect.ca_file = options.ca_file;
  auto kms = envelope::kms::ConnectKeyService(connect);
  if (!kms.ok()) return Fail(kms.status());
  s = efs::Volume::Init(cipherdir, options, kms->get());
  if (!s.ok()) return Fail(s);
  s = MakeCipherdirPrivate(cipherdir, /*must_exist=*/true);
  if (!s.ok()) return Fail(s);
  std::printf("created envelopefs volume in %s (master key %s)\n", cipherdir.c_str(),
              options.key_id.c_str());
  return 0;
}

// Opens the volume and tells the user what Open found worth a warning.
envelope::StatusOr<std::unique_ptr<efs::Volume>> OpenVolume(const std::string& cipherdir,
                                                          const efs::OpenOptions& options) {
  auto volume = efs::Volume::Open(Absolute(cipherdir), options);
  if (volume.ok()) {
    for (const std::string& w : (*volume)->warnings()) {
      std::fprintf(stderr, "envelopefs: warning: %s\n", w.c_str());
    }
  }
  return volume;
}

int Info(const std::string& cipherdir, const efs::OpenOptions& open) {
  auto volume = OpenVolume(cipherdir, open);
  if (!volume.ok()) return Fail(volume.status());
  const efs::VolumeConfig& c = (*volume)->config();
  std::time_t created = c.created;
  char date[64];
  std::strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&created));
  std::printf("volume id       %s\n", c.volume_id.c_str());
  std::printf("format version  %d (file formats %u and %u)\n", efs::kVolumeConfigVersion,
              envelope::format::kFormatVersionDense, envelope::format::kFormatVersionSparse);
  std::printf("master key      %s\n", c.key_id.c_str());
  std::printf("key service     %s (recorded: %s)\n", (*volume)->kms()->Name().c_str(),
              c.kms_endpoint.empty() ? "none" : c.kms_endpoint.c_str());
  std::printf("DEK location    %s\n", c.dek_in_xattr ? "xattr" : "header");
  std::printf("chunk size      %u\n", c.chunk_size);
  std::printf("created         %s\n", date);
  std::printf("config          authentic (MAC verified with the volume key)\n");
  return 0;
}

struct WalkFlags {
  std::string to_key;
  int threads = 8;
  size_t files_per_batch = 64;  // rotate only
  bool json = false;
  bool deep = false;
};

// "KEYID:VERSION" counts as {"KEYID": {"VERSION": n}}.
nlohmann::json VersionsJson(const std::map<std::string, uint64_t>& counts) {
  nlohmann::json out = nlohmann::json::object();
  for (const auto& [kv, n] : counts) {
    size_t colon = kv.rfind(':');
    out[kv.substr(0, colon)][kv.substr(colon + 1)] = n;
  }
  return out;
}

std::string VersionsText(const std::map<std::string, uint64_t>& counts) {
  std::string out;
  for (const auto& [kv, n] : counts) {
    size_t colon = kv.rfind(':');
    out += (out.empty() ? "" : ", ") + kv.substr(0, colon) + " version " + kv.substr(colon + 1) +
           ": " + std::to_string(n) + (n == 1 ? " file" : " files");
  }
  return out.empty() ? "none" : out;
}

int Rekey(const std::string& cipherdir, const efs::OpenOptions& open, efs::RekeyOptions options) {
  auto heap = envelope::crypto::InitSecureHeap();
  if (!heap.ok()) return Fail(heap.status());
  auto volume = OpenVolume(cipherdir, open);
  if (!volume.ok()) return Fail(volume.status());
  options.progress = efs::Progress::StderrIsTerminal();
  // Mounted: the mount re-keys each file itself, while it serves it.
  const std::string mountpoint = efs::MountPointOf((*volume)->cipherdir());
  auto summary = mountpoint.empty()
                     ? efs::RekeyVolume(volume->get(), options)
                     : efs::RekeyThroughMount((*volume)->cipherdir(), mountpoint, options);
  if (!summary.ok()) return Fail(summary.status());
  const efs::RekeySummary& r = *summary;
  constexpr double kMiB = 1024.0 * 1024.0;
  std::printf("re-keyed %llu of %llu files of %s: %.1f MiB in %.2f s (%.1f MiB/s)\n",
              static_cast<unsigned long long>(r.rekeyed), static_cast<unsigned long long>(r.files),
              (*volume)->cipherdir().c_str(), static_cast<double>(r.bytes) / kMiB, r.seconds,
              r.seconds > 0 ? static_cast<double>(r.bytes) / kMiB / r.seconds : 0.0);
  if (r.resumed > 0) {
    std::printf("  resumed: %llu files were re-keyed by the interrupted run before\n",
                static_cast<unsigned long long>(r.resumed));
  }
  if (r.stale_temporaries > 0) {
    std::printf("  removed %llu temporaries an interrupted run left\n",
                static_cast<unsigned long long>(r.stale_temporaries));
  }
  if (r.hard_linked > 0) {
    std::printf("  skipped %llu hard-linked files: copy them to give them new keys\n",
                static_cast<unsigned long long>(r.hard_linked));
  }
  for (const auto& f : r.failures) std::printf("  FAILED %s\n", f.c_str());
  return r.failures.empty() ? 0 : 1;
}

int Rotate(const std::string& cipherdir, efs::OpenOptions open, const WalkFlags& flags) {
  auto heap = envelope::crypto::InitSecureHeap();
  if (!heap.ok()) return Fail(heap.status());
  // The key the user moves the volume to is trusted because they named it
  // here; a mount pinned to the old key must be given the new one.
  if (!flags.to_key.empty()) open.also_trust.push_back(flags.to_key);
  auto volume = OpenVolume(cipherdir, open);
  if (!volume.ok()) return Fail(volume.status());
  efs::RotateOptions options;
  options.to_key = flags.to_key;
  options.threads = flags.threads;
  options.files_per_batch = flags.files_per_batch;
  options.progress = !flags.json && efs::Progress::StderrIsTerminal();
  auto summary = efs::RotateVolume(volume->get(), options);
  if (!summary.ok()) return Fail(summary.status());
  const efs::RotateSummary& r = *summary;
  if (flags.json) {
    nlohmann::json j = {{"cipherdir", (*volume)->cipherdir()},
                        {"key_arn", r.key_arn},
                        {"key_version", r.key_version},
                        {"version_marker", r.version_marker},
                        {"journal_resumed", r.journal_resumed},
                        {"notes", r.notes},
                        {"volume_key_rewrapped", r.volume_key_rewrapped},
                        {"mount_wait_seconds", r.mount_wait_seconds},
                        {"files", r.files},
                        {"rewrapped", r.rewrapped},
                        {"already_current", r.already_current},
                        {"skipped_empty", r.skipped_empty},
                        {"failed", r.failures.size()},
                        {"failures", r.failures},
                        {"bytes_written", r.bytes_written},
                        {"seconds", r.seconds},
                        {"walk_seconds", r.walk_seconds},
                        {"sync_seconds", r.sync_seconds},
                        {"durability", r.durability},
                        {"from_versions", VersionsJson(r.from_versions)}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    const std::string version = r.key_version != 0 ? "version " + std::to_string(r.key_version)
                                                   : "current version (" + r.version_marker + ")";
    std::printf("rotated %s to %s %s in %.2f s\n", (*volume)->cipherdir().c_str(),
                r.key_arn.c_str(), version.c_str(), r.seconds);
    if (r.journal_resumed > 0) {
      std::printf("  (resumed: the rotation journal had %llu files re-wrapped by an earlier run)\n",
                  static_cast<unsigned long long>(r.journal_resumed));
    }
    if (r.mount_wait_seconds > 0) {
      std::printf("  (after waiting %.1f s for the mount to stop using keys made under the old "
                  "version)\n", r.mount_wait_seconds);
    }
    std::printf("  files %llu: %llu re-wrapped, %llu already current, %llu failed\n",
                static_cast<unsigned long long>(r.files), static_cast<unsigned long long>(r.rewrapped),
                static_cast<unsigned long long>(r.already_current),
                static_cast<unsigned long long>(r.failures.size()));
    std::printf("  written %llu bytes of DEK slots (no chunk touched); volume key %s\n",
                static_cast<unsigned long long>(r.bytes_written),
                r.volume_key_rewrapped ? "re-wrapped" : "already current");
    std::printf("  moved from %s\n", VersionsText(r.from_versions).c_str());
    for (const auto& f : r.failures) std::printf("  FAILED %s\n", f.c_str());
    for (const auto& n : r.notes) std::printf("  note: %s\n", n.c_str());
  }
  if (!flags.to_key.empty() && r.volume_key_rewrapped) {
    std::fprintf(stderr,
                 "envelopefs: the volume is now under %s: whatever pins its key (-o key= in fstab, "
                 "--key) must name this key from now on\n",
                 r.key_arn.c_str());
  }
  return r.failures.empty() ? 0 : 1;
}

int Fsck(const std::string& cipherdir, const efs::OpenOptions& open, const WalkFlags& flags) {
  auto heap = envelope::crypto::InitSecureHeap();
  if (!heap.ok()) return Fail(heap.status());
  auto volume = OpenVolume(cipherdir, open);
  if (!volume.ok()) {
    Fail(volume.status());
    return 2;
  }
  efs::FsckOptions options;
  options.deep = flags.deep;
  options.threads = flags.threads;
  options.progress = !flags.json && efs::Progress::StderrIsTerminal();
  auto report = efs::FsckVolume(volume->get(), options);
  if (!report.ok()) {
    Fail(report.status());
    return 2;
  }
  const efs::FsckReport& r = *report;
  if (flags.json) {
    nlohmann::json j = {{"cipherdir", (*volume)->cipherdir()},
                        {"clean", r.clean()},
                        {"deep", flags.deep},
                        {"directories", r.directories},
                        {"files", r.files},
                        {"symlinks", r.symlinks},
                        {"others", r.others},
                        {"bytes", r.bytes},
                        {"chunks_verified", r.chunks_verified},
                        {"torn_spare_slots", r.torn_spare_slots},
                        {"key_versions", VersionsJson(r.key_versions)},
                        {"damaged", r.damaged}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("checked %s%s: %llu directories, %llu files (%llu bytes), %llu symlinks, %llu others\n",
                (*volume)->cipherdir().c_str(), flags.deep ? " (deep)" : "",
                static_cast<unsigned long long>(r.directories), static_cast<unsigned long long>(r.files),
                static_cast<unsigned long long>(r.bytes), static_cast<unsigned long long>(r.symlinks),
                static_cast<unsigned long long>(r.others));
    std::printf("  file keys under %s\n", VersionsText(r.key_versions).c_str());
    if (flags.deep) {
      std::printf("  %llu chunks authenticated\n", static_cast<unsigned long long>(r.chunks_verified));
    }
    if (r.torn_spare_slots > 0) {
      std::printf("  %llu files with a torn spare DEK slot (an interrupted rotation; harmless)\n",
                  static_cast<unsigned long long>(r.torn_spare_slots));
    }
    if (r.clean()) {
      std::printf("  clean\n");
    } else {
      std::printf("  %zu damaged:\n", r.damaged.size());
      for (const auto& d : r.damaged) std::printf("  DAMAGED %s\n", d.c_str());
    }
  }
  return r.clean() ? 0 : 1;
}

// The log file of a background mount without syslog or log=PATH:
// $XDG_RUNTIME_DIR/envelopefs/envelopefs.log, else
// /tmp/envelopefs-UID/envelopefs.log; the directory 0700 and the file 0600,
// both checked (a planted symlink or another user's directory is refused).
envelope::StatusOr<std::string> FallbackLogPath() {
  const char* xdg = std::getenv("XDG_RUNTIME_DIR");
  const std::string dir = xdg != nullptr && xdg[0] == '/'
                              ? std::string(xdg) + "/envelopefs"
                              : "/tmp/envelopefs-" + std::to_string(::geteuid());
  ENVELOPE_ASSIGN_OR_RETURN(envelope::UniqueFd d, envelope::OpenPrivateDirectory(dir));
  ENVELOPE_ASSIGN_OR_RETURN(envelope::UniqueFd f,
                            envelope::OpenPrivateFileForAppend(d.get(), "envelopefs.log"));
  return dir + "/envelopefs.log";
}

// `mount -o remount,ro` (and rw) of a mounted volume: mount(8) hands
// remount to the helper, i.e. to us, with the volume already served by a
// running daemon. The kernel changes a FUSE superblock's read-only flag by
// itself, so this asks it to, after checking the mountpoint is a FUSE mount
// (never remount some other filesystem by a wrong path).
int Remount(const std::string& mountpoint, const std::vector<std::string>& options) {
  bool read_only = false;
  for (const std::string& o : options) {
    if (o == "ro") read_only = true;
    if (o == "rw") read_only = false;
  }
  constexpr long kFuseSuperMagic = 0x65735546;
  struct statfs sf;
  if (::statfs(mountpoint.c_str(), &sf) != 0) {
    return Fail(Status::FromErrno("remount: statfs " + mountpoint));
  }
  if (sf.f_type != kFuseSuperMagic) {
    return Fail(Status::InvalidArgument("remount: " + mountpoint + " is not a mounted volume"));
  }
  if (::mount(nullptr, mountpoint.c_str(), nullptr, MS_REMOUNT | (read_only ? MS_RDONLY : 0),
              nullptr) != 0) {
    return Fail(Status::FromErrno("remount " + mountpoint));
  }
  return 0;
}

int Mount(const std::string& cipherdir, efs::MountOptions options, efs::OpenOptions open) {
  // Split -o into ours (kms=, key=, log=) and the kernel's.
  std::string log_file;
  std::vector<std::string> passthrough;
  for (const std::string& group : options.fuse_options) {
    std::stringstream ss(group);
    std::string opt;
    while (std::getline(ss, opt, ',')) {
      if (opt.empty()) continue;
      if (opt.rfind("kms=", 0) == 0) {
        open.endpoint = opt.substr(4);
      } else if (opt.rfind("kms_api=", 0) == 0) {
        open.kms_api = opt.substr(8);
      } else if (opt.rfind("ca_file=", 0) == 0) {
        open.ca_file = opt.substr(8);
      } else if (opt.rfind("key=", 0) == 0) {
        open.keys.push_back(opt.substr(4));
      } else if (opt.rfind("log=", 0) == 0) {
        log_file = opt.substr(4);
      } else if (opt == "sharedstorage") {
        options.shared_storage = true;
      } else if (opt == "writeback_cache") {
        options.writeback_cache = true;
      } else {
        passthrough.push_back(opt);
      }
    }
  }
  options.fuse_options = passthrough;
  if (options.writeback_cache && options.shared_storage) {
    std::fprintf(stderr, "envelopefs: writeback_cache and sharedstorage exclude each other: "
                         "with shared storage the kernel caches no file data\n");
    return 2;
  }
  options.mountpoint = Absolute(options.mountpoint);
  if (std::find(passthrough.begin(), passthrough.end(), "remount") != passthrough.end()) {
    return Remount(options.mountpoint, passthrough);
  }
  // In the foreground: stderr. In the background: log=PATH, else syslog if
  // there is one, else a file in a private directory (a daemon's stderr
  // goes nowhere; the log holds plaintext paths).
  try {
    struct stat st;
    if (!log_file.empty()) {
      spdlog::set_default_logger(spdlog::basic_logger_mt("envelopefs", log_file));
    } else if (options.foreground) {
      spdlog::set_default_logger(spdlog::stderr_color_mt("envelopefs"));
    } else if (::stat("/dev/log", &st) == 0) {
      spdlog::set_default_logger(spdlog::syslog_logger_mt("envelopefs", "envelopefs", LOG_PID));
    } else {
      auto path = FallbackLogPath();
      if (!path.ok()) {
        return Fail(path.status().WithContext("no syslog at /dev/log and no private log file "
                                              "(pass -o log=PATH)"));
      }
      spdlog::set_default_logger(spdlog::basic_logger_mt("envelopefs", *path));
    }
  } catch (const spdlog::spdlog_ex& e) {
    std::fprintf(stderr, "envelopefs: cannot set up logging: %s\n", e.what());
  }
  spdlog::flush_on(spdlog::level::warn);
  auto heap = envelope::crypto::InitSecureHeap();
  if (!heap.ok()) return Fail(heap.status());
  auto volume = OpenVolume(cipherdir, open);
  if (!volume.ok()) return Fail(volume.status());
  if (!log_file.empty() || !options.foreground) {  // else the log is stderr, which has them
    for (const std::string& w : (*volume)->warnings()) spdlog::warn("{}", w);
  }
  Status s = efs::MountAndServe(volume->get(), options);
  if (!s.ok()) return Fail(s);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Before anything holds key material: no core dumps, no ptrace by peers.
  if (envelope::Status s = envelope::HardenProcess(); !s.ok()) {
    std::fprintf(stderr, "envelopefs: %s\n", s.ToString().c_str());
    return 1;
  }
  // mount.fuse3 runs "envelopefs SOURCE MOUNTPOINT -o OPTIONS".
  std::vector<std::string> args(argv + 1, argv + argc);
  const bool helper_form = args.size() >= 2 && args[0] != "init" && args[0] != "info" &&
                           args[0] != "mount" && args[0] != "rotate" && args[0] != "fsck" && args[0] != "rekey" &&
                           args[0] != "share" && args[0] != "unshare" && args[0] != "cat" &&
                           args[0].rfind("-", 0) != 0;

  CLI::App app{"envelopefs: a transparent encrypting filesystem with envelope encryption"};
  app.require_subcommand(helper_form ? 0 : 1);

  std::string cipherdir;
  efs::OpenOptions open;  // --kms and --key of info, rotate, fsck and mount
  efs::InitOptions init;
  std::string dek_in = "header";
  auto* init_cmd = app.add_subcommand("init", "create a volume in CIPHERDIR");
  init_cmd->add_option("cipherdir", cipherdir)->required();
  init_cmd->add_option("--key", init.key_id, "master key (id, ARN or alias)")->required();
  init_cmd->add_option("--kms", init.kms_endpoint,
                       "key service endpoint (recorded in the volume for information only)");
  init_cmd->add_option("--kms-api", init.kms_api, "auto, envelope or standard (AWS KMS's API only)");
  init_cmd->add_option("--ca-file", init.ca_file, "https endpoints: trust this PEM CA bundle");
  init_cmd->add_option("--dek-in", dek_in, "where file DEKs live")->check(CLI::IsMember({"header", "xattr"}));
  init_cmd->add_option("--chunk-size", init.chunk_size, "plaintext bytes per chunk (power of two, 4096..1048576)");

  // The key service and the pinned key, for every command that opens a volume.
  auto add_service_options = [&open](CLI::App* cmd) {
    cmd->add_option("--kms", open.endpoint, "key service endpoint");
    cmd->add_option("--kms-api", open.kms_api, "auto, envelope or standard (AWS KMS's API only)");
    cmd->add_option("--ca-file", open.ca_file, "https endpoints: trust this PEM CA bundle");
    cmd->add_option("--key", open.keys, "the volume's master key (pin; may repeat)");
  };
  auto* info_cmd = app.add_subcommand("info", "print a volume's configuration");
  info_cmd->add_option("cipherdir", cipherdir)->required();
  add_service_options(info_cmd);

  WalkFlags walk;
  auto* rotate_cmd = app.add_subcommand(
      "rotate", "re-wrap every file key under the key's current version (or --to-key)");
  rotate_cmd->add_option("cipherdir", cipherdir)->required();
  rotate_cmd->add_option("--to-key", walk.to_key, "move the volume to this master key");
  rotate_cmd->add_option("--threads", walk.threads, "parallel workers")->check(CLI::Range(1, 256));
  rotate_cmd->add_option("--files-per-batch", walk.files_per_batch,
                         "files whose keys one request re-wraps (default 64)")
      ->check(CLI::Range(1, 128));
  rotate_cmd->add_flag("--json", walk.json, "print a JSON summary, no progress bar");
  add_service_options(rotate_cmd);

  auto* fsck_cmd = app.add_subcommand("fsck", "check a volume's headers, keys and names");
  fsck_cmd->add_option("cipherdir", cipherdir)->required();
  fsck_cmd->add_flag("--deep", walk.deep, "also authenticate every chunk");
  fsck_cmd->add_option("--threads", walk.threads, "parallel workers")->check(CLI::Range(1, 256));
  fsck_cmd->add_flag("--json", walk.json, "print a JSON report, no progress bar");
  add_service_options(fsck_cmd);

  efs::RekeyOptions rekey;
  auto* rekey_cmd = app.add_subcommand(
      "rekey", "give files new DEKs and re-encrypt their content (docs/ROTATION.md)");
  rekey_cmd->add_option("cipherdir", cipherdir)->required();
  rekey_cmd->add_option("--files", rekey.files, "only these files (paths in the volume, /a/b)");
  rekey_cmd->add_option("--threads", rekey.threads, "parallel workers")->check(CLI::Range(1, 64));
  add_service_options(rekey_cmd);

  efs::ShareFlags share;
  auto* share_cmd = app.add_subcommand(
      "share", "let another principal read one file, through a grant (docs/SHARING.md)");
  share_cmd->add_option("cipherdir", cipherdir)->required();
  share_cmd->add_option("path", share.path, "the file, as a path in the volume (/docs/a.txt)")
      ->required();
  share_cmd->add_option("--with", share.with, "the reader: user:NAME, uid:N, key:NAME, ...")
      ->required();
  share_cmd->add_option("--until", share.until, "+12h, +7d, YYYY-MM-DD, ... (envelope-keyd)");
  add_service_options(share_cmd);
  auto* unshare_cmd = app.add_subcommand("unshare", "revoke the grants share made for one file");
  unshare_cmd->add_option("cipherdir", cipherdir)->required();
  unshare_cmd->add_option("path", share.path, "the file, as a path in the volume")->required();
  unshare_cmd->add_option("--with", share.with, "only this reader's grants");
  add_service_options(unshare_cmd);
  std::string cat_key;
  auto* cat_cmd = app.add_subcommand(
      "cat", "print a file shared with you (its backing file, as share printed it)");
  cat_cmd->add_option("file", cipherdir, "the backing file")->required();
  cat_cmd->add_option("--key", cat_key, "the master key share printed (pin)")->required();
  cat_cmd->add_option("--kms", open.endpoint, "key service endpoint");
  cat_cmd->add_option("--kms-api", open.kms_api, "auto, envelope or standard");
  cat_cmd->add_option("--ca-file", open.ca_file, "https endpoints: trust this PEM CA bundle");

  efs::MountOptions mount;
  auto* mount_cmd = app.add_subcommand("mount", "mount CIPHERDIR on MOUNTPOINT");
  mount_cmd->add_option("cipherdir", cipherdir)->required();
  mount_cmd->add_option("mountpoint", mount.mountpoint)->required();
  mount_cmd->add_flag("-f,--foreground", mount.foreground, "stay in the foreground");
  mount_cmd->add_flag("-d,--debug", mount.debug, "FUSE debug output (implies -f)");
  mount_cmd->add_option("-o", mount.fuse_options,
                        "mount options: kms=ENDPOINT, key=KEYID, kms_api=API, ca_file=PEM, allow_other, ro, ...");
  add_service_options(mount_cmd);

  if (helper_form) {
    cipherdir = args[0];
    mount.mountpoint = args[1];
    for (size_t i = 2; i < args.size(); ++i) {
      if (args[i] == "-o" && i + 1 < args.size()) {
        mount.fuse_options.push_back(args[++i]);
      } else if (args[i] == "-f") {
        mount.foreground = true;
      } else if (args[i].rfind("-o", 0) == 0) {
        mount.fuse_options.push_back(args[i].substr(2));
      }
    }
    return Mount(cipherdir, mount, open);
  }
  CLI11_PARSE(app, argc, argv);
  if (init_cmd->parsed()) {
    init.dek_in_xattr = dek_in == "xattr";
    return Init(cipherdir, init);
  }
  if (info_cmd->parsed()) return Info(cipherdir, open);
  if (rotate_cmd->parsed()) return Rotate(cipherdir, open, walk);
  if (fsck_cmd->parsed()) return Fsck(cipherdir, open, walk);
  if (rekey_cmd->parsed()) return Rekey(cipherdir, open, rekey);
  if (share_cmd->parsed()) return efs::ShareCommand(cipherdir, open, share);
  if (unshare_cmd->parsed()) return efs::UnshareCommand(cipherdir, open, share);
  if (cat_cmd->parsed()) return efs::CatCommand(cipherdir, cat_key, open);
  if (mount.debug) mount.foreground = true;
  return Mount(cipherdir, mount, open);
}
